/* Finding, making and removing the cache folder. */
#include "cachedir.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Make @path and its missing parents; the ones made are 0700. */
static int make_dirs(const char *path)
{
	char *copy = strdup(path), *p;
	int err = 0;

	if (!copy)
		return -ENOMEM;
	for (p = copy + 1; !err; p++) {
		bool last = *p == '\0';

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (mkdir(copy, 0700) != 0 && errno != EEXIST)
			err = -errno;
		if (last)
			break;
		*p = '/';
	}
	free(copy);
	return err;
}

/* Make the folder @root/@sub, 0700 even when it was there, and check that
 * files can be made in it. Returns it (a new string) or NULL with errno. */
static char *sub_dir(const char *root, const char *sub)
{
	char *dir, *probe;
	int fd, err;

	if (asprintf(&dir, "%s/%s", root, sub) < 0)
		return NULL;
	err = make_dirs(dir);
	if (!err && chmod(dir, 0700) != 0 && errno != EPERM)
		err = -errno;
	if (!err && asprintf(&probe, "%s/.probe-%d", dir, (int)getpid()) >= 0) {
		fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd < 0)
			err = -errno;
		else
			close(fd);
		unlink(probe);
		free(probe);
	}
	if (err) {
		free(dir);
		errno = -err;
		return NULL;
	}
	return dir;
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

static char *temporary_root(void)
{
	const char *tmp = getenv("TMPDIR");
	char *dir;

	if (asprintf(&dir, "%s/avalafs-XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0)
		return NULL;
	if (!mkdtemp(dir)) {
		free(dir);
		return NULL;
	}
	return dir;
}

int cachedir_open(struct cachedir *cd, const char *opt)
{
	memset(cd, 0, sizeof(*cd));
	if (!opt || strcmp(opt, "none") != 0) {
		cd->root = opt ? strdup(opt) : default_root();
		if (cd->root && cd->root[0] != '/') {
			fprintf(stderr,
				"avalafs: cache_dir=%s: not an absolute "
				"path, using a temporary one\n",
				cd->root);
		} else if (cd->root) {
			cd->listings = sub_dir(cd->root, "listings");
			if (cd->listings)
				return 0;
			fprintf(stderr,
				"avalafs: cannot use %s (%s): using a "
				"temporary cache folder\n",
				cd->root, strerror(errno));
		}
		free(cd->root);
		cd->root = NULL;
	}
	cd->temporary = true;
	cd->root = temporary_root();
	cd->listings = cd->root ? sub_dir(cd->root, "listings") : NULL;
	if (!cd->listings) {
		int err = errno ? -errno : -ENOMEM;

		fprintf(stderr,
			"avalafs: cannot make a temporary cache folder: "
			"%s\n",
			strerror(-err));
		cachedir_close(cd);
		return err;
	}
	return 0;
}

/* Remove @path and what it holds. */
static void remove_tree(const char *path)
{
	struct dirent *de;
	DIR *d = opendir(path);

	while (d && (de = readdir(d))) {
		char *child;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (asprintf(&child, "%s/%s", path, de->d_name) < 0)
			continue;
		if (de->d_type == DT_DIR)
			remove_tree(child);
		else
			unlink(child);
		free(child);
	}
	if (d)
		closedir(d);
	rmdir(path);
}

void cachedir_close(struct cachedir *cd)
{
	if (cd->temporary && cd->root)
		remove_tree(cd->root);
	free(cd->root);
	free(cd->listings);
	memset(cd, 0, sizeof(*cd));
}
