/* Owners, datasets and their listings. A listing is fetched whole, page by
 * page, on a thread of its own into an immutable snapshot that every
 * lookup, stat and readdir shares until ttl runs out; a reader waits for it
 * at most wait_ms. Lock order: catalog->lock, then a listing's lock;
 * neither is held across a request. */
#include "catalog.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ERROR_HOLD_MS \
	1000 /* a failed fetch is answered from memory this long */

struct listing {
	pthread_mutex_t lock;
	pthread_cond_t done; /* a fetch finished */
	struct catalog *cat;
	struct dataset *ds;
	enum item_kind kind;
	pthread_t loader; /* protected by lock: the last fetch's thread */
	bool joinable; /* protected by lock: loader is still to be joined */
	bool loading; /* protected by lock */
	bool stale; /* protected by lock: what is loading may be out of date */
	int64_t fresh_until; /* protected by lock; ms, 0 = fetch first */
	int err; /* protected by lock: answer of the last failed fetch */
	struct snapshot *snap; /* protected by lock */
};

struct dataset {
	char *owner, *slug; /* as the API knows them */
	char *owner_name, *slug_name; /* as directories show them */
	struct listing lists[2]; /* by enum item_kind */
};

struct catalog {
	pthread_mutex_t lock;
	struct dataset **v; /* protected by lock; append only */
	size_t n, cap; /* protected by lock */
	int64_t discovered_until; /* protected by lock */
	bool discovering; /* protected by lock */
	bool discover; /* the server may have a dataset list */
	struct api *api;
	int ttl_s;
	int64_t wait_ms;
};

#define now_ms util_now_ms

struct catalog *catalog_new(struct api *api, const struct catalog_config *cfg)
{
	struct catalog *cat = calloc(1, sizeof(*cat));

	if (!cat)
		return NULL;
	pthread_mutex_init(&cat->lock, NULL);
	cat->api = api;
	cat->ttl_s = cfg->ttl_s;
	cat->wait_ms = cfg->wait_ms > 0 ? cfg->wait_ms : 30000;
	cat->discover = cfg->discover;
	return cat;
}

static void snapshot_free(struct snapshot *snap)
{
	size_t i;

	HASH_CLEAR(hh_uid, snap->by_uid);
	HASH_CLEAR(hh_name, snap->by_name);
	for (i = 0; i < snap->n; i++)
		item_unref(snap->v[i]);
	free(snap->v);
	free(snap);
}

void snapshot_put(struct snapshot *snap)
{
	if (snap && __atomic_sub_fetch(&snap->refs, 1, __ATOMIC_ACQ_REL) == 0)
		snapshot_free(snap);
}

static void dataset_free(struct dataset *ds)
{
	int k;

	for (k = 0; k < 2; k++) {
		/* the engine was cancelled: a fetch still running ends soon */
		if (ds->lists[k].joinable)
			pthread_join(ds->lists[k].loader, NULL);
		snapshot_put(ds->lists[k].snap);
		pthread_mutex_destroy(&ds->lists[k].lock);
		pthread_cond_destroy(&ds->lists[k].done);
	}
	free(ds->owner);
	free(ds->slug);
	free(ds->owner_name);
	free(ds->slug_name);
	free(ds);
}

void catalog_free(struct catalog *cat)
{
	size_t i;

	if (!cat)
		return;
	for (i = 0; i < cat->n; i++)
		dataset_free(cat->v[i]);
	free(cat->v);
	pthread_mutex_destroy(&cat->lock);
	free(cat);
}

static struct dataset *dataset_new(struct catalog *cat, const char *owner,
				   const char *slug)
{
	struct dataset *ds = calloc(1, sizeof(*ds));
	int k;

	if (!ds)
		return NULL;
	for (k = 0; k < 2; k++) {
		pthread_mutex_init(&ds->lists[k].lock, NULL);
		util_cond_init(&ds->lists[k].done);
		ds->lists[k].cat = cat;
		ds->lists[k].ds = ds;
		ds->lists[k].kind = k;
	}
	ds->owner = strdup(owner);
	ds->slug = strdup(slug);
	ds->owner_name = names_escape(owner, strlen(owner));
	ds->slug_name = names_escape(slug, strlen(slug));
	if (!ds->owner || !ds->slug || !ds->owner_name || !ds->slug_name) {
		dataset_free(ds);
		return NULL;
	}
	return ds;
}

/* Called with cat->lock held. */
static struct dataset *find_locked(struct catalog *cat, const char *owner_name,
				   const char *slug_name)
{
	size_t i;

	for (i = 0; i < cat->n; i++) {
		if (strcmp(cat->v[i]->owner_name, owner_name) == 0 &&
		    (!slug_name ||
		     strcmp(cat->v[i]->slug_name, slug_name) == 0))
			return cat->v[i];
	}
	return NULL;
}

int catalog_add(struct catalog *cat, const char *owner, const char *slug)
{
	struct dataset *ds = dataset_new(cat, owner, slug);
	int err = 0;

	if (!ds)
		return -ENOMEM;
	pthread_mutex_lock(&cat->lock);
	if (find_locked(cat, ds->owner_name, ds->slug_name)) {
		dataset_free(ds);
	} else {
		if (cat->n == cat->cap) {
			size_t cap = cat->cap ? cat->cap * 2 : 8;
			struct dataset **v = realloc(cat->v, cap * sizeof(*v));

			if (v) {
				cat->v = v;
				cat->cap = cap;
			}
		}
		if (cat->n < cat->cap) {
			cat->v[cat->n++] = ds;
		} else {
			dataset_free(ds);
			err = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&cat->lock);
	return err;
}

/* Until when what a fetch begun at @start (ms) brought is trusted: ttl
 * seconds from now, and never less than the fetch took. A listing that took
 * longer than that is as old at its end anyway; without the floor, with a
 * short ttl every lookup would list again, and ls -l of a large directory
 * would spend all its time listing. */
static int64_t trusted_until(const struct catalog *cat, int64_t start)
{
	int64_t now = now_ms(), took = now - start;
	int64_t ttl = (int64_t)cat->ttl_s * 1000;

	return now + (took > ttl ? took : ttl);
}

void catalog_discover(struct catalog *cat, bool force)
{
	struct dataset_ref *refs;
	int64_t start;
	size_t n, i;
	int err;

	pthread_mutex_lock(&cat->lock);
	if (!cat->discover || cat->discovering ||
	    (!force && now_ms() < cat->discovered_until)) {
		pthread_mutex_unlock(&cat->lock);
		return;
	}
	cat->discovering = true;
	pthread_mutex_unlock(&cat->lock);

	start = now_ms();
	err = api_list_datasets(cat->api, &refs, &n);
	if (!err) {
		for (i = 0; i < n; i++)
			catalog_add(cat, refs[i].owner, refs[i].slug);
		api_free_datasets(refs, n);
	} else if (err != -ENOENT) {
		log_warn("dataset discovery failed: %s", strerror(-err));
	}

	pthread_mutex_lock(&cat->lock);
	cat->discovering = false;
	if (err == -ENOENT)
		cat->discover = false; /* the server has no dataset list */
	cat->discovered_until = trusted_until(cat, start);
	pthread_mutex_unlock(&cat->lock);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

long catalog_owners(struct catalog *cat, char ***out)
{
	bool ok = true;
	size_t i, n = 0;
	char **v;

	pthread_mutex_lock(&cat->lock);
	v = calloc(cat->n ? cat->n : 1, sizeof(*v));
	for (i = 0; v && ok && i < cat->n; i++) {
		const char *name = cat->v[i]->owner_name;
		size_t j;

		for (j = 0; j < n && strcmp(v[j], name) != 0; j++)
			;
		if (j < n)
			continue;
		v[n] = strdup(name);
		if (v[n])
			n++;
		else
			ok = false;
	}
	pthread_mutex_unlock(&cat->lock);
	if (!v || !ok) {
		while (v && n)
			free(v[--n]);
		free(v);
		return -ENOMEM;
	}
	qsort(v, n, sizeof(*v), cmp_str);
	*out = v;
	return n;
}

long catalog_datasets(struct catalog *cat, const char *owner_name,
		      struct dataset ***out)
{
	struct dataset **v;
	size_t i, n = 0;

	pthread_mutex_lock(&cat->lock);
	v = calloc(cat->n ? cat->n : 1, sizeof(*v));
	for (i = 0; v && i < cat->n; i++) {
		if (strcmp(cat->v[i]->owner_name, owner_name) == 0)
			v[n++] = cat->v[i];
	}
	pthread_mutex_unlock(&cat->lock);
	if (!v)
		return -ENOMEM;
	*out = v;
	return n;
}

struct dataset *catalog_find(struct catalog *cat, const char *owner_name,
			     const char *slug_name)
{
	struct dataset *ds;

	pthread_mutex_lock(&cat->lock);
	ds = find_locked(cat, owner_name, slug_name);
	pthread_mutex_unlock(&cat->lock);
	return ds;
}

const char *dataset_owner_name(const struct dataset *ds)
{
	return ds->owner_name;
}

const char *dataset_slug_name(const struct dataset *ds)
{
	return ds->slug_name;
}

const char *dataset_owner(const struct dataset *ds)
{
	return ds->owner;
}

const char *dataset_slug(const struct dataset *ds)
{
	return ds->slug;
}

struct item *snapshot_find_name(struct snapshot *snap, const char *name)
{
	struct item *it;

	HASH_FIND(hh_name, snap->by_name, name, strlen(name), it);
	return it && !__atomic_load_n(&it->gone, __ATOMIC_RELAXED) ? it : NULL;
}

struct item *snapshot_find_uid(struct snapshot *snap, const char *uid)
{
	struct item *it;

	HASH_FIND(hh_uid, snap->by_uid, uid, strlen(uid), it);
	return it && !__atomic_load_n(&it->gone, __ATOMIC_RELAXED) ? it : NULL;
}

/* The earlier name of @it, when @prev had the same uid with the same key. */
static const char *earlier_name(struct snapshot *prev, const struct item *it)
{
	struct item *old;

	if (!prev)
		return NULL;
	HASH_FIND(hh_uid, prev->by_uid, it->uid, strlen(it->uid), old);
	if (!old || !old->name || (old->key == NULL) != (it->key == NULL))
		return NULL;
	if (old->key && (old->key_len != it->key_len ||
			 memcmp(old->key, it->key, it->key_len) != 0))
		return NULL;
	return old->name;
}

/* Turn a fetched list (each uid once) into a snapshot: name every item
 * (keeping the names @prev gave), and index it. Takes the list's items. */
static int snapshot_build(struct item_list *list, struct snapshot *prev,
			  struct snapshot **out)
{
	struct snapshot *snap = calloc(1, sizeof(*snap));
	struct names_input *in = NULL;
	char **names = NULL;
	size_t i, n = 0;
	int err = -ENOMEM;

	if (!snap)
		goto fail;
	snap->refs = 1;
	snap->v = list->v;
	n = snap->n = list->n;
	for (i = 0; i < n; i++)
		HASH_ADD_KEYPTR(hh_uid, snap->by_uid, snap->v[i]->uid,
				strlen(snap->v[i]->uid), snap->v[i]);
	list->v = NULL;
	list->n = list->cap = 0;

	in = calloc(n ? n : 1, sizeof(*in));
	names = calloc(n ? n : 1, sizeof(*names));
	if (!in || !names)
		goto fail;
	for (i = 0; i < n; i++) {
		in[i].uid = snap->v[i]->uid;
		in[i].key = snap->v[i]->key;
		in[i].key_len = snap->v[i]->key_len;
		in[i].prev = earlier_name(prev, snap->v[i]);
	}
	if (names_assign(in, n, names))
		goto fail;
	for (i = 0; i < n; i++) {
		struct item *it = snap->v[i];

		it->name = names[i];
		HASH_ADD_KEYPTR(hh_name, snap->by_name, it->name,
				strlen(it->name), it);
	}
	err = 0;
	*out = snap;
fail:
	free(names);
	free(in);
	if (err) {
		item_list_clear(list);
		if (snap)
			snapshot_free(snap);
	}
	return err;
}

struct snapshot *catalog_peek(struct catalog *cat, struct dataset *ds,
			      enum item_kind kind)
{
	struct listing *l = &ds->lists[kind];
	struct snapshot *snap;

	(void)cat;
	pthread_mutex_lock(&l->lock);
	snap = l->snap;
	if (snap)
		__atomic_add_fetch(&snap->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&l->lock);
	return snap;
}

/* Fetch a listing and publish it: the body of a listing's loader thread. */
static void *load_listing(void *p)
{
	struct listing *l = p;
	struct catalog *cat = l->cat;
	struct dataset *ds = l->ds;
	struct item_list list = { 0 };
	struct snapshot *prev, *snap = NULL;
	int64_t start = now_ms();
	char what[256];
	int err;

	pthread_mutex_lock(&l->lock);
	prev = l->snap;
	if (prev)
		__atomic_add_fetch(&prev->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&l->lock);

	snprintf(what, sizeof(what), "%s/%s %s", ds->owner, ds->slug,
		 l->kind == ITEM_KIND_ITEM ? "items" : "sequences");
	err = api_list(cat->api, ds->owner, ds->slug, l->kind, &list);
	if (!err)
		err = snapshot_build(&list, prev, &snap);
	snapshot_put(prev);

	pthread_mutex_lock(&l->lock);
	l->loading = false;
	if (!err) {
		snapshot_put(l->snap);
		l->snap = snap;
		l->err = 0;
		l->fresh_until = trusted_until(cat, start);
	} else if (err == -EIO && l->snap) {
		log_warn("%s: listing failed, serving the last one", what);
		l->err = 0;
		l->fresh_until = trusted_until(cat, start);
	} else {
		l->err = err;
		l->fresh_until = now_ms() + ERROR_HOLD_MS;
	}
	if (l->stale && !l->err)
		l->fresh_until = 0;
	l->stale = false;
	pthread_cond_broadcast(&l->done);
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

/* Start a fetch of @l on its own thread. Called with l->lock held. */
static int start_loading(struct listing *l)
{
	int err;

	if (l->joinable) {
		/* the last loader has published (loading is false): it is at
		 * most a few instructions from its end */
		pthread_join(l->loader, NULL);
		l->joinable = false;
	}
	err = pthread_create(&l->loader, NULL, load_listing, l);
	if (err)
		return -err;
	l->joinable = true;
	l->loading = true;
	return 0;
}

int catalog_snapshot(struct catalog *cat, struct dataset *ds,
		     enum item_kind kind, struct snapshot **out)
{
	struct listing *l = &ds->lists[kind];
	int64_t deadline = now_ms() + cat->wait_ms;
	int err = 0;

	*out = NULL;
	pthread_mutex_lock(&l->lock);
	for (;;) {
		if (now_ms() < l->fresh_until) {
			err = l->err;
			break;
		}
		if (!l->loading) {
			err = start_loading(l);
			if (err) {
				log_err("cannot start a listing: %s",
					strerror(-err));
				break;
			}
		}
		if (util_cond_wait_until(&l->done, &l->lock, deadline) ==
		    ETIMEDOUT) {
			/* the fetch goes on; the reader is answered now */
			if (!l->snap) {
				log_err("%s/%s %s: no listing after %" PRId64
					" ms, still fetching",
					ds->owner, ds->slug,
					kind == ITEM_KIND_ITEM ? "items"
							       : "sequences",
					cat->wait_ms);
				err = -EIO;
			}
			break;
		}
	}
	if (!err && l->snap) {
		*out = l->snap;
		__atomic_add_fetch(&l->snap->refs, 1, __ATOMIC_RELAXED);
	} else if (!err) {
		err = -EIO;
	}
	pthread_mutex_unlock(&l->lock);
	return err;
}

void catalog_forget_item(struct catalog *cat, struct dataset *ds,
			 struct item *it)
{
	struct listing *l = &ds->lists[it->kind];

	__atomic_store_n(&it->gone, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&l->lock);
	l->fresh_until = 0;
	if (l->loading)
		l->stale =
			true; /* the listing begun before may still hold it */
	pthread_mutex_unlock(&l->lock);
}

int catalog_reresolve(struct catalog *cat, struct dataset *ds,
		      const struct item *it, struct item **out)
{
	int err =
		api_get(cat->api, ds->owner, ds->slug, it->kind, it->uid, out);

	if (err == -ENOENT)
		catalog_forget_item(cat, ds, (struct item *)it);
	return err;
}
