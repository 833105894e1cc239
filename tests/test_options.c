/* Unit tests of src/options.c: option strings parsed without mounting, each
 * option's good and bad values, units, ranges, defaults and error lines. */
#include "options.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char mnt[64]; /* a folder, the mount point of every parse */
static char other[64]; /* another folder */

/* What one parse gave: its result, the options, FUSE's arguments joined by
 * spaces, and what it printed on stderr. */
struct parsed {
	int err;
	struct options o;
	char fuse[1024];
	char said[1024];
};

/* Parse "avalafs WORDS... [MNT]" (@with_mnt), stderr captured. */
static void parse_words(struct parsed *p, bool with_mnt, const char **words)
{
	char *argv[32], name[] = "avalafs";
	int argc = 0, saved, i;
	struct fuse_args fa;
	FILE *cap = tmpfile();
	size_t n, len = 0;

	memset(p, 0, sizeof(*p));
	argv[argc++] = name;
	for (; *words; words++)
		argv[argc++] = (char *)*words;
	if (with_mnt)
		argv[argc++] = mnt;
	argv[argc] = NULL;
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	dup2(fileno(cap), STDERR_FILENO);
	p->err = options_parse(argc, argv, &p->o, &fa);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(cap);
	n = fread(p->said, 1, sizeof(p->said) - 1, cap);
	p->said[n] = '\0';
	fclose(cap);
	for (i = 0; i < fa.argc && len < sizeof(p->fuse); i++)
		len += snprintf(p->fuse + len, sizeof(p->fuse) - len, "%s%s",
				i ? " " : "", fa.argv[i]);
	fuse_opt_free_args(&fa);
}

/* Parse "avalafs -o @opts MNT". */
static void parse_o(struct parsed *p, const char *opts)
{
	const char *words[] = { "-o", opts, NULL };

	parse_words(p, true, words);
}

/* @opts must be refused with exactly the line "avalafs: @line". */
static void check_refused(const char *opts, const char *line)
{
	struct parsed p;
	char want[512];

	parse_o(&p, opts);
	snprintf(want, sizeof(want), "avalafs: %s\n", line);
	CHECK(p.err == -EINVAL);
	CHECK_STR(p.said, want);
	options_free(&p.o);
}

static void test_defaults(void)
{
	struct parsed p;
	const char *none[] = { NULL };
	char want[256];

	parse_words(&p, true, none);
	CHECK(p.err == 0);
	CHECK_STR(p.said, "");
	CHECK_STR(p.o.mountpoint, mnt);
	CHECK(!p.o.api_url && !p.o.api_key_file && !p.o.ca_file &&
	      !p.o.ordering && !p.o.cache_dir && p.o.n_datasets == 0);
	CHECK(p.o.page_size == 100);
	CHECK(p.o.ttl == 60);
	CHECK(p.o.timeout == 30);
	CHECK(p.o.list_timeout == 3600);
	CHECK(p.o.retry_after_max == 60);
	CHECK(p.o.cache_size == 256 << 20);
	CHECK(p.o.readahead == 64 << 20);
	CHECK(p.o.disk_cache_size == 10LL << 30);
	CHECK(p.o.prefetch == 32);
	CHECK(p.o.max_conns == 64);
	CHECK(p.o.max_threads == 0);
	CHECK(p.o.max_read == 0);
	CHECK(p.o.uid == (uid_t)-1 && p.o.gid == (gid_t)-1);
	CHECK(!p.o.show_help && !p.o.show_version);
	/* every mount is read-only, named avalafs, and checked by the kernel */
	snprintf(want, sizeof(want),
		 "avalafs -oro,default_permissions,fsname=avalafs,"
		 "subtype=avalafs %s",
		 mnt);
	CHECK_STR(p.fuse, want);
	options_free(&p.o);
}

static void test_every_option(void)
{
	struct parsed p;
	char cwd[512], want[600];

	parse_o(&p, "api_url=http://127.0.0.1:1/api/v1,api_key_file=/k,"
		    "ca_file=/ca.pem,dataset=acme/cars,dataset=a.b/c-d,"
		    "page_size=1000,ordering=-created_at,ttl=0,timeout=1,"
		    "list_timeout=0,retry_after_max=0,cache_size=1M,"
		    "readahead=0,cache_dir=/var/tmp/c,disk_cache_size=0,"
		    "prefetch=0,max_conns=1024,max_threads=4096,uid=0,"
		    "gid=4294967294");
	CHECK(p.err == 0);
	CHECK_STR(p.said, "");
	CHECK_STR(p.o.api_url, "http://127.0.0.1:1/api/v1");
	CHECK_STR(p.o.api_key_file, "/k");
	CHECK_STR(p.o.ca_file, "/ca.pem");
	CHECK(p.o.n_datasets == 2);
	CHECK_STR(p.o.n_datasets == 2 ? p.o.datasets[0] : NULL, "acme/cars");
	CHECK_STR(p.o.n_datasets == 2 ? p.o.datasets[1] : NULL, "a.b/c-d");
	CHECK(p.o.page_size == 1000);
	CHECK_STR(p.o.ordering, "-created_at");
	CHECK(p.o.ttl == 0 && p.o.timeout == 1 && p.o.list_timeout == 0 &&
	      p.o.retry_after_max == 0);
	CHECK(p.o.cache_size == 1 << 20 && p.o.readahead == 0 &&
	      p.o.disk_cache_size == 0);
	CHECK_STR(p.o.cache_dir, "/var/tmp/c");
	CHECK(p.o.prefetch == 0 && p.o.max_conns == 1024 &&
	      p.o.max_threads == 4096);
	CHECK(p.o.uid == 0 && p.o.gid == 4294967294u);
	options_free(&p.o);

	/* a relative path is the working folder's, which a mount in the
	 * background leaves; "none" is a word, not a folder */
	parse_o(&p, "api_key_file=key,ca_file=certs/ca.pem,cache_dir=none");
	CHECK(p.err == 0 && getcwd(cwd, sizeof(cwd)));
	snprintf(want, sizeof(want), "%s/key", cwd);
	CHECK_STR(p.o.api_key_file, want);
	snprintf(want, sizeof(want), "%s/certs/ca.pem", cwd);
	CHECK_STR(p.o.ca_file, want);
	CHECK_STR(p.o.cache_dir, "none");
	options_free(&p.o);

	/* the last of a repeated option counts, save dataset= */
	parse_o(&p, "ttl=5,ttl=7,ordering=key,ordering=-key");
	CHECK(p.err == 0 && p.o.ttl == 7);
	CHECK_STR(p.o.ordering, "-key");
	options_free(&p.o);
}

static void test_units(void)
{
	static const struct {
		const char *opts;
		int64_t want;
		int which; /* 0 ttl, 1 timeout, 2 cache_size, 3 disk */
	} cases[] = {
		{ "ttl=1h", 3600, 0 },
		{ "ttl=45s", 45, 0 },
		{ "ttl=2d", 2 * 86400, 0 },
		{ "ttl=30d", 30 * 86400, 0 },
		{ "ttl=90", 90, 0 },
		{ "ttl=2H", 7200, 0 },
		{ "timeout=1m", 60, 1 },
		{ "timeout=1d", 86400, 1 },
		{ "cache_size=1G", 1LL << 30, 2 },
		{ "cache_size=512MiB", 512LL << 20, 2 },
		{ "cache_size=512mb", 512LL << 20, 2 },
		{ "cache_size=2048K", 2LL << 20, 2 },
		{ "cache_size=1048576", 1LL << 20, 2 },
		{ "cache_size=1T", 1LL << 40, 2 },
		{ "disk_cache_size=1024T", 1LL << 50, 3 },
		{ "disk_cache_size=007G", 7LL << 30, 3 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct parsed p;
		int64_t got;

		parse_o(&p, cases[i].opts);
		got = cases[i].which == 0   ? p.o.ttl
		      : cases[i].which == 1 ? p.o.timeout
		      : cases[i].which == 2 ? p.o.cache_size
					    : p.o.disk_cache_size;
		CHECK(p.err == 0 && got == cases[i].want);
		if (p.err || got != cases[i].want)
			fprintf(stderr, "  %s gave %lld: %s", cases[i].opts,
				(long long)got, p.said);
		options_free(&p.o);
	}
}

static void test_bad_values(void)
{
	/* each number whole, in its range, or one line saying so */
	check_refused("page_size=10x",
		      "page_size=10x: expected a number from 1 to 1000");
	check_refused("page_size=0",
		      "page_size=0: expected a number from 1 to 1000");
	check_refused("page_size=", "page_size=: expected a number from 1 "
				    "to 1000");
	check_refused("page_size=+5",
		      "page_size=+5: expected a number from 1 to 1000");
	check_refused("page_size=5 ",
		      "page_size=5 : expected a number from 1 to 1000");
	check_refused("ttl=1.5", "ttl=1.5: expected a time from 0 to 30d "
				 "(seconds, or a whole number with s, m, h "
				 "or d)");
	check_refused("ttl=31d", "ttl=31d: expected a time from 0 to 30d "
				 "(seconds, or a whole number with s, m, h "
				 "or d)");
	check_refused("ttl=1hh", "ttl=1hh: expected a time from 0 to 30d "
				 "(seconds, or a whole number with s, m, h "
				 "or d)");
	check_refused("ttl=h", "ttl=h: expected a time from 0 to 30d "
			       "(seconds, or a whole number with s, m, h or "
			       "d)");
	check_refused("timeout=0", "timeout=0: expected a time from 1s to 1d "
				   "(seconds, or a whole number with s, m, h "
				   "or d)");
	check_refused("list_timeout=-1",
		      "list_timeout=-1: expected a time from 0 to 30d "
		      "(seconds, or a whole number with s, m, h or d)");
	check_refused("retry_after_max=2d",
		      "retry_after_max=2d: expected a time from 0 to 1d "
		      "(seconds, or a whole number with s, m, h or d)");
	check_refused("cache_size=1023K",
		      "cache_size=1023K: expected a size from 1M to 1T "
		      "(bytes, or a whole number with K, M, G or T)");
	check_refused("cache_size=1.5G",
		      "cache_size=1.5G: expected a size from 1M to 1T "
		      "(bytes, or a whole number with K, M, G or T)");
	check_refused("cache_size=2T",
		      "cache_size=2T: expected a size from 1M to 1T "
		      "(bytes, or a whole number with K, M, G or T)");
	check_refused("cache_size=256Q",
		      "cache_size=256Q: expected a size from 1M to 1T "
		      "(bytes, or a whole number with K, M, G or T)");
	check_refused("readahead=2G",
		      "readahead=2G: expected a size from 0 to 1G "
		      "(bytes, or a whole number with K, M, G or T)");
	check_refused("disk_cache_size=1025T",
		      "disk_cache_size=1025T: expected a size from 0 to 1024T "
		      "(bytes, or a whole number with K, M, G or T)");
	check_refused("disk_cache_size=99999999999999999999",
		      "disk_cache_size=99999999999999999999: expected a size "
		      "from 0 to 1024T (bytes, or a whole number with K, M, G "
		      "or T)");
	check_refused("prefetch=1000",
		      "prefetch=1000: expected a number from 0 to 64");
	check_refused("prefetch=65",
		      "prefetch=65: expected a number from 0 to 64");
	check_refused("max_conns=0",
		      "max_conns=0: expected a number from 1 to 1024");
	check_refused("max_conns=1025",
		      "max_conns=1025: expected a number from 1 to 1024");
	check_refused("max_threads=-3",
		      "max_threads=-3: expected a number from 1 to 4096");
	check_refused("max_threads=0",
		      "max_threads=0: expected a number from 1 to 4096");
	check_refused("uid=99999999999",
		      "uid=99999999999: expected a user id from 0 to "
		      "4294967294");
	check_refused("uid=-1",
		      "uid=-1: expected a user id from 0 to 4294967294");
	check_refused("gid=4294967295",
		      "gid=4294967295: expected a group id from 0 to "
		      "4294967294");
	check_refused("max_read=1K",
		      "max_read=1K: expected a size from 4K to 1G (bytes, or a "
		      "whole number with K, M, G or T)");
	check_refused("max_idle_threads=x",
		      "max_idle_threads=x: expected a number from 0 to 4096");
	/* strings: not empty, and what they must look like */
	check_refused("dataset=acme", "dataset=acme: expected OWNER/SLUG, "
				      "like acme/cars");
	check_refused("dataset=/cars", "dataset=/cars: expected OWNER/SLUG, "
				       "like acme/cars");
	check_refused("dataset=acme/", "dataset=acme/: expected OWNER/SLUG, "
				       "like acme/cars");
	check_refused("dataset=a/b/c", "dataset=a/b/c: expected OWNER/SLUG, "
				       "like acme/cars");
	check_refused("api_url=", "api_url=: expected a URL, or caches' URLs "
				  "and the API's last, ';' between");
	check_refused("ordering=", "ordering=: expected a field name, like "
				   "created_at");
	check_refused("cache_dir=", "cache_dir=: expected a folder, or none");
	check_refused("api_key_file=~/key",
		      "api_key_file=~/key: give the full path (~ is expanded "
		      "by a shell, not here)");
	check_refused("cache_dir=~/c", "cache_dir=~/c: give the full path (~ "
				       "is expanded by a shell, not here)");
	/* a value where none is taken, none where one is */
	check_refused("allow_other=1", "allow_other=1: takes no value");
	check_refused("nofail=yes", "nofail=yes: takes no value");
	check_refused("ttl", "ttl: expected ttl=TIME");
	check_refused("dataset", "dataset: expected dataset=OWNER/SLUG");
}

static void test_key_never_taken(void)
{
	static const char *const forms[] = { "api_key=SECRET", "apikey=SECRET",
					     "key=SECRET", "api-key=SECRET",
					     "api_key" };
	size_t i;

	for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		struct parsed p;
		const char *words[] = { forms[i], NULL };
		char name[32];

		snprintf(name, sizeof(name), "%.*s",
			 (int)strcspn(forms[i], "="), forms[i]);
		/* with -o, and as a stray word */
		parse_o(&p, forms[i]);
		CHECK(p.err == -EINVAL && !strstr(p.said, "SECRET"));
		CHECK(strstr(p.said, "api_key_file=PATH") &&
		      strstr(p.said, "AVALA_API_KEY") &&
		      strncmp(p.said + strlen("avalafs: "), name,
			      strlen(name)) == 0);
		CHECK(strchr(p.said, '\n') == p.said + strlen(p.said) - 1);
		options_free(&p.o);
		parse_words(&p, true, words);
		CHECK(p.err == -EINVAL && !strstr(p.said, "SECRET") &&
		      strstr(p.said, "AVALA_API_KEY"));
		options_free(&p.o);
	}
}

static void test_unknown(void)
{
	struct parsed p;
	const char *flag[] = { "--no-such-flag", NULL };

	/* named, but never with its value: it may be a misspelt secret */
	parse_o(&p, "ttl=5,token=SECRET");
	CHECK(p.err == -EINVAL);
	CHECK_STR(p.said, "avalafs: token: unknown option\n"
			  "Try 'avalafs --help' for more information.\n");
	options_free(&p.o);
	parse_words(&p, true, flag);
	CHECK_STR(p.said, "avalafs: --no-such-flag: unknown option\n"
			  "Try 'avalafs --help' for more information.\n");
	options_free(&p.o);
}

static void test_passed_on(void)
{
	struct parsed p;
	const char *flags[] = { "-f", "-s", "-d", "-o", "debug", NULL };

	/* fstab words are dropped; FUSE's and mount(8)'s go on as given, and
	 * max_read as a plain number */
	parse_o(&p, "_netdev,nofail,auto,noauto,user,users,defaults,"
		    "allow_other,default_permissions,dev,suid,nosuid,nodev,"
		    "noatime,user=bob,max_read=128K,max_idle_threads=4,"
		    "dataset=acme/cars");
	CHECK(p.err == 0);
	CHECK_STR(p.said, "");
	CHECK(p.o.max_read == 128 * 1024);
	CHECK(strstr(p.fuse, " -omax_read=131072 "));
	CHECK(strstr(p.fuse, " -omax_idle_threads=4 "));
	CHECK(strstr(p.fuse,
		     " -o allow_other,default_permissions,dev,suid,nosuid,"
		     "nodev,noatime,user=bob "));
	CHECK(!strstr(p.fuse, "_netdev") && !strstr(p.fuse, "nofail") &&
	      !strstr(p.fuse, "auto") && !strstr(p.fuse, "users") &&
	      !strstr(p.fuse, "defaults") && !strstr(p.fuse, "dataset"));
	options_free(&p.o);

	parse_words(&p, true, flags);
	CHECK(p.err == 0 && strstr(p.fuse, "-f -s -d") &&
	      strstr(p.fuse, "-o debug"));
	options_free(&p.o);
}

static void test_words(void)
{
	struct parsed p;
	const char *stray[] = { "dataset=acme/cars", NULL };
	const char *flag[] = { "allow_other", NULL };
	const char *two[] = { other, NULL };
	const char *word[] = { "cars", NULL };
	const char *source[] = { "avalafs", NULL };
	const char *none[] = { "-o", "ttl=5", NULL };
	const char *help[] = { "--help", NULL };
	const char *version[] = { "-V", NULL };
	char want[256];

	parse_words(&p, true, stray);
	CHECK_STR(p.said, "avalafs: dataset=acme/cars: unexpected word (did "
			  "you mean -o dataset=acme/cars?)\n"
			  "Try 'avalafs --help' for more information.\n");
	options_free(&p.o);
	parse_words(&p, true, flag);
	CHECK(p.err == -EINVAL &&
	      strstr(p.said, "(did you mean -o allow_other?)"));
	options_free(&p.o);
	parse_words(&p, true, two);
	snprintf(want, sizeof(want),
		 "avalafs: %s and %s: two mount points; give one\n"
		 "Try 'avalafs --help' for more information.\n",
		 other, mnt);
	CHECK_STR(p.said, want);
	options_free(&p.o);
	parse_words(&p, true, word);
	snprintf(want, sizeof(want),
		 "avalafs: cars: unexpected word (the mount point is %s)\n"
		 "Try 'avalafs --help' for more information.\n",
		 mnt);
	CHECK_STR(p.said, want);
	options_free(&p.o);
	/* mount.fuse3 passes fstab's first field before the mount point */
	parse_words(&p, true, source);
	CHECK(p.err == 0);
	CHECK_STR(p.o.mountpoint, mnt);
	options_free(&p.o);
	parse_words(&p, false, none);
	CHECK_STR(p.said, "avalafs: missing mount point\n"
			  "Try 'avalafs --help' for more information.\n");
	options_free(&p.o);
	/* --help and --version need no mount point */
	parse_words(&p, false, help);
	CHECK(p.err == 0 && p.o.show_help && !p.o.mountpoint);
	options_free(&p.o);
	parse_words(&p, false, version);
	CHECK(p.err == 0 && p.o.show_version);
	options_free(&p.o);
}

/* metrics=: the syntax of its address, checked when parsed; nothing is
 * bound here. */
static void test_metrics_address(void)
{
	static const char *const good[] = {
		"metrics=127.0.0.1:9100",
		"metrics=0.0.0.0:0",
		"metrics=[::1]:65535",
		"metrics=[::]:9100",
		"metrics=unix:/run/avalafs.sock",
		"metrics=unix:m.sock",
	};
	static const char *const bad[] = {
		"metrics=localhost:9100", "metrics=127.0.0.1",
		"metrics=127.0.0.1:",	  "metrics=127.0.0.1:65536",
		"metrics=127.0.0.1:-1",	  "metrics=127.0.0.1:9100x",
		"metrics=[::1]9100",	  "metrics=::1:9100",
		"metrics=[::1:9100",	  "metrics=[]:9100",
		"metrics=1.2.3:9100",	  "metrics=unix:",
		"metrics=:9100",
	};
	char line[256];
	struct parsed p;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		parse_o(&p, good[i]);
		CHECK(p.err == 0);
		CHECK_STR(p.said, "");
		CHECK_STR(p.o.metrics, strchr(good[i], '=') + 1);
		options_free(&p.o);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(line, sizeof(line),
			 "%s: expected 127.0.0.1:PORT, [::1]:PORT or "
			 "unix:PATH",
			 bad[i]);
		check_refused(bad[i], line);
	}
	/* off unless given */
	parse_o(&p, "ttl=1");
	CHECK(p.err == 0 && !p.o.metrics);
	options_free(&p.o);
}

static void test_usage(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	options_usage(f);
	fclose(f);
	CHECK(strncmp(text, "Usage: avalafs [OPTION]... MOUNTPOINT\n", 38) ==
	      0);
	/* the ranges and defaults, from the same table as the parser */
	CHECK(strstr(text, "items per list request (1 to 1000; default: 100)"));
	CHECK(strstr(text, "(0 to 30d; default: 1m)"));
	CHECK(strstr(text, "(1M to 1T; default: 256M)"));
	CHECK(strstr(text, "(0 to 64; default: 32)"));
	CHECK(strstr(text, "_netdev, nofail, auto, noauto, user, users and\n"
			   "defaults."));
	free(text);
}

int main(void)
{
	snprintf(mnt, sizeof(mnt), "/tmp/avalafs-options-XXXXXX");
	snprintf(other, sizeof(other), "/tmp/avalafs-options-XXXXXX");
	if (!mkdtemp(mnt) || !mkdtemp(other)) {
		perror("mkdtemp");
		return 1;
	}
	test_defaults();
	test_every_option();
	test_units();
	test_bad_values();
	test_key_never_taken();
	test_unknown();
	test_passed_on();
	test_words();
	test_metrics_address();
	test_usage();
	rmdir(mnt);
	rmdir(other);
	return check_report();
}
