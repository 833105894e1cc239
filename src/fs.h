/* The FUSE adapter of avalafs: one reply per request, file and directory
 * handles, lookup counts; what each node is and does comes from node.h. */
#ifndef AVALAFS_FS_H
#define AVALAFS_FS_H

#include <pthread.h>
#include <sys/types.h>
#include <time.h>

#include "catalog.h"
#include "stream.h"
#include "tree.h"
#include "node.h"

struct fs;

/* An open file or directory; the list lets an unmount with files still
 * open free them (the kernel sends no release then). */
struct fs_handle {
	struct fs_handle *prev, *next; /* protected by fs->handles_lock */
	void (*release)(struct fs *fs, struct fs_handle *h);
};

/* The FUSE operations, as the counters name them. */
enum fs_op {
	FS_OP_LOOKUP,
	FS_OP_FORGET, /* forget and forget_multi */
	FS_OP_GETATTR,
	FS_OP_OPENDIR,
	FS_OP_READDIR,
	FS_OP_READDIRPLUS,
	FS_OP_RELEASEDIR,
	FS_OP_OPEN,
	FS_OP_READ,
	FS_OP_RELEASE,
	FS_OP_STATFS,
	FS_OP_GETXATTR,
	FS_OP_LISTXATTR,
	/* refused: the mount is read-only */
	FS_OP_SETATTR,
	FS_OP_MKNOD,
	FS_OP_MKDIR,
	FS_OP_UNLINK,
	FS_OP_RMDIR,
	FS_OP_SYMLINK,
	FS_OP_RENAME,
	FS_OP_LINK,
	FS_OP_WRITE,
	FS_OP_CREATE,
	FS_OP_SETXATTR,
	FS_OP_REMOVEXATTR,
	FS_OP_FALLOCATE,
	FS_OPS
};

/* Errors are counted by number below this, the rarer ones at 0. */
#define FS_ERRNO_MAX 134

/* The counters of the FUSE requests. */
struct fs_stats {
	uint64_t ops[FS_OPS]; /* requests received */
	uint64_t errors[FS_OPS][FS_ERRNO_MAX]; /* answered with an errno */
	uint64_t in_flight; /* being served now */
};

/* Something the kernel must forget: a name in a directory, or (name NULL)
 * what it holds of an inode. */
struct fs_forget {
	fuse_ino_t ino;
	char *name;
	size_t len;
};

/* A folder listed without attributes past its first entries, and whether
 * its names were looked up since (fs.c, "which listings carry
 * attributes"). */
struct fs_walk {
	fuse_ino_t ino; /* 0: a free slot */
	uint64_t bare; /* entries given without attributes */
	uint64_t lookups; /* of names in it since its last reply */
	bool wants; /* its readers stat what they list */
};

#define FS_WALKS_SHIFT 6
#define FS_WALKS (1 << FS_WALKS_SHIFT)

struct fs {
	struct node_env env; /* what the node kinds reach of the mount */
	struct tree *tree;
	struct fs_stats *stats; /* atomic counters */
	double ttl; /* seconds the kernel may trust entries and attributes */
	bool xattr; /* objects' fields as extended attributes (-o xattr) */
	pthread_mutex_t handles_lock;
	struct fs_handle handles; /* list head */
	pthread_mutex_t forgets_lock;
	struct fs_forget *forgets; /* protected by forgets_lock */
	size_t n_forgets, cap_forgets; /* protected by forgets_lock */
	pthread_mutex_t walks_lock;
	struct fs_walk walks[FS_WALKS]; /* protected by walks_lock */
};

/* Ready @fs's handle list, object cache and counters: 0 or -ENOMEM. */
int fs_init(struct fs *fs);

/* Free the handles still open (after the session ended) and the cache. */
void fs_destroy(struct fs *fs);

/* A copy of the counters of the requests, as they are now. */
void fs_get_stats(struct fs *fs, struct fs_stats *st);

/* The name of @op in counters: "lookup", "read", ... */
const char *fs_op_name(enum fs_op op);

/* What the catalog calls when generation @new of a listing replaced @old
 * (@fs is a struct fs): what the kernel holds of what changed is noted, to
 * be told by fs_send_forgets(). */
void fs_listing_replaced(void *fs, struct dataset *ds, enum item_kind kind,
			 uint64_t old, uint64_t new);

/* Tell the kernel what it must forget; from a thread that serves no
 * request (a notification about an inode in use by the calling request
 * would wait for itself). */
void fs_send_forgets(struct fs *fs, struct fuse_session *se);

/* The operations table; userdata is a struct fs. */
extern const struct fuse_lowlevel_ops fs_ops;

#endif
