/* The cache folder: found or made, checked as OpenSSH's StrictModes checks
 * a home folder (the folder the user's, no folder above it writable by
 * others unless sticky), then reached only through descriptors. */
#include "cachedir.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ASIDE_MAX 16 /* folders set aside under one name, at most */

/* The path of an open folder, for messages. */
static const char *fd_path(int fd, char *buf, size_t cap)
{
	char link[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, buf, cap - 1);
	if (n < 0)
		n = snprintf(buf, cap, "(folder %d)", fd) > 0 ? strlen(buf) : 0;
	buf[n] = '\0';
	return buf;
}

/* Move what is at @name in @dir_fd out of the way, following nothing: a
 * folder is renamed NAME.untrusted[N], anything else removed. */
static void set_aside(int dir_fd, const char *name, const struct stat *st)
{
	char aside[NAME_MAX + 1], where[PATH_MAX];
	int i;

	fd_path(dir_fd, where, sizeof(where));
	if (!S_ISDIR(st->st_mode)) {
		if (unlinkat(dir_fd, name, 0) == 0)
			log_err("cache: %s/%s is not a file this user wrote "
				"(uid %u, mode %04o): removed, never read",
				where, name, (unsigned)st->st_uid,
				(unsigned)(st->st_mode & 07777));
		return;
	}
	for (i = 0; i < ASIDE_MAX; i++) {
		if (i)
			snprintf(aside, sizeof(aside), "%.200s.untrusted%d",
				 name, i);
		else
			snprintf(aside, sizeof(aside), "%.200s.untrusted",
				 name);
		if (renameat2(dir_fd, name, dir_fd, aside, RENAME_NOREPLACE) ==
		    0) {
			log_err("cache: %s/%s is not a folder of this user "
				"(uid %u, mode %04o): set aside as %s",
				where, name, (unsigned)st->st_uid,
				(unsigned)(st->st_mode & 07777), aside);
			return;
		}
		if (errno != EEXIST)
			break;
	}
	log_err("cache: %s/%s is not a folder of this user and cannot be set "
		"aside: %s",
		where, name, strerror(errno));
}

bool cachedir_trusted(const struct stat *st)
{
	return S_ISREG(st->st_mode) && st->st_uid == geteuid() &&
	       st->st_nlink == 1 && !(st->st_mode & 077);
}

int cachedir_subdir(int dir_fd, const char *name, bool make)
{
	struct stat st;
	int tries, fd;

	for (tries = 0; tries < 2; tries++) {
		if (make && mkdirat(dir_fd, name, 0700) && errno != EEXIST)
			return -errno;
		fd = openat(dir_fd, name,
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			return -ENOENT;
		if (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) &&
		    st.st_uid == geteuid()) {
			/* what others may have put in while it was open to
			 * them is checked file by file; from now on they
			 * cannot */
			if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700)) {
				int err = -errno;

				close(fd);
				return err;
			}
			return fd;
		}
		if (fd >= 0)
			close(fd);
		if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW))
			return -errno;
		set_aside(dir_fd, name, &st);
	}
	return -EPERM;
}

int cachedir_open_file(int dir_fd, const char *name, int flags)
{
	struct stat st;
	int fd;

	/* O_NONBLOCK: a FIFO planted here is opened at once, not waited on,
	 * then refused below */
	fd = openat(dir_fd, name,
		    flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
		    0600);
	if (fd < 0) {
		int err = -errno;

		/* whatever is there and could not be opened: a link (ELOOP),
		 * a socket or a FIFO without a reader (ENXIO), a folder
		 * (EISDIR), a file of another user (EACCES, or EPERM for
		 * O_NOATIME) goes; one of this user's stays (EMFILE, ...) */
		if (err != -ENOENT && err != -EEXIST &&
		    fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    !cachedir_trusted(&st)) {
			set_aside(dir_fd, name, &st);
			return -ENOENT;
		}
		return err;
	}
	if (fstat(fd, &st) == 0 && cachedir_trusted(&st))
		return fd;
	close(fd);
	set_aside(dir_fd, name, &st);
	return -ENOENT;
}

int cachedir_prepare_db(int dir_fd, const char *name)
{
	static const char *const companions[] = { "-wal", "-shm", "-journal" };
	char other[NAME_MAX + 1];
	size_t i;
	int fd, cfd;

	/* another mount may make it between the two */
	for (i = 0; i < 4; i++) {
		fd = cachedir_open_file(dir_fd, name, O_RDWR);
		if (fd == -ENOENT)
			fd = cachedir_open_file(dir_fd, name,
						O_RDWR | O_CREAT | O_EXCL);
		if (fd != -EEXIST)
			break;
	}
	if (fd < 0)
		return fd;
	for (i = 0; i < sizeof(companions) / sizeof(*companions); i++) {
		snprintf(other, sizeof(other), "%s%s", name, companions[i]);
		cfd = cachedir_open_file(dir_fd, other, O_RDONLY);
		if (cfd >= 0)
			close(cfd);
	}
	return fd;
}

void cachedir_remove(int dir_fd, const char *name)
{
	struct dirent *e;
	DIR *d;
	int fd;

	if (unlinkat(dir_fd, name, 0) == 0 ||
	    (errno != EISDIR && errno != EPERM))
		return;
	fd = openat(dir_fd, name,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			cachedir_remove(dirfd(d), e->d_name);
	}
	closedir(d);
	unlinkat(dir_fd, name, AT_REMOVEDIR);
}

int64_t cachedir_bytes(int dir_fd)
{
	struct dirent *e;
	struct stat st;
	int64_t sum = 0;
	int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((e = readdir(d))) {
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) ==
			    0 &&
		    S_ISREG(st.st_mode))
			sum += (int64_t)st.st_blocks * 512;
	}
	closedir(d);
	return sum;
}

/* ---- the folder itself ---- */

/* Whether a folder above the cache folder keeps others out: root's or
 * this user's, and not writable by others unless sticky (where others
 * cannot rename or remove what is not theirs). */
static bool safe_above(const struct stat *st)
{
	return (st->st_uid == 0 || st->st_uid == geteuid()) &&
	       (!(st->st_mode & 022) || (st->st_mode & S_ISVTX));
}

/* Whether the cache folder itself is this user's alone to change. */
static bool safe_root(const struct stat *st)
{
	return st->st_uid == geteuid() && !(st->st_mode & 022);
}

/* Say why the folder at @path cannot be the cache, and how to fix it. */
static void refuse(const char *root, const char *path, const struct stat *st,
		   bool is_root)
{
	unsigned uid = geteuid();

	if (S_ISLNK(st->st_mode))
		fprintf(stderr,
			"avalafs: cache_dir %s: the link %s is owned by uid %u: "
			"only links of root or uid %u are followed; name the "
			"folder it leads to, or choose another cache_dir=\n",
			root, path, (unsigned)st->st_uid, uid);
	else if (is_root)
		fprintf(stderr,
			"avalafs: cache_dir %s is owned by uid %u with mode "
			"%04o: it must be owned by uid %u and not writable "
			"by group or others, or they could plant what this "
			"mount reads; fix: %s '%s'%s, or choose another "
			"cache_dir=\n",
			root, (unsigned)st->st_uid,
			(unsigned)(st->st_mode & 07777), uid,
			st->st_uid != uid ? "chown $(id -u)" : "chmod go-w",
			root,
			st->st_uid != uid && (st->st_mode & 022)
				? " and chmod go-w it"
				: "");
	else
		fprintf(stderr,
			"avalafs: cache_dir %s: the folder %s above it is "
			"owned by uid %u with mode %04o: anyone who can write "
			"there can replace the cache folder; it must be owned "
			"by root or uid %u and not writable by others unless "
			"sticky (chmod go-w or +t '%s'), or choose another "
			"cache_dir=\n",
			root, path, (unsigned)st->st_uid,
			(unsigned)(st->st_mode & 07777), uid, path);
}

#define LINKS_MAX 40 /* links followed on the way, as the kernel allows */

/* The path being walked: its components still to go, in one buffer. */
struct walk {
	char todo[PATH_MAX]; /* what is left, "a/b/c" */
	char done[PATH_MAX]; /* where the walk is, with no link in it */
	int links;
};

/* Take the next component of @w into @part: 1, or 0 at the end, or a
 * negative errno. */
static int walk_next(struct walk *w, char *part)
{
	char *p = w->todo + strspn(w->todo, "/");
	size_t n = strcspn(p, "/");

	if (!n)
		return 0;
	if (n > NAME_MAX)
		return -ENAMETOOLONG;
	memcpy(part, p, n);
	part[n] = '\0';
	memmove(w->todo, p + n, strlen(p + n) + 1);
	return 1;
}

/* Put link target @target in front of what is left of @w; an absolute one
 * starts the walk again at /. 0 or a negative errno. */
static int walk_splice(struct walk *w, const char *target)
{
	char rest[PATH_MAX];

	if (++w->links > LINKS_MAX)
		return -ELOOP;
	snprintf(rest, sizeof(rest), "%s", w->todo);
	if (snprintf(w->todo, sizeof(w->todo), "%s/%s", target, rest) >=
	    (int)sizeof(w->todo))
		return -ENAMETOOLONG;
	if (target[0] == '/')
		strcpy(w->done, "/");
	return 0;
}

/* Open the cache folder at absolute @path, making what is missing (0700),
 * each folder checked on the way down as it is named: a link is followed
 * only when it and the folder holding it are root's or this user's (a
 * link in a folder others may write to could lead anywhere). The
 * descriptor in @fd and the path with no link in it in @real. Returns 0,
 * -EPERM when a folder is not safe (said on stderr), or another negative
 * errno. */
static int open_root(const char *path, int *fd, char **real)
{
	struct walk *w = calloc(1, sizeof(*w));
	char part[NAME_MAX + 1], target[PATH_MAX];
	struct stat st;
	int cur, next, err = 0, more, parts = 0;
	ssize_t n;

	*fd = -1;
	*real = NULL;
	cur = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (!w || cur < 0) {
		err = -ENOMEM;
		goto out;
	}
	if (snprintf(w->todo, sizeof(w->todo), "%s", path) >=
	    (int)sizeof(w->todo)) {
		err = -ENAMETOOLONG;
		goto out;
	}
	strcpy(w->done, "/");
	if (fstat(cur, &st) || !safe_above(&st)) {
		refuse(path, "/", &st, false);
		err = -EPERM;
		goto out;
	}
	while ((more = walk_next(w, part)) > 0) {
		bool last = !w->todo[strspn(w->todo, "/")];

		if (!strcmp(part, "."))
			continue;
		if (!strcmp(part, "..")) {
			/* the folder above was checked on the way down */
			char *slash = strrchr(w->done, '/');

			next = openat(cur, "..",
				      O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (next < 0) {
				err = -errno;
				goto out;
			}
			close(cur);
			cur = next;
			if (slash)
				*(slash == w->done ? slash + 1 : slash) = '\0';
			continue;
		}
		if (fstatat(cur, part, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISLNK(st.st_mode)) {
			/* the folder holding it passed safe_above() */
			if (st.st_uid != 0 && st.st_uid != geteuid()) {
				refuse(path, part, &st, false);
				err = -EPERM;
				goto out;
			}
			n = readlinkat(cur, part, target, sizeof(target) - 1);
			if (n <= 0) {
				err = n < 0 ? -errno : -ENOENT;
				goto out;
			}
			target[n] = '\0';
			err = walk_splice(w, target);
			if (err)
				goto out;
			if (target[0] == '/') {
				close(cur);
				cur = open("/",
					   O_PATH | O_DIRECTORY | O_CLOEXEC);
				if (cur < 0) {
					err = -errno;
					goto out;
				}
			}
			continue;
		}
		next = openat(cur, part,
			      O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT) {
			if (mkdirat(cur, part, 0700) && errno != EEXIST) {
				err = -errno;
				goto out;
			}
			next = openat(cur, part,
				      O_PATH | O_DIRECTORY | O_NOFOLLOW |
					      O_CLOEXEC);
		}
		if (strlen(w->done) + strlen(part) + 2 > sizeof(w->done)) {
			err = -ENAMETOOLONG;
			goto out;
		}
		if (strcmp(w->done, "/"))
			strcat(w->done, "/");
		strcat(w->done, part);
		if (next < 0) {
			err = -errno;
			/* a link that came between the look and the open */
			if (err == -ELOOP &&
			    fstatat(cur, part, &st, AT_SYMLINK_NOFOLLOW) == 0) {
				refuse(path, w->done, &st, last);
				err = -EPERM;
			}
			goto out;
		}
		close(cur);
		cur = next;
		if (fstat(cur, &st)) {
			err = -errno;
			goto out;
		}
		if (last ? !safe_root(&st) : !safe_above(&st)) {
			refuse(path, w->done, &st, last);
			err = -EPERM;
			goto out;
		}
		parts++;
	}
	if (more < 0 || !parts) {
		err = more < 0 ? more : -EINVAL; /* not "/" */
		goto out;
	}
	/* the folder itself, readable, through the checked descriptor */
	next = openat(cur, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (next < 0) {
		err = -errno;
		goto out;
	}
	*fd = next;
	*real = strdup(w->done);
	if (!*real) {
		close(next);
		*fd = -1;
		err = -ENOMEM;
	}
out:
	if (cur >= 0)
		close(cur);
	free(w);
	return err;
}

static char *default_root(void)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	char *root = NULL;

	if (geteuid() == 0)
		return strdup("/var/cache/avalafs");
	if (xdg && *xdg == '/') {
		if (asprintf(&root, "%s/avalafs", xdg) < 0)
			root = NULL;
	} else if (home && *home == '/') {
		if (asprintf(&root, "%s/.cache/avalafs", home) < 0)
			root = NULL;
	}
	return root;
}

static const char *tmp_base(void)
{
	const char *tmp = getenv("TMPDIR");

	return tmp && *tmp == '/' ? tmp : "/tmp";
}

/* Remove the temporary folders (avalafs-<pid>-XXXXXX) this user's mounts
 * that are gone left behind: a mount killed with -9 removes nothing. */
static void clean_temporaries(void)
{
	char self[64];
	struct dirent *e;
	struct stat st;
	DIR *d = opendir(tmp_base());
	long pid;
	char *end;

	snprintf(self, sizeof(self), "avalafs-%ld-", (long)getpid());
	while (d && (e = readdir(d))) {
		if (strncmp(e->d_name, "avalafs-", 8) != 0)
			continue;
		pid = strtol(e->d_name + 8, &end, 10);
		if (pid <= 0 || *end != '-' || strlen(end) != 7 ||
		    (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISDIR(st.st_mode) || st.st_uid != geteuid())
			continue;
		cachedir_remove(dirfd(d), e->d_name);
	}
	if (d)
		closedir(d);
}

static int open_temporary(struct cachedir *cd)
{
	char *dir;
	int err;

	clean_temporaries();
	if (asprintf(&dir, "%s/avalafs-%ld-XXXXXX", tmp_base(),
		     (long)getpid()) < 0)
		return -ENOMEM;
	if (!mkdtemp(dir)) {
		err = -errno;
		fprintf(stderr,
			"avalafs: cannot make a temporary cache folder in %s: "
			"%s\n",
			tmp_base(), strerror(-err));
		free(dir);
		return err;
	}
	cd->temporary = true;
	err = open_root(dir, &cd->root_fd, &cd->root);
	if (err) {
		rmdir(dir);
		cd->temporary = false;
	}
	free(dir);
	return err;
}

/* The folder cache_dir= names, as an absolute path: a new string, or NULL
 * (said on stderr). */
static char *named_root(const char *opt)
{
	char cwd[PATH_MAX], *root = NULL;

	if (opt[0] == '/')
		return strdup(opt);
	if (opt[0] == '~' || !opt[0]) {
		fprintf(stderr,
			"avalafs: cache_dir=%s: give the folder's full path "
			"(~ is expanded by a shell, not here)\n",
			opt);
		return NULL;
	}
	/* relative to where avalafs was started, which it leaves when it
	 * goes to the background */
	if (!getcwd(cwd, sizeof(cwd)) ||
	    asprintf(&root, "%s/%s", cwd, opt) < 0) {
		fprintf(stderr, "avalafs: cache_dir=%s: %s\n", opt,
			strerror(errno));
		return NULL;
	}
	return root;
}

int cachedir_open(struct cachedir *cd, const char *opt)
{
	char *want;
	int err;

	memset(cd, 0, sizeof(*cd));
	cd->root_fd = cd->listings_fd = -1;
	if (!opt || strcmp(opt, "none") != 0) {
		want = opt ? named_root(opt) : default_root();
		if (!want)
			return opt ? -EINVAL : -ENOMEM;
		err = open_root(want, &cd->root_fd, &cd->root);
		if (!err) {
			cd->listings_fd =
				cachedir_subdir(cd->root_fd, "listings", true);
			err = cd->listings_fd < 0 ? cd->listings_fd : 0;
		}
		if (err == -EPERM) {
			free(want);
			cachedir_close(cd);
			return err;
		}
		if (err)
			fprintf(stderr,
				"avalafs: cannot use %s (%s): using a "
				"temporary cache folder\n",
				want, strerror(-err));
		free(want);
		if (!err)
			goto listings;
		cachedir_close(cd);
		cd->root_fd = cd->listings_fd = -1;
	}
	err = open_temporary(cd);
	if (!err) {
		cd->listings_fd =
			cachedir_subdir(cd->root_fd, "listings", true);
		err = cd->listings_fd < 0 ? cd->listings_fd : 0;
	}
	if (err) {
		fprintf(stderr,
			"avalafs: cannot make a temporary cache folder: "
			"%s\n",
			strerror(-err));
		cachedir_close(cd);
		return err;
	}
listings:
	if (asprintf(&cd->listings, "%s/listings", cd->root) < 0) {
		cd->listings = NULL;
		cachedir_close(cd);
		return -ENOMEM;
	}
	return 0;
}

void cachedir_close(struct cachedir *cd)
{
	if (cd->listings_fd >= 0)
		close(cd->listings_fd);
	if (cd->temporary && cd->root_fd >= 0) {
		char *slash = cd->root ? strrchr(cd->root, '/') : NULL;
		int parent = -1;

		/* by its name in the folder above, reached through the
		 * checked folder itself */
		if (slash)
			parent = openat(cd->root_fd, "..",
					O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (parent >= 0) {
			cachedir_remove(parent, slash + 1);
			close(parent);
		}
	}
	if (cd->root_fd >= 0)
		close(cd->root_fd);
	free(cd->root);
	free(cd->listings);
	memset(cd, 0, sizeof(*cd));
	cd->root_fd = cd->listings_fd = -1;
}
