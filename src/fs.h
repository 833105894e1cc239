/* The FUSE low-level operations of avalafs: the tree of DESIGN section 2
 * over the catalog, the inode table and the data reader. */
#ifndef AVALAFS_FS_H
#define AVALAFS_FS_H

#include <pthread.h>
#include <sys/types.h>

#include "catalog.h"
#include "stream.h"
#include "tree.h"

/* An open file or directory; the list lets an unmount with files still
 * open free them (the kernel sends no release then). */
struct fs_handle {
	struct fs_handle *prev, *next; /* protected by fs->handles_lock */
	void (*release)(struct fs_handle *h);
};

struct fs {
	struct tree *tree;
	struct catalog *cat;
	struct stream *stream;
	double ttl; /* seconds the kernel may trust entries and attributes */
	unsigned max_background; /* requests the kernel may have in flight */
	uid_t uid;
	gid_t gid;
	struct timespec mounted; /* times of every node */
	pthread_mutex_t handles_lock;
	struct fs_handle handles; /* list head */
};

/* Ready the handle list of @fs. */
void fs_handles_init(struct fs *fs);

/* Free the handles still open (after the session ended). */
void fs_handles_release(struct fs *fs);

/* The operations table; userdata is a struct fs. */
extern const struct fuse_lowlevel_ops fs_ops;

#endif
