# Sum what "meson test" ran in each build directory given (its
# meson-logs/testlog.json) into one closing line "N passed, N failed".
import json
import re
import sys

COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped)\b")


def counts(stdout):
    """passed, failed, skipped from the last summary line of a test's
    output: pytest's "3 passed, 1 skipped in 2s" or check.h's line."""
    for line in reversed(stdout.splitlines()):
        found = COUNT.findall(line)
        if found:
            c = {"passed": 0, "failed": 0, "skipped": 0}
            for n, what in found:
                c["failed" if what.startswith("error") else what] += int(n)
            return c
    return None


def main(dirs):
    total = {"passed": 0, "failed": 0, "skipped": 0}
    for d in dirs:
        with open(d + "/meson-logs/testlog.json") as f:
            for line in f:
                t = json.loads(line)
                c = counts(t.get("stdout") or "")
                if c is None or (t["result"] != "OK" and c["failed"] == 0):
                    # a crash or timeout with no count of its own
                    c = c or {"passed": 0, "failed": 0, "skipped": 0}
                    c["failed"] += 1
                    print("%s: %s %s" % (d, t["name"], t["result"]))
                for k in total:
                    total[k] += c[k]
    if total["skipped"]:
        print("%d skipped" % total["skipped"])
    print("%d passed, %d failed" % (total["passed"], total["failed"]))
    return 1 if total["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
