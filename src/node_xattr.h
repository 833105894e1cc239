/* Extended attributes of nodes: an object's folder and its files in every
 * view carry its fields (user.avala.uid, .key, .status, .dataset,
 * .created_at, .updated_at, .annotations_count: those it has); a
 * dataset's folder the listing it shows (user.avalafs.listing), the root
 * the mount's counters (user.avalafs.hitrate, ...). */
#ifndef AVALAFS_NODE_XATTR_H
#define AVALAFS_NODE_XATTR_H

#include "node.h"

#define NODE_XATTR_MAX 10
#define NODE_XATTR_NAME 48

struct node_xattr {
	char name[NODE_XATTR_NAME];
	char *value; /* not NUL-terminated for the caller: len bytes */
	size_t len;
};

struct node_xattrs {
	struct node_xattr a[NODE_XATTR_MAX];
	int n;
};

/* The attributes of @n in @x (none for most folders): 0 or
 * a negative errno. Clear @x after. */
int node_xattrs_of(struct node_env *env, const struct node *n,
		   struct node_xattrs *x);

/* The attribute @name of @x, or NULL. */
const struct node_xattr *node_xattr_find(const struct node_xattrs *x,
					 const char *name);

/* The names of @x, each NUL-terminated, into @buf of @cap bytes (when it
 * fits; @buf may be NULL): the bytes they take. */
size_t node_xattr_names(const struct node_xattrs *x, char *buf, size_t cap);

void node_xattrs_clear(struct node_xattrs *x);

#endif
