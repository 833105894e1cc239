/* items/ and sequences/: one folder per object, named by its key (DESIGN
 * section 3), in the store's directories of the current listing. */
#include "fs.h"
#include "view.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static enum item_kind list_kind(const struct node *dir);

static void object_node(struct fs *fs, const struct node *dir,
			const struct store_entry *e, struct node *c,
			struct stat *st)
{
	view_make(c, &view_object_ops, dir->ds,
		  view_object_id(list_kind(dir), e->oid));
	view_stat(fs, c, e->has_mtime ? &e->mtime : NULL, st);
}

static int list_lookup(struct fs *fs, const struct node *dir, const char *name,
		       struct node *child, struct stat *st, bool fetch)
{
	enum item_kind kind = list_kind(dir);
	struct store_entry e;
	uint64_t gen;
	int err = catalog_pin(fs->cat, dir->ds, kind, &gen);

	if (err)
		return err;
	err = store_lookup(dataset_store(dir->ds), gen,
			   kind == ITEM_KIND_ITEM ? STORE_DIR_ITEMS
						  : STORE_DIR_SEQUENCES,
			   name, NULL, &e);
	if (!err && catalog_gone(fs->cat, dir->ds, kind, e.oid))
		err = -ENOENT;
	if (!err)
		object_node(fs, dir, &e, child, st);
	catalog_unpin(fs->cat, dir->ds, kind, gen);
	return err;
}

struct list_fill {
	struct fs *fs;
	const struct node *dir;
	bool plus;
	view_fill_fn fill;
	void *ctx;
	char last[NAMES_MAX + 1]; /* the name last handed on */
	size_t given;
	bool full;
};

static int list_entry(void *p, const struct store_entry *e)
{
	struct list_fill *lf = p;
	struct node c;
	struct stat st;

	if (e->name_len > NAMES_MAX)
		return 0;
	memcpy(lf->last, e->name, e->name_len);
	lf->last[e->name_len] = '\0';
	lf->given++;
	if (catalog_gone(lf->fs->cat, lf->dir->ds, list_kind(lf->dir), e->oid))
		return 0;
	object_node(lf->fs, lf->dir, e, &c, &st);
	if (lf->fill(lf->ctx, lf->last, &c, &st)) {
		lf->full = true;
		return 1;
	}
	return 0;
}

#define READDIR_BATCH 256

static int list_readdir(struct fs *fs, const struct node *dir,
			const char *after, bool plus, view_fill_fn fill,
			void *ctx)
{
	enum item_kind kind = list_kind(dir);
	struct list_fill lf = {
		.fs = fs,
		.dir = dir,
		.plus = plus,
		.fill = fill,
		.ctx = ctx,
	};
	uint64_t gen;
	int err = catalog_pin(fs->cat, dir->ds, kind, &gen);

	if (err)
		return err;
	snprintf(lf.last, sizeof(lf.last), "%s", after);
	do {
		lf.given = 0;
		err = store_readdir(dataset_store(dir->ds), gen,
				    kind == ITEM_KIND_ITEM
					    ? STORE_DIR_ITEMS
					    : STORE_DIR_SEQUENCES,
				    lf.last, NULL, READDIR_BATCH, list_entry,
				    &lf);
	} while (err == 0 && !lf.full && lf.given == READDIR_BATCH);
	catalog_unpin(fs->cat, dir->ds, kind, gen);
	return err < 0 ? err : 0;
}

static int list_getattr(struct fs *fs, const struct node *n, struct stat *st)
{
	view_stat(fs, n, NULL, st);
	return 0;
}

struct node_ops view_items_ops = {
	.name = "items",
	.dataset_dir = "items",
	.dir = true,
	.lookup = list_lookup,
	.readdir = list_readdir,
	.getattr = list_getattr,
};

struct node_ops view_sequences_ops = {
	.name = "sequences",
	.dataset_dir = "sequences",
	.dir = true,
	.lookup = list_lookup,
	.readdir = list_readdir,
	.getattr = list_getattr,
};

static enum item_kind list_kind(const struct node *dir)
{
	return dir->ops == &view_sequences_ops ? ITEM_KIND_SEQUENCE
					       : ITEM_KIND_ITEM;
}
