/* The inode table: one node per path the kernel has seen, found by inode
 * number or by parent and identity, with the kernel's lookup count. Nodes
 * live as long as the mount, so an inode number never changes meaning. */
#ifndef AVALAFS_TREE_H
#define AVALAFS_TREE_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 35
#endif
#include <fuse_lowlevel.h>
#include <stdint.h>

#include "catalog.h"

enum node_type {
	NODE_ROOT,
	NODE_OWNER, /* ident: owner directory name */
	NODE_DATASET, /* ident: slug directory name */
	NODE_LIST, /* items/ or sequences/ */
	NODE_OBJECT, /* an item or sequence directory; ident: its uid */
	NODE_VIEWS, /* a sequence's views/ */
	NODE_METADATA, /* metadata.json */
	NODE_STATUS,
	NODE_DATA, /* data<.ext> or featured_image<.ext> */
	NODE_THUMB, /* thumbnail<.ext> */
	NODE_VIEW, /* views/<name>; ident: the file name */
};

struct node {
	fuse_ino_t ino;
	struct node *parent;
	enum node_type type;
	enum item_kind kind; /* NODE_LIST and below */
	struct dataset *ds; /* NODE_DATASET and below */
	const char *uid; /* NODE_OBJECT and below: the object's uid */
	char *ident;
	uint64_t nlookup; /* protected by tree->lock */
	char *hkey; /* parent ino + ident, the child index key */
	size_t hkey_len;
	UT_hash_handle hh_ino;
	UT_hash_handle hh_child;
};

struct tree;

/* An empty table with the root node; NULL on ENOMEM. */
struct tree *tree_new(void);

/* Accepts NULL. */
void tree_free(struct tree *t);

/* The node of @ino, or NULL. */
struct node *tree_get(struct tree *t, fuse_ino_t ino);

/* The child of @parent with @ident, created with @type on first use. It
 * inherits ds (unless @ds is given), kind and uid; a "sequences" list is of
 * sequences. NULL on ENOMEM. */
struct node *tree_child(struct tree *t, struct node *parent,
			enum node_type type, const char *ident,
			struct dataset *ds);

/* The kernel learned of @n once more (a lookup or readdirplus entry). */
void tree_ref(struct tree *t, struct node *n);

/* The kernel forgot @count lookups of @ino. */
void tree_forget(struct tree *t, fuse_ino_t ino, uint64_t count);

#endif
