#!/usr/bin/python3
# Measures avalafs against curl on one local nginx and the fake Avala API:
# big and small file reads, cached rereads, listing and memory; one markdown table.
import argparse
import base64
import collections
import contextlib
import hashlib
import http.client
import json
import math
import os
import random
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = os.path.join(ROOT, "tests", "fake_avala.py")
KEY = "test-key"
MiB = 1 << 20
RUNS = 3
READERS = 8
BIG_SIZE = 512 * MiB
SMALL_COUNT = 2000
SMALL_MIN, SMALL_MAX = 60000, 160000
LIST_SMALL, LIST_SMALL_PAGE = 10000, 100
LIST_LARGE, LIST_LARGE_PAGE = 100000, 1000
SMALL_CACHE = "64M"
BIG = "bench/big"
SMALL = "bench/small"
TEN_K = "bench/list-10k"
HUNDRED_K = "bench/list-100k"
VIEWS = "bench/views-10k"
VIEWS_COUNT, VIEWS_CLASSES = 10000, 10
MILLION = "bench/million"
MILLION_COUNT, MILLION_PAGE = 1000000, 1000
FAR = "bench/far"
FAR_COUNT = 2000
FAR_IMAGES = "bench/far-images"
FAR_IMAGES_COUNT, FAR_CLASSES = 1000, 10
UNSIZED = "bench/far-unsized"
UNSIZED_COUNT = 500
LATENCY_API = 0.150
LATENCY_DATA = 0.030
WIDE_READERS = 32
MAX_CONNS = 64
START_TIMEOUT = 120
STEP_TIMEOUT = 180
PASSTHROUGH_LL = "/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c"
TIER_CONF = os.path.join(ROOT, "packaging", "nginx", "avalafs-tier.conf")
TIER_JS = os.path.join(ROOT, "packaging", "nginx", "avalafs-tier.js")
TIER_JS_MODULE = "/usr/lib/nginx/modules/ngx_http_js_module.so"
TIER_TOKEN = "node:bench-tier-token"
NODES = 4
SHARED = "bench/shared"
SHARED_LIST = "bench/shared-10k"
SHARED_SAMPLE = 200
LINK = "bench/link-one"
LINK_SIZE = 200 * MiB
LINK_FOUR = "bench/link-four"
LINK_FOUR_COUNT, LINK_FOUR_SIZE = 4, 60 * MiB
LINK_RATE = 20_000_000
LINK_LATENCY = 0.030
LINK_RANGES = 16
LINK_CACHE, LINK_CACHE_BYTES = "512M", 512 * MiB
LINK_READS, LINK_SEED = 64, 7
LINK_SHARE = 0.15

NOTES = (f"MB = 10^6 bytes. Each run of (1), (2), (4), (5) uses a fresh mount. Readers in (2) and (3): "
         f"`xargs -0 -P{READERS} -n {SMALL_COUNT // READERS} cat`; curls: {READERS} processes of "
         f"{SMALL_COUNT // READERS} URLs, one connection each. HTTP request counts are the largest of the "
         f"3 runs; (3) counts nginx access-log lines plus fake API requests. Metadata in (5b) is the RSS "
         f"after listing the {SMALL_COUNT:,} items. The local copies of (1)–(3) are the same bytes downloaded "
         f"to tmpfs, then read from it, with no FUSE in between.")

started = time.monotonic()


class BenchError(Exception):
    """A measurement that could not be taken; its row says why."""


def log(message):
    print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)


def on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def wait_for(condition, timeout, what, process=None):
    """Poll condition() every 50 ms until it holds; BenchError after timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise BenchError(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not ready after {timeout} s")
        time.sleep(0.05)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Children:
    """Every long-running process started here, each with a pid file in the workdir."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.running = {}

    def start(self, name, argv, env=None):
        """Start argv with its stderr in workdir/<name>.log."""
        errors = open(os.path.join(self.workdir, f"{name}.log"), "wb")
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=errors)
        errors.close()
        with open(os.path.join(self.workdir, f"{name}.pid"), "w") as out:
            out.write(f"{process.pid}\n")
        self.running[name] = process
        return process

    def stop(self, name, grace=0, timeout=10):
        """Stop one child: let it exit by itself for grace seconds, then SIGTERM, then
        SIGKILL. Returns its exit status."""
        process = self.running.pop(name)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        os.unlink(os.path.join(self.workdir, f"{name}.pid"))
        return process.returncode

    def stop_all(self):
        for name in list(self.running):
            self.stop(name)

    def log_tail(self, name, lines=20):
        with open(os.path.join(self.workdir, f"{name}.log"), "rb") as log_file:
            return b"\n".join(log_file.read().splitlines()[-lines:]).decode(errors="replace")


class Nginx:
    """nginx on a free loopback port with its own config, logs and pid in the workdir;
    with @pki, over https, logging each request's connection and whether it resumed
    a TLS session."""

    def __init__(self, children, workdir, root, name="nginx", pki=None):
        self.port = free_port()
        self.pki = pki
        self.url = f"{'https' if pki else 'http'}://127.0.0.1:{self.port}"
        self.access_log = os.path.join(workdir, f"{name}-access.log")
        config = os.path.join(workdir, f"{name}.conf")
        with open(config, "w") as out:
            out.write(self.config(workdir, root, name))
        self.process = children.start(name, ["nginx", "-p", workdir, "-c", config,
                                              "-e", os.path.join(workdir, f"{name}-error.log")])
        wait_for(self.answers, 10, name, self.process)

    def config(self, workdir, root, name):
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "".join(f"    {kind}_temp_path {workdir}/{name}-{kind}_temp;\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        tls = ""
        listen = f"127.0.0.1:{self.port}"
        if self.pki:
            listen += " ssl"
            tls = (f"        ssl_certificate {self.pki.cert};\n"
                   f"        ssl_certificate_key {self.pki.key};\n"
                   "        ssl_session_cache shared:tls:10m;\n")
        return (f"{user}daemon off;\nworker_processes auto;\npid {workdir}/{name}-master.pid;\n"
                f"error_log {workdir}/{name}-error.log;\n"
                "events { worker_connections 1024; }\n"
                "http {\n"
                "    log_format sessions '$connection $ssl_session_reused $status';\n"
                f"    access_log {self.access_log} sessions;\n"
                "    sendfile on;\n    tcp_nopush on;\n"
                "    keepalive_requests 100000;\n    keepalive_timeout 60s;\n"
                "    default_type application/octet-stream;\n"
                f"{temp}"
                f"    server {{\n        listen {listen};\n{tls}"
                f"        root {root};\n        autoindex on;\n    }}\n"
                "}\n")

    def answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def lines(self):
        if not os.path.exists(self.access_log):
            return []
        with open(self.access_log, "rb") as log_file:
            return log_file.read().splitlines()

    def requests(self):
        """Lines in the access log so far: one per request served."""
        return len(self.lines())

    def connections_since(self, start):
        """Connections that served the requests logged after line @start, and how
        many of them resumed a TLS session."""
        first = {}
        for line in self.lines()[start:]:
            connection, reused = line.split()[:2]
            first.setdefault(connection, reused == b"r")
        return len(first), sum(first.values())


class Pki:
    """A CA and a server certificate for 127.0.0.1, made with openssl for the https
    rows; clients trust the CA alone (avalafs through ca_file=, curl --cacert)."""

    def __init__(self, workdir):
        d = os.path.join(workdir, "pki")
        os.makedirs(d)
        self.ca = os.path.join(d, "ca.pem")
        self.cert = os.path.join(d, "server.pem")
        self.key = os.path.join(d, "server.key")
        ca_key, csr = os.path.join(d, "ca.key"), os.path.join(d, "server.csr")
        ext = os.path.join(d, "san.ext")
        with open(ext, "w") as out:
            out.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        for argv in (["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
                      "-out", self.ca, "-days", "2", "-subj", "/CN=avalafs bench CA"],
                     ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key,
                      "-out", csr, "-subj", "/CN=127.0.0.1"],
                     ["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key,
                      "-CAcreateserial", "-out", self.cert, "-days", "2", "-extfile", ext]):
            timed(argv)


class Fake:
    """A tests/fake_avala.py process and its control calls; with @pki, over https."""

    def __init__(self, children, workdir, name, specs, pki=None):
        port_file = os.path.join(workdir, f"{name}.port")
        argv = [sys.executable, FAKE, "--quiet", "--key", KEY, "--port-file", port_file]
        if pki:
            argv += ["--tls-cert", pki.cert, "--tls-key", pki.key]
        for spec in specs:
            argv += ["--dataset", spec]
        self.name = name
        self.pki = pki
        self.process = children.start(name, argv)
        self.port_file = port_file

    def wait(self):
        wait_for(lambda: os.path.exists(self.port_file), START_TIMEOUT, f"fake API {self.name}",
                 self.process)
        with open(self.port_file) as port:
            self.port = int(port.read())
        self.api_url = f"{'https' if self.pki else 'http'}://127.0.0.1:{self.port}/api/v1"

    def connection(self):
        return connect(self.port, self.pki)

    def counts(self):
        return self.control("GET", "/_fake/stats")["counts"]

    def control(self, method, path, body=None):
        connection = self.connection()
        try:
            connection.request(method, path, body=json.dumps(body) if body is not None else None,
                               headers={"Content-Type": "application/json"})
            return json.loads(connection.getresponse().read())
        finally:
            connection.close()

    def items(self, dataset, limit):
        """Every item of a dataset, as the list pages give them."""
        items = []
        for page in list_pages(self.port, dataset, limit, self.pki):
            items += json.loads(page)["results"]
        return items


def connect(port, pki=None):
    """An http.client connection to the fake on @port, https trusting @pki's CA."""
    if not pki:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    return http.client.HTTPSConnection("127.0.0.1", port, timeout=30,
                                       context=ssl.create_default_context(cafile=pki.ca))


def count_delta(before, after):
    """Per-route counts added between two snapshots of the fake's counters."""
    return {route: after[route] - before.get(route, 0)
            for route in after if after[route] != before.get(route, 0)}


def api_requests(delta):
    return sum(count for route, count in delta.items() if route != "connections")


def list_pages(port, dataset, limit, pki=None):
    """The raw bodies of every list page of a dataset, following next cursors over
    one keep-alive connection with http.client (https trusting @pki's CA)."""
    connection = connect(port, pki)
    headers = {"X-Avala-Api-Key": KEY, "Accept": "application/json"}
    target = f"/api/v1/datasets/{dataset}/items/?limit={limit}"
    pages = []
    try:
        while target:
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise BenchError(f"GET {target}: HTTP {response.status}")
            pages.append(body)
            following = json.loads(body)["next"]
            if following:
                parts = urllib.parse.urlsplit(following)
                target = f"{parts.path}?{parts.query}"
            else:
                target = None
    finally:
        connection.close()
    return pages


def proc_status(pid):
    """VmRSS and VmHWM of a process, in bytes."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            field, _, rest = line.partition(":")
            if field in ("VmRSS", "VmHWM"):
                values[field] = int(rest.split()[0]) * 1024
    return values


class Mount:
    """One FUSE mount (avalafs or rclone) on workdir/mnt (or workdir/@where), up until
    stop()."""

    def __init__(self, children, workdir, name, argv, env=None, where="mnt"):
        self.children = children
        self.name = name
        self.path = os.path.join(workdir, where)
        os.makedirs(self.path, exist_ok=True)
        self.process = children.start(name, argv + [self.path], env=env)
        try:
            wait_for(lambda: os.path.ismount(self.path), 30, f"mount {name}", self.process)
        except BenchError as error:
            children.stop(name)
            raise BenchError(f"{error}; stderr: {children.log_tail(name)}")
        self.pid = self.process.pid

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def alive(self):
        if self.process.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.process.returncode}; "
                             f"stderr: {self.children.log_tail(self.name)}")

    def memory(self):
        self.alive()
        return proc_status(self.pid)

    def cpu(self):
        """Seconds of CPU the process used so far, user and system."""
        self.alive()
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def avalafs_stats(self):
        """The cache counters avalafs logs on SIGUSR1."""
        def lines():
            return [line for line in self.children.log_tail(self.name, 1000).splitlines()
                    if "stats: " in line]
        before = len(lines())
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while len(lines()) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        return json.loads(lines()[-1].split("stats: ", 1)[1]) if lines() else {}

    def stop(self):
        if self.name not in self.children.running:
            return
        if os.path.ismount(self.path):
            unmount = subprocess.run(["fusermount3", "-u", self.path], capture_output=True, timeout=30)
            if unmount.returncode != 0:
                subprocess.run(["fusermount3", "-u", "-z", self.path], capture_output=True, timeout=30)
        status = self.children.stop(self.name, grace=10)
        if status != 0:
            raise BenchError(f"{self.name} exited with {status} after unmount; "
                             f"stderr: {self.children.log_tail(self.name)}")


class Bench:
    """The datasets, servers and mounts of one benchmark run."""

    def __init__(self, binary, workdir):
        self.binary = binary
        self.workdir = workdir
        self.children = Children(workdir)
        self.files_dir = os.path.join(workdir, "files")
        os.makedirs(self.files_dir)
        self.mounts = 0

    def start_servers(self):
        self.nginx = Nginx(self.children, self.workdir, self.files_dir)
        log(f"nginx on {self.nginx.url}, root {self.files_dir}")
        served = f"data_base={self.nginx.url},size_known=1"
        self.data_fake = Fake(self.children, self.workdir, "fake-data", [
            f"{BIG}:items=1,min_size={BIG_SIZE},max_size={BIG_SIZE},{served}",
            f"{SMALL}:items={SMALL_COUNT},min_size={SMALL_MIN},max_size={SMALL_MAX},{served},"
            f"files_dir={self.files_dir}",
        ])
        self.list_fake = Fake(self.children, self.workdir, "fake-list", [
            f"{TEN_K}:items={LIST_SMALL}", f"{HUNDRED_K}:items={LIST_LARGE}",
        ])
        log("fake APIs starting (writing the data files)")
        self.data_fake.wait()
        self.list_fake.wait()
        log(f"fake APIs up on ports {self.data_fake.port} and {self.list_fake.port}")
        self.big = self.data_fake.items(BIG, 1000)[0]
        write_random_file(os.path.join(self.files_dir, served_name(self.big)), BIG_SIZE)
        os.sync()
        log("512 MiB file written")
        self.small = self.data_fake.items(SMALL, 1000)
        self.small_bytes = sum(item["metadata"]["size"] for item in self.small)
        curl_read(self.big["data_url"])
        curl_parallel([item["data_url"] for item in self.small])
        log("nginx warmed up: every file read once")

    def avalafs(self, fake, dataset, options="", where="mnt"):
        self.mounts += 1
        # each mount keeps what it learns in a folder of its own, to be
        # measured, unless the options name one (a remount)
        self.tmp = os.path.join(self.workdir, f"cache-{self.mounts}")
        if "cache_dir=" not in options:
            options = f"cache_dir={self.tmp}" + (f",{options}" if options else "")
        # the API's own URL, unless the options name a list of them (a tier's first)
        api = "" if "api_url=" in options else f"api_url={fake.api_url},"
        opts = f"{api}dataset={dataset}" + (f",{options}" if options else "")
        env = dict(os.environ, AVALA_API_KEY=KEY)
        return Mount(self.children, self.workdir, f"avalafs-{self.mounts}",
                     [self.binary, "-f", "-o", opts], env=env, where=where)

    def passthrough(self, source, where="mnt-passthrough"):
        """libfuse's passthrough_ll example over @source, built on first use
        from the copy libfuse3-dev ships: the least any FUSE file system
        costs on this kernel."""
        binary = os.path.join(self.workdir, "passthrough_ll")
        if not os.path.exists(binary):
            flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], capture_output=True,
                                   text=True, check=True).stdout.split()
            subprocess.run(["cc", "-O2", "-o", binary, PASSTHROUGH_LL] + flags, check=True)
        self.mounts += 1
        return Mount(self.children, self.workdir, f"passthrough-{self.mounts}",
                     [binary, "-f", "-o", f"source={source}"], where=where)

    def store_bytes(self):
        """Bytes of the listing stores of the last mount (databases and their
        write-ahead logs)."""
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(self.tmp) for f in files)

    def rclone(self):
        self.mounts += 1
        return Mount(self.children, self.workdir, f"rclone-{self.mounts}",
                     ["rclone", "mount", ":http:", "--http-url", self.nginx.url, "--read-only",
                      "--vfs-cache-mode", "off", "--dir-cache-time", "1h"])

    def stop(self):
        self.children.stop_all()


def write_random_file(path, size):
    """The fake cannot generate files of 256 MiB and more, so the big one is written here."""
    with open(path, "wb") as out:
        for _ in range(size // (8 * MiB)):
            out.write(os.urandom(8 * MiB))
        out.write(os.urandom(size % (8 * MiB)))


def served_name(item):
    """The file name of an item's data under the nginx root."""
    return os.path.basename(urllib.parse.urlsplit(item["data_url"]).path)


class DatasetLayout:
    """Where an avalafs mount shows the items of one dataset."""

    def __init__(self, dataset):
        self.dataset = dataset

    def directory(self, mount):
        return os.path.join(mount.path, self.dataset, "items")

    def path(self, mount, item):
        """The item's data file: its key as folder, data plus the key's extension."""
        extension = os.path.splitext(item["key"])[1]
        return os.path.join(self.directory(mount), item["key"], f"data{extension}")


class ServedLayout:
    """Where a mount of the nginx root (rclone) shows the items."""

    def directory(self, mount):
        return mount.path

    def path(self, mount, item):
        return os.path.join(mount.path, served_name(item))


def timed(argv, timeout=STEP_TIMEOUT):
    """Run a command; (seconds, stdout, stderr). BenchError when it fails."""
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{argv[0]} did not finish in {timeout} s")
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        errors = done.stderr.decode(errors="replace")[-300:]
        raise BenchError(f"{argv[0]} exited with {done.returncode}: {errors}")
    return seconds, done.stdout, done.stderr


def dd_read(path):
    """Seconds for dd bs=1M of a whole file to /dev/null, and the bytes dd copied."""
    seconds, _, errors = timed(["dd", f"if={path}", "of=/dev/null", "bs=1M"])
    copied = int(errors.decode().strip().splitlines()[-1].split()[0])
    return seconds, copied


def curl_read(url, options=()):
    seconds, out, _ = timed(["curl", "-s", "--fail", *options, "-o", "/dev/null", "-w", "%{size_download}",
                             url])
    return seconds, int(out)


def curl_parallel(urls, outputs=None, readers=READERS, options=()):
    """Seconds for @readers curl processes, each fetching its share of the URLs over
    one reused connection to /dev/null (or to the matching outputs); and the bytes
    downloaded."""
    share = math.ceil(len(urls) / readers)
    pairs = list(zip(urls, outputs or ["/dev/null"] * len(urls)))
    chunks = [pairs[at:at + share] for at in range(0, len(pairs), share)]
    return run_curls([["curl", "-s", "--fail", *options, "-w", "%{size_download}\n"]
                      + [arg for url, out in chunk for arg in ("-o", out, url)] for chunk in chunks])


def run_curls(argvs):
    """Seconds for the curl commands @argvs, all started at once, each writing
    %{size_download} lines to stdout; and the bytes they downloaded."""
    start = time.perf_counter()
    processes = [subprocess.Popen(argv, stdout=subprocess.PIPE) for argv in argvs]
    total = 0
    try:
        for process in processes:
            out, _ = process.communicate(timeout=STEP_TIMEOUT)
            if process.returncode != 0:
                raise BenchError(f"curl exited with {process.returncode}")
            total += sum(int(size) for size in out.split())
    except subprocess.TimeoutExpired:
        raise BenchError(f"curl did not finish in {STEP_TIMEOUT} s")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return time.perf_counter() - start, total


def parallel_cat(paths, readers=READERS):
    """Seconds for @readers cat processes (xargs -P), each reading its share of the
    files whole to /dev/null. BenchError when a read fails."""
    share = math.ceil(len(paths) / readers)
    names = b"".join(os.fsencode(path) + b"\0" for path in paths)
    start = time.perf_counter()
    try:
        done = subprocess.run(["xargs", "-0", "-P", str(readers), "-n", str(share), "cat"], input=names,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=STEP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{readers} readers did not finish in {STEP_TIMEOUT} s")
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(f"cat failed: {done.stderr.decode(errors='replace')[-300:]}")
    return seconds


def verify_files(pairs):
    """BenchError unless every (mount path, nginx root path) pair holds the same bytes."""
    for mounted, original in pairs:
        with open(mounted, "rb") as a, open(original, "rb") as b:
            while True:
                left, right = a.read(MiB), b.read(MiB)
                if left != right:
                    raise BenchError(f"wrong bytes in {mounted}")
                if not left:
                    break


def expect_bytes(what, got, want):
    if got != want:
        raise BenchError(f"{what}: {got} bytes read, {want} expected")


def median(values):
    return statistics.median(values)


def original_path(bench, item):
    return os.path.join(bench.files_dir, served_name(item))


def big_read(bench, mount, layout, label, run):
    """MB/s of dd of the 512 MiB file through a fresh mount; the first run's bytes
    are then compared with the file nginx serves."""
    with mount() as mounted:
        path = layout.path(mounted, bench.big)
        seconds, copied = dd_read(path)
        expect_bytes("dd", copied, BIG_SIZE)
        log(f"(1) {label} run {run + 1}: {BIG_SIZE / seconds / 1e6:.0f} MB/s")
        if run == 0:
            verify_files([(path, original_path(bench, bench.big))])
    return BIG_SIZE / seconds / 1e6


def big_curl(bench, run):
    seconds, size = curl_read(bench.big["data_url"])
    expect_bytes("curl", size, BIG_SIZE)
    log(f"(1) curl run {run + 1}: {BIG_SIZE / seconds / 1e6:.0f} MB/s")
    return BIG_SIZE / seconds / 1e6


def small_reads(bench, mount, layout, label, run):
    """Cold then warm files/s of READERS cat processes reading the small files through
    one fresh mount, and the HTTP requests the warm pass made; the first run's bytes
    are then compared with the files nginx serves."""
    with mount() as mounted:
        os.listdir(layout.directory(mounted))
        paths = [layout.path(mounted, item) for item in bench.small]
        cold = len(paths) / parallel_cat(paths)
        before_api, before_nginx = bench.data_fake.counts(), bench.nginx.requests()
        warm = len(paths) / parallel_cat(paths)
        delta = count_delta(before_api, bench.data_fake.counts())
        requests = api_requests(delta) + bench.nginx.requests() - before_nginx
        log(f"(2,3) {label} run {run + 1}: cold {cold:.0f} files/s, warm {warm:.0f} files/s, "
            f"warm HTTP requests {requests} (API {delta})")
        if run == 0:
            verify_files([(path, original_path(bench, item)) for path, item in zip(paths, bench.small)])
    return cold, warm, requests


def small_curl(bench, run):
    urls = [item["data_url"] for item in bench.small]
    seconds, size = curl_parallel(urls)
    expect_bytes("curl", size, bench.small_bytes)
    log(f"(2) {READERS} curls run {run + 1}: {len(urls) / seconds:.0f} files/s")
    return len(urls) / seconds


def local_dir():
    """A new directory on tmpfs for a local copy."""
    return tempfile.mkdtemp(prefix="avalafs-bench-", dir="/dev/shm")


def big_local(bench, run):
    """MB/s of curl writing the big file to tmpfs, then dd reading it back: the same
    bytes through the page cache, with no FUSE in between."""
    target = local_dir()
    try:
        path = os.path.join(target, "big")
        start = time.perf_counter()
        timed(["curl", "-s", "--fail", "-o", path, bench.big["data_url"]])
        _, copied = dd_read(path)
        seconds = time.perf_counter() - start
        expect_bytes("local copy", copied, BIG_SIZE)
    finally:
        shutil.rmtree(target)
    log(f"(1) local copy run {run + 1}: {BIG_SIZE / seconds / 1e6:.0f} MB/s")
    return BIG_SIZE / seconds / 1e6


def small_local(bench, run):
    """Files/s of READERS curls writing the small files to tmpfs then READERS cats
    reading them, of the cats alone reading them again, and of the same curls
    and cats with libfuse's passthrough_ll over the copy (the FUSE floor)."""
    target = local_dir()
    try:
        paths = [os.path.join(target, str(at)) for at in range(len(bench.small))]
        seconds, size = curl_parallel([item["data_url"] for item in bench.small], paths)
        seconds += parallel_cat(paths)
        expect_bytes("local copy", size, bench.small_bytes)
        again = parallel_cat(paths)
        with bench.passthrough(target) as mount:
            through = [os.path.join(mount.path, str(at)) for at in range(len(paths))]
            floor, _ = curl_parallel([item["data_url"] for item in bench.small], through)
            floor += parallel_cat(through)
    finally:
        shutil.rmtree(target)
    log(f"(2,3) local copy run {run + 1}: {len(paths) / seconds:.0f} files/s, again {len(paths) / again:.0f}; "
        f"through passthrough_ll {len(paths) / floor:.0f} files/s")
    return len(paths) / seconds, len(paths) / again, len(paths) / floor


def summarize_small(runs):
    """Median cold and warm files/s over runs, and the most requests of a warm pass."""
    cold, warm, requests = zip(*runs)
    return median(cold), median(warm), max(requests)


def small_memory(bench):
    """Median VmHWM while reading the small files cold with cache_size=64M, and the
    median RSS after listing (process plus metadata)."""
    peaks, listed = [], []
    for run in range(RUNS):
        with bench.avalafs(bench.data_fake, SMALL, f"cache_size={SMALL_CACHE}") as mount:
            layout = DatasetLayout(SMALL)
            os.listdir(layout.directory(mount))
            paths = [layout.path(mount, item) for item in bench.small]
            listed.append(mount.memory()["VmRSS"])
            parallel_cat(paths)
            peaks.append(mount.memory()["VmHWM"])
            log(f"(5b) run {run + 1}: RSS after listing {listed[-1] / MiB:.1f} MiB, "
                f"VmHWM {peaks[-1] / MiB:.1f} MiB, cache {mount.avalafs_stats()}")
    return median(peaks), median(listed)


def listing(bench):
    """Median seconds of a cold ls -l plus stat of every item directory of the 10,000
    item dataset, and the most item-list requests one such run made."""
    times, requests = [], []
    for run in range(RUNS):
        with bench.avalafs(bench.list_fake, TEN_K, f"page_size={LIST_SMALL_PAGE}") as mount:
            items = DatasetLayout(TEN_K).directory(mount)
            before = bench.list_fake.counts()
            start = time.perf_counter()
            timed(["ls", "-l", items])
            names = os.listdir(items)
            for name in names:
                os.stat(os.path.join(items, name))
            times.append(time.perf_counter() - start)
            delta = count_delta(before, bench.list_fake.counts())
            requests.append(delta.get("items_list", 0))
            if len(names) != LIST_SMALL:
                raise BenchError(f"{len(names)} item directories listed, {LIST_SMALL} expected")
            log(f"(4) avalafs run {run + 1}: {times[-1]:.2f} s, API requests {delta}")
    return median(times), max(requests)


def listing_reference(bench):
    times = []
    for run in range(RUNS):
        start = time.perf_counter()
        pages = list_pages(bench.list_fake.port, TEN_K, LIST_SMALL_PAGE)
        times.append(time.perf_counter() - start)
        log(f"(4) http.client run {run + 1}: {times[-1]:.2f} s, {len(pages)} pages")
    return median(times)


def item_json_bytes(bench):
    """Mean size of one item of the 100,000 item dataset as compact JSON."""
    items = bench.list_fake.items(HUNDRED_K, LIST_LARGE_PAGE)
    total = sum(len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()) for item in items)
    return total / len(items)


def large_listing_memory(bench):
    """Median VmHWM after ls of the 100,000 item dataset, the median RSS it added, and
    the median size of the listing store."""
    peaks, added, stored = [], [], []
    for run in range(RUNS):
        with bench.avalafs(bench.list_fake, HUNDRED_K, f"page_size={LIST_LARGE_PAGE}") as mount:
            before = mount.memory()["VmRSS"]
            _, listed, _ = timed(["ls", DatasetLayout(HUNDRED_K).directory(mount)])
            if len(listed.splitlines()) != LIST_LARGE:
                raise BenchError(f"ls listed {len(listed.splitlines())} items, {LIST_LARGE} expected")
            after = mount.memory()
            peaks.append(after["VmHWM"])
            added.append(after["VmRSS"] - before)
            stored.append(bench.store_bytes())
            log(f"(5a) run {run + 1}: RSS {before / MiB:.1f} -> {after['VmRSS'] / MiB:.1f} MiB, "
                f"VmHWM {after['VmHWM'] / MiB:.1f} MiB, store {stored[-1] / MiB:.1f} MiB")
    return median(peaks), median(added), median(stored)


def start_far_fake(bench):
    """A fake that answers API calls after LATENCY_API seconds and serves its
    own data files after LATENCY_DATA seconds, as the real service and its
    object store do from far away."""
    fake = Fake(bench.children, bench.workdir, "fake-far", [
        f"{FAR}:items={FAR_COUNT},min_size={SMALL_MIN},max_size={SMALL_MAX},size_known=1",
        f"{FAR_IMAGES}:items={FAR_IMAGES_COUNT},images=1,classes={FAR_CLASSES},size_known=1",
        f"{UNSIZED}:items={UNSIZED_COUNT},size_known=0,min_size=1000,max_size=20000"])
    fake.wait()
    items = fake.items(FAR, 1000)
    far_latency(fake)
    return fake, items


def far_latency(fake):
    """LATENCY_DATA on every data request of @fake, LATENCY_API on every API call."""
    # the first fault that matches applies: files, then every API call
    fake.control("POST", "/_fake/fault", {"route": "file", "latency": LATENCY_DATA, "count": -1})
    fake.control("POST", "/_fake/fault", {"route": "*", "latency": LATENCY_API, "count": -1})


def far_reset(fake):
    """Zero @fake's counters (POST /_fake/reset, which also clears its faults), then
    the latency again."""
    fake.control("POST", "/_fake/reset")
    far_latency(fake)


def data_requests(fake, before):
    return count_delta(before, fake.counts()).get("file", 0)


FAR_NOTES = (f"Latency rows (L): the fake answers every API call after {LATENCY_API * 1000:.0f} ms and every "
             f"data request after {LATENCY_DATA * 1000:.0f} ms; readers start once the listing is in. L1 and "
             f"L2 split the files as (2) does, in listing order or shuffled; the curls fetch the same URLs in "
             f"the same order. L3 and L4's local copies are on the same disk as the cache, read after "
             f"`echo 3 > drop_caches` (L3) or warm from their first epoch (L4).")


def far_read(bench, fake, items, readers, shuffle, run, options=""):
    """Files/s of @readers cat processes reading every file of FAR through a
    fresh mount, and its data requests."""
    with bench.avalafs(fake, FAR, options) as mount:
        layout = DatasetLayout(FAR)
        os.listdir(layout.directory(mount))
        paths = [layout.path(mount, item) for item in items]
        if shuffle:
            random.Random(run).shuffle(paths)
        before = fake.counts()
        rate = len(paths) / parallel_cat(paths, readers=readers)
        requests = data_requests(fake, before)
        if run == 0:
            for item in items:
                if os.path.getsize(layout.path(mount, item)) != item["metadata"]["size"]:
                    raise BenchError(f"wrong size of {layout.path(mount, item)}")
    return rate, requests


def far_curl(items, readers, shuffle, run):
    urls = [item["data_url"] for item in items]
    if shuffle:
        random.Random(run).shuffle(urls)
    seconds, size = curl_parallel(urls, readers=readers)
    expect_bytes("curl", size, sum(item["metadata"]["size"] for item in items))
    return len(urls) / seconds


def rows_far_reads(bench, fake, items):
    rows = []
    for label, readers, shuffle, target in (("L1", READERS, False, 2.0), ("L2", WIDE_READERS, True, 0.9)):
        ours, theirs, requests = [], [], []
        for run in range(RUNS):
            rate, asked = far_read(bench, fake, items, readers, shuffle, run)
            ours.append(rate)
            requests.append(asked)
            theirs.append(far_curl(items, readers, shuffle, run))
            log(f"({label}) run {run + 1}: avalafs {rate:.0f} files/s, {asked} data requests; "
                f"{readers} curls {theirs[-1]:.0f} files/s")
        ours, theirs = median(ours), median(theirs)
        order = "shuffled" if shuffle else "listing order"
        rows.append((f"{label}. {FAR_COUNT:,} files of 60–160 KB, cold, {order}, `xargs -P{readers} cat`",
                     f"{ours:.0f} files/s, {max(requests)} data requests",
                     f"{readers} curls {theirs:.0f} files/s", f"{ours / theirs:.2f}", f"≥ {target}",
                     verdict(ours / theirs >= target)))
    return rows


def local_copy(items, fake, target):
    """The files of @items fetched (latency and all) into @target, on disk, in
    the tree a mount shows them in: a folder per item, its data file in it."""
    paths = []
    for item in items:
        extension = os.path.splitext(item["key"])[1]
        paths.append(os.path.join(target, item["key"], f"data{extension}"))
        os.makedirs(os.path.dirname(paths[-1]))
    curl_parallel([item["data_url"] for item in items], paths, readers=WIDE_READERS)
    subprocess.run(["sync"], check=True)
    return paths


def rows_far_epoch2(bench, fake, items):
    """L3: a second epoch after a remount and drop_caches, against a local
    copy on disk read after drop_caches, and against libfuse's passthrough_ll
    over that copy (the FUSE floor)."""
    ours, theirs, floor, requests = [], [], [], []
    copy = os.path.join(bench.workdir, "far-local")
    local = local_copy(items, fake, copy)
    for run in range(RUNS):
        cache = os.path.join(bench.workdir, f"far-cache-{run}")
        layout = DatasetLayout(FAR)
        with bench.avalafs(fake, FAR, f"cache_dir={cache}") as mount:
            os.listdir(layout.directory(mount))
            parallel_cat([layout.path(mount, item) for item in items])
        with bench.avalafs(fake, FAR, f"cache_dir={cache}") as mount:
            os.listdir(layout.directory(mount))
            paths = [layout.path(mount, item) for item in items]
            for path in paths:
                os.stat(path)
            drop_caches("3")
            before = fake.counts()
            ours.append(len(paths) / parallel_cat(paths))
            requests.append(data_requests(fake, before))
            if run == 0:
                for path, item in zip(paths, items):
                    with open(path, "rb") as f:
                        if len(f.read()) != item["metadata"]["size"]:
                            raise BenchError(f"wrong size of {path}")
        drop_caches("3")
        theirs.append(len(local) / parallel_cat(local))
        with bench.passthrough(copy) as mount:
            through = [os.path.join(mount.path, os.path.relpath(path, copy)) for path in local]
            for path in through:
                os.stat(path)
            drop_caches("3")
            floor.append(len(through) / parallel_cat(through))
        log(f"(L3) run {run + 1}: avalafs {ours[-1]:.0f} files/s, {requests[-1]} data requests; "
            f"local copy {theirs[-1]:.0f} files/s; passthrough_ll over it {floor[-1]:.0f} files/s")
        shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(copy)
    ours, theirs, floor = median(ours), median(theirs), median(floor)
    return [(f"L3. epoch 2 of L1 after a remount and `drop_caches`",
             f"{ours:.0f} files/s, {max(requests)} data requests",
             f"local copy on disk {theirs:.0f} files/s", f"{ours / theirs:.2f}", "0 requests, ≥ 0.8",
             verdict(max(requests) == 0 and ours / theirs >= 0.8)),
            (f"L3b. same, against the FUSE floor", f"{ours:.0f} files/s",
             f"libfuse's `passthrough_ll` over the local copy {floor:.0f} files/s", f"{ours / floor:.2f}",
             "≥ 0.95", verdict(ours / floor >= 0.95))]


LOADER = """
import json, sys, time
import torch
from torchvision import datasets, transforms
torch.set_num_threads(1)
data = datasets.ImageFolder(sys.argv[1], transform=transforms.Compose(
    [transforms.Resize((64, 64)), transforms.ToTensor()]))
loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=sys.argv[3] == "1", num_workers=4)
epochs = []
for _ in range(int(sys.argv[2])):
    start, seen = time.perf_counter(), 0
    for x, y in loader:
        seen += len(y)
    epochs.append(time.perf_counter() - start)
print(json.dumps({"epochs": epochs, "images": seen}))
"""


def loader_epochs(root):
    _, out, _ = timed(["/usr/bin/python3", "-c", LOADER, root, "2", "1"], timeout=600)
    result = json.loads(out)
    if result["images"] == 0:
        raise BenchError(f"no image under {root}")
    return result["epochs"], result["images"]


def rows_far_loader(bench, fake):
    """L4: two epochs of a DataLoader (4 workers, shuffle) over ImageFolder on
    the files/ view, against the same on a local copy of that tree."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        raise BenchError("python3-torchvision is not installed")
    ours, theirs, firsts = [], [], []
    copy = os.path.join(bench.workdir, "far-images")
    for run in range(RUNS):
        with bench.avalafs(fake, FAR_IMAGES) as mount:
            files = os.path.join(mount.path, FAR_IMAGES, "files")
            epochs, images = loader_epochs(files)
            firsts.append(epochs[0])
            ours.append(epochs[1])
            if run == 0:
                timed(["cp", "-r", files, copy])
        local, local_images = loader_epochs(copy)
        if local_images != images:
            raise BenchError(f"{images} images through avalafs, {local_images} in the copy")
        theirs.append(local[1])
        log(f"(L4) run {run + 1}: avalafs epochs {epochs[0]:.2f} s, {epochs[1]:.2f} s; "
            f"local copy {local[0]:.2f} s, {local[1]:.2f} s ({images} images)")
    shutil.rmtree(copy)
    ours, theirs, first = median(ours), median(theirs), median(firsts)
    return [(f"L4. torchvision `DataLoader` (4 workers, shuffle) over ImageFolder of {images:,} images "
             f"in `files/`, epoch 2", f"{ours:.2f} s (epoch 1: {first:.2f} s)",
             f"local copy, epoch 2: {theirs:.2f} s", f"{ours / theirs:.2f}", "≤ 1.25",
             verdict(ours / theirs <= 1.25))]


def pool_read(paths, threads=READERS):
    """Seconds for @threads threads of this process, each taking the next
    file of one shared list and reading it whole: how loaders read."""
    queue = collections.deque(paths)
    lock = threading.Lock()
    failed = []

    def work():
        while True:
            with lock:
                if not queue:
                    return
                path = queue.popleft()
            try:
                with open(path, "rb") as f:
                    while f.read(MiB):
                        pass
            except OSError as error:
                failed.append(f"{path}: {error}")
                return

    start = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failed:
        raise BenchError(failed[0])
    return time.perf_counter() - start


POOL_COUNT = 500


def rows_far_pool(bench, fake, items):
    """L6: a pool of threads in listing order from one shared list, against
    as many curls over the same URLs."""
    ours, theirs, prefetched = [], [], []
    items = items[:POOL_COUNT]
    for run in range(RUNS):
        layout = DatasetLayout(FAR)
        with bench.avalafs(fake, FAR) as mount:
            os.listdir(layout.directory(mount))
            ours.append(len(items) / pool_read([layout.path(mount, item) for item in items]))
            prefetched.append(mount.avalafs_stats().get("prefetched", 0))
        theirs.append(far_curl(items, READERS, False, run))
        log(f"(L6) run {run + 1}: avalafs {ours[-1]:.0f} files/s ({prefetched[-1]} fetched ahead); "
            f"{READERS} curls {theirs[-1]:.0f} files/s")
    ours, theirs = median(ours), median(theirs)
    return [(f"L6. {READERS} threads of one process, each taking the next of {POOL_COUNT} files from one "
             f"shared list in listing order, cold", f"{ours:.0f} files/s, {min(prefetched)} fetched ahead",
             f"{READERS} curls {theirs:.0f} files/s", f"{ours / theirs:.2f}", "≥ 2",
             verdict(ours / theirs >= 2))]


def loader_epoch1(bench, fake, options, shuffle):
    """Seconds of a first epoch of a DataLoader (4 workers) over files/ of a
    fresh mount, the images it read, and the files avalafs fetched ahead."""
    with bench.avalafs(fake, FAR_IMAGES, options) as mount:
        files = os.path.join(mount.path, FAR_IMAGES, "files")
        for entry in os.scandir(files):
            if entry.is_dir():
                os.listdir(entry.path)
        before = fake.counts()
        _, out, _ = timed(["/usr/bin/python3", "-c", LOADER, files, "1", "1" if shuffle else "0"],
                          timeout=600)
        mount.alive()
        result = json.loads(out)
        if result["images"] == 0:
            raise BenchError(f"no image under {files}")
        return result["epochs"][0], result["images"], mount.avalafs_stats().get("prefetched", 0)


def rows_far_loader_ordered(bench, fake):
    """L7: a DataLoader without shuffle, epoch 1, against the same with
    prefetch=0; L8: a shuffled one, what avalafs fetched ahead of it (all
    of it is waste, or more than waste: read later or never)."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        raise BenchError("python3-torchvision is not installed")
    # the fake draws each picture on first request: not in any run
    curl_parallel([item["data_url"] for item in fake.items(FAR_IMAGES, 1000)], readers=WIDE_READERS)
    ours, off, waste = [], [], []
    for run in range(RUNS):
        seconds, images, _ = loader_epoch1(bench, fake, "", False)
        ours.append(seconds)
        seconds, _, _ = loader_epoch1(bench, fake, "prefetch=0", False)
        off.append(seconds)
        _, _, ahead = loader_epoch1(bench, fake, "", True)
        waste.append(ahead / images)
        log(f"(L7) run {run + 1}: in order {ours[-1]:.2f} s, prefetch=0 {off[-1]:.2f} s; "
            f"(L8) shuffled: {ahead} files fetched ahead for {images} images")
    ours, off, waste = median(ours), median(off), max(waste)
    return [(f"L7. torchvision `DataLoader` (4 workers, no shuffle) over ImageFolder of "
             f"{images:,} images in `files/`, epoch 1", f"{ours:.2f} s",
             f"the same with `prefetch=0` {off:.2f} s", f"{off / ours:.2f}", "≥ 3",
             verdict(off / ours >= 3)),
            (f"L8. same, shuffled: files fetched ahead (read or not)", f"{waste * 100:.1f}% of the files read",
             "", "", "≤ 5%", verdict(waste <= 0.05))]


def rows_far_unsized(bench, fake):
    """L5: ls -l of a folder of files no listing gives a size for."""
    times = []
    for run in range(RUNS):
        with bench.avalafs(fake, UNSIZED) as mount:
            files = os.path.join(mount.path, UNSIZED, "files")
            os.listdir(files)
            seconds, out, _ = timed(["ls", "-l", files])
            if len(out.splitlines()) != UNSIZED_COUNT + 1:
                raise BenchError(f"ls -l listed {len(out.splitlines()) - 1} files")
            times.append(seconds)
            log(f"(L5) run {run + 1}: ls -l {seconds:.3f} s")
    bound = 2 * math.ceil(UNSIZED_COUNT / MAX_CONNS) * LATENCY_DATA
    seconds = median(times)
    return [(f"L5. `ls -l files/`, {UNSIZED_COUNT} item data files never sized", f"{seconds:.3f} s",
             f"2 × ceil({UNSIZED_COUNT}/{MAX_CONNS}) × {LATENCY_DATA * 1000:.0f} ms = {bound:.3f} s",
             f"{seconds / bound:.2f}", "≤ 1", verdict(seconds <= bound))]


def rows_far(bench):
    fake, items = start_far_fake(bench)
    rows = []
    for label, step in (("L1.", lambda: rows_far_reads(bench, fake, items)),
                        ("L3.", lambda: rows_far_epoch2(bench, fake, items)),
                        ("L4.", lambda: rows_far_loader(bench, fake)),
                        ("L6.", lambda: rows_far_pool(bench, fake, items)),
                        ("L7.", lambda: rows_far_loader_ordered(bench, fake)),
                        ("L5.", lambda: rows_far_unsized(bench, fake))):
        measure(rows, label, step)
    return rows


def cold_walk(bench, fake, dataset, argv_of, label, run):
    """Seconds of a command on a fresh mount (its listing included), and the
    list and data requests it made."""
    with bench.avalafs(fake, dataset, f"page_size={LIST_SMALL_PAGE}") as mount:
        root = os.path.join(mount.path, dataset)
        before = fake.counts()
        seconds, out, _ = timed(argv_of(root))
        delta = count_delta(before, fake.counts())
        log(f"(7) {label} run {run + 1}: {seconds:.2f} s, {len(out.splitlines())} lines, API {delta}")
        return seconds, delta.get("items_list", 0), delta.get("file", 0), len(out.splitlines())


def rows_views(bench):
    fake = Fake(bench.children, bench.workdir, "fake-views", [
        f"{VIEWS}:items={VIEWS_COUNT},classes={VIEWS_CLASSES},size_known=1"])
    fake.wait()
    walks = {
        "items": lambda root: ["find", os.path.join(root, "items"), "-maxdepth", "1"],
        "find": lambda root: ["find", os.path.join(root, "files"), "-type", "f"],
        "ls": lambda root: ["ls", "-lR", os.path.join(root, "files")],
    }
    results = {}
    for name, argv_of in walks.items():
        runs = [cold_walk(bench, fake, VIEWS, argv_of, name, run) for run in range(RUNS)]
        seconds = median([r[0] for r in runs])
        results[name] = (seconds, max(r[1] for r in runs), max(r[2] for r in runs), runs[0][3])
    pages = math.ceil(VIEWS_COUNT / LIST_SMALL_PAGE)
    base = results["items"][0]
    rows = [(f"7a. `find items -maxdepth 1`, {VIEWS_COUNT:,} items in {VIEWS_CLASSES} class folders, cold",
             f"{base:.2f} s, {results['items'][1]} list requests", "", "", "", "")]
    for name, label in (("find", "`find files -type f`"), ("ls", "`ls -lR files`")):
        seconds, lists, datas, lines = results[name]
        ok = lists == pages and datas == 0 and seconds <= 1.25 * base
        rows.append((f"7{'b' if name == 'find' else 'c'}. {label}, same, cold",
                     f"{seconds:.2f} s, {lists} list, {datas} data requests",
                     f"`find items -maxdepth 1` {base:.2f} s", f"{seconds / base:.2f}",
                     f"{pages} list, 0 data requests, ≤ 1.25", verdict(ok)))
    return rows


def drop_caches(what="2"):
    """Let the kernel forget dentries and inodes (2), and the page cache too
    (3). Needs root."""
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as out:
        out.write(what + "\n")


def rows_million(bench):
    """A million items: the first mount's listing against the fake's own
    serial floor, then a remount from the listing kept on disk, memory, and
    the store's size. One run: each pass takes about a minute."""
    fake = Fake(bench.children, bench.workdir, "fake-million", [f"{MILLION}:items={MILLION_COUNT}"])
    fake.wait()
    start = time.perf_counter()
    pages = len(list_pages(fake.port, MILLION, MILLION_PAGE))
    floor = time.perf_counter() - start
    log(f"(8) serial floor: {pages} pages in {floor:.1f} s")
    cache = os.path.join(bench.workdir, "cache-million")
    opts = f"page_size={MILLION_PAGE},cache_dir={cache}"
    rows = []
    with bench.avalafs(fake, MILLION, opts) as mount:
        items = os.path.join(mount.path, MILLION, "items")
        before = fake.counts()
        start = time.perf_counter()
        seconds, out, _ = timed(["sh", "-c", f"find '{items}' -maxdepth 1 | wc -l"], timeout=900)
        lines = int(out)
        lists = count_delta(before, fake.counts()).get("items_list", 0)
        if lines != MILLION_COUNT + 1:
            raise BenchError(f"find listed {lines - 1} items")
        rss = mount.memory()["VmRSS"]
        cpu_us = mount.cpu() / MILLION_COUNT * 1e6
        log(f"(8) first mount: find {seconds:.1f} s, {lists} list requests, RSS {rss / MiB:.0f} MiB, "
            f"{cpu_us:.1f} µs of CPU per item")
        dropped = None
        if os.geteuid() == 0:
            drop_caches()
            time.sleep(2)
            dropped = mount.memory()["VmRSS"]
            log(f"(8) after drop_caches: RSS {dropped / MiB:.0f} MiB, {mount.avalafs_stats()}")
    stored = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(cache) for f in files)
    page_time = floor / pages
    # the first entry, on a mount of its own (find reads a hundred thousand
    # entries before it shows one): os.scandir, as a DataLoader would
    with bench.avalafs(fake, MILLION, f"page_size={MILLION_PAGE}") as mount:
        start = time.perf_counter()
        with os.scandir(os.path.join(mount.path, MILLION, "items")) as entries:
            next(entries)
            first = time.perf_counter() - start
        log(f"(8) first entry through os.scandir: {first:.3f} s")
    rows += [
        (f"8a. `find items -maxdepth 1`, {MILLION_COUNT:,} items, page_size={MILLION_PAGE}, first mount",
         f"{seconds:.1f} s, {lists} list requests",
         f"one keep-alive client paging the fake, {pages} pages: {floor:.1f} s",
         f"{seconds / floor:.2f}", "≤ 1.2", verdict(seconds <= 1.2 * floor)),
        ("8a'. avalafs's CPU (user + system, `/proc/PID/stat`) per item, mount to the end of 8a",
         f"{cpu_us:.1f} µs", "", "", "≤ 15 µs", verdict(cpu_us <= 15)),
        ("8b. same, first entry through `os.scandir`", f"{first:.3f} s", f"one page: {page_time:.3f} s",
         f"{first / page_time:.1f} pages",
         "≤ 2 pages", verdict(first <= 2 * page_time)),
        ("8c. RSS after 8a", f"{rss / MiB:.0f} MiB", "", "", "≤ 300 MiB", verdict(rss <= 300 * MiB)),
    ]
    if dropped is not None:
        rows.append(("8d. RSS after `echo 2 > drop_caches`", f"{dropped / MiB:.0f} MiB", "", "", "≤ 100 MiB",
                     verdict(dropped <= 100 * MiB)))
    rows.append(("8e. listing store on disk", f"{stored / MiB:.0f} MiB, {stored / MILLION_COUNT:.0f} B/item",
                 "", "", "—", ""))
    # a remount: the listing on disk answers, before any request; beside
    # it, as many names in a tmpfs folder
    names = os.path.join("/dev/shm", f"avalafs-bench-names.{os.getpid()}")
    os.mkdir(names)
    try:
        for i in range(MILLION_COUNT):
            os.close(os.open(os.path.join(names, f"frame_{i:06d}.jpg"), os.O_CREAT | os.O_WRONLY, 0o600))
        local = median([timed(["sh", "-c", f"ls '{names}' | wc -l"])[0] for _ in range(RUNS)])
    finally:
        shutil.rmtree(names)
    with bench.avalafs(fake, MILLION, opts) as mount:
        items = os.path.join(mount.path, MILLION, "items")
        before = fake.counts()
        runs = []
        for _ in range(RUNS):
            seconds, out, _ = timed(["sh", "-c", f"ls '{items}' | wc -l"])
            if int(out) != MILLION_COUNT:
                raise BenchError(f"ls listed {int(out)} items on the remount")
            runs.append(seconds)
        lists = count_delta(before, fake.counts()).get("items_list", 0)
        seconds = median(runs)
        log(f"(8) remount: ls | wc -l {seconds:.2f} s, {lists} list requests; tmpfs {local:.2f} s")
    rows.append(("8f. remount, `ls items | wc -l`", f"{seconds:.2f} s, {lists} list requests",
                 f"`ls | wc -l` of {MILLION_COUNT:,} names in a tmpfs folder: {local:.2f} s",
                 f"{seconds / local:.2f}", "≤ 3, 0 requests", verdict(seconds <= 3 * local and lists == 0)))
    return rows

TLS_NOTES = ("T rows: the fake API serves https (Python's ssl) and its data URLs point at a second nginx, "
             "both with a certificate of a CA made for the run; avalafs trusts it through ca_file=, curl "
             "through --cacert. Each run of (T2) mounts twice, over https then http, for the same "
             "files; CPU is the mount's own (user + system), connections and resumed TLS sessions are "
             "counted in nginx's access log.")


def start_tls_servers(bench):
    """The https twins of the servers of rows 1, 2 and 4: the same items (same datasets
    and seeds), their data on an nginx over https with the same files."""
    bench.pki = Pki(bench.workdir)
    bench.nginx_tls = Nginx(bench.children, bench.workdir, bench.files_dir, "nginx-tls", bench.pki)
    served = f"data_base={bench.nginx_tls.url},size_known=1"
    bench.tls_fake = Fake(bench.children, bench.workdir, "fake-tls", [
        f"{BIG}:items=1,min_size={BIG_SIZE},max_size={BIG_SIZE},{served}",
        f"{SMALL}:items={SMALL_COUNT},min_size={SMALL_MIN},max_size={SMALL_MAX},{served}",
        f"{TEN_K}:items={LIST_SMALL}"], bench.pki)
    bench.tls_fake.wait()
    bench.tls_big = bench.tls_fake.items(BIG, 1000)[0]
    bench.tls_small = bench.tls_fake.items(SMALL, 1000)
    if [served_name(i) for i in bench.tls_small] != [served_name(i) for i in bench.small]:
        raise BenchError("the https fake lists other files than the http one")
    bench.curl_tls = ("--cacert", bench.pki.ca)
    curl_parallel([item["data_url"] for item in bench.tls_small], options=bench.curl_tls)
    log(f"https: fake on {bench.tls_fake.api_url}, nginx on {bench.nginx_tls.url}")


def tls_small_pass(bench, fake, nginx, label, run):
    """Cold files/s of READERS cats over the small files through a fresh mount of
    @fake, the mount's CPU ms per file, and the connections and resumed TLS
    sessions @nginx saw per 1,000 files."""
    options = f"ca_file={bench.pki.ca}" if fake.pki else ""
    with bench.avalafs(fake, SMALL, options) as mount:
        layout = DatasetLayout(SMALL)
        os.listdir(layout.directory(mount))
        paths = [layout.path(mount, item) for item in bench.small]
        lines, cpu = nginx.requests(), mount.cpu()
        seconds = parallel_cat(paths)
        cpu = mount.cpu() - cpu
        connections, resumed = nginx.connections_since(lines)
        if run == 0:
            verify_files([(path, original_path(bench, item)) for path, item in zip(paths, bench.small)])
    per_k = 1000 / len(paths)
    log(f"(T2) {label} run {run + 1}: {len(paths) / seconds:.0f} files/s, CPU {cpu / len(paths) * 1000:.2f} "
        f"ms/file, {connections} connections ({resumed} resumed)")
    return len(paths) / seconds, cpu / len(paths) * 1000, connections * per_k, resumed * per_k


def rows_tls(bench):
    start_tls_servers(bench)
    https, http, curl, big, big_curl, lists, lists_ref = [], [], [], [], [], [], []
    for run in range(RUNS):
        https.append(tls_small_pass(bench, bench.tls_fake, bench.nginx_tls, "https", run))
        http.append(tls_small_pass(bench, bench.data_fake, bench.nginx, "http", run))
        seconds, size = curl_parallel([item["data_url"] for item in bench.tls_small], options=bench.curl_tls)
        expect_bytes("curl", size, bench.small_bytes)
        curl.append(len(bench.tls_small) / seconds)
        log(f"(T2) {READERS} curls over https run {run + 1}: {curl[-1]:.0f} files/s")
        with bench.avalafs(bench.tls_fake, BIG, f"ca_file={bench.pki.ca}") as mount:
            seconds, copied = dd_read(DatasetLayout(BIG).path(mount, bench.tls_big))
            expect_bytes("dd", copied, BIG_SIZE)
        big.append(BIG_SIZE / seconds / 1e6)
        seconds, size = curl_read(bench.tls_big["data_url"], bench.curl_tls)
        expect_bytes("curl", size, BIG_SIZE)
        big_curl.append(BIG_SIZE / seconds / 1e6)
        log(f"(T1) run {run + 1}: avalafs {big[-1]:.0f} MB/s, curl {big_curl[-1]:.0f} MB/s over https")
        with bench.avalafs(bench.tls_fake, TEN_K, f"ca_file={bench.pki.ca},page_size={LIST_SMALL_PAGE}") \
                as mount:
            start = time.perf_counter()
            names = os.listdir(DatasetLayout(TEN_K).directory(mount))
            lists.append(time.perf_counter() - start)
            if len(names) != LIST_SMALL:
                raise BenchError(f"{len(names)} items listed over https, {LIST_SMALL} expected")
        start = time.perf_counter()
        list_pages(bench.tls_fake.port, TEN_K, LIST_SMALL_PAGE, bench.pki)
        lists_ref.append(time.perf_counter() - start)
        log(f"(T4) run {run + 1}: avalafs {lists[-1]:.2f} s, http.client {lists_ref[-1]:.2f} s over https")
    s_files, s_cpu, s_conns, s_resumed = (median(v) for v in zip(*https))
    h_files, h_cpu, h_conns, _ = (median(v) for v in zip(*http))
    curl, big, big_curl = median(curl), median(big), median(big_curl)
    lists, lists_ref = median(lists), median(lists_ref)
    pages = math.ceil(LIST_SMALL / LIST_SMALL_PAGE)
    return [
        (f"T2. {SMALL_COUNT:,} files of 60–160 KB, `xargs -P{READERS} cat`, cold, https",
         f"{s_files:.0f} files/s, CPU {s_cpu:.2f} ms/file, {s_conns:.0f} connections and "
         f"{s_resumed:.0f} resumed TLS sessions per 1,000 files",
         f"same over http {h_files:.0f} files/s, CPU {h_cpu:.2f} ms/file, {h_conns:.0f} connections "
         f"per 1,000 files", f"{s_files / h_files:.2f}", "≥ 0.9", verdict(s_files / h_files >= 0.9)),
        ("T2c. same, against curl over https", f"{s_files:.0f} files/s",
         f"{READERS} curls over https {curl:.0f} files/s", f"{s_files / curl:.2f}", "—", ""),
        ("T1. 512 MiB file, `dd bs=1M`, cold, https", f"{big:.0f} MB/s", f"curl over https {big_curl:.0f} MB/s",
         f"{big / big_curl:.2f}", "—", ""),
        (f"T4. first listing of {LIST_SMALL:,} items, page_size={LIST_SMALL_PAGE}, https", f"{lists:.2f} s",
         f"http.client over https, one keep-alive connection, {pages} pages: {lists_ref:.2f} s",
         f"{lists / lists_ref:.2f}", "—", ""),
    ]


TIER_NOTES = (f"Tier rows (S): mounts (nodes) on this machine read through one nginx running the shipped "
              f"tier configuration (packaging/nginx/avalafs-tier.conf and avalafs-tier.js, "
              f"`worker_processes auto`), its values filled in as tests/test_tier.py does (a token, the "
              f"fake as the one origin of data and API, loopback ports, cache and logs in the workdir) and "
              f"$request_time added to its logs; a new tier, cold, for each run of S1/S2 and of S3. Nodes "
              f"mount with data_proxy=, data_proxy_auth= and api_url='TIER;API', each with a cold cache_dir "
              f"of its own; the references are the same mounts without the tier. The fake answers data "
              f"requests after {LATENCY_DATA * 1000:.0f} ms and API calls after {LATENCY_API * 1000:.0f} ms, "
              f"as in (L). Origin requests are the fake's own counters (`file`, `items_list`), zeroed once "
              f"the mounts are up and listed; HIT and MISS are the tier's $upstream_cache_status, and a HIT "
              f"of 0.45 s and more waited for nginx's cache lock (proxy_cache_lock: its waiters look again "
              f"every 500 ms). The S2 node mounts once the S1 nodes are unmounted, as its reference mounts "
              f"alone. {SHARED_SAMPLE} files of each node are checked against the fake's SHA-256 after "
              f"each pass.")


class Tier:
    """nginx running the shipped cache tier configuration (packaging/nginx), its values
    filled in as tests/test_tier.py does: the token, @fake as the one origin of data
    and API, ports on loopback, cache and logs in workdir/<name>."""

    def __init__(self, children, workdir, name, fake):
        self.children = children
        self.name = name
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.port, self.api_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"http://127.0.0.1:{self.api_port}/api/v1"
        self.access_log = os.path.join(self.dir, "access.log")
        self.api_log = os.path.join(self.dir, "api.log")
        origin = f"http://127.0.0.1:{fake.port}"
        basic = base64.b64encode(TIER_TOKEN.encode()).decode()
        with open(TIER_CONF) as source:
            conf = source.read()
        for old, new in (
                ('"Basic CHANGE-ME" 1;', f'"Basic {basic}" 1;'),
                ('"example-bucket.s3.amazonaws.com" "https://example-bucket.s3.amazonaws.com";',
                 f'"127.0.0.1:{fake.port}" "{origin}";'),
                ("listen 3128;", f"listen 127.0.0.1:{self.port};"),
                ("listen 3129;", f"listen 127.0.0.1:{self.api_port};"),
                ("proxy_pass https://api.avala.ai;", f"proxy_pass {origin};"),
                ("/etc/nginx/avalafs-tier.js", TIER_JS),
                ("/var/cache/nginx/avalafs", os.path.join(self.dir, "cache")),
                ("/var/log/nginx/avalafs-tier.log", self.access_log),
                ("/var/log/nginx/avalafs-api.log", self.api_log),
                ("/var/log/nginx/avalafs-tier.error.log", os.path.join(self.dir, "tier-error.log"))):
            if old not in conf:
                raise BenchError(f"{TIER_CONF} has no {old!r} to fill in")
            conf = conf.replace(old, new)
        # the bench's own word in both logs: how long each request took
        if conf.count("'$upstream_cache_status';") != 2:
            raise BenchError(f"{TIER_CONF}: its two log formats no longer end in $upstream_cache_status")
        conf = conf.replace("'$upstream_cache_status';", "'$upstream_cache_status $request_time';")
        with open(os.path.join(self.dir, "tier.conf"), "w") as out:
            out.write(conf)
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "".join(f"    {kind}_temp_path {self.dir}/{kind}_temp;\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        config = os.path.join(self.dir, "nginx.conf")
        with open(config, "w") as out:
            out.write(f"{user}load_module {TIER_JS_MODULE};\ndaemon off;\nworker_processes auto;\n"
                      f"pid {self.dir}/nginx.pid;\nerror_log {self.dir}/error.log;\n"
                      "events { worker_connections 1024; }\n"
                      f"http {{\n{temp}    include {self.dir}/tier.conf;\n}}\n")
        self.process = children.start(name, ["nginx", "-p", self.dir, "-c", config,
                                              "-e", os.path.join(self.dir, "error.log")])
        try:
            wait_for(lambda: answers(self.port) and answers(self.api_port), 10, name, self.process)
        except BenchError as error:
            children.stop(name)
            raise BenchError(f"{error}; stderr: {children.log_tail(name)}")

    def stop(self):
        if self.name in self.children.running:
            self.children.stop(self.name)

    def lines(self, path):
        if not os.path.exists(path):
            return []
        with open(path, "rb") as log_file:
            return log_file.read().decode(errors="replace").splitlines()

    def cache_counts(self, path, start=0):
        """The requests logged in @path after line @start: how many were HIT, MISS...
        ($upstream_cache_status) as "HIT 1234, MISS 56", and how many HITs took half a
        second and more ($request_time): those that waited for nginx's cache lock, which
        its waiters check every 500 ms."""
        counts, waited = collections.Counter(), 0
        for line in self.lines(path)[start:]:
            status, seconds = line.rsplit(" ", 2)[-2:]
            counts[status] += 1
            waited += status == "HIT" and float(seconds) >= 0.45
        return ", ".join(f"{status} {count}" for status, count in counts.most_common()), waited


def answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def tier_node(bench, tier, fake, dataset, where, options=""):
    """A mount that reads data and lists through @tier, with a cold cache_dir."""
    return bench.avalafs(fake, dataset, f"api_url={tier.api_url};{fake.api_url},data_proxy={tier.url},"
                                        f"data_proxy_auth={bench.tier_token}" + options, where=where)


def at_once(steps):
    """Run the callables together, one thread each: the wall seconds of all, and their
    results in order. The first error of any is raised once all are done."""
    results, errors = [None] * len(steps), []

    def run(at, step):
        try:
            results[at] = step()
        except Exception as error:  # noqa: BLE001 - handed to the caller
            errors.append(error)

    threads = [threading.Thread(target=run, args=(at, step)) for at, step in enumerate(steps)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    if errors:
        raise errors[0]
    return seconds, results


def verify_sha256(pairs):
    """BenchError unless every (path, sha256) pair holds."""
    for path, want in pairs:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(MiB), b""):
                digest.update(chunk)
        if digest.hexdigest() != want:
            raise BenchError(f"wrong bytes in {path}")


def start_tier_fake(bench):
    """The fake of the S rows, its latency as in (L); the items of SHARED in listing
    order and each one's data SHA-256; the token file of the nodes."""
    fake = Fake(bench.children, bench.workdir, "fake-shared", [
        f"{SHARED}:items={SMALL_COUNT},min_size={SMALL_MIN},max_size={SMALL_MAX},size_known=1,updated=1",
        f"{SHARED_LIST}:items={LIST_SMALL}"])
    fake.wait()
    items = fake.items(SHARED, 1000)
    truth = fake.control("GET", f"/_fake/truth/{SHARED}/")["items"]
    sha = {item["uid"]: item["files"]["data"]["sha256"] for item in truth}
    if len(sha) != len(items):
        raise BenchError(f"{len(items)} items listed, {len(sha)} in the fake's truth")
    far_latency(fake)
    bench.tier_token = os.path.join(bench.workdir, "tier-token")
    with open(bench.tier_token, "w") as out:
        out.write(TIER_TOKEN + "\n")
    os.chmod(bench.tier_token, 0o600)
    return fake, items, sha


def node_paths(nodes, items):
    """Each node's paths of @items, once its listing of SHARED is in (all at once)."""
    layout = DatasetLayout(SHARED)
    at_once([lambda node=node: os.listdir(layout.directory(node)) for node in nodes])
    return [[layout.path(node, item) for item in items] for node in nodes]


def verify_sample(paths, items, sha, run):
    """The bytes of SHARED_SAMPLE of a node's files against the fake's truth."""
    chosen = random.Random(run).sample(range(len(items)), SHARED_SAMPLE)
    verify_sha256([(paths[at], sha[items[at]["uid"]]) for at in chosen])


def tier_reads(bench, fake, items, sha, run):
    """S1 and S2 of one run: NODES nodes reading every file of SHARED at once through
    a new tier; once they are gone, a fifth joining; the same without the tier.
    Seconds, origin data requests and the tier's log of each pass."""
    tier = Tier(bench.children, bench.workdir, f"tier-{run + 1}", fake)
    try:
        with contextlib.ExitStack() as stack:
            nodes = [stack.enter_context(tier_node(bench, tier, fake, SHARED, f"node-{at + 1}"))
                     for at in range(NODES)]
            paths = node_paths(nodes, items)
            far_reset(fake)
            start = len(tier.lines(tier.access_log))
            shared, _ = at_once([lambda p=p: parallel_cat(p) for p in paths])
            shared_asked = fake.counts()["file"]
            shared_cache, shared_waited = tier.cache_counts(tier.access_log, start)
            for one in paths:
                verify_sample(one, items, sha, run)
        log(f"(S1) run {run + 1}: {NODES} nodes through the tier {shared:.2f} s, "
            f"{shared_asked} origin data requests; tier {shared_cache}, {shared_waited} HITs waited ≥ 0.45 s")
        # the first nodes unmounted (as the reference below is alone on the machine)
        with tier_node(bench, tier, fake, SHARED, f"node-{NODES + 1}") as joiner:
            [joined_paths] = node_paths([joiner], items)
            far_reset(fake)
            start = len(tier.lines(tier.access_log))
            joined = parallel_cat(joined_paths)
            joined_asked = fake.counts()["file"]
            joined_cache, _ = tier.cache_counts(tier.access_log, start)
            verify_sample(joined_paths, items, sha, run)
        log(f"(S2) run {run + 1}: node {NODES + 1} through the warm tier {joined:.2f} s, "
            f"{joined_asked} origin data requests; tier {joined_cache}")
    finally:
        tier.stop()
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(bench.avalafs(fake, SHARED, where=f"node-{at + 1}"))
                 for at in range(NODES)]
        paths = node_paths(nodes, items)
        far_reset(fake)
        direct, _ = at_once([lambda p=p: parallel_cat(p) for p in paths])
        direct_asked = fake.counts()["file"]
    with bench.avalafs(fake, SHARED, where="node-1") as mount:
        [alone_paths] = node_paths([mount], items)
        far_reset(fake)
        alone = parallel_cat(alone_paths)
        alone_asked = fake.counts()["file"]
    log(f"(S1,S2) run {run + 1}: {NODES} direct mounts {direct:.2f} s, {direct_asked} data requests; "
        f"one direct mount alone {alone:.2f} s, {alone_asked} data requests")
    return dict(shared=shared, shared_asked=shared_asked, shared_cache=shared_cache, waited=shared_waited,
                joined=joined, joined_asked=joined_asked, direct=direct, direct_asked=direct_asked,
                alone=alone)


def rows_tier_reads(bench, fake, items, sha):
    runs = [tier_reads(bench, fake, items, sha, run) for run in range(RUNS)]
    shared, joined, direct, alone, waited = (median([r[k] for r in runs])
                                             for k in ("shared", "joined", "direct", "alone", "waited"))
    shared_asked, joined_asked, direct_asked = (max(r[k] for r in runs)
                                                for k in ("shared_asked", "joined_asked", "direct_asked"))
    count = len(items)
    return [
        (f"S1. {NODES} nodes read the same {count:,} files of 60–160 KB at once, `xargs -P{READERS} cat` "
         f"each, cold, through the tier; origin {LATENCY_DATA * 1000:.0f} ms a data request",
         f"{shared_asked} origin data requests (tier, run 1: {runs[0]['shared_cache']})",
         f"{NODES} direct mounts: {direct_asked} data requests", f"{shared_asked / direct_asked:.2f}",
         f"{count:,} (1 an object)", verdict(shared_asked == count)),
        (f"S1b. same, wall time of the {NODES} nodes",
         f"{shared:.2f} s ({NODES * count / shared:.0f} files/s in all; {waited:.0f} HITs waited 0.5 s "
         f"for the cache lock)",
         f"{NODES} direct mounts at once {direct:.2f} s ({NODES * count / direct:.0f} files/s)",
         f"{shared / direct:.2f}", "≤ 1.0", verdict(shared / direct <= 1.0)),
        (f"S2. a fifth node joins later: cold cache_dir, warm tier, reads the {count:,} files",
         f"{count / joined:.0f} files/s, {joined_asked} origin data requests",
         f"one cold direct mount {count / alone:.0f} files/s", f"{alone / joined:.2f}",
         "≥ 3, 0 requests", verdict(alone / joined >= 3 and joined_asked == 0)),
    ]


def tier_lists(bench, fake, run):
    """S3 of one run: the origin list requests of NODES nodes listing SHARED_LIST at
    once through a new tier, and of one direct mount listing it."""
    page = f",page_size={LIST_SMALL_PAGE}"
    tier = Tier(bench.children, bench.workdir, f"tier-list-{run + 1}", fake)
    try:
        with contextlib.ExitStack() as stack:
            nodes = [stack.enter_context(tier_node(bench, tier, fake, SHARED_LIST, f"node-{at + 1}", page))
                     for at in range(NODES)]
            far_reset(fake)
            start = len(tier.lines(tier.api_log))
            seconds, names = at_once([lambda n=n: sorted(os.listdir(DatasetLayout(SHARED_LIST).directory(n)))
                                      for n in nodes])
            shared = fake.counts()["items_list"]
            cache, _ = tier.cache_counts(tier.api_log, start)
            if len(names[0]) != LIST_SMALL or any(n != names[0] for n in names):
                raise BenchError(f"the nodes listed {[len(n) for n in names]} items, {LIST_SMALL} expected")
    finally:
        tier.stop()
    with bench.avalafs(fake, SHARED_LIST, page[1:], where="node-1") as mount:
        far_reset(fake)
        start_direct = time.perf_counter()
        listed = os.listdir(DatasetLayout(SHARED_LIST).directory(mount))
        direct_seconds = time.perf_counter() - start_direct
        direct = fake.counts()["items_list"]
        if sorted(listed) != names[0]:
            raise BenchError(f"the direct mount listed {len(listed)} items, other than the nodes'")
    log(f"(S3) run {run + 1}: {NODES} nodes through the tier {seconds:.2f} s, {shared} origin list "
        f"requests, tier {cache}; one direct mount {direct_seconds:.2f} s, {direct} list requests")
    return shared, direct, cache, seconds, direct_seconds


def rows_tier_lists(bench, fake):
    runs = [tier_lists(bench, fake, run) for run in range(RUNS)]
    shared, direct = max(r[0] for r in runs), max(r[1] for r in runs)
    seconds, direct_seconds = median([r[3] for r in runs]), median([r[4] for r in runs])
    return [(f"S3. {NODES} nodes list {LIST_SMALL:,} items at once through the tier, page_size={LIST_SMALL_PAGE}",
             f"{shared} origin list requests in {seconds:.2f} s (tier, run 1: {runs[0][2]})",
             f"one direct mount's listing: {direct} list requests in {direct_seconds:.2f} s",
             f"{shared / direct:.2f}", "≤ 1.1", verdict(shared <= 1.1 * direct))]


def rows_tier(bench):
    fake, items, sha = start_tier_fake(bench)
    rows = []
    measure(rows, "S1./S2.", lambda: rows_tier_reads(bench, fake, items, sha))
    measure(rows, "S3.", lambda: rows_tier_lists(bench, fake))
    return rows


LINK_NOTES = (f"Link rows (B): big objects at the speed of a far object store. Fakes of their own (one "
              f"holds the {LINK_SIZE // MiB} MiB object, the other the {LINK_FOUR_COUNT} of "
              f"{LINK_FOUR_SIZE // MiB} MiB: a fake keeps 256 MiB of generated bytes) send every data answer "
              f"after {LINK_LATENCY * 1000:.0f} ms and at {LINK_RATE / 1e6:.0f} MB/s at most (their `rate` "
              f"fault, what one connection carries), so {LINK_RANGES} connections carry "
              f"{LINK_RANGES * LINK_RATE / 1e6:.0f} MB/s at most; API calls are not slowed. The bytes are "
              f"generated (GET /_fake/truth) before any timing. Each run mounts afresh with cache_dir=none,"
              f"cache_size={LINK_CACHE}. The curls fetch the presigned URLs of the listing, all at once, one "
              f"range each (`curl -r`): {LINK_RANGES} equal ranges of the object in B1 (and one curl of all "
              f"of it), {LINK_RANGES // LINK_FOUR_COUNT} of each object in B2. B2's readers are "
              f"{LINK_FOUR_COUNT} threads of this script reading 1 MiB at a time; a reader's share is the "
              f"bytes it had read when the first reader finished, over all the bytes read by then (even: "
              f"{100 / LINK_FOUR_COUNT:.0f}%). B3 reads 1 MiB at {LINK_READS} offsets drawn by "
              f"random.Random({LINK_SEED}) (open, seek, read, close; one after another) and compares each "
              f"read with the same bytes from the fake (GET /_fake/file). Data requests and MiB (sent) are "
              f"those the fake answered from the mount's listing on (MiB: the sizes of the ranges in its "
              f"log of data answers), the largest of the 3 runs; \"≥ N at once\" is the most that waited out the "
              f"{LINK_LATENCY * 1000:.0f} ms together (the fake's peaks), a floor of those in flight at "
              f"once; B2s gives the smallest share of the 3 runs. VmHWM is the mount's right after B1's "
              f"`dd`; the bytes of B1 and B2 are checked against the fake's SHA-256 after run 1.")


def link_faults(fake):
    """Every data answer of @fake after LINK_LATENCY seconds and at LINK_RATE bytes
    per second at most: one connection to a far object store."""
    fake.control("POST", "/_fake/fault", {"route": "file", "rate": LINK_RATE, "latency": LINK_LATENCY,
                                          "count": -1})


def link_reset(fake):
    """Zero @fake's counters, log and peaks (which also clears its faults), then the link again."""
    fake.control("POST", "/_fake/reset")
    link_faults(fake)


def start_link_fakes(bench):
    """The fakes of the B rows, their bytes generated and their link on: the LINK object
    on one, the LINK_FOUR objects on another. Their items, and each item's SHA-256."""
    one = Fake(bench.children, bench.workdir, "fake-link", [
        f"{LINK}:items=1,min_size={LINK_SIZE},max_size={LINK_SIZE},size_known=1"])
    four = Fake(bench.children, bench.workdir, "fake-link-four", [
        f"{LINK_FOUR}:items={LINK_FOUR_COUNT},min_size={LINK_FOUR_SIZE},max_size={LINK_FOUR_SIZE},"
        f"size_known=1"])
    one.wait()
    four.wait()
    sha = {}
    for fake, dataset in ((one, LINK), (four, LINK_FOUR)):
        # the truth has the fake draw every object's bytes now, not in a timed read
        for record in fake.control("GET", f"/_fake/truth/{dataset}/")["items"]:
            sha[record["uid"]] = record["files"]["data"]["sha256"]
        link_faults(fake)
    items, four_items = one.items(LINK, 1000), four.items(LINK_FOUR, 1000)
    if len(items) != 1 or len(four_items) != LINK_FOUR_COUNT or len(sha) != 1 + LINK_FOUR_COUNT:
        raise BenchError(f"{len(items)} and {len(four_items)} items listed, {len(sha)} in the truth")
    log(f"(B) fakes up on ports {one.port} and {four.port}, {LINK_SIZE // MiB} MiB and "
        f"{LINK_FOUR_COUNT} × {LINK_FOUR_SIZE // MiB} MiB generated")
    return one, items[0], four, four_items, sha


def link_mount(bench, fake, dataset):
    return bench.avalafs(fake, dataset, f"cache_dir=none,cache_size={LINK_CACHE}")


def range_bytes(header, size):
    """The bytes an answer to a Range header carries of an object of @size
    (no header: all of it)."""
    if not header:
        return size
    first, _, last = header.split("=", 1)[1].partition("-")
    if not first:
        return min(int(last), size)
    last = min(int(last), size - 1) if last else size - 1
    return max(0, last - int(first) + 1)


def data_answers(fake, size):
    """The data requests @fake answered since its last reset (each object @size
    bytes), the bytes their answers carried (the sizes of their ranges), and the most
    that waited out the link's latency at once (a floor of those in flight at once).
    Once the fake has logged every request it took and no new one came for 0.3 s."""
    def settled():
        stats = fake.control("GET", "/_fake/stats")
        logged = [request for request in stats["requests"] if request["route"] == "file"]
        return stats, logged, len(logged) == stats["counts"]["file"]

    stats, answers, done = settled()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.3)
        before = len(answers)
        stats, answers, done = settled()
        if done and len(answers) == before:
            break
    if not done:
        raise BenchError(f"the fake logged {len(answers)} of {stats['counts']['file']} data requests")
    failed = [request["status"] for request in answers if request["status"] not in (200, 206)]
    if failed:
        raise BenchError(f"the fake answered data requests with {failed[:5]}")
    return len(answers), sum(range_bytes(request["range"], size) for request in answers), \
        stats["peaks"]["file"]


def spans(size, parts):
    """@parts ranges (first, last) of an object of @size bytes, each about as long."""
    return [(at * size // parts, (at + 1) * size // parts - 1) for at in range(parts)]


def curl_ranges(objects, parts):
    """Seconds for @parts curl processes per (url, size) of @objects, all at once, each
    fetching one range of its object to /dev/null; and the bytes downloaded."""
    return run_curls([["curl", "-s", "--fail", "-r", f"{first}-{last}", "-o", "/dev/null",
                       "-w", "%{size_download}\n", url]
                      for url, size in objects for first, last in spans(size, parts)])


def link_one_read(bench, fake, item, sha, run):
    """B1 of one run: MB/s of dd of the LINK object through a fresh mount, the data
    requests and the most at once, the mount's VmHWM and its RSS once listed; then
    LINK_RANGES curls of a range each, and one curl of all of it."""
    with link_mount(bench, fake, LINK) as mount:
        layout = DatasetLayout(LINK)
        os.listdir(layout.directory(mount))
        path = layout.path(mount, item)
        listed = mount.memory()["VmRSS"]
        link_reset(fake)
        seconds, copied = dd_read(path)
        expect_bytes("dd", copied, LINK_SIZE)
        peak = mount.memory()["VmHWM"]
        asked, sent, most = data_answers(fake, LINK_SIZE)
        if run == 0:
            verify_sha256([(path, sha[item["uid"]])])
    objects = [(item["data_url"], LINK_SIZE)]
    wide, size = curl_ranges(objects, LINK_RANGES)
    expect_bytes(f"{LINK_RANGES} curls", size, LINK_SIZE)
    one, size = curl_ranges(objects, 1)
    expect_bytes("curl", size, LINK_SIZE)
    result = dict(ours=LINK_SIZE / seconds / 1e6, wide=LINK_SIZE / wide / 1e6, one=LINK_SIZE / one / 1e6,
                  asked=asked, sent=sent, most=most, peak=peak, listed=listed)
    log(f"(B1) run {run + 1}: avalafs {result['ours']:.0f} MB/s, {asked} data requests ({sent / MiB:.0f} MiB), "
        f"≥ {most} at once, VmHWM {peak / MiB:.0f} MiB (listed {listed / MiB:.0f} MiB); "
        f"{LINK_RANGES} curls {result['wide']:.0f} MB/s, one curl {result['one']:.0f} MB/s")
    return result


def rows_link_one(bench, fake, item, sha):
    runs = [link_one_read(bench, fake, item, sha, run) for run in range(RUNS)]
    ours, wide, one, peak, listed = (median([r[k] for r in runs]) for k in ("ours", "wide", "one", "peak",
                                                                          "listed"))
    asked, sent, most = (max(r[k] for r in runs) for k in ("asked", "sent", "most"))
    bound = LINK_CACHE_BYTES + listed + 64 * MiB
    return [
        (f"B1. {LINK_SIZE // MiB} MiB object, `dd bs=1M`, cold, fresh mount; link "
         f"{LINK_RATE / 1e6:.0f} MB/s a connection, {LINK_LATENCY * 1000:.0f} ms",
         f"{ours:.0f} MB/s, {asked} data requests ({sent / MiB:.0f} MiB), ≥ {most} at once",
         f"{LINK_RANGES} curls of one range each {wide:.0f} MB/s (link: {LINK_RANGES} × "
         f"{LINK_RATE / 1e6:.0f} = {LINK_RANGES * LINK_RATE / 1e6:.0f} MB/s)",
         f"{ours / wide:.2f}", "≥ 0.8", verdict(ours / wide >= 0.8)),
        ("B1c. same, against one curl of the object", f"{ours:.0f} MB/s", f"one curl {one:.0f} MB/s",
         f"{ours / one:.1f}", "—", ""),
        (f"B1m. VmHWM of the mount during B1, cache_size={LINK_CACHE}", f"{peak / MiB:.0f} MiB",
         f"bound {LINK_CACHE_BYTES // MiB} MiB cache + {listed / MiB:.0f} MiB listed + 64 MiB = "
         f"{bound / MiB:.0f} MiB", f"{peak / bound:.2f}", "< bound", verdict(peak < bound)),
    ]


def read_together(paths):
    """Read the files whole at once, one thread each, 1 MiB at a time: the wall
    seconds of all, and the bytes each had read when the first one finished."""
    counts = [0] * len(paths)
    first = []
    lock = threading.Lock()

    def read(at, path):
        buffer = bytearray(MiB)
        with open(path, "rb", buffering=0) as f:
            while True:
                got = f.readinto(buffer)
                if not got:
                    break
                counts[at] += got
        with lock:
            if not first:
                first.append(list(counts))

    seconds, _ = at_once([lambda at=at, path=path: read(at, path) for at, path in enumerate(paths)])
    for path, count in zip(paths, counts):
        expect_bytes(f"reading {path}", count, LINK_FOUR_SIZE)
    return seconds, first[0]


def link_four_read(bench, fake, items, sha, run):
    """B2 of one run: MB/s of LINK_FOUR_COUNT readers of the LINK_FOUR objects at once
    through one fresh mount, each reader's share, the data requests and the most at
    once; then LINK_RANGES curls over the same objects."""
    total = LINK_FOUR_COUNT * LINK_FOUR_SIZE
    with link_mount(bench, fake, LINK_FOUR) as mount:
        layout = DatasetLayout(LINK_FOUR)
        os.listdir(layout.directory(mount))
        paths = [layout.path(mount, item) for item in items]
        link_reset(fake)
        seconds, at_first = read_together(paths)
        asked, sent, most = data_answers(fake, LINK_FOUR_SIZE)
        if run == 0:
            verify_sha256([(path, sha[item["uid"]]) for path, item in zip(paths, items)])
    shares = [count / sum(at_first) for count in at_first]
    wide, size = curl_ranges([(item["data_url"], LINK_FOUR_SIZE) for item in items],
                             LINK_RANGES // LINK_FOUR_COUNT)
    expect_bytes(f"{LINK_RANGES} curls", size, total)
    result = dict(ours=total / seconds / 1e6, wide=total / wide / 1e6, shares=shares, asked=asked, sent=sent,
                  most=most)
    log(f"(B2) run {run + 1}: avalafs {result['ours']:.0f} MB/s, shares "
        f"{'/'.join(f'{share * 100:.0f}' for share in shares)}%, {asked} data requests ({sent / MiB:.0f} MiB), "
        f"≥ {most} at once; {LINK_RANGES} curls {result['wide']:.0f} MB/s")
    return result


def rows_link_four(bench, fake, items, sha):
    runs = [link_four_read(bench, fake, items, sha, run) for run in range(RUNS)]
    ours, wide = (median([r[k] for r in runs]) for k in ("ours", "wide"))
    asked, sent, most = (max(r[k] for r in runs) for k in ("asked", "sent", "most"))
    least = min(min(r["shares"]) for r in runs)
    each = "; ".join("/".join(f"{share * 100:.0f}" for share in r["shares"]) + "%" for r in runs)
    even = 1 / LINK_FOUR_COUNT
    return [
        (f"B2. {LINK_FOUR_COUNT} readers of {LINK_FOUR_COUNT} objects of {LINK_FOUR_SIZE // MiB} MiB at once, "
         f"one fresh mount, cold; same link",
         f"{ours:.0f} MB/s in all, {asked} data requests ({sent / MiB:.0f} MiB), ≥ {most} at once",
         f"{LINK_RANGES} curls, {LINK_RANGES // LINK_FOUR_COUNT} ranges of each object: {wide:.0f} MB/s",
         f"{ours / wide:.2f}", "—", ""),
        ("B2s. same, each reader's share until the first is done",
         f"smallest {least * 100:.1f}% (runs: {each})", f"even {even * 100:.0f}%", f"{least / even:.2f}",
         f"each ≥ {LINK_SHARE * 100:.0f}%", verdict(least >= LINK_SHARE)),
    ]


def read_at(path, offset):
    """1 MiB of @path from @offset: open, seek, read, close."""
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        data = b""
        while len(data) < MiB:
            got = f.read(MiB - len(data))
            if not got:
                break
            data += got
    return data


def link_random_reads(bench, fake, item, raw, run):
    """B3 of one run: LINK_READS reads of 1 MiB at random offsets of the LINK object
    through a fresh mount, one after another; the seconds, the data requests and
    the bytes their answers carried. BenchError unless each read got the right bytes."""
    rng = random.Random(LINK_SEED)
    offsets = [rng.randrange(LINK_SIZE - MiB + 1) for _ in range(LINK_READS)]
    with link_mount(bench, fake, LINK) as mount:
        layout = DatasetLayout(LINK)
        os.listdir(layout.directory(mount))
        path = layout.path(mount, item)
        os.stat(path)
        link_reset(fake)
        start = time.perf_counter()
        reads = [read_at(path, offset) for offset in offsets]
        seconds = time.perf_counter() - start
        asked, sent, _ = data_answers(fake, LINK_SIZE)
    wrong = [offset for offset, data in zip(offsets, reads) if data != raw[offset:offset + MiB]]
    if wrong:
        raise BenchError(f"{len(wrong)} of {LINK_READS} reads got wrong bytes (first at offset {wrong[0]})")
    log(f"(B3) run {run + 1}: {LINK_READS} reads in {seconds:.2f} s, {asked} data requests, "
        f"{sent / MiB:.1f} MiB sent for {LINK_READS} MiB read; every read right")
    return seconds, asked, sent


def object_bytes(fake, dataset, item, sha):
    """All the bytes of @item's data, from the fake's control route (neither slowed
    nor counted), checked against its SHA-256."""
    connection = fake.connection()
    try:
        connection.request("GET", f"/_fake/file/{dataset}/{item['uid']}/data")
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    if response.status != 200 or hashlib.sha256(raw).hexdigest() != sha[item["uid"]]:
        raise BenchError(f"GET /_fake/file of {item['uid']}: HTTP {response.status}, {len(raw)} bytes")
    return raw


def rows_link_random(bench, fake, item, sha):
    raw = object_bytes(fake, LINK, item, sha)
    runs = [link_random_reads(bench, fake, item, raw, run) for run in range(RUNS)]
    seconds = median([r[0] for r in runs])
    asked, sent = max(r[1] for r in runs), max(r[2] for r in runs)
    read = LINK_READS * MiB
    return [(f"B3. {LINK_READS} reads of 1 MiB at random offsets of the {LINK_SIZE // MiB} MiB object "
             f"(open, seek, read), fresh mount; same link",
             f"{sent / MiB:.1f} MiB sent by the fake, {asked} data requests, {seconds:.1f} s; every read right",
             f"{read // MiB} MiB read", f"{sent / read:.2f}", "≤ 1.5", verdict(sent <= 1.5 * read))]


def rows_link(bench):
    one, item, four, four_items, sha = start_link_fakes(bench)
    rows = []
    measure(rows, "B1.", lambda: rows_link_one(bench, one, item, sha))
    measure(rows, "B2.", lambda: rows_link_four(bench, four, four_items, sha))
    measure(rows, "B3.", lambda: rows_link_random(bench, one, item, sha))
    return rows


def verdict(ok):
    return "PASS" if ok else "FAIL"


def measure(rows, label, step):
    """Run one step; on BenchError its row says what went wrong."""
    try:
        rows.extend(step())
    except (BenchError, OSError) as error:
        log(f"{label}: {error}")
        rows.append((label, f"error: {error}", "", "", "", "FAIL"))


def rows_big(bench):
    avalafs, curl, local, rclone = [], [], [], []
    for run in range(RUNS):
        avalafs.append(big_read(bench, lambda: bench.avalafs(bench.data_fake, BIG), DatasetLayout(BIG),
                                "avalafs", run))
        curl.append(big_curl(bench, run))
        local.append(big_local(bench, run))
        if shutil.which("rclone"):
            rclone.append(big_read(bench, bench.rclone, ServedLayout(), "rclone", run))
    avalafs, curl, local = median(avalafs), median(curl), median(local)
    rows = [("1. 512 MiB file, `dd bs=1M`, cold", f"{avalafs:.0f} MB/s",
             f"local copy (curl to tmpfs, then `dd`) {local:.0f} MB/s",
             f"{avalafs / local:.2f}", "≥ 1.0", verdict(avalafs / local >= 1.0)),
            ("1c. same, against curl alone", f"{avalafs:.0f} MB/s", f"curl {curl:.0f} MB/s",
             f"{avalafs / curl:.2f}", "—", "")]
    if rclone:
        rclone = median(rclone)
        rows.append(("1r. same, `rclone mount` (http)", f"{rclone:.0f} MB/s", f"curl {curl:.0f} MB/s",
                     f"{rclone / curl:.2f}", "—", ""))
    return rows


def rows_small(bench):
    avalafs, curl, local, rclone = [], [], [], []
    for run in range(RUNS):
        avalafs.append(small_reads(bench, lambda: bench.avalafs(bench.data_fake, SMALL),
                                   DatasetLayout(SMALL), "avalafs", run))
        curl.append(small_curl(bench, run))
        local.append(small_local(bench, run))
        if shutil.which("rclone"):
            rclone.append(small_reads(bench, bench.rclone, ServedLayout(), "rclone", run))
    cold, warm, requests = summarize_small(avalafs)
    curl = median(curl)
    local_cold, local_warm, floor = (median(values) for values in zip(*local))
    rows = [
        (f"2. {SMALL_COUNT:,} files of 60–160 KB, `xargs -P{READERS} cat`, cold", f"{cold:.0f} files/s",
         f"local copy ({READERS} curls to tmpfs, then `cat`) {local_cold:.0f} files/s",
         f"{cold / local_cold:.2f}", "≥ 0.8", verdict(cold / local_cold >= 0.8)),
        ("3. same files again, same mount", f"{warm:.0f} files/s, {requests} HTTP requests",
         f"the local copy again {local_warm:.0f} files/s", f"{warm / local_warm:.2f}", "0 requests",
         verdict(requests == 0)),
        ("2b. row 2 against the FUSE floor", f"{cold:.0f} files/s",
         f"the local copy written and read through libfuse's `passthrough_ll` {floor:.0f} files/s",
         f"{cold / floor:.2f}", "—", ""),
        ("2c. row 2 against curl alone", f"{cold:.0f} files/s", f"{READERS} curls {curl:.0f} files/s",
         f"{cold / curl:.2f}", "—", ""),
    ]
    if rclone:
        rc_cold, rc_warm, rc_requests = summarize_small(rclone)
        rows += [
            ("2r. cold, `rclone mount` (http)", f"{rc_cold:.0f} files/s", f"{READERS} curls {curl:.0f} files/s",
             f"{rc_cold / curl:.2f}", "—", ""),
            ("3r. again, `rclone mount` (http)", f"{rc_warm:.0f} files/s, {rc_requests} HTTP requests",
             f"cold {rc_cold:.0f} files/s", f"{rc_warm / rc_cold:.1f}", "—", ""),
        ]
    return rows


def rows_listing(bench):
    seconds, requests = listing(bench)
    reference = listing_reference(bench)
    pages = math.ceil(LIST_SMALL / LIST_SMALL_PAGE)
    ratio = seconds / reference
    return [(f"4. `ls -l` + stat of {LIST_SMALL:,} item dirs, page_size={LIST_SMALL_PAGE}, cold",
             f"{seconds:.2f} s, {requests} list requests",
             f"http.client, one keep-alive connection, {pages} pages: {reference:.2f} s",
             f"{ratio:.2f}", f"{pages} requests, ≤ 1.5", verdict(requests == pages and ratio <= 1.5))]


HUGE = "bench/huge-metadata"
HUGE_PAD = 60_000_000


def huge_listing_memory(bench):
    """Median VmHWM of a mount listing 3 items of 60 MB of metadata each, one per
    page, and then reading each one's metadata.json; the largest page's bytes."""
    fake = Fake(bench.children, bench.workdir, "fake-huge", [f"{HUGE}:items=3,meta_pad={HUGE_PAD}"])
    fake.wait()
    page = max(len(p) for p in list_pages(fake.port, HUGE, 1))
    listed, read = [], []
    for run in range(RUNS):
        with bench.avalafs(fake, HUGE, "page_size=1") as mount:
            items = DatasetLayout(HUGE).directory(mount)
            names = os.listdir(items)
            listed.append(mount.memory()["VmHWM"])
            for name in names:
                with open(os.path.join(items, name, "metadata.json"), "rb") as f:
                    while f.read(MiB):
                        pass
            read.append(mount.memory()["VmHWM"])
            log(f"(5d) run {run + 1}: VmHWM {listed[-1] / MiB:.0f} MiB listing, "
                f"{read[-1] / MiB:.0f} MiB after metadata.json")
    bench.children.stop(fake.name)
    return median(listed), median(read), page


def rows_memory(bench):
    json_bytes = item_json_bytes(bench)
    peak, added, stored = large_listing_memory(bench)
    per_item = added / LIST_LARGE
    rows = [(f"5a. `ls` of {LIST_LARGE:,} items, page_size={LIST_LARGE_PAGE}, every view built",
             f"VmHWM {peak / MiB:.0f} MiB; RSS {per_item:.0f} B/item",
             f"JSON {json_bytes:.0f} B/item", f"{per_item:.0f} B/item in memory", "≤ 200 B",
             verdict(per_item <= 200)),
            (f"5c. listing store on disk, same", f"{stored / LIST_LARGE:.0f} B/item",
             f"JSON {json_bytes:.0f} B/item", f"{stored / LIST_LARGE / json_bytes:.2f}", "—", "")]
    small_peak, listed = small_memory(bench)
    bound = 64 * MiB + listed + 64 * MiB
    rows.append((f"5b. VmHWM during (2), cache_size={SMALL_CACHE}", f"{small_peak / MiB:.0f} MiB",
                 f"bound 64 MiB cache + {listed / MiB:.0f} MiB metadata + 64 MiB = {bound / MiB:.0f} MiB",
                 f"{small_peak / bound:.2f}", "< bound", verdict(small_peak < bound)))
    peak, after_read, page = huge_listing_memory(bench)
    rows.append(("5d. VmHWM listing 3 items of 60 MB metadata, one a page; then reading their metadata.json",
                 f"{peak / MiB:.0f} MiB; {after_read / MiB:.0f} MiB", f"the largest page {page / MiB:.0f} MiB",
                 f"{peak / page:.1f} pages", "a small multiple", ""))
    return rows


def machine():
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                     "unknown CPU")
    with open("/proc/meminfo") as meminfo:
        total = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split()[1]
    rclone = "rclone mount rows included" if shutil.which("rclone") else "rclone not installed, its rows skipped"
    return [f"Machine: {len(os.sched_getaffinity(0))} CPUs ({model}), {total / 1024 / 1024:.1f} GiB memory, "
            f"Linux {os.uname().release}",
            f"Servers: nginx {nginx} and curl {curl} on 127.0.0.1; {rclone}"]


def table(rows):
    lines = ["| measurement (median of 3 runs) | avalafs | reference | ratio | target | result |",
             "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def parse_args():
    parser = argparse.ArgumentParser(description="Benchmark avalafs against curl on a local nginx.")
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "avalafs"), help="the avalafs binary")
    parser.add_argument("--workdir", required=True,
                        help="an empty scratch directory (data files, logs, mountpoint)")
    parser.add_argument("--results", default=os.path.join(ROOT, "bench", "results.md"),
                        help="where the report is also written")
    parser.add_argument("--rows", default="1,2,4,5,7,8,L,T,S,B",
                        help="which groups of rows to measure, comma-separated (default: all)")
    parser.add_argument("--latency", action="store_true",
                        help="the latency rows only (L): the same as --rows L")
    return parser.parse_args()


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    bench = Bench(args.binary, args.workdir)
    rows = []
    try:
        wanted = {"L"} if args.latency else set(args.rows.split(","))
        if wanted & {"1", "2", "4", "5", "T"}:
            bench.start_servers()
        for group, label, step in (("1", "1.", rows_big), ("2", "2./3.", rows_small), ("4", "4.", rows_listing),
                                   ("5", "5.", rows_memory), ("L", "L.", rows_far), ("T", "T.", rows_tls),
                                   ("7", "7.", rows_views), ("8", "8.", rows_million),
                                   ("S", "S.", rows_tier), ("B", "B.", rows_link)):
            if group in wanted:
                measure(rows, label, lambda: step(bench))
    finally:
        bench.stop()
    notes = [NOTES] + ([FAR_NOTES] if "L" in wanted else []) + ([TLS_NOTES] if "T" in wanted else []) + \
        ([TIER_NOTES] if "S" in wanted else []) + ([LINK_NOTES] if "B" in wanted else [])
    report = "\n".join(machine() + [""] + table(rows) + [""] + notes) + "\n"
    sys.stdout.write(report)
    with open(args.results, "w") as out:
        out.write(report)
    log(f"total {time.monotonic() - started:.0f} s; report also in {args.results}")


if __name__ == "__main__":
    main()
