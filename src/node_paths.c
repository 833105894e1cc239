/* The key-path views: each item's file at its key's path (DESIGN section 2,
 * "Views of a dataset"), over the tree the store keeps for the items. A
 * view is a filter on that tree (the files an object must have, and a
 * status) and the kind of node its files are, so that files/x.jpg and
 * items/x.jpg/data.jpg are one inode. This file holds what the views share,
 * and files/. */
#include "objects.h"
#include "node.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t folder_dir(const struct node *n)
{
	uint64_t dir = n->id & PATH_VIEW_DIR_MASK;

	return dir ? dir : STORE_DIR_PATHS;
}

static int folder_status(const struct node *n)
{
	return (int)(n->id >> PATH_VIEW_STATUS_SHIFT);
}

static struct store_filter filter_of(const struct path_view *pv,
				     const struct node *dir)
{
	struct store_filter f = { .has = pv->has,
				  .status = folder_status(dir) };

	return f;
}

/* The child node of @dir for store entry @e, with its attributes when @st
 * is not NULL (asking for a size no one knows when @fetch, else -EAGAIN). */
static int entry_child(struct node_env *env, const struct path_view *pv,
		       const struct node *dir, const struct store_entry *e,
		       struct node *c, struct stat *st, bool fetch)
{
	if (e->child) {
		node_make(c, pv->dir, dir->ds,
			  (uint64_t)folder_status(dir)
					  << PATH_VIEW_STATUS_SHIFT |
				  e->child);
		if (st)
			node_stat(env, c, NULL, st);
		return 0;
	}
	node_make(c, pv->file, dir->ds, node_object_id(ITEM_KIND_ITEM, e->oid));
	return st ? node_object_file_stat(env, c, e, st, fetch) : 0;
}

/* Where the sizes of a folder's files were last asked for ahead: a
 * reader that stats them one by one (ls -l, du) finds each one's request
 * already out, up to max_conns at once. Only a walk is probed ahead: a
 * lookup of one file costs that file, whatever its neighbours. */
struct size_window {
	size_t ds;
	uint64_t id; /* the folder's node id */
	const struct node_ops *kind;
	uint64_t first, last; /* positions asked for */
	uint64_t seen; /* the last position looked up */
	unsigned run; /* lookups in a row, each just after the one before */
};

#define WALK_MIN 3 /* lookups in listing order that make a walk */
#define WALK_STEP 8 /* how far after the last one the next may be */

#define WINDOWS 16
#define NO_WINDOW UINT64_MAX

struct size_windows {
	pthread_mutex_t lock;
	struct size_window v[WINDOWS]; /* protected by lock */
	unsigned next; /* protected by lock: the one to reuse */
};

struct size_windows *path_view_size_windows_new(void)
{
	struct size_windows *w = calloc(1, sizeof(*w));

	if (w)
		pthread_mutex_init(&w->lock, NULL);
	return w;
}

void path_view_size_windows_free(struct size_windows *w)
{
	if (w) {
		pthread_mutex_destroy(&w->lock);
		free(w);
	}
}

/* @dir's window, or NULL. Called with w->lock held. */
static struct size_window *window_find(struct size_windows *w,
				       const struct node *dir)
{
	unsigned i;

	for (i = 0; i < WINDOWS; i++) {
		if (w->v[i].kind == dir->ops && w->v[i].id == dir->id &&
		    w->v[i].ds == dataset_index(dir->ds))
			return &w->v[i];
	}
	return NULL;
}

/* Where the sizes of the files of @dir from position @pos on must be asked
 * for: NO_WINDOW when they were asked for already and more than @ahead of
 * them are still ahead of @pos, else the position after which to ask (the
 * window moves on while half of it is still ahead, so that sizes keep
 * coming at max_conns at once). */
static uint64_t window_from(struct size_windows *w, const struct node *dir,
			    uint64_t pos, uint64_t ahead)
{
	struct size_window *slot;
	uint64_t from = pos - 1;

	pthread_mutex_lock(&w->lock);
	slot = window_find(w, dir);
	if (slot && pos >= slot->first && pos <= slot->last)
		from = slot->last - pos >= ahead ? NO_WINDOW : slot->last;
	pthread_mutex_unlock(&w->lock);
	return from;
}

/* Note a lookup of the file at @pos of @dir: whether it continues a walk
 * in listing order (each lookup a little after the one before), as ls -l,
 * du and a reader of the folder in order make. */
static bool walk_seen(struct size_windows *w, const struct node *dir,
		      uint64_t pos)
{
	struct size_window *slot;
	bool walk;

	pthread_mutex_lock(&w->lock);
	slot = window_find(w, dir);
	if (!slot) {
		slot = &w->v[w->next++ % WINDOWS];
		slot->kind = dir->ops;
		slot->id = dir->id;
		slot->ds = dataset_index(dir->ds);
		slot->first = slot->last = 0;
		slot->run = 0;
		slot->seen = pos;
	}
	if (pos > slot->seen && pos <= slot->seen + WALK_STEP)
		slot->run++;
	else if (pos != slot->seen)
		slot->run = 0;
	slot->seen = pos;
	walk = slot->run + 1 >= WALK_MIN;
	pthread_mutex_unlock(&w->lock);
	return walk;
}

/* Note that the sizes of @dir's files from @first to @last were asked
 * for. */
static void window_note(struct size_windows *w, const struct node *dir,
			uint64_t first, uint64_t last)
{
	struct size_window *slot;

	pthread_mutex_lock(&w->lock);
	slot = window_find(w, dir);
	if (!slot) {
		slot = &w->v[w->next++ % WINDOWS];
		slot->kind = dir->ops;
		slot->id = dir->id;
		slot->ds = dataset_index(dir->ds);
		slot->first = first;
		slot->seen = first - 1;
		slot->run = 0;
	} else if (first > slot->last + 1 || first < slot->first) {
		slot->first = first; /* not a window that moves on */
	}
	slot->last = last;
	pthread_mutex_unlock(&w->lock);
}

/* The objects of a window whose sizes no one knows. */
struct window {
	enum node_which which;
	uint64_t *oids;
	size_t n, max;
	uint64_t last;
};

static int window_add(void *p, const struct store_entry *e)
{
	struct window *w = p;

	w->last = e->pos;
	if (!e->child &&
	    (w->which == NODE_DATA ? e->size : e->thumb_size) < 0 &&
	    w->n < w->max)
		w->oids[w->n++] = e->oid;
	return 0;
}

/* Note the files of @dir from position @pos on (2 x max_conns of them)
 * whose sizes no one knows, unless that was done already, in @w: the
 * caller asks for them once it holds no pin. */
static void size_window(struct node_env *env, const struct path_view *pv,
			const struct node *dir, uint64_t gen, uint64_t pos,
			struct window *w)
{
	struct store_filter filter = filter_of(pv, dir);
	size_t want = 2 * (env->max_background ? env->max_background : 16);

	uint64_t from;

	w->which = pv->file == &node_thumb_ops ? NODE_THUMB : NODE_DATA;
	from = window_from(env->size_windows, dir, pos, want / 2);
	if (from == NO_WINDOW)
		return;
	w->oids = calloc(want, sizeof(*w->oids));
	w->max = w->oids ? want : 0;
	if (w->oids &&
	    store_readdir(dataset_store(dir->ds), gen, folder_dir(dir), from,
			  &filter, want, window_add, w) == 0 &&
	    w->last)
		window_note(env->size_windows, dir, from + 1, w->last);
}

/* Ask for the sizes of a window's objects, all at once. */
static void window_prefetch(struct node_env *env, const struct node *dir,
			    struct window *w)
{
	size_t i;

	for (i = 0; i < w->n; i++) {
		struct fetch_src *src;
		struct item *it;

		if (objects_get(env->objects, env->op, dir->ds, ITEM_KIND_ITEM,
				w->oids[i], &it))
			continue;
		if (node_data_src(env, dir->ds, it, w->which, &src) == 0) {
			stream_size_prefetch(env->stream, src);
			fetch_src_unref(src);
		}
		item_unref(it);
	}
	free(w->oids);
}

int path_view_lookup(struct node_env *env, const struct path_view *pv,
		     const struct node *dir, const char *name,
		     struct node *child, struct stat *st, bool fetch)
{
	struct store_filter filter = filter_of(pv, dir);
	struct window w = { 0 };
	struct catalog_pin pin;
	struct store_entry e;
	int err = node_dir_lookup(env, dir, ITEM_KIND_ITEM, folder_dir(dir),
				  name, &filter, &e, &pin);

	/* sizes ahead only for a walk, and never with prefetch=0 */
	if (!err && fetch && st && !e.child &&
	    (pv->file == &node_thumb_ops ? e.thumb_size : e.size) < 0 &&
	    walk_seen(env->size_windows, dir, e.pos) && env->prefetch)
		size_window(env, pv, dir, pin.gen, e.pos, &w);
	catalog_unpin(env->cat, dir->ds, ITEM_KIND_ITEM, &pin);
	window_prefetch(env, dir, &w);
	if (!err)
		err = entry_child(env, pv, dir, &e, child, st, fetch);
	return err;
}

struct path_fill {
	struct node_env *env;
	const struct path_view *pv;
	const struct node *dir;
	bool plus;
	node_fill_fn fill;
	void *ctx;
};

static int path_entry(void *p, const struct store_entry *e)
{
	struct path_fill *pf = p;
	char name[NAMES_MAX + 1];
	struct node c;
	struct stat st;
	int err;

	if (e->name_len > NAMES_MAX)
		return 0;
	memcpy(name, e->name, e->name_len);
	name[e->name_len] = '\0';
	/* no request: a size no one knows goes without attributes */
	err = entry_child(pf->env, pf->pv, pf->dir, e, &c,
			  pf->plus ? &st : NULL, false);
	if (err && err != -EAGAIN)
		return 0; /* no attributes to show */
	if (!pf->plus)
		node_stat_bare(&c, &st);
	return pf->fill(pf->ctx, name, &c, err ? NULL : &st, e->pos);
}

int path_view_readdir(struct node_env *env, const struct path_view *pv,
		      const struct node *dir, void **state, uint64_t after,
		      bool plus, node_fill_fn fill, void *ctx)
{
	struct store_filter filter = filter_of(pv, dir);
	struct path_fill pf = { env, pv, dir, plus, fill, ctx };
	int err = node_dir_pin(env, dir, ITEM_KIND_ITEM, state);

	filter.names = !plus;

	if (!err)
		err = node_dir_entries(env, dir, *state, folder_dir(dir),
				       &filter, after, path_entry, &pf);
	return err;
}

void path_view_shows(struct node_env *env, struct dataset *ds,
		     enum item_kind kind, uint64_t sdir,
		     void (*fn)(void *ctx, uint64_t id), void *ctx)
{
	if (kind == ITEM_KIND_ITEM && sdir >= STORE_DIR_PATHS)
		fn(ctx, sdir == STORE_DIR_PATHS ? 0 : sdir);
}

int path_view_getattr(struct node_env *env, const struct node *n,
		      struct stat *st)
{
	node_stat(env, n, NULL, st);
	return 0;
}

/* ---- files/: each item's data file ---- */

extern struct node_ops node_files_ops;

static const struct path_view files_view = {
	.dir = &node_files_ops,
	.file = &node_data_ops,
	.has = STORE_HAS_DATA,
};

static int files_lookup(struct node_env *env, const struct node *dir,
			const char *name, struct node *child, struct stat *st,
			bool fetch)
{
	return path_view_lookup(env, &files_view, dir, name, child, st, fetch);
}

static int files_readdir(struct node_env *env, const struct node *dir,
			 void **state, uint64_t after, bool plus,
			 node_fill_fn fill, void *ctx)
{
	return path_view_readdir(env, &files_view, dir, state, after, plus,
				 fill, ctx);
}

struct node_ops node_files_ops = {
	.name = "files",
	.dataset_dir = "files",
	.dir = true,
	.lookup = files_lookup,
	.readdir = files_readdir,
	.dir_release = node_dir_unpin,
	.getattr = path_view_getattr,
	.shows = path_view_shows,
};
