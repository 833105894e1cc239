/* The key-path views: each item's file at its key's path (DESIGN section 2,
 * "Views of a dataset"), over the tree the store keeps for the items. A
 * view is a filter on that tree (the files an object must have, and a
 * status) and the kind of node its files are, so that files/x.jpg and
 * items/x.jpg/data.jpg are one inode. This file holds what the views share,
 * and files/. */
#include "fs.h"
#include "view.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define READDIR_BATCH 256

static uint64_t folder_dir(const struct node *n)
{
	uint64_t dir = n->id & VIEW_PATH_DIR_MASK;

	return dir ? dir : STORE_DIR_PATHS;
}

static int folder_status(const struct node *n)
{
	return (int)(n->id >> VIEW_PATH_STATUS_SHIFT);
}

static struct store_filter filter_of(const struct path_view *pv,
				     const struct node *dir)
{
	struct store_filter f = { pv->has, folder_status(dir) };

	return f;
}

/* The child node of @dir for store entry @e, with its attributes when @st
 * is not NULL. */
static int entry_child(struct fs *fs, const struct path_view *pv,
		       const struct node *dir, const struct store_entry *e,
		       struct node *c, struct stat *st)
{
	if (e->child) {
		view_make(c, pv->dir, dir->ds,
			  (uint64_t)folder_status(dir)
					  << VIEW_PATH_STATUS_SHIFT |
				  e->child);
		if (st)
			view_stat(fs, c, NULL, st);
		return 0;
	}
	if (catalog_gone(fs->cat, dir->ds, ITEM_KIND_ITEM, e->oid))
		return -ENOENT;
	view_make(c, pv->file, dir->ds, view_object_id(ITEM_KIND_ITEM, e->oid));
	return st ? view_object_file_stat(fs, c, e, st) : 0;
}

int view_path_lookup(struct fs *fs, const struct path_view *pv,
		     const struct node *dir, const char *name,
		     struct node *child, struct stat *st)
{
	struct store_filter filter = filter_of(pv, dir);
	struct store_entry e;
	uint64_t gen;
	int err = catalog_pin(fs->cat, dir->ds, ITEM_KIND_ITEM, &gen);

	if (err)
		return err;
	err = store_lookup(dataset_store(dir->ds), gen, folder_dir(dir), name,
			   &filter, &e);
	catalog_unpin(fs->cat, dir->ds, ITEM_KIND_ITEM, gen);
	if (!err)
		err = entry_child(fs, pv, dir, &e, child, st);
	return err;
}

/* A batch of entries, copied out of the store so that attributes (which
 * may need a request) are made with no store connection held. */
struct batch {
	struct store_entry *v;
	char **names;
	size_t n;
};

static int batch_add(void *p, const struct store_entry *e)
{
	struct batch *b = p;
	char *name = strndup(e->name, e->name_len);

	if (!name)
		return -ENOMEM;
	b->names[b->n] = name;
	b->v[b->n] = *e;
	b->v[b->n].name = name;
	b->n++;
	return 0;
}

static void batch_clear(struct batch *b)
{
	while (b->n > 0)
		free(b->names[--b->n]);
}

/* Ask for the sizes the batch lacks all at once, so that the requests go
 * out in parallel and the entries then wait only for their own. */
static void prefetch_sizes(struct fs *fs, const struct path_view *pv,
			   const struct node *dir, const struct batch *b)
{
	enum stream_file which = pv->file == &view_thumb_ops ? STREAM_THUMB
							     : STREAM_DATA;
	size_t i;

	for (i = 0; i < b->n; i++) {
		const struct store_entry *e = &b->v[i];
		struct item *it;

		if (e->child ||
		    (which == STREAM_DATA ? e->size : e->thumb_size) >= 0)
			continue;
		if (view_object(fs, dir->ds, ITEM_KIND_ITEM, e->oid, &it))
			continue;
		stream_size_prefetch(fs->stream, dir->ds, it, which);
		item_unref(it);
	}
}

int view_path_readdir(struct fs *fs, const struct path_view *pv,
		      const struct node *dir, const char *after, bool plus,
		      view_fill_fn fill, void *ctx)
{
	struct store_filter filter = filter_of(pv, dir);
	struct store_entry v[READDIR_BATCH];
	char *names[READDIR_BATCH], *last = strdup(after);
	struct batch b = { v, names, 0 };
	bool full = false;
	size_t i;
	int err = 0;

	while (!err && !full && last) {
		uint64_t gen;

		err = catalog_pin(fs->cat, dir->ds, ITEM_KIND_ITEM, &gen);
		if (err)
			break;
		err = store_readdir(dataset_store(dir->ds), gen,
				    folder_dir(dir), last, &filter,
				    READDIR_BATCH, batch_add, &b);
		catalog_unpin(fs->cat, dir->ds, ITEM_KIND_ITEM, gen);
		if (plus && !err)
			prefetch_sizes(fs, pv, dir, &b);
		for (i = 0; i < b.n && !err && !full; i++) {
			struct node c;
			struct stat st;

			err = entry_child(fs, pv, dir, &b.v[i], &c,
					  plus ? &st : NULL);
			if (err == -ENOENT) {
				err = 0;
				continue;
			}
			if (err)
				break;
			if (!plus) {
				memset(&st, 0, sizeof(st));
				st.st_ino = c.ino;
				st.st_mode = c.ops->dir ? S_IFDIR : S_IFREG;
			}
			full = fill(ctx, b.names[i], &c, &st) != 0;
		}
		free(last);
		last = b.n == READDIR_BATCH ? strdup(b.names[b.n - 1]) : NULL;
		if (b.n < READDIR_BATCH)
			full = true; /* the end */
		batch_clear(&b);
	}
	free(last);
	return err;
}

int view_path_getattr(struct fs *fs, const struct node *n, struct stat *st)
{
	view_stat(fs, n, NULL, st);
	return 0;
}

/* ---- files/: each item's data file ---- */

extern struct node_ops view_files_ops;

static const struct path_view files_view = {
	.dir = &view_files_ops,
	.file = &view_data_ops,
	.has = STORE_HAS_DATA,
};

static int files_lookup(struct fs *fs, const struct node *dir, const char *name,
			struct node *child, struct stat *st)
{
	return view_path_lookup(fs, &files_view, dir, name, child, st);
}

static int files_readdir(struct fs *fs, const struct node *dir,
			 const char *after, bool plus, view_fill_fn fill,
			 void *ctx)
{
	return view_path_readdir(fs, &files_view, dir, after, plus, fill, ctx);
}

struct node_ops view_files_ops = {
	.name = "files",
	.dataset_dir = "files",
	.dir = true,
	.lookup = files_lookup,
	.readdir = files_readdir,
	.getattr = view_path_getattr,
};
