/* The kernel's lookup counts: how many times the kernel was told of each
 * inode it has not forgotten. An inode number names its node by itself
 * (node.h), so an entry lives only while its count is above zero. */
#ifndef AVALAFS_TREE_H
#define AVALAFS_TREE_H

#include <stddef.h>
#include <stdint.h>

struct tree;

/* An empty table but for the root, which the kernel holds from the mount
 * on; NULL on ENOMEM. */
struct tree *tree_new(void);

/* Accepts NULL. */
void tree_free(struct tree *t);

/* The kernel learned of @ino once more (a lookup or readdirplus entry).
 * 0 or -ENOMEM. */
int tree_ref(struct tree *t, uint64_t ino);

/* The kernel forgot @count lookups of @ino; the entry goes at zero. */
void tree_forget(struct tree *t, uint64_t ino, uint64_t count);

/* How many inodes the kernel holds now. */
size_t tree_count(struct tree *t);

#endif
