/* The key-path views: each item's file at its key's path (DESIGN section 2,
 * "Views of a dataset"), over the tree the store keeps for the items. A
 * view is a filter on that tree (the files an object must have, and a
 * status) and the kind of node its files are, so that files/x.jpg and
 * items/x.jpg/data.jpg are one inode. This file holds what the views share,
 * and files/. */
#include "fs.h"
#include "view.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
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
 * is not NULL (asking for a size no one knows when @fetch, else -EAGAIN). */
static int entry_child(struct fs *fs, const struct path_view *pv,
		       const struct node *dir, const struct store_entry *e,
		       struct node *c, struct stat *st, bool fetch)
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
	return st ? view_object_file_stat(fs, c, e, st, fetch) : 0;
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

/* Where the sizes of a folder's files were last asked for ahead: a
 * reader that stats them one by one (ls -l) finds each one's request
 * already out, up to max_conns at once. */
struct size_window {
	size_t ds;
	uint64_t id; /* the folder's node id */
	const struct node_ops *kind;
	char last[NAMES_MAX + 1]; /* asked for up to here */
};

#define WINDOWS 16

struct size_windows {
	pthread_mutex_t lock;
	struct size_window v[WINDOWS]; /* protected by lock */
	unsigned next; /* protected by lock: the one to reuse */
};

struct size_windows *view_size_windows_new(void)
{
	struct size_windows *w = calloc(1, sizeof(*w));

	if (w)
		pthread_mutex_init(&w->lock, NULL);
	return w;
}

void view_size_windows_free(struct size_windows *w)
{
	if (w) {
		pthread_mutex_destroy(&w->lock);
		free(w);
	}
}

/* Whether the sizes of the files of @dir after @name were asked for
 * already; if not, note that they are now, up to @last. */
static bool window_covers(struct size_windows *w, const struct node *dir,
			  const char *name, const char *last)
{
	struct size_window *slot = NULL;
	bool covered = false;
	unsigned i;

	pthread_mutex_lock(&w->lock);
	for (i = 0; i < WINDOWS && !slot; i++) {
		if (w->v[i].kind == dir->ops && w->v[i].id == dir->id &&
		    w->v[i].ds == dataset_index(dir->ds))
			slot = &w->v[i];
	}
	if (slot && strcmp(name, slot->last) < 0) {
		covered = true;
	} else if (last) {
		if (!slot) {
			slot = &w->v[w->next++ % WINDOWS];
			slot->kind = dir->ops;
			slot->id = dir->id;
			slot->ds = dataset_index(dir->ds);
		}
		snprintf(slot->last, sizeof(slot->last), "%s", last);
	}
	pthread_mutex_unlock(&w->lock);
	return covered;
}

struct window_fill {
	struct batch *b;
	size_t max;
};

/* Ask, all at once, for the sizes no one knows of the files of @dir from
 * @name on (2 x max_conns of them), unless that was done already. */
static void size_window(struct fs *fs, const struct path_view *pv,
			const struct node *dir, uint64_t gen, const char *name)
{
	enum stream_file which = pv->file == &view_thumb_ops ? STREAM_THUMB
							     : STREAM_DATA;
	struct store_filter filter = filter_of(pv, dir);
	size_t want = 2 * (fs->max_background ? fs->max_background : 16), i;
	struct store_entry *v;
	char **names;
	struct batch b;

	if (window_covers(fs->size_windows, dir, name, NULL))
		return;
	v = calloc(want, sizeof(*v));
	names = calloc(want, sizeof(*names));
	b = (struct batch){ v, names, 0 };
	if (v && names &&
	    store_readdir(dataset_store(dir->ds), gen, folder_dir(dir), name,
			  &filter, want, batch_add, &b) == 0 &&
	    b.n > 0) {
		window_covers(fs->size_windows, dir, name, b.names[b.n - 1]);
		for (i = 0; i < b.n; i++) {
			struct item *it;

			if (b.v[i].child ||
			    (which == STREAM_DATA ? b.v[i].size
						  : b.v[i].thumb_size) >= 0 ||
			    view_object(fs, dir->ds, ITEM_KIND_ITEM, b.v[i].oid,
					&it))
				continue;
			stream_size_prefetch(fs->stream, dir->ds, it, which);
			item_unref(it);
		}
	}
	batch_clear(&b);
	free(names);
	free(v);
}

int view_path_lookup(struct fs *fs, const struct path_view *pv,
		     const struct node *dir, const char *name,
		     struct node *child, struct stat *st, bool fetch)
{
	struct store_filter filter = filter_of(pv, dir);
	struct store_entry e;
	uint64_t gen;
	int err = catalog_pin(fs->cat, dir->ds, ITEM_KIND_ITEM, &gen);

	if (err)
		return err;
	err = store_lookup(dataset_store(dir->ds), gen, folder_dir(dir), name,
			   &filter, &e);
	if (!err && fetch && st && !e.child &&
	    (pv->file == &view_thumb_ops ? e.thumb_size : e.size) < 0)
		size_window(fs, pv, dir, gen, name);
	catalog_unpin(fs->cat, dir->ds, ITEM_KIND_ITEM, gen);
	if (!err)
		err = entry_child(fs, pv, dir, &e, child, st, fetch);
	return err;
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
		for (i = 0; i < b.n && !err && !full; i++) {
			struct node c;
			struct stat st;

			err = entry_child(fs, pv, dir, &b.v[i], &c,
					  plus ? &st : NULL, false);
			if (err == -ENOENT) {
				err = 0;
				continue;
			}
			if (err && err != -EAGAIN)
				break;
			if (!plus) {
				memset(&st, 0, sizeof(st));
				st.st_ino = c.ino;
				st.st_mode = c.ops->dir ? S_IFDIR : S_IFREG;
			}
			full = fill(ctx, b.names[i], &c, err ? NULL : &st) != 0;
			err = 0;
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
			struct node *child, struct stat *st, bool fetch)
{
	return view_path_lookup(fs, &files_view, dir, name, child, st, fetch);
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
