/* The folder of what avalafs keeps on disk (DESIGN section 6): the one
 * cache_dir= names, else the user's cache folder, else a temporary one that
 * is removed at exit. */
#ifndef AVALAFS_CACHEDIR_H
#define AVALAFS_CACHEDIR_H

#include <stdbool.h>

struct cachedir {
	char *root; /* the cache folder */
	char *listings; /* root/listings: the listing stores */
	bool temporary; /* made for this mount: removed at exit */
};

/* Find or make the cache folder: @opt as cache_dir= gives it ("none": a
 * temporary one), NULL for the default ($XDG_CACHE_HOME/avalafs, else
 * ~/.cache/avalafs; /var/cache/avalafs for root). Folders are made 0700. A
 * folder that cannot be written is said once on stderr and a temporary one
 * is used instead. Returns 0, or -errno when not even that can be made. */
int cachedir_open(struct cachedir *cd, const char *opt);

/* Remove a temporary folder and everything in it, and free @cd's strings. */
void cachedir_close(struct cachedir *cd);

#endif
