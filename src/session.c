/* The FUSE session: the mount point checked, the session made, mounted and
 * served, with a thread watching it; how its start went is told once. */
#include "session.h"
#include "cache.h"
#include "disk.h"
#include "fetch.h"
#include "fs.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "mount.h"
#include "stream.h"
#include "tree.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

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

/* A live mount would be hidden under a second, and a dead one (its process
 * killed) fails every look until it is cleared. */
int session_check_mountpoint(const char *path)
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

/* Let the kernel read ahead @kb KiB on the mount at @mountpoint. Needs root;
 * best effort. */
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
		 ", \"disk_opens\": %" PRIu64
		 ", \"disk\": %s, \"disk_used\": %" PRId64
		 ", \"disk_limit\": %" PRId64 ", \"disk_read_bytes\": %" PRIu64
		 ", \"disk_hits\": %" PRIu64 ", \"disk_misses\": %" PRIu64
		 ", \"disk_puts\": %" PRIu64 ", \"disk_refused\": %" PRIu64
		 ", \"disk_evicted\": %" PRIu64 ", \"disk_damaged\": %" PRIu64
		 ", \"disk_write_errors\": %" PRIu64 ", \"disk_writing\": %s"
		 ", \"listings_bytes\": %" PRId64 "}",
		 st.used, st.peak, st.budget, ft.requests, st.filled, st.hits,
		 st.misses, ft.jobs, st.kernel_held, tree_count(m->fs.tree),
		 ss.prefetched, ss.ordered, ss.disk_opens,
		 m->disk ? "true" : "false", ds.used, ds.limit, st.disk_read,
		 ds.hits, ds.misses, ds.puts, ds.refused, ds.evicted,
		 ds.damaged, ds.write_errors,
		 !m->disk || ds.writing ? "true" : "false", ds.listings);
}

static void *watch_session(void *p)
{
	struct session_watch *w = p;
	struct mount *m = w->m;

	while (!fuse_session_exited(m->se) &&
	       !__atomic_load_n(&w->done, __ATOMIC_ACQUIRE)) {
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
	/* the kernel set its readahead as it read our answer to INIT: raise
	 * it before anyone is told the mount serves */
	else if (r->check)
		raise_kernel_readahead(r->mountpoint,
				       STREAM_KERNEL_READAHEAD >> 10);
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

struct fuse_session *session_new(struct fuse_args *args, int64_t max_read,
				 struct fs *fs)
{
	struct fuse_lowlevel_ops ops = fs_ops;

	if (max_read) {
		init_max_read = (unsigned)max_read;
		ops.init = init_with_max_read;
	}
	return fuse_session_new(args, &ops, sizeof(ops), fs);
}

/* FUSE's loop over @m's session, on the threads asked for: what it
 * returned, or -ENOMEM when it could not start. */
static int session_loop(struct mount *m)
{
	if (m->cmd.singlethread)
		return fuse_session_loop(m->se);
#if FUSE_USE_VERSION >= 312
	struct fuse_loop_config *lc = fuse_loop_cfg_create();
	int ret;

	if (!lc)
		return -ENOMEM;
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

int session_run(struct mount *m)
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
