/* avalafs: the start-up order and its checks: every part of a mount built
 * in order and freed in reverse by one function, the FUSE session loop
 * between. Every failure of a start reaches the shell that ran it, also
 * without -f. */
#include "api.h"
#include "cachedir.h"
#include "cache.h"
#include "catalog.h"
#include "config.h"
#include "disk.h"
#include "fetch.h"
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

/* Every part of one mount, in the order they are built; mount_free()
 * frees them in reverse, from wherever the build stopped. */
struct mount {
	struct options o;
	struct fuse_args args; /* what FUSE is to see */
	struct fuse_cmdline_opts cmd; /* what libfuse read of it: -f, -d, ... */
	struct fuse_session *se;
	struct metrics *metrics; /* NULL: not asked for */
	struct key_source *keys;
	char *key; /* the key read at start, wiped when freed */
	const char *api_url; /* the API itself, in o, the environment or
			      * api_via */
	char *api_via; /* caches of the API before it, or NULL */
	bool curl; /* libcurl's global state made */
	struct http *http;
	struct api *api;
	struct cachedir cache_dir; /* descriptors -1 until opened */
	struct disk *disk; /* NULL: no data kept on disk */
	struct catalog *cat;
	struct cache *cache;
	struct fetch *fetch;
	struct stream *stream;
	struct fs fs; /* its tree and counters; fs_ops' userdata */
};

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
	struct mount *m; /* every part built */
	int done; /* atomic: the loop returned */
};

/* The counters as one line: "stats: {JSON}". */
static void log_stats(struct mount *m)
{
	struct cache_stats st;
	struct fetch_stats ft;
	struct stream_stats ss;
	struct disk_stats ds = { 0 };

	cache_get_stats(m->cache, &st);
	fetch_get_stats(m->fetch, &ft);
	stream_get_stats(m->stream, &ss);
	if (m->disk)
		disk_get_stats(m->disk, &ds);
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
		 st.misses, ft.jobs, st.kernel_held, tree_count(m->fs.tree),
		 ss.prefetched, ss.ordered, m->disk ? "true" : "false", ds.used,
		 ds.limit, st.disk_read, ds.hits, ds.misses, ds.puts,
		 ds.refused, ds.evicted, ds.damaged, ds.write_errors,
		 !m->disk || ds.writing ? "true" : "false", ds.listings);
}

static void *watch_session(void *p)
{
	struct session_watch *w = p;
	struct mount *m = w->m;
	int ticks = 0;

	while (!fuse_session_exited(m->se) &&
	       !__atomic_load_n(&w->done, __ATOMIC_ACQUIRE)) {
		/* the kernel sets its readahead when it reads our answer to
		 * INIT, which the loop sends first: raise it after that */
		if (++ticks == 4)
			raise_kernel_readahead(m->cmd.mountpoint, 1024);
		uint64_t inos[64];
		size_t i, n;

		if (__atomic_exchange_n(&stats_wanted, 0, __ATOMIC_RELAXED))
			log_stats(m);
		/* pages of objects that changed: drop them from here, never
		 * from a request on the same inode */
		n = cache_take_invalidations(m->cache, inos, 64);
		for (i = 0; i < n; i++)
			fuse_lowlevel_notify_inval_inode(m->se, inos[i], 0, 0);
		/* names and inodes a new listing changed */
		fs_send_forgets(&m->fs, m->se);
		usleep(50 * 1000);
	}
	http_cancel_all(m->http);
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

/* The session of @args serving @fs, with @max_read (0: not given) named in
 * the answer to INIT too. NULL after libfuse's line on stderr. */
static struct fuse_session *session_new(struct fuse_args *args,
					int64_t max_read, struct fs *fs)
{
	struct fuse_lowlevel_ops ops = fs_ops;

	if (max_read) {
		init_max_read = (unsigned)max_read;
		ops.init = init_with_max_read;
	}
	return fuse_session_new(args, &ops, sizeof(ops), fs);
}

/* FUSE's loop over @m's session, on the threads asked for: what it
 * returned. */
static int session_loop(struct mount *m)
{
	if (m->cmd.singlethread)
		return fuse_session_loop(m->se);
#if FUSE_USE_VERSION >= 312
	struct fuse_loop_config *lc = fuse_loop_cfg_create();
	int ret;

	fuse_loop_cfg_set_clone_fd(lc, m->cmd.clone_fd);
	if (m->cmd.max_idle_threads != UINT_MAX)
		fuse_loop_cfg_set_idle_threads(lc, m->cmd.max_idle_threads);
	fuse_loop_cfg_set_max_threads(lc, options_max_threads(&m->o));
	ret = fuse_session_loop_mt(m->se, lc);
	fuse_loop_cfg_destroy(lc);
	return ret;
#else
	struct fuse_loop_config lc = {
		.clone_fd = m->cmd.clone_fd,
		.max_idle_threads = m->cmd.max_idle_threads,
	};

	return fuse_session_loop_mt(m->se, &lc);
#endif
}

/* Serve the mounted session until it ends, watched from a thread: the
 * exit code. */
static int serve(struct mount *m, struct start_report *report)
{
	struct session_watch watch = { .m = m };
	pthread_t watcher;
	bool watching;
	int ret;

	watching = pthread_create(&watcher, NULL, watch_session, &watch) == 0;
	ret = session_loop(m);
	sd_notify(0, "STOPPING=1");
	/* a session that ended before it served: INIT failed, or a signal */
	if (tell_start(report, ret < 0 ? -ret : EINTR))
		ret = 1;
	else
		ret = ret < 0 ? 1 : 0;
	__atomic_store_n(&watch.done, 1, __ATOMIC_RELEASE);
	if (watching)
		pthread_join(watcher, NULL);
	return ret;
}

/* Mount @m's session, leave for the background unless -f, serve until the
 * session ends and unmount: the exit code. How the start went is told
 * once, to the shell that waits on it too. */
static int session_run(struct mount *m)
{
	struct start_report report;
	struct stat st;
	pthread_t awaiter;
	bool awaiting = false;
	int ret = 1, err;

	if (fuse_set_signal_handlers(m->se) != 0)
		return 1;
	signal(SIGUSR1, on_sigusr1);
	report = (struct start_report){
		.mountpoint = m->cmd.mountpoint,
		.api_url = m->api_url,
		.check = strncmp(m->cmd.mountpoint, "/dev/fd/", 8) != 0,
		.background = !m->cmd.foreground,
		.pipe_fd = -1,
	};
	if (report.check && stat(m->cmd.mountpoint, &st) == 0)
		report.dev_before = st.st_dev;
	if (fuse_session_mount(m->se, m->cmd.mountpoint) != 0) {
		hint_dev_fuse();
		goto out_signals;
	}
	http_quiesce(m->http); /* no thread may cross the fork */
	if (!m->cmd.foreground && go_background(m->se, &report))
		goto out_unmount;
	if (!m->cmd.foreground)
		log_use_syslog(true);
	/* its thread starts after the fork */
	err = m->metrics ? metrics_start(m->metrics,
					 &(struct metrics_sources){
						 .fs = &m->fs,
						 .api = m->api,
						 .cache = m->cache,
						 .disk = m->disk,
						 .fetch = m->fetch,
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
	ret = serve(m, &report);
out_unmount:
	/* closes the descriptor, which ends a look still waiting on INIT */
	fuse_session_unmount(m->se);
	if (awaiting)
		pthread_join(awaiter, NULL);
out_signals:
	fuse_remove_signal_handlers(m->se);
	return ret;
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

/* The start-up check of DESIGN section 4 for one dataset: one small
 * request, with the ordering the listings will ask for. 0, or -1 after one
 * line naming the cause. */
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

/* The session first: a bad mount point or FUSE option is said before
 * anything is asked of the API. */
static int build_session(struct mount *m)
{
	/* before libfuse resolves the path, which a dead mount fails */
	if (check_mountpoint(m->o.mountpoint) ||
	    fuse_parse_cmdline(&m->args, &m->cmd) != 0)
		return -1;
	m->se = session_new(&m->args, m->o.max_read, &m->fs);
	if (!m->se)
		return -1;
	log_set_debug(m->cmd.debug);
	/* bound first: an address in use refuses the mount at once */
	if (m->o.metrics && !(m->metrics = metrics_open(m->o.metrics)))
		return -1;
	return 0;
}

static int build_key(struct mount *m)
{
	m->keys = key_source_new(m->o.api_key_file, getenv("AVALA_API_KEY"));
	if (!m->keys)
		return -1;
	m->key = key_source_get(m->keys);
	if (!m->key) {
		/* an unreadable key file has said so already */
		if (!m->o.api_key_file)
			fprintf(stderr,
				"avalafs: no API key: set AVALA_API_KEY "
				"or -o api_key_file=PATH\n");
		return -1;
	}
	/* no core dump of the mount (nor a debugger of the same user) gets
	 * the key, as with ssh-agent; -d is for debugging */
	if (!m->cmd.debug)
		prctl(PR_SET_DUMPABLE, 0);
	return 0;
}

static int build_client(struct mount *m)
{
	const struct options *o = &m->o;

	m->api_url = options_api_url(o);
	/* a list: the caches first, the API itself last */
	if (strchr(m->api_url, ';')) {
		m->api_via = strdup(m->api_url);
		if (!m->api_via)
			return -1;
		*strrchr(m->api_via, ';') = '\0';
		m->api_url = m->api_via + strlen(m->api_via) + 1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "avalafs: libcurl failed to start\n");
		return -1;
	}
	m->curl = true;
	m->http = http_new(&(struct http_config){
		.api_url = m->api_url,
		.api_via = m->api_via,
		.ca_file = o->ca_file,
		.data_proxy = o->data_proxy,
		.data_proxy_auth = o->data_proxy_auth,
		.data_proxy_reset_s = o->data_proxy_reset,
		.timeout_s = o->timeout,
		.retry_after_max_s = o->retry_after_max,
		.max_conns = o->max_conns,
	});
	if (!m->http)
		return -1;
	http_set_key_source(m->http, m->keys);
	/* NULL is said with the parts built next */
	m->api = api_new(m->http, &(struct api_config){
					  .base_url = m->api_url,
					  .page_size = o->page_size,
					  .ordering = o->ordering,
					  .list_timeout_s = o->list_timeout,
				  });
	return 0;
}

/* The cache folder, the catalog of listings kept in it, and the read
 * path: the data caches in memory and on disk, the fetches and streams. */
static int build_caches(struct mount *m)
{
	const struct options *o = &m->o;
	struct catalog_config cat_cfg;

	if (cachedir_open(&m->cache_dir, o->cache_dir))
		return -1;
	/* a temporary folder (cache_dir=none) keeps no data: it would be
	 * gone before anyone read it again */
	if (!m->cache_dir.temporary && o->disk_cache_size > 0)
		m->disk = disk_open(&(struct disk_config){
			.root_fd = m->cache_dir.root_fd,
			.root = m->cache_dir.root,
			.cap = o->disk_cache_size,
			.others = listings_bytes,
			.ctx = &m->cache_dir,
		});
	cat_cfg = (struct catalog_config){
		.ttl_s = o->ttl,
		.wait_ms = (int64_t)o->timeout * 1000,
		/* dataset= names what the mount shows, and all it asks for */
		.discover = o->n_datasets == 0,
		.origin = m->api_url,
		.store_dir = m->cache_dir.listings,
		.store_dir_fd = m->cache_dir.listings_fd,
		.store_budget = m->cache_dir.temporary ? 0 : o->disk_cache_size,
		.give_back = m->disk ? give_back : NULL,
		.give_back_ctx = m->disk,
		.replaced = fs_listing_replaced,
		.replaced_ctx = &m->fs,
	};
	m->cat = m->api ? catalog_new(m->api, &cat_cfg) : NULL;
	m->cache = cache_new(o->cache_size, m->disk);
	m->fetch = m->cache ? fetch_new(m->http, m->cache, o->max_conns) : NULL;
	m->stream = m->fetch ? stream_new(m->cache, m->fetch,
					  &(struct stream_config){
						  .small_file = DISK_WHOLE_MAX,
						  .readahead_max = o->readahead,
						  .connections = o->max_conns,
						  .prefetch = o->prefetch,
					  },
					  &view_order_ops, &m->fs)
			     : NULL;
	if (!m->api || !m->cat || !m->stream) {
		fprintf(stderr, "avalafs: out of memory\n");
		return -1;
	}
	return 0;
}

/* Ask the API what the mount is to show, or mount offline from cache_dir
 * when it is not there. */
static int check_api(struct mount *m)
{
	char why[HTTP_WHY_MAX];
	bool offline = false;
	size_t i;

	/* a server not there is said at once, not after the deadline */
	http_set_starting(m->http, true);
	sd_notifyf(0, "STATUS=Asking %s", m->api_url);
	for (i = 0; i < m->o.n_datasets; i++)
		if (check_dataset(m->api, m->cat, m->o.datasets[i], &m->o,
				  m->api_url, &offline))
			return -1;
	if (!m->o.n_datasets &&
	    check_discovery(m->api, m->cat, &m->o, m->api_url))
		return -1;
	if (http_tier_check(m->http, why, sizeof(why))) {
		fprintf(stderr, "avalafs: %s\n", why);
		return -1;
	}
	http_set_starting(m->http, false);
	if (offline)
		http_set_offline(m->http);
	return 0;
}

static int build_fs(struct mount *m)
{
	const struct options *o = &m->o;
	struct fs *fs = &m->fs;

	view_init();
	fs->tree = tree_new();
	if (!fs->tree || fs_init(fs))
		return -1;
	fs->cat = m->cat;
	fs->stream = m->stream;
	fs->prefetch = o->prefetch > 0;
	fs->ttl = o->ttl;
	fs->xattr = o->xattr;
	fs->wait_ms = (int64_t)o->timeout * 1000;
	fs->max_background = o->max_conns;
	fs->uid = o->uid != (uid_t)-1 ? o->uid : getuid();
	fs->gid = o->gid != (gid_t)-1 ? o->gid : getgid();
	clock_gettime(CLOCK_REALTIME, &fs->mounted);
	return 0;
}

/* Every part of @m after its options, each from those before: 0, or -1
 * once the cause is said on stderr (a failed allocation may go unsaid).
 * mount_free() frees what was built either way. */
static int mount_build(struct mount *m)
{
	if (build_session(m) || build_key(m) || build_client(m) ||
	    build_caches(m) || check_api(m) || build_fs(m))
		return -1;
	return 0;
}

/* Free what mount_build() built of @m, in reverse, however far it got. */
static void mount_free(struct mount *m)
{
	/* no scrape, listing or fetch may call into what is freed next */
	metrics_stop(m->metrics);
	if (m->http)
		http_cancel_all(m->http);
	if (m->cat)
		catalog_quiesce(m->cat);
	if (m->fs.objects)
		fs_destroy(&m->fs);
	tree_free(m->fs.tree);
	fetch_free(m->fetch);
	stream_free(m->stream);
	cache_free(m->cache);
	disk_close(m->disk);
	catalog_free(m->cat);
	cachedir_close(&m->cache_dir);
	api_free(m->api);
	http_free(m->http);
	if (m->curl)
		curl_global_cleanup();
	if (m->key)
		memset(m->key, 0, strlen(m->key));
	free(m->key);
	free(m->api_via);
	key_source_free(m->keys);
	metrics_free(m->metrics);
	/* last, after the tree and stream are gone: safe because fs_ops has
	 * no .destroy that could still reach them */
	if (m->se)
		fuse_session_destroy(m->se);
	free(m->cmd.mountpoint);
	options_free(&m->o);
	fuse_opt_free_args(&m->args);
}

int main(int argc, char *argv[])
{
	/* a cache folder never opened has no descriptor to close */
	struct mount m = { .cache_dir = { .root_fd = -1, .listings_fd = -1 } };
	int ret;

	/* cache blocks are 128 KiB: keep them on the heap, where freed ones are
	 * reused, instead of an mmap and its page faults for each */
	mallopt(M_MMAP_THRESHOLD, 8 << 20);
	if (options_parse(argc, argv, &m.o, &m.args)) {
		ret = 1;
	} else if (m.o.show_help) {
		options_usage(stdout);
		ret = 0;
	} else if (m.o.show_version) {
		version();
		ret = 0;
	} else {
		ret = mount_build(&m) ? 1 : session_run(&m);
	}
	mount_free(&m);
	return ret;
}
