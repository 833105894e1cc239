/* avalafs: the start-up order and its checks, then the FUSE session loop.
 * Every failure of a start reaches the shell that ran it, also without -f. */
#include "api.h"
#include "cachedir.h"
#include "catalog.h"
#include "config.h"
#include "fs.h"
#include "http.h"
#include "key.h"
#include "log.h"
#include "metrics.h"
#include "options.h"
#include "stream.h"
#include "tree.h"
#include "view.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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
#include <sys/statfs.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

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

/* mountinfo writes a space, tab, newline or backslash of a path as \ooo. */
static void mountinfo_unescape(char *s)
{
	char *out = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' &&
		    s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 |
					(s[3] - '0'));
			s += 3;
		} else {
			*out++ = *s;
		}
	}
	*out = '\0';
}

/* Whether a file system is mounted on @path (absolute, links resolved),
 * with the device (MAJ:MIN) and type of the topmost one there. */
static bool find_mount(const char *path, char dev[64], char type[64])
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL, *save, *tok;
	size_t cap = 0;
	bool found = false;

	while (f && getline(&line, &cap, f) > 0) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAG...] - TYPE */
		char *maj = NULL, *mnt = NULL, *fstype = NULL;
		bool dash = false;
		int i = 0;

		for (tok = strtok_r(line, " \n", &save); tok && !fstype;
		     tok = strtok_r(NULL, " \n", &save), i++) {
			if (i == 2)
				maj = tok;
			else if (i == 4)
				mnt = tok;
			else if (i > 5 && dash)
				fstype = tok;
			else if (i > 5 && strcmp(tok, "-") == 0)
				dash = true;
		}
		if (!fstype)
			continue;
		mountinfo_unescape(mnt);
		if (strcmp(mnt, path) != 0)
			continue;
		found = true;
		snprintf(dev, 64, "%s", maj);
		snprintf(type, 64, "%s", fstype);
	}
	free(line);
	if (f)
		fclose(f);
	return found;
}

/* A mount point whose FUSE process is gone (@err: ENOTCONN), or never
 * answered INIT (ECONNREFUSED): clear it first. */
static void say_dead(const char *path, int err)
{
	fprintf(stderr,
		"avalafs: %s: a mount whose process is gone (%s): clear it "
		"with fusermount3 -u %s\n",
		path, strerror(err), path);
}

/* Refuse a mount point that is no folder, or that is a mount already: a
 * live one would be hidden under a second, and a dead one (its process
 * killed) fails every look until it is cleared. Runs before any request;
 * 0, or -1 after one line on stderr. */
static int check_mountpoint(const char *path)
{
	char dev[64], type[64], *real;
	struct statfs sfs;
	struct stat st;
	int found;

	/* a /dev/fuse descriptor that mount.fuse3 opened and mounted */
	if (strncmp(path, "/dev/fd/", 8) == 0)
		return 0;
	if (stat(path, &st) != 0) {
		if (errno == ENOTCONN || errno == ECONNREFUSED)
			say_dead(path, errno);
		else if (errno == ENOENT)
			fprintf(stderr,
				"avalafs: %s: no such folder (make it with "
				"mkdir -p %s)\n",
				path, path);
		else
			fprintf(stderr, "avalafs: %s: %s\n", path,
				strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr,
			"avalafs: %s: not a folder: the mount point must be "
			"one\n",
			path);
		return -1;
	}
	real = realpath(path, NULL);
	found = real && find_mount(real, dev, type);
	free(real);
	if (!found)
		return 0;
	/* stat() may answer from attributes the kernel kept; statfs asks */
	if (strncmp(type, "fuse", 4) == 0 && statfs(path, &sfs) != 0 &&
	    (errno == ENOTCONN || errno == ECONNREFUSED))
		say_dead(path, errno);
	else
		fprintf(stderr,
			"avalafs: %s is already a mount (%s): unmount it first "
			"with %s %s\n",
			path, type,
			strncmp(type, "fuse", 4) == 0 ? "fusermount3 -u"
						      : "umount",
			path);
	return -1;
}

/* After a mount that failed: what a user may do about /dev/fuse, when that
 * was the cause. */
static void hint_dev_fuse(void)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	if (fd >= 0) {
		close(fd);
		return;
	}
	if (errno == EACCES || errno == EPERM)
		fprintf(stderr,
			"avalafs: cannot open /dev/fuse: %s: add yourself to "
			"the group that owns it (ls -l /dev/fuse), or ask root "
			"to mount it\n",
			strerror(errno));
	else if (errno == ENOENT || errno == ENODEV || errno == ENXIO)
		fprintf(stderr,
			"avalafs: cannot open /dev/fuse: %s: load the fuse "
			"module (modprobe fuse), or give a container the "
			"device\n",
			strerror(errno));
}

/* Let the kernel read ahead @kb KiB on the mount at @mountpoint, instead of
 * FUSE's 128 KiB, so sequential readers send large reads. Needs root; best
 * effort. */
static void raise_kernel_readahead(const char *mountpoint, unsigned kb)
{
	char dev[64], type[64], path[128];
	char *real = realpath(mountpoint, NULL);
	bool found = real && find_mount(real, dev, type);
	FILE *f;

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

/* libfuse (3.14) fails INIT unless the file system's answer names the
 * max_read of the mount options: a max_read given goes into both. */
static unsigned init_max_read;

static void init_with_max_read(void *userdata, struct fuse_conn_info *conn)
{
	fs_ops.init(userdata, conn);
	conn->max_read = init_max_read;
}

/* How a start ends, told once: on stderr when it failed, and to the shell
 * waiting on a start in the background (one byte, 0 once the mount
 * serves). */
struct start_report {
	const char *mountpoint; /* resolved */
	const char *api_url;
	dev_t dev_before; /* the folder's device before the mount */
	bool check; /* a mount point to look at, not a descriptor */
	bool background;
	int pipe_fd; /* to the waiting shell's process, or -1 */
	int told; /* atomic */
};

/* Daemons keep no terminal: once the start is told, stdio is /dev/null. */
static void detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

/* Tell that the mount serves (@err 0) or failed as it started; false
 * when that was told already. After a failure the pipe stays open until
 * the process ends, so the shell gets its prompt back once the mount is
 * gone too. */
static bool tell_start(struct start_report *r, int err)
{
	char byte = err ? 1 : 0;

	if (__atomic_exchange_n(&r->told, 1, __ATOMIC_ACQ_REL))
		return false;
	if (err) {
		fprintf(stderr,
			"avalafs: %s: the mount failed as it started (%s)\n",
			r->mountpoint, strerror(err));
	} else {
		log_info("mounted %s on %s", r->api_url, r->mountpoint);
		/* a Type=notify unit: the units ordered after it start now */
		sd_notifyf(0, "READY=1\nSTATUS=Serving %s", r->mountpoint);
		if (r->background)
			detach_stdio();
	}
	if (r->pipe_fd >= 0) {
		if (write(r->pipe_fd, &byte, 1) != 1)
			log_debug("cannot tell the start: %s", strerror(errno));
		if (!err) {
			close(r->pipe_fd);
			r->pipe_fd = -1;
		}
	}
	return true;
}

/* From its own thread, while the loop answers INIT: the kernel holds a
 * look at the mount point until INIT is answered, and fails it when the
 * answer was an error. */
static void *await_serving(void *p)
{
	struct start_report *r = p;
	struct stat st;
	int err = 0;

	if (r->check && stat(r->mountpoint, &st) != 0)
		err = errno;
	else if (r->check && st.st_dev == r->dev_before)
		err = ENOTCONN; /* unmounted already */
	tell_start(r, err);
	return NULL;
}

/* In the shell's process: wait for the report of the start and exit with
 * it; after a failure, only once the child has unmounted and ended. */
static void __attribute__((noreturn))
exit_with_start(int fd, const char *mountpoint)
{
	char byte = 1, rest;
	ssize_t n, m;

	do
		n = read(fd, &byte, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		fprintf(stderr,
			"avalafs: %s: the mount process ended before the "
			"mount served\n",
			mountpoint);
	while (n == 1 && byte != 0) {
		m = read(fd, &rest, 1);
		if (m == 0 || (m < 0 && errno != EINTR))
			break;
	}
	_exit(n == 1 && byte == 0 ? 0 : 1);
}

/* Leave the shell's process for the background. That process waits for
 * the report of the start and exits with it, so a mount that fails after
 * this still says so on the terminal, with a non-zero exit. Returns in the
 * new process only: 0, or -1 after a line on stderr. */
static int go_background(struct fuse_session *se, struct start_report *r)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) != 0) {
		fprintf(stderr, "avalafs: cannot go to the background: %s\n",
			strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "avalafs: cannot go to the background: %s\n",
			strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		/* the mount is the child's alone: it ends with the child */
		close(fuse_session_fd(se));
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		exit_with_start(p[0], r->mountpoint);
	}
	close(p[0]);
	r->pipe_fd = p[1];
	setsid();
	if (chdir("/") != 0)
		log_debug("cannot leave the working folder: %s",
			  strerror(errno));
	return 0;
}

/* Split OWNER/SLUG, which options.c checked has one '/'; 0 or -ENOMEM. */
static int split_dataset(const char *spec, char **owner, char **slug)
{
	const char *slash = strchr(spec, '/');

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

/* Say why the start-up request for @dataset was refused. */
static void say_refused(const char *dataset, const struct options *o,
			const char *api_url, const struct api_answer *ans)
{
	/* the server's words go through the log, which escapes them */
	if (ans->status == 400 && o->ordering)
		log_err("ordering=%s: refused by the API (HTTP 400)%s%s",
			o->ordering, *ans->why ? ": " : "", ans->why);
	else if (ans->status == 400)
		log_err("dataset %s: the API answered HTTP 400%s%s", dataset,
			*ans->why ? ": " : "", ans->why);
	else if (ans->status == 401)
		fprintf(stderr,
			"avalafs: the API key was rejected (HTTP 401 from "
			"%s)\n",
			api_url);
	else if (ans->status == 403)
		fprintf(stderr,
			"avalafs: dataset %s: permission denied (HTTP 403)\n",
			dataset);
	else if (ans->status == 404)
		fprintf(stderr,
			"avalafs: dataset %s: not found at %s (HTTP 404)\n",
			dataset, api_url);
	else
		say_unreachable(api_url, ans);
}

/* The start-up check of DESIGN section 4 for one dataset: one small
 * request, with the ordering the listings will ask for. 0, or -1 after one
 * line naming the cause. */
/* Whether @ans is the API not there (no connection, no answer in time, or
 * a server error), where a listing kept on disk can be served: not a
 * refusal, a URL refused, nor TLS that does not verify. */
static bool unreachable(const struct api_answer *ans)
{
	return (ans->status == 0 &&
		(ans->err == -EHOSTUNREACH || ans->err == -EIO)) ||
	       ans->status >= 500;
}

/* With the API not there, mount @dataset from the listing kept in
 * cache_dir, if there is one: 0 (said in the log), else -1. */
static int check_offline(struct catalog *cat, const char *owner,
			 const char *slug, const struct api_answer *ans)
{
	int64_t listed_at;
	char when[32];
	time_t t;

	if (!unreachable(ans) || catalog_kept(cat, owner, slug, &listed_at))
		return -1;
	t = (time_t)listed_at;
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
	log_warn("%s/%s: %s; offline: serving the listing of %s kept in "
		 "cache_dir, and asking again",
		 owner, slug, ans->why[0] ? ans->why : "the API is not there",
		 when);
	return 0;
}

static int check_dataset(struct api *api, struct catalog *cat,
			 const char *dataset, const struct options *o,
			 const char *api_url, bool *offline)
{
	char *owner = NULL, *slug = NULL;
	struct api_answer ans;
	int err = split_dataset(dataset, &owner, &slug);

	if (!err)
		err = api_check_dataset(api, owner, slug, &ans);
	else
		ans = (struct api_answer){ .err = err, .retry_after = -1 };
	if (err && err != -ENOMEM && owner &&
	    check_offline(cat, owner, slug, &ans) == 0) {
		*offline = true;
		err = 0;
	}
	if (!err)
		err = catalog_add(cat, owner, slug);
	free(owner);
	free(slug);
	if (err == -ENOMEM)
		fprintf(stderr, "avalafs: out of memory\n");
	else if (err)
		say_refused(dataset, o, api_url, &ans);
	return err ? -1 : 0;
}

/* With no dataset= given, the dataset list must answer: it checks the key
 * and says what to show. An ordering is checked on the first dataset. */
static int check_discovery(struct api *api, struct catalog *cat,
			   const struct options *o, const char *api_url)
{
	struct dataset_ref *refs;
	struct api_answer ans = { .retry_after = -1 };
	char *first = NULL;
	size_t n, i;
	int err = api_list_datasets(api, &refs, &n, &ans);

	if (err == -EACCES) {
		fprintf(stderr, "avalafs: the API key was rejected by %s\n",
			api_url);
		return -1;
	}
	if (err == -ENOENT) {
		fprintf(stderr,
			"avalafs: no dataset list at %s (HTTP 404): check "
			"api_url, or name datasets with -o "
			"dataset=OWNER/SLUG\n",
			api_url);
		return -1;
	}
	if (err) {
		say_unreachable(api_url, &ans);
		return -1;
	}
	for (i = 0; i < n; i++)
		catalog_add(cat, refs[i].owner, refs[i].slug);
	/* the ordering's check: a 400 for the first dataset, nothing else */
	if (n && o->ordering &&
	    api_check_dataset(api, refs[0].owner, refs[0].slug, &ans) &&
	    ans.status == 400 &&
	    asprintf(&first, "%s/%s", refs[0].owner, refs[0].slug) >= 0) {
		say_refused(first, o, api_url, &ans);
		err = -1;
	}
	free(first);
	api_free_datasets(refs, n);
	return err;
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

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct options o;
	struct fuse_cmdline_opts cmd = { 0 };
	struct fuse_lowlevel_ops ops = fs_ops;
	struct fuse_session *se = NULL;
	struct metrics *metrics = NULL;
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
	struct start_report report;
	struct stat st;
	pthread_t watcher, awaiter;
	bool watching, awaiting = false;
	const char *api_url;
	struct key_source *keys = NULL;
	char *key = NULL, *api_list = NULL, *api_via = NULL;
	size_t i;
	bool offline = false;
	int ret = 1, err;

	/* cache blocks are 128 KiB: keep them on the heap, where freed ones are
	 * reused, instead of an mmap and its page faults for each */
	mallopt(M_MMAP_THRESHOLD, 8 << 20);
	if (options_parse(argc, argv, &o, &args))
		goto out_opts;
	if (o.show_help) {
		options_usage(stdout);
		ret = 0;
		goto out_opts;
	}
	if (o.show_version) {
		version();
		ret = 0;
		goto out_opts;
	}
	/* before libfuse resolves the path, which a dead mount fails */
	if (check_mountpoint(o.mountpoint) ||
	    fuse_parse_cmdline(&args, &cmd) != 0)
		goto out_cmd;
	if (o.max_read) {
		init_max_read = (unsigned)o.max_read;
		ops.init = init_with_max_read;
	}
	se = fuse_session_new(&args, &ops, sizeof(ops), &fs);
	if (!se)
		goto out_cmd;
	log_set_debug(cmd.debug);
	/* bound first: an address in use refuses the mount at once */
	if (o.metrics && !(metrics = metrics_open(o.metrics)))
		goto out_session;
	keys = key_source_new(o.api_key_file, getenv("AVALA_API_KEY"));
	if (!keys)
		goto out_metrics;
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
	api_url = options_api_url(&o);
	/* a list: the caches first, the API itself last */
	if (strchr(api_url, ';')) {
		api_list = strdup(api_url);
		if (!api_list)
			goto out_key;
		api_via = api_list;
		*strrchr(api_list, ';') = '\0';
		api_url = api_via + strlen(api_via) + 1;
	}

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "avalafs: libcurl failed to start\n");
		goto out_key;
	}
	http = http_new(&(struct http_config){
		.api_url = api_url,
		.api_via = api_via,
		.ca_file = o.ca_file,
		.data_proxy = o.data_proxy,
		.data_proxy_auth = o.data_proxy_auth,
		.data_proxy_reset_s = o.data_proxy_reset,
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
	if (!cache.temporary && o.disk_cache_size > 0)
		disk = disk_open(&(struct disk_config){
			.root_fd = cache.root_fd,
			.root = cache.root,
			.cap = o.disk_cache_size,
			.others = listings_bytes,
			.ctx = &cache,
		});
	cat_cfg = (struct catalog_config){
		.ttl_s = o.ttl,
		.wait_ms = (int64_t)o.timeout * 1000,
		/* dataset= names what the mount shows, and all it asks for */
		.discover = o.n_datasets == 0,
		.origin = api_url,
		.store_dir = cache.listings,
		.store_dir_fd = cache.listings_fd,
		.store_budget = cache.temporary ? 0 : o.disk_cache_size,
		.give_back = disk ? give_back : NULL,
		.give_back_ctx = disk,
		.replaced = fs_listing_replaced,
		.replaced_ctx = &fs,
	};
	cat = api ? catalog_new(api, &cat_cfg) : NULL;
	data_cache = cache_new(o.cache_size, disk);
	fetch = data_cache ? fetch_new(http, data_cache, o.max_conns) : NULL;
	stream = fetch ? stream_new(data_cache, fetch,
				    &(struct stream_config){
					    .small_file = DISK_WHOLE_MAX,
					    .readahead_max = o.readahead,
					    .connections = o.max_conns,
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
	sd_notifyf(0, "STATUS=Asking %s", api_url);
	for (i = 0; i < o.n_datasets; i++)
		if (check_dataset(api, cat, o.datasets[i], &o, api_url,
				  &offline))
			goto out_objs;
	if (!o.n_datasets && check_discovery(api, cat, &o, api_url))
		goto out_objs;
	{
		char why[384];

		if (http_tier_check(http, why, sizeof(why))) {
			fprintf(stderr, "avalafs: %s\n", why);
			goto out_objs;
		}
	}
	http_set_starting(http, false);
	if (offline)
		http_set_offline(http);

	view_init();
	fs.tree = tree_new();
	if (!fs.tree || fs_init(&fs))
		goto out_tree;
	fs.cat = cat;
	fs.stream = stream;
	fs.prefetch = o.prefetch > 0;
	fs.ttl = o.ttl;
	fs.xattr = o.xattr;
	fs.wait_ms = (int64_t)o.timeout * 1000;
	fs.max_background = o.max_conns;
	fs.uid = o.uid != (uid_t)-1 ? o.uid : getuid();
	fs.gid = o.gid != (gid_t)-1 ? o.gid : getgid();
	clock_gettime(CLOCK_REALTIME, &fs.mounted);

	if (fuse_set_signal_handlers(se) != 0)
		goto out_tree;
	signal(SIGUSR1, on_sigusr1);
	report = (struct start_report){
		.mountpoint = cmd.mountpoint,
		.api_url = api_url,
		.check = strncmp(cmd.mountpoint, "/dev/fd/", 8) != 0,
		.background = !cmd.foreground,
		.pipe_fd = -1,
	};
	if (report.check && stat(cmd.mountpoint, &st) == 0)
		report.dev_before = st.st_dev;
	if (fuse_session_mount(se, cmd.mountpoint) != 0) {
		hint_dev_fuse();
		goto out_signals;
	}
	http_quiesce(http); /* no thread may cross the fork */
	if (!cmd.foreground && go_background(se, &report))
		goto out_unmount;
	if (!cmd.foreground)
		log_use_syslog(true);
	/* its thread starts after the fork */
	err = metrics ? metrics_start(metrics,
				      &(struct metrics_sources){
					      .fs = &fs,
					      .api = api,
					      .cache = data_cache,
					      .disk = disk,
					      .fetch = fetch,
				      })
		      : 0;
	if (err) {
		tell_start(&report, -err);
		goto out_unmount;
	}
	err = pthread_create(&awaiter, NULL, await_serving, &report);
	if (err) {
		tell_start(&report, err);
		goto out_unmount;
	}
	awaiting = true;

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
		fuse_loop_cfg_set_max_threads(lc, options_max_threads(&o));
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
	sd_notify(0, "STOPPING=1");
	/* a session that ended before it served: INIT failed, or a signal */
	if (tell_start(&report, ret < 0 ? -ret : EINTR))
		ret = 1;
	else
		ret = ret < 0 ? 1 : 0;
	__atomic_store_n(&watch.done, 1, __ATOMIC_RELEASE);
	if (watching)
		pthread_join(watcher, NULL);
out_unmount:
	/* closes the descriptor, which ends a look still waiting on INIT */
	fuse_session_unmount(se);
	if (awaiting)
		pthread_join(awaiter, NULL);
out_signals:
	fuse_remove_signal_handlers(se);
out_tree:
	/* no scrape nor listing may call into what is freed next */
	metrics_stop(metrics);
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
	free(api_list);
	key_source_free(keys);
out_metrics:
	metrics_free(metrics);
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
