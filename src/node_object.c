/* An item's or sequence's folder and its files: metadata.json, status,
 * the data file (a sequence's featured image) and the thumbnail (both in
 * node_data.c), and a sequence's views/. */
#include "api.h"
#include "log.h"
#include "objects.h"
#include "render.h"
#include "node.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VIEW_INDEX_BITS 8 /* a view file's id: its sequence << 8 | index */

extern struct node_ops node_metadata_ops, node_status_ops, node_views_ops;
extern struct node_ops node_view_ops;

/* ---- the folder ---- */

/* One file of an object's folder. */
struct object_file {
	const struct node_ops *ops;
	char name[NAMES_MAX + 1];
};

/* The files @it shows, sorted by name. Returns how many. */
static size_t object_files(const struct item *it, struct object_file *v)
{
	size_t n = 0, i, j;

	v[n].ops = &node_metadata_ops;
	snprintf(v[n++].name, sizeof(v->name), "metadata.json");
	if (it->status) {
		v[n].ops = &node_status_ops;
		snprintf(v[n++].name, sizeof(v->name), "status");
	}
	if (it->data_url) {
		v[n].ops = &node_data_ops;
		snprintf(v[n++].name, sizeof(v->name), "%s%s",
			 it->kind == ITEM_KIND_ITEM ? "data" : "featured_image",
			 it->data_ext);
	}
	if (it->thumb_url) {
		v[n].ops = &node_thumb_ops;
		snprintf(v[n++].name, sizeof(v->name), "thumbnail%s",
			 it->thumb_ext);
	}
	if (it->n_views) {
		v[n].ops = &node_views_ops;
		snprintf(v[n++].name, sizeof(v->name), "views");
	}
	for (i = 1; i < n; i++) {
		for (j = i; j > 0 && strcmp(v[j - 1].name, v[j].name) > 0;
		     j--) {
			struct object_file t = v[j];

			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	}
	return n;
}

#define OBJECT_FILES 5

static int object_item(struct node_env *env, const struct node *n,
		       struct item **it)
{
	return objects_get(env->objects, env->op, n->ds, node_id_kind(n->id),
			   node_id_oid(n->id), it);
}

static int object_child(struct node_env *env, const struct node *dir,
			const char *name, struct node *c, struct stat *st,
			bool fetch)
{
	struct object_file files[OBJECT_FILES];
	struct item *it;
	size_t n, i;
	int err = object_item(env, dir, &it);

	if (err)
		return err;
	n = object_files(it, files);
	err = -ENOENT;
	for (i = 0; i < n; i++) {
		if (strcmp(files[i].name, name) == 0) {
			node_make(c, files[i].ops, dir->ds, dir->id);
			if (!st)
				err = 0;
			else if (!fetch && c->ops->peek)
				err = c->ops->peek(env, c, st);
			else
				err = c->ops->getattr(env, c, st);
			break;
		}
	}
	item_unref(it);
	return err;
}

static int object_readdir(struct node_env *env, const struct node *dir,
			  void **state, uint64_t after, bool plus,
			  node_fill_fn fill, void *ctx)
{
	struct object_file files[OBJECT_FILES];
	const char *names[OBJECT_FILES];
	struct item *it;
	size_t n, i;
	int err = object_item(env, dir, &it);

	if (err)
		return err;
	n = object_files(it, files);
	for (i = 0; i < n; i++)
		names[i] = files[i].name;
	err = node_fill_sorted(env, dir, names, n, after, plus, object_child,
			       fill, ctx);
	item_unref(it);
	return err;
}

/* The object's time for its folder and streamed files, else the mount's. */
static int object_stat(struct node_env *env, const struct node *n,
		       struct stat *st)
{
	struct item *it;
	int err = object_item(env, n, &it);

	if (err)
		return err;
	node_stat(env, n, it->has_mtime ? &it->mtime : NULL, st);
	item_unref(it);
	return 0;
}

struct node_ops node_object_ops = {
	.object_id = true,
	.name = "object",
	.dir = true,
	.lookup = object_child,
	.readdir = object_readdir,
	.getattr = object_stat,
};

/* ---- generated files: metadata.json, status, views/<view>.json ---- */

struct text_file {
	struct node_file vf;
	struct item *it;
	enum render_file which;
	const char *view_name; /* in it */
};

static void text_release_read(struct node_read *r, bool sent)
{
	free(r->one.iov_base);
}

static int text_read(struct node_env *env, struct node_file *f, size_t size,
		     off_t off, struct node_read *r)
{
	struct text_file *tf = (struct text_file *)f;
	char *buf = malloc(size ? size : 1);
	ssize_t got;

	if (!buf)
		return -ENOMEM;
	got = render_read(tf->it, tf->which, tf->view_name, buf, size, off);
	if (got < 0) {
		free(buf);
		return (int)got;
	}
	r->one.iov_base = buf;
	r->one.iov_len = got;
	r->iov = &r->one;
	r->n = 1;
	r->release = text_release_read;
	return 0;
}

static void text_release(struct node_env *env, struct node_file *f)
{
	struct text_file *tf = (struct text_file *)f;

	item_unref(tf->it);
	free(tf);
}

static const struct node_file_ops text_file_ops = {
	.read = text_read,
	.release = text_release,
};

/* The item and, for a view file, its view, of a generated file node. */
static int text_target(struct node_env *env, const struct node *n,
		       struct item **it, enum render_file *which,
		       const char **view_name)
{
	uint64_t id = n->id;
	int err;

	*view_name = NULL;
	if (n->ops == &node_view_ops)
		id = (n->id >> VIEW_INDEX_BITS) | NODE_SEQUENCE_BIT;
	err = objects_get(env->objects, env->op, n->ds, node_id_kind(id),
			  node_id_oid(id), it);
	if (err)
		return err;
	if (n->ops == &node_metadata_ops) {
		*which = RENDER_METADATA;
	} else if (n->ops == &node_status_ops) {
		*which = RENDER_STATUS;
	} else {
		size_t index = n->id & ((1u << VIEW_INDEX_BITS) - 1);

		*which = RENDER_VIEW;
		if (index >= (*it)->n_views) {
			item_unref(*it);
			return -ENOENT;
		}
		*view_name = (*it)->views[index].name;
	}
	return 0;
}

static int text_getattr(struct node_env *env, const struct node *n,
			struct stat *st)
{
	enum render_file which;
	const char *view_name;
	struct item *it;
	off_t size;
	int err = text_target(env, n, &it, &which, &view_name);

	if (err)
		return err;
	size = render_size(it, which, view_name);
	item_unref(it);
	if (size < 0)
		return (int)size;
	/* their text changes without updated_at (fresh URLs, a new status):
	 * the mount's time */
	node_stat(env, n, NULL, st);
	node_stat_size(st, size);
	return 0;
}

static int text_open(struct node_env *env, const struct node *n, int flags,
		     struct node_file **out, bool *keep_cache)
{
	struct text_file *tf = calloc(1, sizeof(*tf));
	int err;

	if (!tf)
		return -ENOMEM;
	err = text_target(env, n, &tf->it, &tf->which, &tf->view_name);
	if (err) {
		free(tf);
		return err;
	}
	tf->vf.ops = &text_file_ops;
	*out = &tf->vf;
	*keep_cache = false;
	return 0;
}

struct node_ops node_metadata_ops = {
	.object_id = true,
	.name = "metadata.json",
	.getattr = text_getattr,
	.open = text_open,
};

struct node_ops node_status_ops = {
	.object_id = true,
	.name = "status",
	.getattr = text_getattr,
	.open = text_open,
};

struct node_ops node_view_ops = {
	.name = "view",
	.getattr = text_getattr,
	.open = text_open,
};

/* ---- views/ ---- */

static int views_child(struct node_env *env, const struct node *dir,
		       const char *name, struct node *c, struct stat *st,
		       bool fetch)
{
	struct item *it;
	size_t i;
	int err = object_item(env, dir, &it);

	if (err)
		return err;
	err = -ENOENT;
	for (i = 0; i < it->n_views && i < (1u << VIEW_INDEX_BITS); i++) {
		if (strcmp(it->views[i].name, name) == 0) {
			node_make(c, &node_view_ops, dir->ds,
				  node_id_oid(dir->id) << VIEW_INDEX_BITS | i);
			err = st ? text_getattr(env, c, st) : 0;
			break;
		}
	}
	item_unref(it);
	return err;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int views_readdir(struct node_env *env, const struct node *dir,
			 void **state, uint64_t after, bool plus,
			 node_fill_fn fill, void *ctx)
{
	const char **names;
	struct item *it;
	size_t i, n;
	int err = object_item(env, dir, &it);

	if (err)
		return err;
	n = it->n_views < (1u << VIEW_INDEX_BITS) ? it->n_views
						  : (1u << VIEW_INDEX_BITS);
	names = calloc(n ? n : 1, sizeof(*names));
	if (!names) {
		item_unref(it);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++)
		names[i] = it->views[i].name;
	qsort(names, n, sizeof(*names), cmp_str);
	err = node_fill_sorted(env, dir, names, n, after, plus, views_child,
			       fill, ctx);
	free(names);
	item_unref(it);
	return err;
}

struct node_ops node_views_ops = {
	.object_id = true,
	.name = "views",
	.dir = true,
	.lookup = views_child,
	.readdir = views_readdir,
	.getattr = object_stat,
};
