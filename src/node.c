/* The table of node kinds, inode numbers, and what the kinds share. */
#include "node.h"
#include "objects.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Kinds that only this table names. */
extern struct node_ops node_items_ops, node_sequences_ops;
extern struct node_ops node_metadata_ops, node_status_ops, node_views_ops;
extern struct node_ops node_view_ops;
extern struct node_ops node_files_ops, node_thumbnails_ops;
extern struct node_ops node_by_status_ops, node_status_dir_ops;

/* Every kind; the root first, so that inode 1 is the root. */
static struct node_ops *const kinds[] = {
	&node_root_ops,	      &node_owner_ops,	    &node_dataset_ops,
	&node_items_ops,      &node_sequences_ops,  &node_object_ops,
	&node_metadata_ops,   &node_status_ops,	    &node_data_ops,
	&node_thumb_ops,      &node_views_ops,	    &node_view_ops,
	&node_files_ops,      &node_thumbnails_ops, &node_by_status_ops,
	&node_status_dir_ops,
};

#define N_KINDS (sizeof(kinds) / sizeof(kinds[0]))
_Static_assert(N_KINDS <= 64, "a kind is 6 bits of an inode number");

void node_init(void)
{
	size_t i;

	for (i = 0; i < N_KINDS; i++)
		kinds[i]->kind = i;
}

const struct node_ops *node_kind(unsigned kind)
{
	return kind < N_KINDS ? kinds[kind] : NULL;
}

struct forget_dir {
	struct node_env *env;
	struct dataset *ds;
	const struct node_ops *ops;
	const struct store_change *c;
	node_forget_fn fn;
	void *ctx;
};

static void forget_in(void *p, uint64_t id)
{
	struct forget_dir *f = p;
	struct node n;

	node_make(&n, f->ops, f->ds, id);
	f->fn(f->ctx, n.ino, f->c->name, f->c->name_len);
}

void node_changes(struct node_env *env, struct dataset *ds, enum item_kind kind,
		  const struct store_change *c, node_forget_fn fn, void *ctx)
{
	struct forget_dir f = { env, ds, NULL, c, fn, ctx };
	size_t k;

	for (k = 0; k < N_KINDS; k++) {
		const struct node_ops *ops = kinds[k];

		/* the name, wherever a folder shows the store's directory */
		if (c->name && ops->shows) {
			f.ops = ops;
			ops->shows(env, ds, kind, c->dir, forget_in, &f);
		}
		/* the object's own nodes, whose attributes changed */
		if (c->object && ops->object_id) {
			struct node n;

			node_make(&n, ops, ds, node_object_id(kind, c->oid));
			fn(ctx, n.ino, NULL, 0);
		}
	}
}

void node_make(struct node *n, const struct node_ops *ops, struct dataset *ds,
	       uint64_t id)
{
	uint64_t dsi = ds ? dataset_index(ds) : 0;

	n->ops = ops;
	n->ds = ds;
	n->id = id & NODE_ID_MASK;
	n->ino = (uint64_t)ops->kind << NODE_KIND_SHIFT | dsi << NODE_DS_SHIFT |
		 n->id;
	if (ops == &node_root_ops)
		n->ino = FUSE_ROOT_ID;
}

int node_of(struct node_env *env, fuse_ino_t ino, struct node *n)
{
	uint64_t kind = ino >> NODE_KIND_SHIFT;
	uint64_t dsi = (ino >> NODE_DS_SHIFT) & NODE_DS_MAX;

	if (ino == FUSE_ROOT_ID) {
		node_make(n, &node_root_ops, NULL, 0);
		return 0;
	}
	if (kind == 0 || kind >= N_KINDS)
		return -ENOENT;
	n->ops = kinds[kind];
	n->ds = NULL;
	if (n->ops != &node_owner_ops) {
		n->ds = catalog_dataset_at(env->cat, dsi);
		if (!n->ds)
			return -ENOENT;
	}
	n->id = ino & NODE_ID_MASK;
	n->ino = ino;
	return 0;
}

void node_stat(struct node_env *env, const struct node *n,
	       const struct timespec *mtime, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_uid = env->uid;
	st->st_gid = env->gid;
	st->st_atim = st->st_mtim = st->st_ctim = mtime ? *mtime : env->mounted;
	st->st_blksize = 65536;
	if (n->ops->dir) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
	}
}

void node_stat_bare(const struct node *n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_mode = n->ops->dir ? S_IFDIR : S_IFREG;
}

void node_stat_size(struct stat *st, int64_t size)
{
	st->st_size = size;
	st->st_blocks = (size + 511) / 512;
}

int node_fill_sorted(struct node_env *env, const struct node *dir,
		     const char *const *names, size_t n, uint64_t after,
		     bool plus, node_child_fn child, node_fill_fn fill,
		     void *ctx)
{
	size_t i;
	int err;

	for (i = after; i < n; i++) {
		struct node c;
		struct stat st;

		err = child(env, dir, names[i], &c, plus ? &st : NULL, false);
		if (err == -ENOENT)
			continue; /* gone meanwhile */
		if (err && err != -EAGAIN)
			return err;
		if (!plus)
			node_stat_bare(&c, &st);
		if (fill(ctx, names[i], &c, err ? NULL : &st, i + 1))
			return 0;
	}
	return 0;
}

int node_dir_pin(struct node_env *env, const struct node *dir,
		 enum item_kind kind, void **state)
{
	struct node_dir_pin *dp;
	int err;

	if (*state)
		return 0;
	dp = calloc(1, sizeof(*dp));
	if (!dp)
		return -ENOMEM;
	dp->kind = kind;
	err = catalog_pin(env->cat, dir->ds, kind, &dp->pin);
	if (err) {
		free(dp);
		return err;
	}
	*state = dp;
	return 0;
}

void node_dir_unpin(struct node_env *env, const struct node *dir, void *state)
{
	struct node_dir_pin *dp = state;

	if (!dp)
		return;
	catalog_unpin(env->cat, dir->ds, dp->kind, &dp->pin);
	free(dp);
}

#define DIR_BATCH 256

/* Counts what store_readdir() hands on, and where it got to. */
struct counted {
	struct node_env *env;
	const struct node *dir;
	enum item_kind kind;
	int (*entry)(void *ctx, const struct store_entry *e);
	void *ctx;
	size_t rows;
	uint64_t last;
	bool full;
};

static int count_entry(void *p, const struct store_entry *e)
{
	struct counted *c = p;

	c->rows++;
	c->last = e->pos;
	if (objects_gone(c->env->objects, c->dir->ds, c->kind, e->oid))
		return 0;
	if (c->entry(c->ctx, e)) {
		c->full = true;
		return 1;
	}
	return 0;
}

int node_dir_entries(struct node_env *env, const struct node *dir, void *state,
		     uint64_t sdir, const struct store_filter *filter,
		     uint64_t after,
		     int (*entry)(void *ctx, const struct store_entry *e),
		     void *ctx)
{
	struct node_dir_pin *dp = state;
	int64_t deadline = util_now_ms() + env->wait_ms;
	struct counted c = { env, dir, dp->kind, entry, ctx, 0, after, false };
	size_t given = 0;
	int err;

	for (;;) {
		c.rows = 0;
		err = store_readdir(dataset_store(dir->ds), dp->pin.gen, sdir,
				    c.last, filter, DIR_BATCH, count_entry, &c);
		given += c.rows;
		if (err < 0 || c.full)
			return err < 0 ? err : 0;
		if (c.rows == DIR_BATCH)
			continue;
		/* the end of what is there: a first listing brings more */
		if (!dp->pin.partial)
			return 0;
		err = catalog_wait(env->cat, dir->ds, dp->kind, &dp->pin,
				   deadline);
		if (err < 0)
			return given ? 0 : -EIO;
	}
}

int node_dir_lookup(struct node_env *env, const struct node *dir,
		    enum item_kind kind, uint64_t sdir, const char *name,
		    const struct store_filter *filter, struct store_entry *e,
		    struct catalog_pin *pin)
{
	int64_t deadline = util_now_ms() + env->wait_ms;
	int err = catalog_pin(env->cat, dir->ds, kind, pin);

	while (!err) {
		err = store_lookup(dataset_store(dir->ds), pin->gen, sdir, name,
				   filter, e);
		if (err != -ENOENT || !pin->partial)
			break;
		/* not there yet: it may be on a page still to come */
		err = catalog_wait(env->cat, dir->ds, kind, pin, deadline);
		if (err > 0)
			err = 0;
	}
	if (!err && objects_gone(env->objects, dir->ds, kind, e->oid))
		err = -ENOENT;
	return err;
}
