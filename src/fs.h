/* The FUSE adapter of avalafs: one reply per request, file and directory
 * handles, lookup counts; what each node is and does comes from view.h. */
#ifndef AVALAFS_FS_H
#define AVALAFS_FS_H

#include <pthread.h>
#include <sys/types.h>
#include <time.h>

#include "catalog.h"
#include "stream.h"
#include "tree.h"
#include "view.h"

/* An open file or directory; the list lets an unmount with files still
 * open free them (the kernel sends no release then). */
struct fs_handle {
	struct fs_handle *prev, *next; /* protected by fs->handles_lock */
	void (*release)(struct fs *fs, struct fs_handle *h);
};

struct object_cache;
struct size_windows;

struct fs {
	struct tree *tree;
	struct catalog *cat;
	struct stream *stream;
	struct object_cache *objects; /* recently used objects, parsed */
	struct size_windows *size_windows; /* sizes asked for ahead */
	double ttl; /* seconds the kernel may trust entries and attributes */
	unsigned max_background; /* requests the kernel may have in flight */
	uid_t uid;
	gid_t gid;
	struct timespec mounted; /* times of nodes without an object's */
	pthread_mutex_t handles_lock;
	struct fs_handle handles; /* list head */
};

/* Ready @fs's handle list and object cache: 0 or -ENOMEM. */
int fs_init(struct fs *fs);

/* Free the handles still open (after the session ended) and the cache. */
void fs_destroy(struct fs *fs);

/* The operations table; userdata is a struct fs. */
extern const struct fuse_lowlevel_ops fs_ops;

#endif
