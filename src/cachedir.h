/* The folder of what avalafs keeps on disk (DESIGN section 6), and the one
 * way into it. The folder must be the mount's user's and not writable by
 * others, nor may any folder above it be (unless sticky): then nobody else
 * can change what is in it, and it is opened once and everything below it
 * reached through directory descriptors. Nothing in it is followed or
 * believed that this user did not write: links, FIFOs, devices, files of
 * others or linked twice are set aside, never opened for reading. */
#ifndef AVALAFS_CACHEDIR_H
#define AVALAFS_CACHEDIR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

struct cachedir {
	char *root; /* the cache folder: a path with no link in it */
	int root_fd;
	char *listings; /* root/listings: the listing stores */
	int listings_fd;
	bool temporary; /* made for this mount: removed at exit */
};

/* Find or make the cache folder: @opt as cache_dir= gives it ("none": a
 * temporary one), NULL for the default ($XDG_CACHE_HOME/avalafs, else
 * ~/.cache/avalafs; /var/cache/avalafs for root). Folders are made 0700.
 * A folder that others could change is refused with one line on stderr
 * that names it, its owner and mode, and the fix (-EPERM); one that cannot
 * be made or written is said once and a temporary one used instead.
 * Returns 0 or a negative errno. */
int cachedir_open(struct cachedir *cd, const char *opt);

/* Remove a temporary folder and everything in it, close and free. */
void cachedir_close(struct cachedir *cd);

/* Folder @name in folder @dir_fd as a new descriptor, made 0700 when
 * missing and @make: a folder of this user, 0700 from now on. Whatever
 * else is there (a link, a file, a folder of another user) is set aside
 * first. Returns the descriptor, -ENOENT when missing and not @make, or
 * another negative errno. */
int cachedir_subdir(int dir_fd, const char *name, bool make);

/* Whether @st, of a file in the cache folder, is one this user wrote: a
 * regular file of the effective user, with one link, that no one else may
 * read or write. */
bool cachedir_trusted(const struct stat *st);

/* Open file @name (a name or "sub/name" below a checked folder) in folder
 * @dir_fd with @flags: O_RDONLY or O_RDWR, with O_CREAT|O_EXCL to make it
 * (0600). It is never followed when a link and never waited on when a FIFO;
 * a file that is not trusted is removed and -ENOENT returned, as for a
 * missing one. Returns the descriptor or a negative errno. */
int cachedir_open_file(int dir_fd, const char *name, int flags);

/* Make database @name in folder @dir_fd ready for SQLite, which opens files
 * by path: made exclusively (0600) when missing; it and its -wal, -shm and
 * -journal are checked as cachedir_open_file() does, and a companion that
 * fails is removed (one of another user, a link: not SQLite's to follow).
 * Returns a descriptor of the database (open read-write) or a negative
 * errno. */
int cachedir_prepare_db(int dir_fd, const char *name);

/* Remove @name and what it holds from folder @dir_fd, following no link. */
void cachedir_remove(int dir_fd, const char *name);

/* The bytes the files of folder @dir_fd take on disk (not below it). */
int64_t cachedir_bytes(int dir_fd);

#endif
