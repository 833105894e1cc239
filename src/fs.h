/* The FUSE low-level operations of avalafs: the tree of DESIGN section 2
 * over the catalog, the inode table and the data reader. */
#ifndef AVALAFS_FS_H
#define AVALAFS_FS_H

#include <sys/types.h>

#include "catalog.h"
#include "stream.h"
#include "tree.h"

struct fs {
	struct tree *tree;
	struct catalog *cat;
	struct stream *stream;
	double ttl; /* seconds the kernel may trust entries and attributes */
	uid_t uid;
	gid_t gid;
	struct timespec mounted; /* times of every node */
};

/* The operations table; userdata is a struct fs. */
extern const struct fuse_lowlevel_ops fs_ops;

#endif
