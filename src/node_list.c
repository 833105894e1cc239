/* items/ and sequences/: one folder per object, named by its key (DESIGN
 * section 3), in the store's directories of the current listing. */
#include "node.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static enum item_kind list_kind(const struct node *dir);

static uint64_t list_dir(const struct node *dir)
{
	return list_kind(dir) == ITEM_KIND_ITEM ? STORE_DIR_ITEMS
						: STORE_DIR_SEQUENCES;
}

static void object_node(struct node_env *env, const struct node *dir,
			const struct store_entry *e, struct node *c,
			struct stat *st)
{
	node_make(c, &node_object_ops, dir->ds,
		  node_object_id(list_kind(dir), e->oid));
	if (st)
		node_stat(env, c, e->has_mtime ? &e->mtime : NULL, st);
}

static int list_lookup(struct node_env *env, const struct node *dir,
		       const char *name, struct node *child, struct stat *st,
		       bool fetch)
{
	enum item_kind kind = list_kind(dir);
	struct catalog_pin pin;
	struct store_entry e;
	int err = node_dir_lookup(env, dir, kind, list_dir(dir), name, NULL, &e,
				  &pin);

	if (!err)
		object_node(env, dir, &e, child, st);
	catalog_unpin(env->cat, dir->ds, kind, &pin);
	return err;
}

struct list_fill {
	struct node_env *env;
	const struct node *dir;
	bool plus;
	node_fill_fn fill;
	void *ctx;
};

static int list_entry(void *p, const struct store_entry *e)
{
	struct list_fill *lf = p;
	char name[NAMES_MAX + 1];
	struct node c;
	struct stat st;

	if (e->name_len > NAMES_MAX)
		return 0;
	memcpy(name, e->name, e->name_len);
	name[e->name_len] = '\0';
	object_node(lf->env, lf->dir, e, &c, lf->plus ? &st : NULL);
	if (!lf->plus)
		node_stat_bare(&c, &st);
	return lf->fill(lf->ctx, name, &c, &st, e->pos);
}

static int list_readdir(struct node_env *env, const struct node *dir,
			void **state, uint64_t after, bool plus,
			node_fill_fn fill, void *ctx)
{
	struct list_fill lf = {
		.env = env,
		.dir = dir,
		.plus = plus,
		.fill = fill,
		.ctx = ctx,
	};
	struct store_filter names = { .names = true };
	int err = node_dir_pin(env, dir, list_kind(dir), state);

	if (!err)
		err = node_dir_entries(env, dir, *state, list_dir(dir),
				       plus ? NULL : &names, after, list_entry,
				       &lf);
	return err;
}

static void items_shows(struct node_env *env, struct dataset *ds,
			enum item_kind kind, uint64_t sdir,
			void (*fn)(void *ctx, uint64_t id), void *ctx)
{
	if (kind == ITEM_KIND_ITEM && sdir == STORE_DIR_ITEMS)
		fn(ctx, 0);
}

static void sequences_shows(struct node_env *env, struct dataset *ds,
			    enum item_kind kind, uint64_t sdir,
			    void (*fn)(void *ctx, uint64_t id), void *ctx)
{
	if (kind == ITEM_KIND_SEQUENCE && sdir == STORE_DIR_SEQUENCES)
		fn(ctx, 0);
}

static int list_getattr(struct node_env *env, const struct node *n,
			struct stat *st)
{
	node_stat(env, n, NULL, st);
	return 0;
}

struct node_ops node_items_ops = {
	.name = "items",
	.dataset_dir = "items",
	.dir = true,
	.lookup = list_lookup,
	.readdir = list_readdir,
	.dir_release = node_dir_unpin,
	.getattr = list_getattr,
	.shows = items_shows,
};

struct node_ops node_sequences_ops = {
	.name = "sequences",
	.dataset_dir = "sequences",
	.dir = true,
	.lookup = list_lookup,
	.readdir = list_readdir,
	.dir_release = node_dir_unpin,
	.getattr = list_getattr,
	.shows = sequences_shows,
};

static enum item_kind list_kind(const struct node *dir)
{
	return dir->ops == &node_sequences_ops ? ITEM_KIND_SEQUENCE
					       : ITEM_KIND_ITEM;
}
