/* Streamed files: an object's data file (a sequence's featured image) and
 * its thumbnail, wherever a view shows them. Each is a source for stream.c:
 * its identity (DESIGN section 6), its URL, and how to get a fresh URL when
 * the presigned one expired. Opens tell stream.c where the file stands in
 * the listing and in its key-path folder, and give it the files that come
 * next when a reader follows either order. */
#include "log.h"
#include "objects.h"
#include "util.h"
#include "node.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An order's number: dataset, file, object kind and store folder. */
#define ORDER_DS_SHIFT 40
#define ORDER_THUMB_BIT (UINT64_C(1) << 39)
#define ORDER_SEQUENCE_BIT (UINT64_C(1) << 38)
#define ORDER_NAME_BIT (UINT64_C(1) << 37) /* a folder's names, sorted */
#define ORDER_DIR_MASK ((UINT64_C(1) << 37) - 1)

static enum node_which which_of(const struct node *n)
{
	return n->ops == &node_thumb_ops ? NODE_THUMB : NODE_DATA;
}

static const char *item_url(const struct item *it, enum node_which which)
{
	return which == NODE_DATA ? it->data_url : it->thumb_url;
}

/* ---- sources ---- */

struct object_src {
	struct fetch_src src;
	struct catalog *cat;
	struct dataset *ds;
	struct item *it; /* a reference */
	enum node_which which;
};

static int src_resolve(struct fetch_src *src, char **url)
{
	struct object_src *os = (struct object_src *)src;
	struct item *fresh;
	const char *u;
	int err = catalog_reresolve(os->cat, os->ds, os->it, &fresh);

	if (err)
		return err;
	u = item_url(fresh, os->which);
	*url = u ? strdup(u) : NULL;
	err = !u ? -ENOENT : !*url ? -ENOMEM : 0;
	item_unref(fresh);
	return err;
}

static void src_gone(struct fetch_src *src)
{
	struct object_src *os = (struct object_src *)src;

	catalog_forget(os->cat, os->ds, os->it->kind, os->it->oid);
}

static void src_free(struct fetch_src *src)
{
	struct object_src *os = (struct object_src *)src;

	item_unref(os->it);
	free(src->id);
	free(src->what);
	free(os);
}

static const struct fetch_src_ops object_src_ops = {
	.resolve = src_resolve,
	.gone = src_gone,
	.free = src_free,
};

int node_data_src(struct node_env *env, struct dataset *ds, struct item *it,
		  enum node_which which, struct fetch_src **out)
{
	const char *url = item_url(it, which);
	struct object_src *os;
	size_t path_len;

	*out = NULL;
	if (!url)
		return -ENOENT;
	os = calloc(1, sizeof(*os));
	if (!os)
		return -ENOMEM;
	/* the identity: the URL without its query, whose signature changes
	 * at every listing while the object does not */
	path_len = strcspn(url, "?#");
	if (asprintf(&os->src.id, "%s\n%s/%s\n%s\n%s\n%s\n%.*s",
		     catalog_origin(env->cat), dataset_owner(ds),
		     dataset_slug(ds),
		     it->kind == ITEM_KIND_ITEM ? "item" : "sequence", it->uid,
		     which == NODE_DATA ? "data" : "thumbnail", (int)path_len,
		     url) < 0 ||
	    asprintf(&os->src.what, "%s/%s/%s %s", dataset_owner(ds),
		     dataset_slug(ds), it->uid,
		     which == NODE_DATA ? "data" : "thumbnail") < 0) {
		free(os->src.id);
		free(os);
		return -ENOMEM;
	}
	os->src.refs = 1;
	os->src.url = (char *)url; /* lives as long as the item */
	os->src.listed = it->version;
	os->src.size = which == NODE_DATA ? it->size : -1;
	os->src.kind = which == NODE_DATA ? FETCH_DATA : FETCH_THUMBNAIL;
	os->src.ops = &object_src_ops;
	os->cat = env->cat;
	os->ds = ds;
	os->it = item_ref(it);
	os->which = which;
	*out = &os->src;
	return 0;
}

/* ---- attributes ---- */

int node_object_file_stat(struct node_env *env, const struct node *n,
			  const struct store_entry *e, struct stat *st,
			  bool fetch)
{
	enum node_which which = which_of(n);
	struct fetch_src *src = NULL;
	struct item *it = NULL;
	int64_t size = -1;
	int err = 0;

	if (e)
		size = which == NODE_DATA ? e->size : e->thumb_size;
	if ((size < 0 && fetch) || !e) {
		err = objects_get(env->objects, env->op, n->ds,
				  node_id_kind(n->id), node_id_oid(n->id), &it);
		if (err)
			return err;
		if (!item_url(it, which)) {
			item_unref(it);
			return -ENOENT;
		}
	}
	if (size < 0 && !fetch) {
		err = -EAGAIN;
	} else if (size < 0) {
		err = node_data_src(env, n->ds, it, which, &src);
		if (!err)
			err = stream_size(env->stream, src, &size);
		fetch_src_unref(src);
		if (!err && it->oid)
			store_learn_size(dataset_store(n->ds), it, which, size,
					 "");
	}
	if (!err) {
		if (e)
			node_stat(env, n, e->has_mtime ? &e->mtime : NULL, st);
		else
			node_stat(env, n, it->has_mtime ? &it->mtime : NULL,
				  st);
		node_stat_size(st, size);
	}
	item_unref(it);
	return err;
}

/* The attributes of @n from the listing's entry of its object. */
static int data_stat(struct node_env *env, const struct node *n,
		     struct stat *st, bool fetch)
{
	struct store_entry e;
	int err = objects_entry(env->objects, env->op, n->ds,
				node_id_kind(n->id), node_id_oid(n->id), &e);

	if (err)
		return err;
	if (!(e.has &
	      (which_of(n) == NODE_DATA ? STORE_HAS_DATA : STORE_HAS_THUMB)))
		return -ENOENT;
	return node_object_file_stat(env, n, &e, st, fetch);
}

static int data_getattr(struct node_env *env, const struct node *n,
			struct stat *st)
{
	return data_stat(env, n, st, true);
}

static int data_peek(struct node_env *env, const struct node *n,
		     struct stat *st)
{
	return data_stat(env, n, st, false);
}

/* ---- orders ---- */

static uint64_t order_of(struct dataset *ds, enum item_kind kind,
			 enum node_which which, uint64_t dir)
{
	return (uint64_t)dataset_index(ds) << ORDER_DS_SHIFT |
	       (which == NODE_THUMB ? ORDER_THUMB_BIT : 0) |
	       (kind == ITEM_KIND_SEQUENCE ? ORDER_SEQUENCE_BIT : 0) |
	       (dir & ORDER_DIR_MASK);
}

/* Where @n's object stands in the listing and in its folder. */
static void node_place(struct node_env *env, const struct node *n,
		       struct stream_place *place)
{
	enum item_kind kind = node_id_kind(n->id);
	enum node_which which = which_of(n);
	struct store_place sp;

	memset(place, 0, sizeof(*place));
	if (objects_place(env->objects, env->op, n->ds, kind,
			  node_id_oid(n->id), &sp))
		return;
	place->in[0].order = order_of(n->ds, kind, which, sp.list);
	place->in[0].pos = sp.list_pos;
	place->in[0].next = sp.list_next;
	if (sp.folder) {
		place->in[1].order = order_of(n->ds, kind, which, sp.folder);
		place->in[1].pos = sp.folder_pos;
		place->in[1].next = sp.folder_next;
	}
	/* and among the folder's names, sorted: how ImageFolder, rsync and
	 * sorted(glob()) walk it, whatever order the listing gave */
	if (sp.folder && sp.folder_rank) {
		place->in[2].order = order_of(n->ds, kind, which, sp.folder) |
				     ORDER_NAME_BIT;
		place->in[2].pos = sp.folder_rank;
		place->in[2].next = sp.folder_rank + 1;
	}
}

/* The objects after a position of an order. */
struct ahead {
	uint64_t *oids, *pos;
	size_t n, max;
};

static int ahead_add_ranked(void *p, uint64_t oid, uint64_t pos)
{
	struct ahead *a = p;

	if (!oid)
		return 0; /* a folder */
	a->oids[a->n] = oid;
	a->pos[a->n++] = pos;
	return a->n == a->max;
}

static int ahead_add(void *p, const struct store_entry *e)
{
	return ahead_add_ranked(p, e->oid, e->pos);
}

static size_t order_ahead(void *ctx, uint64_t order, uint64_t after, size_t n,
			  uint64_t *pos)
{
	struct node_env *env = ctx;
	struct dataset *ds =
		catalog_dataset_at(env->cat, order >> ORDER_DS_SHIFT);
	enum item_kind kind = order & ORDER_SEQUENCE_BIT ? ITEM_KIND_SEQUENCE
							 : ITEM_KIND_ITEM;
	enum node_which which = order & ORDER_THUMB_BIT ? NODE_THUMB
							: NODE_DATA;
	struct ahead a = { .pos = pos, .max = n };
	struct store_filter names = { .names = true };
	struct catalog_pin pin;
	size_t i, given = 0;

	if (!ds || !(a.oids = calloc(n, sizeof(*a.oids))))
		return 0;
	if (catalog_pin(env->cat, ds, kind, &pin) == 0) {
		/* a few more names than files: folders come among them */
		if (order & ORDER_NAME_BIT)
			store_by_name(dataset_store(ds), pin.gen,
				      order & ORDER_DIR_MASK, after, 2 * n,
				      ahead_add_ranked, &a);
		else
			store_readdir(dataset_store(ds), pin.gen,
				      order & ORDER_DIR_MASK, after, &names, n,
				      ahead_add, &a);
		catalog_unpin(env->cat, ds, kind, &pin);
	}
	/* no pin is held while fetching */
	for (i = 0; i < a.n; i++) {
		struct fetch_src *src;
		struct item *it;

		if (objects_get(env->objects, env->op, ds, kind, a.oids[i],
				&it))
			continue;
		if (node_data_src(env, ds, it, which, &src) == 0) {
			stream_prefetch(env->stream, src);
			fetch_src_unref(src);
		}
		item_unref(it);
		pos[given++] = a.pos[i];
	}
	free(a.oids);
	return given;
}

const struct stream_order_ops node_order_ops = {
	.ahead = order_ahead,
};

/* ---- reading ---- */

struct data_file {
	struct node_file vf;
	struct stream_reader *reader;
};

static void data_release_read(struct node_read *r, bool sent)
{
	stream_read_release(r->stream, &r->cv, sent);
}

static int data_read(struct node_env *env, struct node_file *f, size_t size,
		     off_t off, struct node_read *r)
{
	struct data_file *df = (struct data_file *)f;
	int err, count;

	err = stream_read(env->stream, df->reader, size, off, &r->cv);
	if (err)
		return err;
	for (count = 0; count < r->cv.n && r->cv.iov[count].iov_len; count++)
		;
	r->iov = r->cv.iov;
	r->n = count;
	r->stream = env->stream;
	r->release = data_release_read;
	return 0;
}

static void data_release(struct node_env *env, struct node_file *f)
{
	struct data_file *df = (struct data_file *)f;

	stream_reader_free(env->stream, df->reader);
	free(df);
}

static const struct node_file_ops data_file_ops = {
	.read = data_read,
	.release = data_release,
};

static int data_open(struct node_env *env, const struct node *n, int flags,
		     struct node_file **out, bool *keep_cache)
{
	struct data_file *df = calloc(1, sizeof(*df));
	struct stream_place place;
	struct fetch_src *src = NULL;
	struct item *it = NULL;
	int err;

	if (!df)
		return -ENOMEM;
	err = objects_get(env->objects, env->op, n->ds, node_id_kind(n->id),
			  node_id_oid(n->id), &it);
	if (!err)
		err = node_data_src(env, n->ds, it, which_of(n), &src);
	if (!err) {
		bool placed = env->prefetch && stream_wants_place(env->stream);

		if (placed)
			node_place(env, n, &place);
		err = stream_open(env->stream, src, n->ino, flags & O_DIRECT,
				  placed ? &place : NULL, keep_cache,
				  &df->reader);
	}
	fetch_src_unref(src);
	item_unref(it);
	if (err) {
		free(df);
		return err;
	}
	df->vf.ops = &data_file_ops;
	*out = &df->vf;
	return 0;
}

struct node_ops node_data_ops = {
	.object_id = true,
	.name = "data",
	.getattr = data_getattr,
	.peek = data_peek,
	.open = data_open,
};

struct node_ops node_thumb_ops = {
	.object_id = true,
	.name = "thumbnail",
	.getattr = data_getattr,
	.peek = data_peek,
	.open = data_open,
};
