/* The command line: every option in one table (where its value goes, its
 * default, range and help), the strict parser over it, and --help. */
#include "options.h"
#include "metrics.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum opt_kind {
	OPT_STRING, /* a word, as given */
	OPT_PATH, /* a file name, made absolute */
	OPT_DATASET, /* OWNER/SLUG; may repeat */
	OPT_COUNT, /* a whole number */
	OPT_SIZE, /* bytes: a whole number, or one with K, M, G or T */
	OPT_TIME, /* seconds: a whole number, or one with s, m, h or d */
	OPT_ID, /* a user or group id */
	OPT_FLAG, /* no value */
	OPT_IGNORED, /* an fstab word that means nothing to a FUSE mount */
	OPT_SECRET, /* the key: refused, its value never repeated */
};

struct option_row {
	const char *name;
	enum opt_kind kind;
	size_t where; /* offset in struct options; 0: kept nowhere */
	const char *def; /* the default, parsed as a given value would be */
	int64_t min, max;
	bool fuse; /* FUSE's own: passed on */
	const char *arg; /* the value in --help: URL, N, TIME, ... */
	const char *what; /* what a string value must be, for an error */
	const char *keep; /* a value taken as it is, not as a path */
	const char *help; /* NULL: named only in --help's last lines */
	const char *def_words; /* a default that is not a value */
	bool (*check)(const char *value); /* a string's syntax, or NULL */
};

#define AT(field) .where = offsetof(struct options, field)
#define KIB (INT64_C(1) << 10)
#define MIB (INT64_C(1) << 20)
#define GIB (INT64_C(1) << 30)
#define TIB (INT64_C(1) << 40)
#define MINUTE 60
#define HOUR 3600
#define DAY 86400
#define ID_MAX 4294967294LL /* (uid_t)-1 is no one */
#define DEFAULT_API_URL "https://api.avala.ai/api/v1"
#define API_URL_ENV "AVALA_BASE_URL"
/* max_threads: enough threads for every request the kernel may have in
 * flight (max_background, which is max_conns) and a few more */
#define THREADS_OVER_CONNS 16
#define WORDS(n) #n
#define NUMBER_WORDS(n) WORDS(n)
#define FUSE_FLAG(n)                                      \
	{                                                 \
		.name = n, .kind = OPT_FLAG, .fuse = true \
	}
#define IGNORED(n)                             \
	{                                      \
		.name = n, .kind = OPT_IGNORED \
	}
#define SECRET(n)                             \
	{                                     \
		.name = n, .kind = OPT_SECRET \
	}

_Static_assert(offsetof(struct options, mountpoint) == 0,
	       "where = 0 must mean kept nowhere");
_Static_assert(sizeof(uid_t) == sizeof(gid_t), "OPT_ID keeps both");

/* In --help's order. A range is inclusive, and a value outside it is
 * refused, never clamped. */
static const struct option_row rows[] = {
	{ "api_url", OPT_STRING, AT(api_url), .arg = "URL[;...]",
	  .what = "a URL, or caches' URLs and the API's last, ';' between",
	  .help = "API base (caches of it first, ';' between)",
	  .def_words = "$" API_URL_ENV ", else " DEFAULT_API_URL },
	{ "api_key_file", OPT_PATH, AT(api_key_file), .arg = "PATH",
	  .what = "a file name", .help = "file whose first line is the API key",
	  .def_words = "$AVALA_API_KEY" },
	{ "ca_file", OPT_PATH, AT(ca_file), .arg = "PATH",
	  .what = "a file name",
	  .help = "PEM bundle of the certificates to trust",
	  .def_words = "the system's" },
	{ "data_proxy", OPT_STRING, AT(data_proxy), .arg = "LIST",
	  .what = "cache tiers, like http://tier1:3128|http://tier2:3128;DIRECT",
	  .help = "cache tiers data goes through: | shares a group, ; fails "
		  "over to the next, DIRECT is the origin",
	  .def_words = "none: data straight from the origin" },
	{ "data_proxy_auth", OPT_PATH, AT(data_proxy_auth), .arg = "PATH",
	  .what = "a file name",
	  .help = "file whose first line is the tiers' user:token",
	  .def_words = "no token" },
	{ "data_proxy_reset", OPT_TIME, AT(data_proxy_reset), "5m", 1, DAY,
	  .arg = "TIME",
	  .help = "a tier that failed is tried again after this" },
	{ "dataset", OPT_DATASET, .arg = "OWNER/SLUG",
	  .what = "OWNER/SLUG, like acme/cars",
	  .help = "a dataset to show; may repeat",
	  .def_words = "the datasets the key can list" },
	{ "page_size", OPT_COUNT, AT(page_size), "100", 1, 1000, .arg = "N",
	  .help = "items per list request" },
	{ "ordering", OPT_STRING, AT(ordering), .arg = "FIELD",
	  .what = "a field name, like created_at",
	  .help = "ordering of list requests, checked at start",
	  .def_words = "the server's" },
	{ "ttl", OPT_TIME, AT(ttl), "1m", 0, 30 * DAY, .arg = "TIME",
	  .help = "how long listings are trusted" },
	{ "timeout", OPT_TIME, AT(timeout), "30s", 1, DAY, .arg = "TIME",
	  .help = "deadline of one request, retries included, and longest "
		  "wait for a listing" },
	{ "list_timeout", OPT_TIME, AT(list_timeout), "1h", 0, 30 * DAY,
	  .arg = "TIME",
	  .help = "a listing still paging after this fails; 0: never" },
	{ "retry_after_max", OPT_TIME, AT(retry_after_max), "1m", 0, DAY,
	  .arg = "TIME", .help = "longest Retry-After honoured" },
	{ "cache_size", OPT_SIZE, AT(cache_size), "256M", MIB, TIB,
	  .arg = "SIZE", .help = "data cache budget in memory" },
	{ "readahead", OPT_SIZE, AT(readahead), "64M", 0, GIB, .arg = "SIZE",
	  .help = "largest readahead of one open file; 0: none" },
	{ "cache_dir", OPT_PATH, AT(cache_dir), .arg = "DIR",
	  .what = "a folder, or none", .keep = "none",
	  .help = "what is kept on disk: listings and data; none: nothing",
	  .def_words = "$XDG_CACHE_HOME/avalafs, else ~/.cache/avalafs; "
		       "/var/cache/avalafs for root" },
	{ "disk_cache_size", OPT_SIZE, AT(disk_cache_size), "10G", 0,
	  1024 * TIB, .arg = "SIZE",
	  .help = "listings and data kept in cache_dir, at most, never past "
		  "95% of its disk; 0: no data" },
	{ "prefetch", OPT_COUNT, AT(prefetch), "32", 0, 64, .arg = "N",
	  .help = "files fetched ahead of a reader that opens them in listing "
		  "order; 0: none" },
	{ "max_conns", OPT_COUNT, AT(max_conns), "64", 1, 1024, .arg = "N",
	  .help = "HTTP connections per host" },
	/* FUSE's own, taken here: its default of 10 would starve readers */
	{ "max_threads", OPT_COUNT, AT(max_threads), NULL, 1, 4096, .arg = "N",
	  .help = "threads serving FUSE requests",
	  .def_words = "max_conns + " NUMBER_WORDS(THREADS_OVER_CONNS) },
	{ "uid", OPT_ID, AT(uid), NULL, 0, ID_MAX, .arg = "N",
	  .what = "a user id", .help = "owner of every node",
	  .def_words = "the mounting user" },
	{ "gid", OPT_ID, AT(gid), NULL, 0, ID_MAX, .arg = "N",
	  .what = "a group id", .help = "group of every node",
	  .def_words = "the mounting user's" },
	{ "metrics", OPT_STRING, AT(metrics), .arg = "ADDR",
	  .what = METRICS_ADDR_WHAT, .check = metrics_addr_valid,
	  .help = "serve Prometheus metrics at /metrics on ADDR: " METRICS_ADDR_WHAT,
	  .def_words = "off" },
	{ "xattr", OPT_FLAG, AT(xattr),
	  .help = "an item's fields as extended attributes (user.avala.*) of "
		  "its folder and files; ls -l then asks for them of every "
		  "file" },
	{ "allow_other", OPT_FLAG, .fuse = true,
	  .help = "let other users in, a FUSE option" },
	{ "allow_root", OPT_FLAG, .fuse = true,
	  .help = "let root in, a FUSE option" },
	{ "auto_unmount", OPT_FLAG, .fuse = true,
	  .help = "unmount when avalafs ends, even killed, a FUSE option" },
	/* libfuse needs it also in the answer to INIT: main.c gives it */
	{ "max_read", OPT_SIZE, AT(max_read), NULL, 4 * KIB, GIB, .fuse = true,
	  .arg = "SIZE", .help = "largest read the kernel sends, a FUSE option",
	  .def_words = "the kernel's" },
	{ "max_idle_threads", OPT_COUNT, .min = 0, .max = 4096, .fuse = true,
	  .arg = "N", .help = "idle threads kept, a FUSE option",
	  .def_words = "FUSE's" },
	/* FUSE's and mount(8)'s, passed on; mount.fuse3 adds dev and suid */
	FUSE_FLAG("clone_fd"),
	FUSE_FLAG("debug"),
	FUSE_FLAG("default_permissions"),
	FUSE_FLAG("ro"),
	FUSE_FLAG("rw"),
	FUSE_FLAG("suid"),
	FUSE_FLAG("nosuid"),
	FUSE_FLAG("dev"),
	FUSE_FLAG("nodev"),
	FUSE_FLAG("exec"),
	FUSE_FLAG("noexec"),
	FUSE_FLAG("async"),
	FUSE_FLAG("sync"),
	FUSE_FLAG("dirsync"),
	FUSE_FLAG("atime"),
	FUSE_FLAG("noatime"),
	FUSE_FLAG("diratime"),
	FUSE_FLAG("nodiratime"),
	FUSE_FLAG("lazytime"),
	FUSE_FLAG("nolazytime"),
	FUSE_FLAG("relatime"),
	FUSE_FLAG("norelatime"),
	FUSE_FLAG("strictatime"),
	FUSE_FLAG("nostrictatime"),
	{ "user", OPT_STRING, .fuse = true, .arg = "NAME", .what = "a name" },
	{ "context", OPT_STRING, .fuse = true, .arg = "CONTEXT",
	  .what = "an SELinux context" },
	{ "fscontext", OPT_STRING, .fuse = true, .arg = "CONTEXT",
	  .what = "an SELinux context" },
	{ "defcontext", OPT_STRING, .fuse = true, .arg = "CONTEXT",
	  .what = "an SELinux context" },
	{ "rootcontext", OPT_STRING, .fuse = true, .arg = "CONTEXT",
	  .what = "an SELinux context" },
	/* fstab words for mount(8), not for the file system */
	IGNORED("_netdev"),
	IGNORED("nofail"),
	IGNORED("auto"),
	IGNORED("noauto"),
	IGNORED("user"),
	IGNORED("users"),
	IGNORED("defaults"),
	/* a key on the command line is in ps for every user to read */
	SECRET("api_key"),
	SECRET("apikey"),
	SECRET("api-key"),
	SECRET("key"),
};

#define N_ROWS (sizeof(rows) / sizeof(rows[0]))

/* What every mount takes, after the user's options so that they win. */
#define FIXED_FUSE_OPTIONS \
	"-oro,default_permissions,fsname=avalafs,subtype=avalafs"

/* mount.fuse3 passes an fstab line's first field before the mount point:
 * this one, which names no folder, is taken for it. */
#define FSTAB_SOURCE "avalafs"

struct unit {
	char letter;
	int64_t times;
};

static const struct unit size_units[] = { { 'T', TIB },
					  { 'G', GIB },
					  { 'M', MIB },
					  { 'K', KIB },
					  { 0, 0 } };
static const struct unit time_units[] = { { 'd', DAY },
					  { 'h', HOUR },
					  { 'm', MINUTE },
					  { 's', 1 },
					  { 0, 0 } };

/* What the parser carries through fuse_opt_parse(). */
struct parse {
	struct options *o;
	char **words; /* what is not an option, in order */
	size_t n_words;
	bool said; /* a line said what is wrong */
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	va_list ap;

	fputs("avalafs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void try_help(void)
{
	fputs("Try 'avalafs --help' for more information.\n", stderr);
}

/* Only the option's name: its value is the secret. */
static void say_no_key(const struct option_row *row)
{
	say("%s: the key is never taken on the command line, where ps shows "
	    "it: use -o api_key_file=PATH or AVALA_API_KEY",
	    row->name);
}

static bool has_value(const struct option_row *row)
{
	return row->kind != OPT_FLAG && row->kind != OPT_IGNORED &&
	       row->kind != OPT_SECRET;
}

/* The row of the option named by the first @len bytes of @name, with a
 * value or without as @valued says ("user" is both an fstab word and
 * FUSE's user=NAME); else one of that name that does not fit; else NULL. */
static const struct option_row *find_row(const char *name, size_t len,
					 bool valued)
{
	const struct option_row *named = NULL;
	size_t i;

	for (i = 0; i < N_ROWS; i++) {
		if (strlen(rows[i].name) != len ||
		    strncmp(rows[i].name, name, len) != 0)
			continue;
		if (rows[i].kind == OPT_SECRET || has_value(&rows[i]) == valued)
			return &rows[i];
		named = &rows[i];
	}
	return named;
}

static const struct unit *units_of(enum opt_kind kind)
{
	return kind == OPT_SIZE	  ? size_units
	       : kind == OPT_TIME ? time_units
				  : NULL;
}

/* @v as --help and errors write it: in the largest unit it is a whole
 * number of ("256M", "1h"), seconds with "s" below a minute. */
static const char *format_value(enum opt_kind kind, int64_t v, char *buf,
				size_t cap)
{
	const struct unit *u = units_of(kind);

	for (; u && u->letter && v; u++) {
		if (v % u->times == 0) {
			snprintf(buf, cap, "%" PRId64 "%c", v / u->times,
				 u->letter);
			return buf;
		}
	}
	snprintf(buf, cap, "%" PRId64, v);
	return buf;
}

/* The whole of @s as a number: digits, then for sizes and times one unit
 * letter (either case; a size may go on with "B" or "iB"). 0, -ERANGE past
 * INT64_MAX, or -EINVAL for anything else: a sign, a point, a space. */
static int parse_number(const char *s, enum opt_kind kind, int64_t *out)
{
	const struct unit *u = units_of(kind);
	int64_t v = 0, times = 1;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (INT64_MAX - (*p - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (*p - '0');
	}
	if (*p && u) {
		for (; u->letter; u++)
			if (toupper((unsigned char)*p) == toupper(u->letter))
				break;
		if (!u->letter)
			return -EINVAL;
		times = u->times;
		p++;
		if (kind == OPT_SIZE && toupper((unsigned char)*p) == 'I' &&
		    toupper((unsigned char)p[1]) == 'B')
			p += 2;
		else if (kind == OPT_SIZE && toupper((unsigned char)*p) == 'B')
			p++;
	}
	if (*p)
		return -EINVAL;
	if (v > INT64_MAX / times)
		return -ERANGE;
	*out = v * times;
	return 0;
}

static void say_range(const struct option_row *row, const char *value)
{
	char lo[32], hi[32];

	format_value(row->kind, row->min, lo, sizeof(lo));
	format_value(row->kind, row->max, hi, sizeof(hi));
	switch (row->kind) {
	case OPT_SIZE:
		say("%s=%s: expected a size from %s to %s (bytes, or a whole "
		    "number with K, M, G or T)",
		    row->name, value, lo, hi);
		break;
	case OPT_TIME:
		say("%s=%s: expected a time from %s to %s (seconds, or a whole "
		    "number with s, m, h or d)",
		    row->name, value, lo, hi);
		break;
	case OPT_ID:
		say("%s=%s: expected %s from %s to %s", row->name, value,
		    row->what, lo, hi);
		break;
	default:
		say("%s=%s: expected a number from %s to %s", row->name, value,
		    lo, hi);
	}
}

/* @value made absolute against the working directory, which a mount in
 * the background leaves: a new string or NULL. */
static char *absolute(const char *value)
{
	char *cwd, *out = NULL;

	if (value[0] == '/')
		return strdup(value);
	cwd = getcwd(NULL, 0);
	if (cwd &&
	    asprintf(&out, "%s/%s", strcmp(cwd, "/") ? cwd : "", value) < 0)
		out = NULL;
	free(cwd);
	return out;
}

static bool is_dataset(const char *s)
{
	const char *slash = strchr(s, '/');

	return slash && slash != s && slash[1] && !strchr(slash + 1, '/');
}

static int set_string(char **dst, char *value)
{
	if (!value)
		return -ENOMEM;
	free(*dst);
	*dst = value;
	return 0;
}

static int add_dataset(struct options *o, const char *value)
{
	char **v = realloc(o->datasets, (o->n_datasets + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	o->datasets = v;
	v[o->n_datasets] = strdup(value);
	if (!v[o->n_datasets])
		return -ENOMEM;
	o->n_datasets++;
	return 0;
}

/* Check @value against @row and keep it in @o (where the row says), as a
 * whole number in *@num for the numeric kinds. 0, or -EINVAL (-ENOMEM)
 * after one line on stderr. */
static int take_value(struct options *o, const struct option_row *row,
		      const char *value, int64_t *num)
{
	void *at = (char *)o + row->where;
	int64_t v;
	int err;

	switch (row->kind) {
	case OPT_STRING:
	case OPT_PATH:
	case OPT_DATASET:
		if (!*value ||
		    (row->kind == OPT_DATASET && !is_dataset(value)) ||
		    (row->check && !row->check(value))) {
			say("%s=%s: expected %s", row->name, value, row->what);
			return -EINVAL;
		}
		if (row->kind == OPT_PATH && value[0] == '~') {
			say("%s=%s: give the full path (~ is expanded by a "
			    "shell, not here)",
			    row->name, value);
			return -EINVAL;
		}
		if (row->kind == OPT_DATASET)
			err = add_dataset(o, value);
		else if (!row->where)
			err = 0;
		else if (row->kind == OPT_PATH &&
			 !(row->keep && strcmp(value, row->keep) == 0))
			err = set_string(at, absolute(value));
		else
			err = set_string(at, strdup(value));
		if (err)
			say("%s: %s", row->name, strerror(-err));
		return err;
	case OPT_COUNT:
	case OPT_SIZE:
	case OPT_TIME:
	case OPT_ID:
		if (parse_number(value, row->kind, &v) || v < row->min ||
		    v > row->max) {
			say_range(row, value);
			return -EINVAL;
		}
		*num = v;
		if (!row->where)
			return 0;
		if (row->kind == OPT_SIZE)
			*(int64_t *)at = v;
		else if (row->kind == OPT_ID)
			*(uid_t *)at = (uid_t)v;
		else
			*(int *)at = (int)v;
		return 0;
	default:
		return 0;
	}
}

/* One option given with -o (@arg: NAME or NAME=VALUE). Returns 0 when it
 * is taken here, 1 when FUSE is to see it as it is, -1 after a line on
 * stderr (none for ENOMEM). */
static int take_option(struct parse *ps, const char *arg,
		       struct fuse_args *outargs)
{
	const char *eq = strchr(arg, '=');
	size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
	const struct option_row *row = find_row(arg, len, eq != NULL);
	char normal[64];
	int64_t num;

	if (!row) {
		/* only the name: an unknown option may be a misspelt secret */
		say("%.*s: unknown option", (int)len, arg);
		try_help();
		return -1;
	}
	if (row->kind == OPT_SECRET) {
		say_no_key(row);
		return -1;
	}
	if (!has_value(row)) {
		if (eq) {
			say("%s: takes no value", arg);
			return -1;
		}
		if (row->where)
			*(bool *)((char *)ps->o + row->where) = true;
		return row->fuse ? 1 : 0;
	}
	if (!eq) {
		say("%s: expected %s=%s", arg, row->name, row->arg);
		return -1;
	}
	if (take_value(ps->o, row, eq + 1, &num))
		return -1;
	if (!row->fuse)
		return 0;
	if (row->kind == OPT_STRING)
		return 1;
	/* FUSE reads a plain number: "128K" goes on as 131072 */
	snprintf(normal, sizeof(normal), "-o%s=%" PRId64, row->name, num);
	return fuse_opt_add_arg(outargs, normal) ? -1 : 0;
}

static int take_word(struct parse *ps, const char *arg)
{
	char **v = realloc(ps->words, (ps->n_words + 1) * sizeof(*v));

	if (!v)
		return -1;
	ps->words = v;
	v[ps->n_words] = strdup(arg);
	return v[ps->n_words++] ? 0 : -1;
}

static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct parse *ps = data;
	int ret;

	if (key == FUSE_OPT_KEY_NONOPT)
		return take_word(ps, arg);
	if (arg[0] != '-') {
		ret = take_option(ps, arg, outargs);
		ps->said = ret < 0;
		return ret;
	}
	if (!strcmp(arg, "-f") || !strcmp(arg, "-d") || !strcmp(arg, "-s"))
		return 1;
	if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
		ps->o->show_help = true;
		return 0;
	}
	if (!strcmp(arg, "-V") || !strcmp(arg, "--version")) {
		ps->o->show_version = true;
		return 0;
	}
	say("%s: unknown option", arg);
	try_help();
	ps->said = true;
	return -1;
}

static bool is_folder(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A word that reads as one of the options, "dataset=acme/cars" or
 * "allow_other", written without -o. */
static const struct option_row *option_word(const char *word)
{
	const char *eq = strchr(word, '=');

	return find_row(word, eq ? (size_t)(eq - word) : strlen(word),
			eq != NULL);
}

/* The one mount point among the words; what else is there is refused, as
 * it would otherwise be dropped in silence. 0 or -EINVAL. */
static int take_mountpoint(struct parse *ps)
{
	char **w = ps->words;
	size_t i, n = ps->n_words;
	const struct option_row *row;

	for (i = 0; i < n; i++) {
		/* a folder named like an option is still a folder */
		row = is_folder(w[i]) ? NULL : option_word(w[i]);
		if (row && row->kind == OPT_SECRET) {
			say_no_key(row);
			return -EINVAL;
		}
		if (row) {
			say("%s: unexpected word (did you mean -o %s?)", w[i],
			    w[i]);
			try_help();
			return -EINVAL;
		}
	}
	if (n == 2 && strcmp(w[0], FSTAB_SOURCE) == 0) {
		w++;
		n--;
	}
	if (n == 0) {
		say("missing mount point");
		try_help();
		return -EINVAL;
	}
	if (n > 1) {
		if (n == 2 && is_folder(w[0]))
			say("%s and %s: two mount points; give one", w[0],
			    w[1]);
		else
			say("%s: unexpected word (the mount point is %s)", w[0],
			    w[n - 1]);
		try_help();
		return -EINVAL;
	}
	ps->o->mountpoint = strdup(w[0]);
	return ps->o->mountpoint ? 0 : -ENOMEM;
}

/* Every default of the table, through the parser a given value takes. */
static int set_defaults(struct options *o)
{
	size_t i;
	int64_t num;

	memset(o, 0, sizeof(*o));
	o->uid = (uid_t)-1;
	o->gid = (gid_t)-1;
	for (i = 0; i < N_ROWS; i++)
		if (rows[i].def && take_value(o, &rows[i], rows[i].def, &num))
			return -EINVAL;
	return 0;
}

int options_parse(int argc, char *argv[], struct options *o,
		  struct fuse_args *fuse_args)
{
	struct parse ps = { .o = o };
	size_t i;
	int err;

	*fuse_args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
	err = set_defaults(o);
	if (err)
		return err;
	if (fuse_opt_parse(fuse_args, &ps, NULL, opt_proc) == -1) {
		/* else libfuse said why ("missing argument after `-o'") */
		if (!ps.said)
			try_help();
		err = -EINVAL;
		goto out;
	}
	if (o->show_help || o->show_version)
		goto out;
	err = take_mountpoint(&ps);
	if (err)
		goto out;
	if (fuse_opt_add_arg(fuse_args, FIXED_FUSE_OPTIONS) ||
	    fuse_opt_add_arg(fuse_args, o->mountpoint))
		err = -ENOMEM;
out:
	for (i = 0; i < ps.n_words; i++)
		free(ps.words[i]);
	free(ps.words);
	return err;
}

void options_free(struct options *o)
{
	size_t i;

	for (i = 0; i < o->n_datasets; i++)
		free(o->datasets[i]);
	free(o->datasets);
	free(o->mountpoint);
	free(o->api_url);
	free(o->api_key_file);
	free(o->ca_file);
	free(o->data_proxy);
	free(o->data_proxy_auth);
	free(o->ordering);
	free(o->cache_dir);
	free(o->metrics);
	memset(o, 0, sizeof(*o));
}

const char *options_api_url(const struct options *o)
{
	const char *url = o->api_url ? o->api_url : getenv(API_URL_ENV);

	return url && *url ? url : DEFAULT_API_URL;
}

unsigned options_max_threads(const struct options *o)
{
	return o->max_threads ? (unsigned)o->max_threads
			      : (unsigned)o->max_conns + THREADS_OVER_CONNS;
}

#define HELP_COLUMN 26 /* where the text of an option starts */
#define HELP_INDENT 28 /* where its next lines start */
#define HELP_WIDTH 79

/* The words of @text from column @col on, wrapped at HELP_WIDTH to
 * column @indent, and a newline. */
static void help_wrap(FILE *f, int col, int indent, const char *text)
{
	const char *p = text;
	bool first = true;

	while (*p) {
		int len = (int)strcspn(p, " ");

		if (!first && col + 1 + len > HELP_WIDTH)
			col = fprintf(f, "\n%*s", indent, "") - 1;
		else if (!first)
			col += fprintf(f, " ");
		col += fprintf(f, "%.*s", len, p);
		first = false;
		p += len;
		p += strspn(p, " ");
	}
	fputc('\n', f);
}

/* @left, then @text from HELP_COLUMN (or two spaces after a long @left). */
static void help_entry(FILE *f, const char *left, const char *text)
{
	int col = fprintf(f, "%s", left);

	if (col > HELP_COLUMN - 2)
		col += fprintf(f, "  ");
	else
		col += fprintf(f, "%*s", HELP_COLUMN - col, "");
	help_wrap(f, col, HELP_INDENT, text);
}

/* "a, b and c": the names of the rows @pick takes, after @lead. */
static void help_names(FILE *f, const char *lead, const char *tail,
		       bool (*pick)(const struct option_row *))
{
	char text[1024];
	size_t i, n = 0, k = 0, len;

	for (i = 0; i < N_ROWS; i++)
		n += pick(&rows[i]);
	len = snprintf(text, sizeof(text), "%s", lead);
	for (i = 0; i < N_ROWS && len < sizeof(text); i++) {
		if (!pick(&rows[i]))
			continue;
		k++;
		len += snprintf(text + len, sizeof(text) - len, "%s%s%s%s",
				k == 1	 ? " "
				: k == n ? " and "
					 : ", ",
				rows[i].name, has_value(&rows[i]) ? "=" : "",
				has_value(&rows[i]) ? rows[i].arg : "");
	}
	if (len < sizeof(text))
		snprintf(text + len, sizeof(text) - len, "%s", tail);
	help_wrap(f, 0, 0, text);
}

static bool passed_on_unlisted(const struct option_row *row)
{
	return row->fuse && !row->help;
}

static bool ignored(const struct option_row *row)
{
	return row->kind == OPT_IGNORED;
}

void options_usage(FILE *f)
{
	char left[64], text[512], lo[32], hi[32];
	size_t i;

	fprintf(f, "Usage: avalafs [OPTION]... MOUNTPOINT\n"
		   "Mount Avala datasets as a read-only directory tree.\n"
		   "\n");
	for (i = 0; i < N_ROWS; i++) {
		const struct option_row *row = &rows[i];
		const char *def = row->def ? row->def : row->def_words;

		if (!row->help)
			continue;
		snprintf(left, sizeof(left), "  -o %s%s%s", row->name,
			 has_value(row) ? "=" : "",
			 has_value(row) ? row->arg : "");
		format_value(row->kind, row->min, lo, sizeof(lo));
		format_value(row->kind, row->max, hi, sizeof(hi));
		if (row->max && def)
			snprintf(text, sizeof(text),
				 "%s (%s to %s; default: %s)", row->help, lo,
				 hi, def);
		else if (row->max)
			snprintf(text, sizeof(text), "%s (%s to %s)", row->help,
				 lo, hi);
		else if (def)
			snprintf(text, sizeof(text), "%s (default: %s)",
				 row->help, def);
		else
			snprintf(text, sizeof(text), "%s", row->help);
		help_entry(f, left, text);
	}
	help_entry(f, "  -f", "stay in the foreground");
	help_entry(f, "  -d", "print FUSE debug output (implies -f)");
	help_entry(f, "  -s", "serve requests on one thread");
	help_entry(f, "  -h, --help", "display this help and exit");
	help_entry(f, "  -V, --version", "output version information and exit");
	fputc('\n', f);
	help_wrap(f, 0, 0,
		  "TIME is seconds, or a whole number with s, m, h or d "
		  "(1h is 3600); SIZE is bytes, or a whole number with K, M, "
		  "G or T (powers of 1024). A value out of its range is "
		  "refused.");
	help_names(f, "Passed on to FUSE and mount(8):", ".",
		   passed_on_unlisted);
	help_names(f, "Accepted and ignored, for fstab:", ".", ignored);
	help_wrap(f, 0, 0,
		  "The key is never taken on the command line. fstab entries "
		  "of type fuse.avalafs (first field: avalafs) mount through "
		  "mount.fuse3.");
	fputc('\n', f);
	help_wrap(f, 0, 0,
		  "Exit status: 0 after a clean unmount, 1 when the mount "
		  "could not be made (bad option, no or rejected key, unknown "
		  "dataset, no API); without -f, only once the mount serves "
		  "or has failed.");
	fputc('\n', f);
	fprintf(f, "Full documentation: man avalafs\n");
}
