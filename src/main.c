/* avalafs: command line, start-up checks, and the FUSE session loop. The
 * checks run before the process detaches, so their message and exit code
 * reach the shell that started it. */
#include "api.h"
#include "cachedir.h"
#include "catalog.h"
#include "config.h"
#include "fs.h"
#include "http.h"
#include "key.h"
#include "log.h"
#include "stream.h"
#include "tree.h"
#include "view.h"

#include <ctype.h>
#include <inttypes.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_API_URL "https://api.avala.ai/api/v1"

struct options {
	char *api_url;
	char *api_key_file;
	char *ca_file;
	char **datasets; /* OWNER/SLUG strings */
	size_t n_datasets;
	int page_size;
	char *ordering;
	int ttl;
	char *cache_size;
	char *readahead;
	char *cache_dir;
	char *disk_cache_size;
	int prefetch;
	unsigned uid, gid;
	int uid_set, gid_set;
	int timeout;
	int list_timeout;
	int retry_after_max;
	int max_conns;
	unsigned max_threads; /* 0: as many as max_conns needs */
	char *mountpoint; /* the last non-option argument */
	int show_help, show_version;
};

enum { KEY_DATASET, KEY_HELP, KEY_VERSION };

#define OPT(t, p, v)                              \
	{                                         \
		t, offsetof(struct options, p), v \
	}
static const struct fuse_opt opt_spec[] = {
	OPT("api_url=%s", api_url, 0), OPT("api_key_file=%s", api_key_file, 0),
	OPT("ca_file=%s", ca_file, 0), OPT("page_size=%d", page_size, 0),
	OPT("ordering=%s", ordering, 0), OPT("ttl=%d", ttl, 0),
	OPT("cache_size=%s", cache_size, 0), OPT("readahead=%s", readahead, 0),
	OPT("cache_dir=%s", cache_dir, 0),
	OPT("disk_cache_size=%s", disk_cache_size, 0),
	OPT("prefetch=%d", prefetch, 0), OPT("uid=%u", uid, 0),
	OPT("uid=", uid_set, 1), OPT("gid=%u", gid, 0), OPT("gid=", gid_set, 1),
	OPT("timeout=%d", timeout, 0), OPT("list_timeout=%d", list_timeout, 0),
	OPT("retry_after_max=%d", retry_after_max, 0),
	OPT("max_conns=%d", max_conns, 0),
	/* FUSE's own, taken here: its default of 10 would starve readers */
	OPT("max_threads=%u", max_threads, 0),
	FUSE_OPT_KEY("dataset=", KEY_DATASET), FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP), FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	/* fstab words that mean nothing to a FUSE mount */
	FUSE_OPT_KEY("_netdev", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nofail", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("auto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("noauto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("user", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("users", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("defaults", FUSE_OPT_KEY_DISCARD), FUSE_OPT_END
};

/* GNU style: --help and --version print to stdout and exit 0; a usage
 * error says what is wrong and how to get help, on stderr, and exits 1. */
static void usage(void)
{
	printf("Usage: avalafs [OPTION]... MOUNTPOINT\n"
	       "Mount Avala datasets as a read-only directory tree.\n"
	       "\n"
	       "  -o api_url=URL          API base (default: $AVALA_BASE_URL, else\n"
	       "                            " DEFAULT_API_URL ")\n"
	       "  -o api_key_file=PATH    file whose first line is the API key\n"
	       "                            (default: $AVALA_API_KEY)\n"
	       "  -o ca_file=PATH         PEM bundle of the certificates to trust\n"
	       "                            (default: the system's)\n"
	       "  -o dataset=OWNER/SLUG   a dataset to show; may repeat (default: the\n"
	       "                            datasets the key can list)\n"
	       "  -o page_size=N          items per list request, 1 to 1000 (100)\n"
	       "  -o ordering=FIELD       ordering of list requests\n"
	       "  -o ttl=SECONDS          how long listings are trusted (60)\n"
	       "  -o cache_size=BYTES     data cache budget, K/M/G suffixes (256M)\n"
	       "  -o readahead=BYTES      largest readahead of one open file (64M)\n"
	       "  -o cache_dir=DIR        what is kept on disk: listings and data\n"
	       "                            (default: $XDG_CACHE_HOME/avalafs,\n"
	       "                            ~/.cache/avalafs, /var/cache/avalafs for\n"
	       "                            root); none: nothing\n"
	       "  -o disk_cache_size=BYTES  data kept on disk, at most (10G; never\n"
	       "                            past 95%% of the disk)\n"
	       "  -o prefetch=N           files fetched ahead of a reader that opens\n"
	       "                            them in listing order; 0: none (32)\n"
	       "  -o max_conns=N          HTTP connections per host (64)\n"
	       "  -o max_threads=N        threads serving FUSE requests (max_conns + 16)\n"
	       "  -o timeout=SECONDS      deadline of one request, retries included,\n"
	       "                            and longest wait for a listing (30)\n"
	       "  -o list_timeout=SECONDS a listing still paging after this fails;\n"
	       "                            0: never (3600)\n"
	       "  -o retry_after_max=SECONDS  longest Retry-After honoured (60)\n"
	       "  -o uid=N, -o gid=N      owner of every node (the mounting user)\n"
	       "  -o allow_other          let other users in (a FUSE option; others\n"
	       "                            pass through to FUSE)\n"
	       "  -f                      stay in the foreground\n"
	       "  -d                      print FUSE debug output (implies -f)\n"
	       "  -s                      serve requests on one thread\n"
	       "  -h, --help              display this help and exit\n"
	       "  -V, --version           output version information and exit\n"
	       "\n"
	       "The key is never taken on the command line. fstab entries of type\n"
	       "fuse.avalafs mount through mount.fuse3; _netdev, nofail, auto, noauto\n"
	       "and user are accepted and ignored.\n"
	       "\n"
	       "Exit status: 0 after a clean unmount, 1 when the mount could not be\n"
	       "made (bad option, no or rejected key, unknown dataset, no API).\n"
	       "\n"
	       "Full documentation: man avalafs\n");
}

static void version(void)
{
	curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);

	printf("avalafs %s\n"
	       "FUSE library %s, libcurl %s\n"
	       "Copyright (C) 2026 The avalafs authors.\n"
	       "License MIT: <https://opensource.org/licenses/MIT>.\n"
	       "This is free software: you are free to change and redistribute it.\n"
	       "There is NO WARRANTY, to the extent permitted by law.\n",
	       PACKAGE_VERSION, fuse_pkgversion(), cv->version);
}

static void try_help(void)
{
	fprintf(stderr, "Try 'avalafs --help' for more information.\n");
}

static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct options *o = data;
	char **v;

	switch (key) {
	case KEY_DATASET:
		v = realloc(o->datasets, (o->n_datasets + 1) * sizeof(*v));
		if (!v)
			return -1;
		o->datasets = v;
		o->datasets[o->n_datasets] = strdup(arg + strlen("dataset="));
		if (!o->datasets[o->n_datasets])
			return -1;
		o->n_datasets++;
		return 0;
	case KEY_HELP:
		o->show_help = 1;
		return 0;
	case KEY_VERSION:
		o->show_version = 1;
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		/* mount.fuse3 passes the fstab source first: keep the last */
		free(o->mountpoint);
		o->mountpoint = strdup(arg);
		return o->mountpoint ? 0 : -1;
	default:
		return 1;
	}
}

/* "256M" and the like; -1 when malformed. */
static long long parse_size(const char *s)
{
	unsigned long long v;
	char *end;
	int shift = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (toupper((unsigned char)*end)) {
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case '\0':
		break;
	default:
		return -1;
	}
	if (*end && end[1] &&
	    !(toupper((unsigned char)end[1]) == 'B' && !end[2]) &&
	    !(toupper((unsigned char)end[1]) == 'I' &&
	      toupper((unsigned char)end[2]) == 'B' && !end[3]))
		return -1;
	if (v > (1ULL << 40) >> shift)
		return -1;
	return (long long)(v << shift);
}

/* Let the kernel read ahead @kb KiB on the mount at @mountpoint, instead of
 * FUSE's 128 KiB, so sequential readers send large reads. Needs root; best
 * effort. */
static void raise_kernel_readahead(const char *mountpoint, unsigned kb)
{
	char line[4096], dev[64], mnt[PATH_MAX], path[128];
	char *real = realpath(mountpoint, NULL);
	FILE *f = fopen("/proc/self/mountinfo", "r");
	bool found = false;

	while (f && real && !found && fgets(line, sizeof(line), f)) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... */
		if (sscanf(line, "%*d %*d %63s %*s %4095s", dev, mnt) == 2 &&
		    strcmp(mnt, real) == 0)
			found = true;
	}
	if (f)
		fclose(f);
	free(real);
	if (!found)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	f = fopen(path, "w");
	if (!f) {
		log_debug("cannot raise the kernel's readahead: %s",
			  strerror(errno));
		return;
	}
	fprintf(f, "%u\n", kb);
	fclose(f);
}

static int stats_wanted; /* atomic: set by SIGUSR1 */

static void on_sigusr1(int sig)
{
	__atomic_store_n(&stats_wanted, 1, __ATOMIC_RELAXED);
}

/* Watches the session from its own thread: logs the cache's counters on
 * SIGUSR1, and cancels the engine's requests once the session ends (a
 * signal or an unmount), so no FUSE thread sits out a retry before the loop
 * can end. */
struct session_watch {
	struct fuse_session *se;
	struct http *http;
	struct cache *cache;
	struct disk *disk; /* may be NULL */
	struct stream *stream;
	struct fetch *fetch;
	struct tree *tree;
	struct fs *fs;
	const char *mountpoint;
	int done; /* atomic: the loop returned */
};

/* The counters as one line: "stats: {JSON}". */
static void log_stats(struct session_watch *w)
{
	struct cache_stats st;
	struct fetch_stats ft;
	struct stream_stats ss;
	struct disk_stats ds = { 0 };

	cache_get_stats(w->cache, &st);
	fetch_get_stats(w->fetch, &ft);
	stream_get_stats(w->stream, &ss);
	if (w->disk)
		disk_get_stats(w->disk, &ds);
	log_info("stats: {\"cache_used\": %zu, \"cache_peak\": %zu, "
		 "\"cache_budget\": %zu, \"fetches\": %" PRIu64 ", "
		 "\"fetched_bytes\": %" PRIu64 ", \"block_hits\": %" PRIu64
		 ", \"block_misses\": %" PRIu64 ", \"jobs\": %zu, "
		 "\"kernel_held\": %zu, \"nodes\": %zu, "
		 "\"prefetched\": %" PRIu64 ", \"ordered_opens\": %" PRIu64
		 ", \"disk\": %s, \"disk_used\": %" PRId64
		 ", \"disk_limit\": %" PRId64 ", \"disk_read_bytes\": %" PRIu64
		 ", \"disk_hits\": %" PRIu64 ", \"disk_misses\": %" PRIu64
		 ", \"disk_puts\": %" PRIu64 ", \"disk_refused\": %" PRIu64
		 ", \"disk_evicted\": %" PRIu64 ", \"disk_damaged\": %" PRIu64
		 ", \"disk_write_errors\": %" PRIu64 ", \"disk_writing\": %s"
		 ", \"listings_bytes\": %" PRId64 "}",
		 st.used, st.peak, st.budget, ft.requests, st.filled, st.hits,
		 st.misses, ft.jobs, st.kernel_held, tree_count(w->tree),
		 ss.prefetched, ss.ordered, w->disk ? "true" : "false", ds.used,
		 ds.limit, st.disk_read, ds.hits, ds.misses, ds.puts,
		 ds.refused, ds.evicted, ds.damaged, ds.write_errors,
		 !w->disk || ds.writing ? "true" : "false", ds.listings);
}

static void *watch_session(void *p)
{
	struct session_watch *w = p;
	int ticks = 0;

	while (!fuse_session_exited(w->se) &&
	       !__atomic_load_n(&w->done, __ATOMIC_ACQUIRE)) {
		/* the kernel sets its readahead when it reads our answer to
		 * INIT, which the loop sends first: raise it after that */
		if (++ticks == 4)
			raise_kernel_readahead(w->mountpoint, 1024);
		uint64_t inos[64];
		size_t i, n;

		if (__atomic_exchange_n(&stats_wanted, 0, __ATOMIC_RELAXED))
			log_stats(w);
		/* pages of objects that changed: drop them from here, never
		 * from a request on the same inode */
		n = cache_take_invalidations(w->cache, inos, 64);
		for (i = 0; i < n; i++)
			fuse_lowlevel_notify_inval_inode(w->se, inos[i], 0, 0);
		/* names and inodes a new listing changed */
		fs_send_forgets(w->fs, w->se);
		usleep(50 * 1000);
	}
	http_cancel_all(w->http);
	return NULL;
}

/* Split OWNER/SLUG; 0 or -EINVAL. */
static int split_dataset(const char *spec, char **owner, char **slug)
{
	const char *slash = strchr(spec, '/');

	if (!slash || slash == spec || !slash[1] || strchr(slash + 1, '/'))
		return -EINVAL;
	*owner = strndup(spec, slash - spec);
	*slug = strdup(slash + 1);
	return *owner && *slug ? 0 : -ENOMEM;
}

/* Say, in one line, why the API at @api_url did not answer as it must. */
static void say_unreachable(const char *api_url, const struct api_answer *ans)
{
	if (ans->err == -EPROTO)
		fprintf(stderr, "avalafs: the API at %s is not trusted: %s\n",
			api_url, ans->why);
	else if (ans->status == 429 && ans->retry_after >= 0)
		fprintf(stderr,
			"avalafs: the API at %s answered HTTP 429, asked to "
			"retry after %ld s\n",
			api_url, ans->retry_after);
	else if (ans->status)
		fprintf(stderr, "avalafs: the API at %s answered HTTP %ld\n",
			api_url, ans->status);
	else
		fprintf(stderr, "avalafs: cannot reach the API at %s: %s\n",
			api_url, ans->why);
}

/* The start-up checks of DESIGN section 4: one small request per dataset.
 * Prints one line naming the cause and returns -1 when the mount must not
 * happen. */
static int check_datasets(struct api *api, struct catalog *cat,
			  const struct options *o, const char *api_url)
{
	size_t i;

	for (i = 0; i < o->n_datasets; i++) {
		char *owner = NULL, *slug = NULL;
		struct api_answer ans;
		int err;

		if (split_dataset(o->datasets[i], &owner, &slug)) {
			fprintf(stderr,
				"avalafs: dataset=%s: expected OWNER/SLUG\n",
				o->datasets[i]);
			free(owner);
			free(slug);
			return -1;
		}
		err = api_check_dataset(api, owner, slug, &ans);
		if (!err)
			err = catalog_add(cat, owner, slug);
		free(owner);
		free(slug);
		if (!err)
			continue;
		if (ans.status == 401)
			fprintf(stderr,
				"avalafs: the API key was rejected "
				"(HTTP 401 from %s)\n",
				api_url);
		else if (ans.status == 403)
			fprintf(stderr,
				"avalafs: dataset %s: permission denied "
				"(HTTP 403)\n",
				o->datasets[i]);
		else if (ans.status == 404)
			fprintf(stderr,
				"avalafs: dataset %s: not found "
				"(HTTP 404)\n",
				o->datasets[i]);
		else
			say_unreachable(api_url, &ans);
		return -1;
	}
	return 0;
}

/* With no dataset= given, the dataset list must answer: it checks the key
 * and says what to show. */
static int check_discovery(struct api *api, struct catalog *cat,
			   const char *api_url)
{
	struct dataset_ref *refs;
	struct api_answer ans = { .retry_after = -1 };
	size_t n, i;
	int err = api_list_datasets(api, &refs, &n, &ans);

	if (err == -EACCES) {
		fprintf(stderr, "avalafs: the API key was rejected by %s\n",
			api_url);
		return -1;
	}
	if (err == -ENOENT) {
		fprintf(stderr,
			"avalafs: %s has no dataset list: give "
			"-o dataset=OWNER/SLUG\n",
			api_url);
		return -1;
	}
	if (err) {
		say_unreachable(api_url, &ans);
		return -1;
	}
	for (i = 0; i < n; i++)
		catalog_add(cat, refs[i].owner, refs[i].slug);
	api_free_datasets(refs, n);
	return 0;
}

/* The bytes the listings take, counted in disk_cache_size. */
static int64_t listings_bytes(void *ctx)
{
	const struct cachedir *cd = ctx;

	return cachedir_bytes(cd->listings_fd);
}

/* A listing needs room: the data cache gives it back. */
static int64_t give_back(void *ctx)
{
	return disk_give_back(ctx);
}

static void options_free(struct options *o)
{
	size_t i;

	for (i = 0; i < o->n_datasets; i++)
		free(o->datasets[i]);
	free(o->datasets);
	free(o->api_url);
	free(o->api_key_file);
	free(o->ca_file);
	free(o->ordering);
	free(o->cache_size);
	free(o->readahead);
	free(o->cache_dir);
	free(o->disk_cache_size);
	free(o->mountpoint);
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct options o = {
		.page_size = 100,
		.ttl = 60,
		.timeout = 30,
		.list_timeout = 3600,
		.retry_after_max = 60,
		.max_conns = 64,
		.prefetch = 32,
	};
	struct fuse_cmdline_opts cmd = { 0 };
	struct fuse_session *se = NULL;
	struct http *http = NULL;
	struct api *api = NULL;
	struct catalog *cat = NULL;
	struct catalog_config cat_cfg;
	struct cachedir cache = { 0 };
	struct disk *disk = NULL;
	struct cache *data_cache = NULL;
	struct fetch *fetch = NULL;
	struct stream *stream = NULL;
	struct fs fs = { 0 };
	struct session_watch watch;
	pthread_t watcher;
	bool watching;
	const char *api_url;
	long long cache_size, readahead, disk_cache_size;
	struct key_source *keys = NULL;
	char *key = NULL;
	int ret = 1;

	/* cache blocks are 128 KiB: keep them on the heap, where freed ones are
	 * reused, instead of an mmap and its page faults for each */
	mallopt(M_MMAP_THRESHOLD, 8 << 20);
	if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) == -1) {
		try_help();
		goto out_opts;
	}
	if (o.show_help) {
		usage();
		ret = 0;
		goto out_opts;
	}
	if (o.show_version) {
		version();
		ret = 0;
		goto out_opts;
	}
	if (!o.mountpoint) {
		fprintf(stderr, "avalafs: missing mount point\n");
		try_help();
		goto out_opts;
	}
	if (fuse_opt_add_arg(&args, o.mountpoint) ||
	    fuse_opt_add_arg(&args, "-oro,default_permissions,fsname=avalafs,"
				    "subtype=avalafs") ||
	    fuse_parse_cmdline(&args, &cmd) != 0)
		goto out_opts;
	if (o.page_size < 1 || o.page_size > 1000) {
		fprintf(stderr, "avalafs: page_size must be 1 to 1000\n");
		goto out_cmd;
	}
	if (o.ttl < 0 || o.timeout < 1 || o.retry_after_max < 0 ||
	    o.max_conns < 1 || o.list_timeout < 0 || o.prefetch < 0) {
		fprintf(stderr, "avalafs: ttl, timeout, list_timeout, "
				"retry_after_max, max_conns and prefetch must "
				"be positive\n");
		goto out_cmd;
	}
	cache_size = parse_size(o.cache_size ? o.cache_size : "256M");
	if (cache_size < (1 << 20)) {
		fprintf(stderr,
			"avalafs: cache_size=%s: expected a size of "
			"at least 1M, like 512M or 2G\n",
			o.cache_size);
		goto out_cmd;
	}
	readahead = parse_size(o.readahead ? o.readahead : "64M");
	if (readahead < 0) {
		fprintf(stderr,
			"avalafs: readahead=%s: expected a size like "
			"64M\n",
			o.readahead);
		goto out_cmd;
	}
	disk_cache_size =
		parse_size(o.disk_cache_size ? o.disk_cache_size : "10G");
	if (disk_cache_size < 0) {
		fprintf(stderr,
			"avalafs: disk_cache_size=%s: expected a size like "
			"10G\n",
			o.disk_cache_size);
		goto out_cmd;
	}
	/* the session takes the FUSE options: an unknown one is refused now,
	 * before any request is made */
	se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), &fs);
	if (!se) {
		try_help();
		goto out_cmd;
	}
	log_set_debug(cmd.debug);
	keys = key_source_new(o.api_key_file, getenv("AVALA_API_KEY"));
	if (!keys)
		goto out_session;
	key = key_source_get(keys);
	if (!key) {
		/* an unreadable key file has said so already */
		if (!o.api_key_file)
			fprintf(stderr,
				"avalafs: no API key: set AVALA_API_KEY "
				"or -o api_key_file=PATH\n");
		goto out_key;
	}
	/* no core dump of the mount (nor a debugger of the same user) gets
	 * the key, as with ssh-agent; -d is for debugging */
	if (!cmd.debug)
		prctl(PR_SET_DUMPABLE, 0);
	api_url = o.api_url ? o.api_url : getenv("AVALA_BASE_URL");
	if (!api_url || !*api_url)
		api_url = DEFAULT_API_URL;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "avalafs: libcurl failed to start\n");
		goto out_key;
	}
	http = http_new(&(struct http_config){
		.api_url = api_url,
		.ca_file = o.ca_file,
		.timeout_s = o.timeout,
		.retry_after_max_s = o.retry_after_max,
		.max_conns = o.max_conns,
	});
	if (!http)
		goto out_curl;
	http_set_key_source(http, keys);
	api = api_new(http, &(struct api_config){
				    .base_url = api_url,
				    .page_size = o.page_size,
				    .ordering = o.ordering,
				    .list_timeout_s = o.list_timeout,
			    });
	if (cachedir_open(&cache, o.cache_dir))
		goto out_objs;
	/* a temporary folder (cache_dir=none) keeps no data: it would be
	 * gone before anyone read it again */
	if (!cache.temporary && disk_cache_size > 0)
		disk = disk_open(&(struct disk_config){
			.root_fd = cache.root_fd,
			.root = cache.root,
			.cap = disk_cache_size,
			.others = listings_bytes,
			.ctx = &cache,
		});
	cat_cfg = (struct catalog_config){
		.ttl_s = o.ttl,
		.wait_ms = (int64_t)o.timeout * 1000,
		.discover = true,
		.origin = api_url,
		.store_dir = cache.listings,
		.store_dir_fd = cache.listings_fd,
		.store_budget = cache.temporary ? 0 : disk_cache_size,
		.give_back = disk ? give_back : NULL,
		.give_back_ctx = disk,
		.replaced = fs_listing_replaced,
		.replaced_ctx = &fs,
	};
	cat = api ? catalog_new(api, &cat_cfg) : NULL;
	data_cache = cache_new(cache_size, disk);
	fetch = data_cache ? fetch_new(http, data_cache, o.max_conns) : NULL;
	stream = fetch ? stream_new(data_cache, fetch,
				    &(struct stream_config){
					    .small_file = DISK_WHOLE_MAX,
					    .readahead_max = readahead,
					    .prefetch = o.prefetch,
				    },
				    &view_order_ops, &fs)
		       : NULL;
	if (!api || !cat || !stream) {
		fprintf(stderr, "avalafs: out of memory\n");
		goto out_objs;
	}
	/* a server not there is said at once, not after the deadline */
	http_set_starting(http, true);
	if (o.n_datasets ? check_datasets(api, cat, &o, api_url)
			 : check_discovery(api, cat, api_url))
		goto out_objs;
	http_set_starting(http, false);
	if (o.n_datasets)
		catalog_discover(cat, true);

	view_init();
	fs.tree = tree_new();
	if (!fs.tree || fs_init(&fs))
		goto out_tree;
	fs.cat = cat;
	fs.stream = stream;
	fs.prefetch = o.prefetch > 0;
	fs.ttl = o.ttl;
	fs.wait_ms = (int64_t)o.timeout * 1000;
	fs.max_background = o.max_conns;
	fs.uid = o.uid_set ? o.uid : getuid();
	fs.gid = o.gid_set ? o.gid : getgid();
	clock_gettime(CLOCK_REALTIME, &fs.mounted);

	if (fuse_set_signal_handlers(se) != 0)
		goto out_tree;
	signal(SIGUSR1, on_sigusr1);
	if (fuse_session_mount(se, cmd.mountpoint) != 0)
		goto out_signals;
	http_quiesce(http); /* no thread may cross the fork */
	if (fuse_daemonize(cmd.foreground) != 0)
		goto out_unmount;
	if (!cmd.foreground)
		log_use_syslog(true);
	log_info("mounted %s on %s", api_url, cmd.mountpoint);

	watch = (struct session_watch){
		.se = se,
		.http = http,
		.cache = data_cache,
		.disk = disk,
		.stream = stream,
		.fetch = fetch,
		.tree = fs.tree,
		.fs = &fs,
		.mountpoint = cmd.mountpoint,
	};
	watching = pthread_create(&watcher, NULL, watch_session, &watch) == 0;
	if (cmd.singlethread) {
		ret = fuse_session_loop(se);
	} else {
#if FUSE_USE_VERSION >= 312
		struct fuse_loop_config *lc = fuse_loop_cfg_create();

		fuse_loop_cfg_set_clone_fd(lc, cmd.clone_fd);
		if (cmd.max_idle_threads != UINT_MAX)
			fuse_loop_cfg_set_idle_threads(lc,
						       cmd.max_idle_threads);
		/* enough threads for every request the kernel may have in
		 * flight (max_background) and a few more */
		fuse_loop_cfg_set_max_threads(
			lc, o.max_threads ? o.max_threads
					  : (unsigned)o.max_conns + 16);
		ret = fuse_session_loop_mt(se, lc);
		fuse_loop_cfg_destroy(lc);
#else
		struct fuse_loop_config lc = {
			.clone_fd = cmd.clone_fd,
			.max_idle_threads = cmd.max_idle_threads,
		};

		ret = fuse_session_loop_mt(se, &lc);
#endif
	}
	ret = ret < 0 ? 1 : 0;
	__atomic_store_n(&watch.done, 1, __ATOMIC_RELEASE);
	if (watching)
		pthread_join(watcher, NULL);
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_tree:
	/* no listing may call into what is freed next */
	http_cancel_all(http);
	catalog_quiesce(cat);
	if (fs.objects)
		fs_destroy(&fs);
	tree_free(fs.tree);
out_objs:
	/* no listing or fetch may outlive what it uses */
	if (http)
		http_cancel_all(http);
	fetch_free(fetch);
	stream_free(stream);
	cache_free(data_cache);
	disk_close(disk);
	catalog_free(cat);
	cachedir_close(&cache);
	api_free(api);
	http_free(http);
out_curl:
	curl_global_cleanup();
out_key:
	if (key)
		memset(key, 0, strlen(key));
	free(key);
	key_source_free(keys);
out_session:
	/* last, after the tree and stream are gone: safe because fs_ops has
	 * no .destroy that could still reach them */
	fuse_session_destroy(se);
out_cmd:
	free(cmd.mountpoint);
out_opts:
	options_free(&o);
	fuse_opt_free_args(&args);
	return ret;
}
