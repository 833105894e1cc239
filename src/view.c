/* The table of node kinds, inode numbers, and what the kinds share. */
#include "view.h"
#include "fs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Kinds that only this table names. */
extern struct node_ops view_items_ops, view_sequences_ops;
extern struct node_ops view_metadata_ops, view_status_ops, view_views_ops;
extern struct node_ops view_view_ops;
extern struct node_ops view_files_ops, view_thumbnails_ops;
extern struct node_ops view_by_status_ops, view_status_dir_ops;

/* Every kind; the root first, so that inode 1 is the root. */
static struct node_ops *const kinds[] = {
	&view_root_ops,	      &view_owner_ops,	    &view_dataset_ops,
	&view_items_ops,      &view_sequences_ops,  &view_object_ops,
	&view_metadata_ops,   &view_status_ops,	    &view_data_ops,
	&view_thumb_ops,      &view_views_ops,	    &view_view_ops,
	&view_files_ops,      &view_thumbnails_ops, &view_by_status_ops,
	&view_status_dir_ops,
};

#define N_KINDS (sizeof(kinds) / sizeof(kinds[0]))
_Static_assert(N_KINDS <= 64, "a kind is 6 bits of an inode number");

void view_init(void)
{
	size_t i;

	for (i = 0; i < N_KINDS; i++)
		kinds[i]->kind = i;
}

const struct node_ops *view_kind(unsigned kind)
{
	return kind < N_KINDS ? kinds[kind] : NULL;
}

void view_make(struct node *n, const struct node_ops *ops, struct dataset *ds,
	       uint64_t id)
{
	uint64_t dsi = ds ? dataset_index(ds) : 0;

	n->ops = ops;
	n->ds = ds;
	n->id = id & VIEW_ID_MASK;
	n->ino = (uint64_t)ops->kind << VIEW_KIND_SHIFT | dsi << VIEW_DS_SHIFT |
		 n->id;
	if (ops == &view_root_ops)
		n->ino = FUSE_ROOT_ID;
}

int view_node(struct fs *fs, fuse_ino_t ino, struct node *n)
{
	uint64_t kind = ino >> VIEW_KIND_SHIFT;
	uint64_t dsi = (ino >> VIEW_DS_SHIFT) & VIEW_DS_MAX;

	if (ino == FUSE_ROOT_ID) {
		view_make(n, &view_root_ops, NULL, 0);
		return 0;
	}
	if (kind == 0 || kind >= N_KINDS)
		return -ENOENT;
	n->ops = kinds[kind];
	n->ds = NULL;
	if (n->ops != &view_owner_ops) {
		n->ds = catalog_dataset_at(fs->cat, dsi);
		if (!n->ds)
			return -ENOENT;
	}
	n->id = ino & VIEW_ID_MASK;
	n->ino = ino;
	return 0;
}

void view_stat(struct fs *fs, const struct node *n,
	       const struct timespec *mtime, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_atim = st->st_mtim = st->st_ctim = mtime ? *mtime : fs->mounted;
	st->st_blksize = 65536;
	if (n->ops->dir) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
	}
}

void view_stat_size(struct stat *st, int64_t size)
{
	st->st_size = size;
	st->st_blocks = (size + 511) / 512;
}

int view_fill_sorted(struct fs *fs, const struct node *dir,
		     const char *const *names, size_t n, const char *after,
		     bool plus, view_child_fn child, view_fill_fn fill,
		     void *ctx)
{
	size_t i;
	int err;

	for (i = 0; i < n; i++) {
		struct node c;
		struct stat st;

		if (strcmp(names[i], after) <= 0)
			continue;
		err = child(fs, dir, names[i], &c, plus ? &st : NULL, false);
		if (err == -ENOENT)
			continue; /* gone meanwhile */
		if (err && err != -EAGAIN)
			return err;
		if (!plus) {
			memset(&st, 0, sizeof(st));
			st.st_ino = c.ino;
			st.st_mode = c.ops->dir ? S_IFDIR : S_IFREG;
		}
		if (fill(ctx, names[i], &c, err ? NULL : &st))
			return 0;
	}
	return 0;
}
