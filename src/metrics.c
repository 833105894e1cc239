/* The metrics server: the address bound before the mount, libmicrohttpd
 * serving GET /metrics on its own thread, and the text made at each scrape
 * from the counters every part keeps. Lock order: m->lock is a leaf. */
#include "metrics.h"
#include "api.h"
#include "cache.h"
#include "catalog.h"
#include "config.h"
#include "disk.h"
#include "fetch.h"
#include "fs.h"
#include "log.h"
#include "stream.h"
#include "tree.h"
#include "util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define MAX_CONNECTIONS 16 /* scrapers at once */
#define IDLE_TIMEOUT_S 30 /* a connection that sends nothing is closed */
#define STOP_WAIT_MS 5000 /* longest wait for answers at unmount */

struct metrics {
	char *addr; /* as given */
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
		struct sockaddr_un un;
	} sa; /* where, once bound (the port chosen for port 0) */
	socklen_t sa_len;
	int fd; /* the listening socket, or -1 */
	dev_t sock_dev; /* a unix socket's file, to remove only that one */
	ino_t sock_ino;
	struct metrics_sources src;
	struct MHD_Daemon *daemon; /* NULL when not serving */
	pthread_mutex_t lock;
	pthread_cond_t answered; /* a request was answered */
	int answering; /* protected by lock: requests not answered yet */
};

/* ---- addresses ---- */

/* A port: 1 to 5 digits, at most 65535. */
static bool parse_port(const char *s, in_port_t *port)
{
	unsigned long v = 0;
	const char *p;

	for (p = s; isdigit((unsigned char)*p) && p - s < 6; p++)
		v = v * 10 + (unsigned long)(*p - '0');
	if (p == s || *p || v > 65535)
		return false;
	*port = htons((in_port_t)v);
	return true;
}

/* @s as an IPv4 or IPv6 address with a port, into @m's sa: 0 or -EINVAL. */
static int parse_inet(const char *s, struct metrics *m)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon;
	size_t len;

	memset(&m->sa, 0, sizeof(m->sa));
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		len = close ? (size_t)(close - s - 1) : 0;
		if (!close || close[1] != ':' || len == 0 ||
		    len >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, len);
		host[len] = '\0';
		m->sa.in6.sin6_family = AF_INET6;
		m->sa_len = sizeof(m->sa.in6);
		return inet_pton(AF_INET6, host, &m->sa.in6.sin6_addr) == 1 &&
				       parse_port(close + 2,
						  &m->sa.in6.sin6_port)
			       ? 0
			       : -EINVAL;
	}
	colon = strchr(s, ':');
	len = colon ? (size_t)(colon - s) : 0;
	if (!colon || len == 0 || len >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, len);
	host[len] = '\0';
	m->sa.in.sin_family = AF_INET;
	m->sa_len = sizeof(m->sa.in);
	return inet_pton(AF_INET, host, &m->sa.in.sin_addr) == 1 &&
			       parse_port(colon + 1, &m->sa.in.sin_port)
		       ? 0
		       : -EINVAL;
}

bool metrics_addr_valid(const char *addr)
{
	struct metrics m;

	if (strncmp(addr, "unix:", 5) == 0)
		return addr[5] != '\0';
	return parse_inet(addr, &m) == 0;
}

/* One line on stderr about metrics=ADDR. */
static void say(const char *addr, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void say(const char *addr, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "avalafs: metrics=%s: ", addr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Why a bind of @m's address failed with @err, in one line. */
static void say_bind(const struct metrics *m, int err)
{
	if (err == EADDRINUSE)
		say(m->addr, "the address is in use: another process listens "
			     "there");
	else if (err == EACCES && m->sa.sa.sa_family != AF_UNIX)
		say(m->addr, "cannot bind: %s (a port below 1024 needs root)",
		    strerror(err));
	else if (err == EADDRNOTAVAIL)
		say(m->addr, "cannot bind: no interface of this machine has "
			     "that address");
	else
		say(m->addr, "cannot bind: %s", strerror(err));
}

/* A TCP socket listening at @m's address; 0 or -1 after one line. */
static int listen_inet(struct metrics *m)
{
	int one = 1;

	m->fd = socket(m->sa.sa.sa_family,
		       SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (m->fd < 0) {
		say(m->addr, "cannot make a socket: %s", strerror(errno));
		return -1;
	}
	/* a restart binds again at once, past connections in TIME_WAIT; a
	 * port another socket listens on is still refused */
	setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (m->sa.sa.sa_family == AF_INET6)
		setsockopt(m->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(m->fd, &m->sa.sa, m->sa_len) != 0 ||
	    listen(m->fd, MAX_CONNECTIONS) != 0) {
		say_bind(m, errno);
		return -1;
	}
	/* the port chosen for port 0 */
	m->sa_len = sizeof(m->sa);
	getsockname(m->fd, &m->sa.sa, &m->sa_len);
	return 0;
}

/* Whether the socket at @path answers: a live server's. */
static bool socket_served(const struct sockaddr_un *un)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool served;

	if (fd < 0)
		return true; /* cannot tell: leave it */
	served = connect(fd, (const struct sockaddr *)un, sizeof(*un)) == 0 ||
		 errno != ECONNREFUSED;
	close(fd);
	return served;
}

/* Make room for a unix socket at @m's path: nothing there, or a socket of
 * this user that no one serves (an earlier mount's, left by a crash),
 * removed. 0 or -1 after one line. */
static int clear_unix_path(struct metrics *m)
{
	const char *path = m->sa.un.sun_path;
	struct stat st;

	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		say(m->addr, "%s", strerror(errno));
		return -1;
	}
	if (S_ISLNK(st.st_mode)) {
		say(m->addr,
		    "%s is a symbolic link: give the socket's own "
		    "path",
		    path);
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		say(m->addr,
		    "%s exists and is not a socket: remove it or "
		    "choose another path",
		    path);
		return -1;
	}
	if (st.st_uid != geteuid()) {
		say(m->addr, "%s is a socket of another user", path);
		return -1;
	}
	if (socket_served(&m->sa.un)) {
		say(m->addr, "the address is in use: another process listens "
			     "there");
		return -1;
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		say(m->addr, "cannot remove the stale socket %s: %s", path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* A unix socket listening at @path (made absolute: the mount leaves its
 * working folder); 0 or -1 after one line. */
static int listen_unix(struct metrics *m, const char *path)
{
	char *cwd = NULL, *abs = NULL;
	struct stat st;
	int n;

	if (path[0] != '/') {
		cwd = getcwd(NULL, 0);
		if (!cwd) {
			say(m->addr, "cannot tell the working folder: %s",
			    strerror(errno));
			return -1;
		}
	}
	n = asprintf(&abs, "%s%s%s", cwd ? cwd : "",
		     cwd && strcmp(cwd, "/") ? "/" : "", path);
	free(cwd);
	if (n < 0) {
		say(m->addr, "%s", strerror(ENOMEM));
		return -1;
	}
	memset(&m->sa, 0, sizeof(m->sa));
	m->sa.un.sun_family = AF_UNIX;
	if ((size_t)n >= sizeof(m->sa.un.sun_path)) {
		say(m->addr,
		    "the path is too long for a socket (%zu bytes at "
		    "most)",
		    sizeof(m->sa.un.sun_path) - 1);
		free(abs);
		return -1;
	}
	memcpy(m->sa.un.sun_path, abs, (size_t)n + 1);
	free(abs);
	m->sa_len = sizeof(m->sa.un);
	if (clear_unix_path(m))
		return -1;
	m->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (m->fd < 0) {
		say(m->addr, "cannot make a socket: %s", strerror(errno));
		return -1;
	}
	/* bind() makes the file, and fails on anything there: a link that
	 * appeared since is not followed */
	if (bind(m->fd, &m->sa.sa, m->sa_len) != 0) {
		say_bind(m, errno);
		return -1;
	}
	if (lstat(m->sa.un.sun_path, &st) == 0) {
		m->sock_dev = st.st_dev;
		m->sock_ino = st.st_ino;
	}
	if (listen(m->fd, MAX_CONNECTIONS) != 0) {
		say_bind(m, errno);
		return -1;
	}
	return 0;
}

struct metrics *metrics_open(const char *addr)
{
	struct metrics *m = calloc(1, sizeof(*m));
	int err;

	if (!m || !(m->addr = strdup(addr))) {
		free(m);
		fprintf(stderr, "avalafs: out of memory\n");
		return NULL;
	}
	m->fd = -1;
	pthread_mutex_init(&m->lock, NULL);
	util_cond_init(&m->answered);
	if (strncmp(addr, "unix:", 5) == 0 && addr[5])
		err = listen_unix(m, addr + 5);
	else if (parse_inet(addr, m) == 0)
		err = listen_inet(m);
	else {
		say(addr, "expected %s", METRICS_ADDR_WHAT);
		err = -1;
	}
	if (err) {
		metrics_free(m);
		return NULL;
	}
	return m;
}

/* ---- the text format ---- */

/* One scrape's text. */
struct text {
	FILE *f;
};

/* "# HELP" and "# TYPE" of a family; @help has no backslash or newline. */
static void family(struct text *t, const char *name, const char *type,
		   const char *help)
{
	fprintf(t->f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The length of the well-formed UTF-8 sequence at @s (of @n bytes), or 0:
 * no overlong form, surrogate or code point past U+10FFFF. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		len = 2, cp = s[0] & 0x1F;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		len = 3, cp = s[0] & 0x0F;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
		return 0;
	return len;
}

/* A label value as the format wants it: backslash, double quote and
 * newline escaped, and a byte that is not UTF-8 written as U+FFFD. */
static void label_value(struct text *t, const char *v)
{
	const unsigned char *s = (const unsigned char *)v;
	size_t n = strlen(v), len;

	while (n > 0) {
		len = 1;
		if (*s == '\\')
			fputs("\\\\", t->f);
		else if (*s == '"')
			fputs("\\\"", t->f);
		else if (*s == '\n')
			fputs("\\n", t->f);
		else if ((len = utf8_len(s, n)))
			fwrite(s, 1, len, t->f);
		else
			fputs("\xEF\xBF\xBD", t->f);
		len = len ? len : 1;
		s += len;
		n -= len;
	}
}

/* One sample: @name{@labels} @value, the labels @n name-value pairs. */
static void sample(struct text *t, const char *name, const char *value, int n,
		   ...)
{
	va_list ap;
	int i;

	fputs(name, t->f);
	va_start(ap, n);
	for (i = 0; i < n; i++) {
		const char *label = va_arg(ap, const char *);
		const char *v = va_arg(ap, const char *);

		fprintf(t->f, "%s%s=\"", i ? "," : "{", label);
		label_value(t, v);
		fputc('"', t->f);
	}
	va_end(ap);
	fprintf(t->f, "%s %s\n", n ? "}" : "", value);
}

/* Numbers as sample values. */
struct num {
	char s[32];
};

static struct num u64(uint64_t v)
{
	struct num n;

	snprintf(n.s, sizeof(n.s), "%" PRIu64, v);
	return n;
}

static struct num i64(int64_t v)
{
	struct num n;

	snprintf(n.s, sizeof(n.s), "%" PRId64, v);
	return n;
}

static struct num dbl(double v)
{
	struct num n;

	snprintf(n.s, sizeof(n.s), "%.6f", v);
	return n;
}

/* A family of one sample with no label. */
static void single(struct text *t, const char *name, const char *type,
		   const char *help, struct num v)
{
	family(t, name, type, help);
	sample(t, name, v.s, 0);
}

/* ---- what is counted ---- */

/* Every counter of one scrape, read first, so that each family is written
 * whole from one reading. */
struct snapshot {
	struct api_stats api;
	struct fetch_stats fetch;
	struct cache_stats cache;
	struct disk_stats disk;
	struct stream_stats stream;
	struct fs_stats *fs; /* large: on the heap */
	size_t nodes;
	struct ds_info {
		struct dataset *ds;
		char *name; /* "owner/slug" */
		struct catalog_listing_info l[2]; /* by enum item_kind */
	} * ds;
	size_t n_ds;
};

static const char *const kind_names[2] = {
	[ITEM_KIND_ITEM] = "items",
	[ITEM_KIND_SEQUENCE] = "sequences",
};

static void snapshot_free(struct snapshot *s)
{
	size_t i;

	for (i = 0; i < s->n_ds; i++)
		free(s->ds[i].name);
	free(s->ds);
	free(s->fs);
}

static int snapshot_take(const struct metrics_sources *src, struct snapshot *s)
{
	struct catalog *cat = src->fs->env.cat;
	struct dataset *ds;
	size_t cap = 0;
	int k;

	memset(s, 0, sizeof(*s));
	s->fs = malloc(sizeof(*s->fs));
	if (!s->fs)
		return -ENOMEM;
	api_get_stats(src->api, &s->api);
	fetch_get_stats(src->fetch, &s->fetch);
	cache_get_stats(src->cache, &s->cache);
	if (src->disk)
		disk_get_stats(src->disk, &s->disk);
	stream_get_stats(src->fs->env.stream, &s->stream);
	fs_get_stats(src->fs, s->fs);
	s->nodes = tree_count(src->fs->tree);
	while ((ds = catalog_dataset_at(cat, s->n_ds))) {
		struct ds_info *d;

		if (UTIL_GROW(s->ds, s->n_ds, cap, 16))
			return -ENOMEM;
		d = &s->ds[s->n_ds];
		memset(d, 0, sizeof(*d));
		d->ds = ds;
		if (asprintf(&d->name, "%s/%s", dataset_owner(ds),
			     dataset_slug(ds)) < 0) {
			d->name = NULL;
			return -ENOMEM;
		}
		s->n_ds++;
		for (k = 0; k < 2; k++)
			catalog_listing_info(cat, ds, k, &d->l[k]);
	}
	return 0;
}

static void write_api(struct text *t, const struct snapshot *s)
{
	int c, o;

	family(t, "avalafs_api_requests_total", "counter",
	       "Requests to the Avala API by kind (list: a page of a listing, "
	       "get: one object, datasets: a page of the dataset list, check: "
	       "the start-up check) and how they ended, after retries.");
	for (c = 0; c < API_CALLS; c++)
		for (o = 0; o < UTIL_OUTCOMES; o++)
			sample(t, "avalafs_api_requests_total",
			       u64(s->api.calls[c][o]).s, 2, "kind",
			       api_call_name(c), "outcome",
			       util_outcome_name(o));
}

static void write_data(struct text *t, const struct snapshot *s)
{
	int k, o;

	family(t, "avalafs_data_requests_total", "counter",
	       "GET requests for file bytes (data files and thumbnails) by "
	       "kind and how they ended, after retries.");
	for (k = 0; k < FETCH_KINDS; k++)
		for (o = 0; o < UTIL_OUTCOMES; o++)
			sample(t, "avalafs_data_requests_total",
			       u64(s->fetch.ended[k][o]).s, 2, "kind",
			       fetch_kind_name(k), "outcome",
			       util_outcome_name(o));
	family(t, "avalafs_data_bytes_total", "counter",
	       "Bytes of files by where they came from: origin (fetched over "
	       "the network), disk (read from the disk cache), memory (reads "
	       "answered from blocks already in memory).");
	sample(t, "avalafs_data_bytes_total", u64(s->cache.filled).s, 1,
	       "source", "origin");
	sample(t, "avalafs_data_bytes_total", u64(s->cache.disk_read).s, 1,
	       "source", "disk");
	sample(t, "avalafs_data_bytes_total", u64(s->cache.memory_read).s, 1,
	       "source", "memory");
	single(t, "avalafs_data_fetches_in_flight", "gauge",
	       "Runs of blocks being fetched, or queued for a fetch thread.",
	       u64(s->fetch.jobs));
	single(t, "avalafs_prefetch_issued_total", "counter",
	       "Files fetched ahead of a reader that opens files in order.",
	       u64(s->stream.prefetched));
	single(t, "avalafs_ordered_opens_total", "counter",
	       "Opens that followed an order (the listing, a folder) the "
	       "prefetch follows.",
	       u64(s->stream.ordered));
	single(t, "avalafs_prefetch_disk_opens_total", "counter",
	       "Opens that fetched nothing ahead, as the files fetched ahead "
	       "lately were all in the disk cache.",
	       u64(s->stream.disk_opens));
}

static void write_memory_cache(struct text *t, const struct snapshot *s)
{
	single(t, "avalafs_memory_cache_hits_total", "counter",
	       "Blocks (128 KiB) a read or readahead found in memory.",
	       u64(s->cache.hits));
	single(t, "avalafs_memory_cache_misses_total", "counter",
	       "Blocks a read or readahead had to fill, from disk or origin.",
	       u64(s->cache.misses));
	single(t, "avalafs_memory_cache_evictions_total", "counter",
	       "Blocks dropped from memory to make room.",
	       u64(s->cache.evicted));
	single(t, "avalafs_memory_cache_used_bytes", "gauge",
	       "Bytes the memory cache holds.", u64(s->cache.used));
	single(t, "avalafs_memory_cache_budget_bytes", "gauge",
	       "Bytes the memory cache may hold (cache_size).",
	       u64(s->cache.budget));
	single(t, "avalafs_memory_cache_peak_bytes", "gauge",
	       "Most bytes the memory cache held.", u64(s->cache.peak));
	single(t, "avalafs_memory_cache_kernel_held_bytes", "gauge",
	       "Bytes of memory blocks the kernel's page cache holds too "
	       "(evicted first).",
	       u64(s->cache.kernel_held));
}

static void write_disk_cache(struct text *t, const struct snapshot *s,
			     bool enabled)
{
	const struct disk_stats *d = &s->disk;

	single(t, "avalafs_disk_cache_enabled", "gauge",
	       "1 when file data is kept in cache_dir, else 0.", u64(enabled));
	single(t, "avalafs_disk_cache_hits_total", "counter",
	       "Entries (a small file, or 4 MiB of a large one) found on disk.",
	       u64(d->hits));
	single(t, "avalafs_disk_cache_misses_total", "counter",
	       "Entries looked for on disk and not found, stale or damaged.",
	       u64(d->misses));
	single(t, "avalafs_disk_cache_writes_total", "counter",
	       "Entries written to disk.", u64(d->puts));
	single(t, "avalafs_disk_cache_refused_total", "counter",
	       "Entries not admitted: asked for less often than what they "
	       "would evict, or no room.",
	       u64(d->refused));
	single(t, "avalafs_disk_cache_evictions_total", "counter",
	       "Entries removed to make room.", u64(d->evicted));
	single(t, "avalafs_disk_cache_damaged_total", "counter",
	       "Entries whose bytes failed their checksum, removed.",
	       u64(d->damaged));
	single(t, "avalafs_disk_cache_write_errors_total", "counter",
	       "Entries that could not be written.", u64(d->write_errors));
	single(t, "avalafs_disk_cache_used_bytes", "gauge",
	       "Bytes of file data kept on disk.", i64(d->used));
	single(t, "avalafs_disk_cache_limit_bytes", "gauge",
	       "Bytes file data may take now: disk_cache_size less the "
	       "listings, never past 95% of the disk.",
	       i64(d->limit));
	single(t, "avalafs_disk_cache_listings_bytes", "gauge",
	       "Bytes the listings take in cache_dir.", i64(d->listings));
}

/* The name of errno @e ("EIO"), "other" for 0 (one not counted by
 * number), or its number. */
static const char *errno_name(int e, char buf[16])
{
	const char *name = e > 0 ? strerrorname_np(e) : "other";

	if (name)
		return name;
	snprintf(buf, 16, "%d", e);
	return buf;
}

static void write_fuse(struct text *t, const struct snapshot *s)
{
	const struct fs_stats *fs = s->fs;
	char buf[16];
	int op, e;

	family(t, "avalafs_fuse_operations_total", "counter",
	       "FUSE requests by operation.");
	for (op = 0; op < FS_OPS; op++)
		sample(t, "avalafs_fuse_operations_total", u64(fs->ops[op]).s,
		       1, "op", fs_op_name(op));
	family(t, "avalafs_fuse_errors_total", "counter",
	       "FUSE requests answered with an error, by operation and "
	       "errno.");
	for (op = 0; op < FS_OPS; op++)
		for (e = 0; e < FS_ERRNO_MAX; e++)
			if (fs->errors[op][e])
				sample(t, "avalafs_fuse_errors_total",
				       u64(fs->errors[op][e]).s, 2, "op",
				       fs_op_name(op), "errno",
				       errno_name(e, buf));
	single(t, "avalafs_fuse_requests_in_flight", "gauge",
	       "FUSE requests being served now.", u64(fs->in_flight));
	single(t, "avalafs_inodes", "gauge",
	       "Nodes the kernel was given an inode number for.",
	       u64(s->nodes));
}

static void write_datasets(struct text *t, const struct snapshot *s)
{
	int64_t now = time(NULL);
	char buf[16];
	size_t i;
	int k, st;

	single(t, "avalafs_datasets", "gauge", "Datasets the mount shows.",
	       u64(s->n_ds));
#define EACH_LISTING                  \
	for (i = 0; i < s->n_ds; i++) \
		for (k = 0; k < 2; k++)
#define LISTING_LABELS "dataset", s->ds[i].name, "kind", kind_names[k]
	family(t, "avalafs_dataset_objects", "gauge",
	       "Objects (items or sequences) the listing held lists.");
	EACH_LISTING
	{
		const struct catalog_listing_info *l = &s->ds[i].l[k];

		if (l->gen && l->objects >= 0)
			sample(t, "avalafs_dataset_objects", i64(l->objects).s,
			       2, LISTING_LABELS);
	}
	family(t, "avalafs_dataset_listing_age_seconds", "gauge",
	       "Seconds since the listing held was complete.");
	EACH_LISTING
	{
		const struct catalog_listing_info *l = &s->ds[i].l[k];

		if (l->gen && l->listed_at > 0)
			sample(t, "avalafs_dataset_listing_age_seconds",
			       i64(now > l->listed_at ? now - l->listed_at : 0)
				       .s,
			       2, LISTING_LABELS);
	}
	family(t, "avalafs_dataset_listing_generation", "gauge",
	       "Generation of the listing held (0: none yet); it grows with "
	       "each listing made.");
	EACH_LISTING
	{
		sample(t, "avalafs_dataset_listing_generation",
		       u64(s->ds[i].l[k].gen).s, 2, LISTING_LABELS);
	}
	family(t, "avalafs_dataset_listing_state", "gauge",
	       "1 for the state the listing is in: empty, loading (a first "
	       "listing), current, stale, refreshing or failed.");
	EACH_LISTING
	{
		for (st = FRESH_EMPTY; st <= FRESH_FAILED; st++)
			sample(t, "avalafs_dataset_listing_state",
			       st == (int)s->ds[i].l[k].state ? "1" : "0", 3,
			       LISTING_LABELS, "state", fresh_state_name(st));
	}
	family(t, "avalafs_dataset_listing_loads_total", "counter",
	       "Listings fetched, first ones and refreshes, ended.");
	EACH_LISTING
	{
		sample(t, "avalafs_dataset_listing_loads_total",
		       u64(s->ds[i].l[k].loads).s, 2, LISTING_LABELS);
	}
	family(t, "avalafs_dataset_listing_failures_total", "counter",
	       "Listings fetched that failed.");
	EACH_LISTING
	{
		sample(t, "avalafs_dataset_listing_failures_total",
		       u64(s->ds[i].l[k].failures).s, 2, LISTING_LABELS);
	}
	family(t, "avalafs_dataset_listing_last_error", "gauge",
	       "1 with the errno of the last listing fetched, while it "
	       "failed; none once one succeeds.");
	EACH_LISTING
	{
		const struct catalog_listing_info *l = &s->ds[i].l[k];

		if (l->last_err)
			sample(t, "avalafs_dataset_listing_last_error", "1", 3,
			       LISTING_LABELS, "errno",
			       errno_name(-l->last_err, buf));
	}
#undef EACH_LISTING
#undef LISTING_LABELS
}

/* /proc/self/stat's start time, as seconds since the epoch; 0 when it
 * cannot be read. */
static double process_start(void)
{
	char buf[1024], *p, *save;
	unsigned long long ticks = 0, btime = 0;
	FILE *f = fopen("/proc/self/stat", "re");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	int field;

	if (f)
		fclose(f);
	buf[n] = '\0';
	/* the name, in parentheses, may hold spaces: fields after it */
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	for (field = 3, p = strtok_r(p + 1, " ", &save); p && field < 22;
	     field++)
		p = strtok_r(NULL, " ", &save);
	if (!p || sscanf(p, "%llu", &ticks) != 1)
		return 0;
	f = fopen("/proc/stat", "re");
	while (f && fgets(buf, sizeof(buf), f))
		if (sscanf(buf, "btime %llu", &btime) == 1)
			break;
	if (f)
		fclose(f);
	return btime ? (double)btime + (double)ticks / sysconf(_SC_CLK_TCK) : 0;
}

static void write_process(struct text *t)
{
	long page = sysconf(_SC_PAGESIZE);
	unsigned long long vsize = 0, rss = 0;
	struct rusage ru;
	struct rlimit rl;
	struct dirent *e;
	uint64_t fds = 0;
	double start = process_start();
	FILE *f = fopen("/proc/self/statm", "re");
	DIR *d;

	family(t, "avalafs_build_info", "gauge",
	       "1, with the version of avalafs as a label.");
	sample(t, "avalafs_build_info", "1", 1, "version", PACKAGE_VERSION);
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		single(t, "process_cpu_seconds_total", "counter",
		       "User and system CPU time spent in seconds.",
		       dbl(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
			   (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6));
	if (f && fscanf(f, "%llu %llu", &vsize, &rss) == 2) {
		single(t, "process_virtual_memory_bytes", "gauge",
		       "Virtual memory size in bytes.",
		       u64(vsize * (unsigned long long)page));
		single(t, "process_resident_memory_bytes", "gauge",
		       "Resident memory size in bytes.",
		       u64(rss * (unsigned long long)page));
	}
	if (f)
		fclose(f);
	d = opendir("/proc/self/fd");
	while (d && (e = readdir(d)))
		fds += e->d_name[0] != '.';
	if (d) {
		closedir(d);
		single(t, "process_open_fds", "gauge",
		       "Number of open file descriptors.",
		       u64(fds ? fds - 1 : 0)); /* not the one reading */
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		single(t, "process_max_fds", "gauge",
		       "Maximum number of open file descriptors.",
		       u64(rl.rlim_cur));
	if (start > 0)
		single(t, "process_start_time_seconds", "gauge",
		       "Start time of the process since unix epoch in seconds.",
		       dbl(start));
}

char *metrics_render(const struct metrics_sources *src, size_t *len)
{
	struct snapshot s;
	struct text t;
	char *buf = NULL;
	int err = snapshot_take(src, &s);

	*len = 0;
	t.f = err ? NULL : open_memstream(&buf, len);
	if (!t.f) {
		snapshot_free(&s);
		return NULL;
	}
	write_api(&t, &s);
	write_data(&t, &s);
	write_memory_cache(&t, &s);
	write_disk_cache(&t, &s, src->disk != NULL);
	write_fuse(&t, &s);
	write_datasets(&t, &s);
	write_process(&t);
	snapshot_free(&s);
	if (ferror(t.f)) {
		fclose(t.f);
		free(buf);
		return NULL;
	}
	fclose(t.f);
	return buf;
}

/* ---- the server ---- */

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status,
			       char *body, size_t len, bool owned,
			       const char *type)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		len, body,
		owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!r) {
		if (owned)
			free(body);
		return MHD_NO; /* the connection is closed */
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn,
			      const char *url, const char *method,
			      const char *version, const char *upload_data,
			      size_t *upload_data_size, void **req_cls)
{
	static char not_found[] = "Not found: avalafs serves /metrics\n";
	static char not_allowed[] = "Method not allowed: GET or HEAD\n";
	static char no_memory[] = "Out of memory\n";
	struct metrics *m = cls;
	size_t len;
	char *body;

	if (*req_cls) {
		/* a body it was not asked for: dropped */
		*upload_data_size = 0;
		return MHD_YES;
	}
	/* counted until answered: metrics_stop waits for it */
	*req_cls = m;
	pthread_mutex_lock(&m->lock);
	m->answering++;
	pthread_mutex_unlock(&m->lock);
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed,
			       sizeof(not_allowed) - 1, false, "text/plain");
	if (strcmp(url, "/metrics") != 0)
		return respond(conn, MHD_HTTP_NOT_FOUND, not_found,
			       sizeof(not_found) - 1, false, "text/plain");
	body = metrics_render(&m->src, &len);
	if (!body)
		return respond(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, no_memory,
			       sizeof(no_memory) - 1, false, "text/plain");
	return respond(conn, MHD_HTTP_OK, body, len, true, CONTENT_TYPE);
}

static void completed(void *cls, struct MHD_Connection *conn, void **req_cls,
		      enum MHD_RequestTerminationCode why)
{
	struct metrics *m = cls;

	if (!*req_cls)
		return;
	*req_cls = NULL;
	pthread_mutex_lock(&m->lock);
	m->answering--;
	pthread_cond_broadcast(&m->answered);
	pthread_mutex_unlock(&m->lock);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	log_debug("metrics: %s", line);
}

/* Where @m serves, for the log: "http://127.0.0.1:9100/metrics". */
static void where(const struct metrics *m, char *buf, size_t cap)
{
	char host[INET6_ADDRSTRLEN];

	switch (m->sa.sa.sa_family) {
	case AF_INET:
		inet_ntop(AF_INET, &m->sa.in.sin_addr, host, sizeof(host));
		snprintf(buf, cap, "http://%s:%u/metrics", host,
			 ntohs(m->sa.in.sin_port));
		break;
	case AF_INET6:
		inet_ntop(AF_INET6, &m->sa.in6.sin6_addr, host, sizeof(host));
		snprintf(buf, cap, "http://[%s]:%u/metrics", host,
			 ntohs(m->sa.in6.sin6_port));
		break;
	default:
		snprintf(buf, cap, "/metrics on unix socket %s",
			 m->sa.un.sun_path);
	}
}

int metrics_start(struct metrics *m, const struct metrics_sources *src)
{
	char at[160];

	m->src = *src;
	/* poll or epoll, never select: the mount may hold more than
	 * FD_SETSIZE descriptors; ITC lets metrics_stop() quiesce it */
	m->daemon = MHD_start_daemon(
		MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG,
		0, NULL, NULL, answer, m, MHD_OPTION_LISTEN_SOCKET, m->fd,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
		MHD_OPTION_NOTIFY_COMPLETED, completed, m,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, m, MHD_OPTION_END);
	if (!m->daemon) {
		log_err("metrics=%s: the server did not start", m->addr);
		return -EIO;
	}
	where(m, at, sizeof(at));
	log_info("metrics at %s", at);
	return 0;
}

void metrics_stop(struct metrics *m)
{
	int64_t deadline = util_now_ms() + STOP_WAIT_MS;
	MHD_socket fd;

	if (!m || !m->daemon)
		return;
	/* no new connection; those open are served until answered */
	fd = MHD_quiesce_daemon(m->daemon);
	pthread_mutex_lock(&m->lock);
	while (m->answering > 0 &&
	       util_cond_wait_until(&m->answered, &m->lock, deadline) == 0)
		;
	pthread_mutex_unlock(&m->lock);
	MHD_stop_daemon(m->daemon);
	m->daemon = NULL;
	/* not quiesced, the socket was closed by the stop */
	if (fd == MHD_INVALID_SOCKET)
		m->fd = -1;
}

void metrics_free(struct metrics *m)
{
	struct stat st;

	if (!m)
		return;
	metrics_stop(m);
	if (m->fd >= 0)
		close(m->fd);
	/* only the socket made here: not one put in its place since */
	if (m->sa.sa.sa_family == AF_UNIX && m->sock_ino &&
	    lstat(m->sa.un.sun_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_dev == m->sock_dev && st.st_ino == m->sock_ino)
		unlink(m->sa.un.sun_path);
	pthread_cond_destroy(&m->answered);
	pthread_mutex_destroy(&m->lock);
	free(m->addr);
	free(m);
}
