/* Owners, datasets and the freshness of their listings. A listing is
 * fetched page by page on a thread of its own into the dataset's store,
 * under a new generation that replaces the current one when complete;
 * readers pin the generation they read so that its rows outlive them, and
 * wait for a fetch at most wait_ms. Lock order: catalog->lock, then a
 * listing's lock; neither is held across a request or a store call. */
#include "catalog.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uthash.h>

#define ERROR_HOLD_MS \
	1000 /* a failed fetch is answered from memory this long */

#define now_ms util_now_ms

/* An object the API answered 404 for since the listing. */
struct gone {
	uint64_t oid;
	UT_hash_handle hh;
};

struct listing {
	pthread_mutex_t lock;
	pthread_cond_t done; /* a fetch finished, or pins went to 0 */
	struct catalog *cat;
	struct dataset *ds;
	enum item_kind kind;
	pthread_t loader; /* protected by lock: the last fetch's thread */
	bool joinable; /* protected by lock: loader is still to be joined */
	bool loading; /* protected by lock */
	bool stale; /* protected by lock: what is loading may be out of date */
	int64_t fresh_until; /* protected by lock; ms, 0 = fetch first */
	int err; /* protected by lock: answer of the last failed fetch */
	uint64_t gen; /* protected by lock: current generation, 0 = none */
	unsigned pins; /* protected by lock: readers of gen */
	uint64_t old_gen; /* protected by lock: the one gen replaced */
	unsigned old_pins; /* protected by lock: its readers still */
	struct gone *gone; /* protected by lock */
	size_t n_gone; /* protected by lock */
};

struct dataset {
	char *owner, *slug; /* as the API knows them */
	char *owner_name, *slug_name; /* as directories show them */
	size_t index;
	pthread_mutex_t store_lock;
	struct store *store; /* protected by store_lock until set */
	struct listing lists[2]; /* by enum item_kind */
};

struct catalog {
	pthread_mutex_t lock;
	struct dataset **v; /* protected by lock; append only */
	size_t n, cap; /* protected by lock */
	char **owners; /* protected by lock; append only */
	size_t n_owners, cap_owners; /* protected by lock */
	int64_t discovered_until; /* protected by lock */
	bool discovering; /* protected by lock */
	bool discover; /* the server may have a dataset list */
	struct api *api;
	int ttl_s;
	int64_t wait_ms;
	char *origin;
	char *store_dir;
};

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
	cat->origin = strdup(cfg->origin ? cfg->origin : "");
	cat->store_dir = strdup(cfg->store_dir ? cfg->store_dir : ".");
	if (!cat->origin || !cat->store_dir) {
		catalog_free(cat);
		return NULL;
	}
	return cat;
}

static void gone_clear(struct listing *l)
{
	struct gone *g, *tmp;

	HASH_ITER(hh, l->gone, g, tmp) {
		HASH_DEL(l->gone, g);
		free(g);
	}
	__atomic_store_n(&l->n_gone, 0, __ATOMIC_RELAXED);
}

static void dataset_free(struct dataset *ds)
{
	int k;

	for (k = 0; k < 2; k++) {
		/* the engine was cancelled: a fetch still running ends soon */
		if (ds->lists[k].joinable)
			pthread_join(ds->lists[k].loader, NULL);
		gone_clear(&ds->lists[k]);
		pthread_mutex_destroy(&ds->lists[k].lock);
		pthread_cond_destroy(&ds->lists[k].done);
	}
	store_free(ds->store);
	pthread_mutex_destroy(&ds->store_lock);
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
	for (i = 0; i < cat->n_owners; i++)
		free(cat->owners[i]);
	free(cat->owners);
	free(cat->v);
	free(cat->origin);
	free(cat->store_dir);
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
	pthread_mutex_init(&ds->store_lock, NULL);
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

/* Remember the owner of @ds among the owners. Called with cat->lock held. */
static int add_owner_locked(struct catalog *cat, const struct dataset *ds)
{
	size_t i;

	for (i = 0; i < cat->n_owners; i++) {
		if (strcmp(cat->owners[i], ds->owner_name) == 0)
			return 0;
	}
	if (UTIL_GROW(cat->owners, cat->n_owners, cat->cap_owners, 8))
		return -ENOMEM;
	cat->owners[cat->n_owners] = strdup(ds->owner_name);
	if (!cat->owners[cat->n_owners])
		return -ENOMEM;
	cat->n_owners++;
	return 0;
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
	} else if (UTIL_GROW(cat->v, cat->n, cat->cap, 8) ||
		   add_owner_locked(cat, ds)) {
		dataset_free(ds);
		err = -ENOMEM;
	} else {
		ds->index = cat->n;
		cat->v[cat->n++] = ds;
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
	size_t i, n;
	char **v;

	pthread_mutex_lock(&cat->lock);
	n = cat->n_owners;
	v = calloc(n ? n : 1, sizeof(*v));
	for (i = 0; v && i < n; i++) {
		v[i] = strdup(cat->owners[i]);
		if (!v[i]) {
			while (i > 0)
				free(v[--i]);
			free(v);
			v = NULL;
		}
	}
	pthread_mutex_unlock(&cat->lock);
	if (!v)
		return -ENOMEM;
	qsort(v, n, sizeof(*v), cmp_str);
	*out = v;
	return n;
}

long catalog_owner_index(struct catalog *cat, const char *name)
{
	long index = -1;
	size_t i;

	pthread_mutex_lock(&cat->lock);
	for (i = 0; i < cat->n_owners && index < 0; i++) {
		if (strcmp(cat->owners[i], name) == 0)
			index = (long)i;
	}
	pthread_mutex_unlock(&cat->lock);
	return index;
}

char *catalog_owner_name(struct catalog *cat, size_t index)
{
	char *name = NULL;

	pthread_mutex_lock(&cat->lock);
	if (index < cat->n_owners)
		name = strdup(cat->owners[index]);
	pthread_mutex_unlock(&cat->lock);
	return name;
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

struct dataset *catalog_dataset_at(struct catalog *cat, size_t index)
{
	struct dataset *ds = NULL;

	pthread_mutex_lock(&cat->lock);
	if (index < cat->n)
		ds = cat->v[index];
	pthread_mutex_unlock(&cat->lock);
	return ds;
}

size_t dataset_index(const struct dataset *ds)
{
	return ds->index;
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

struct store *dataset_store(struct dataset *ds)
{
	struct store *st;

	pthread_mutex_lock(&ds->store_lock);
	st = ds->store;
	pthread_mutex_unlock(&ds->store_lock);
	return st;
}

/* The store's file for @ds: one per API origin and dataset. */
static char *store_path(const struct catalog *cat, const struct dataset *ds)
{
	const char *parts[3] = { cat->origin, ds->owner, ds->slug };
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	char *path;
	size_t i;

	for (i = 0; i < 3; i++) {
		const unsigned char *p = (const unsigned char *)parts[i];

		do {
			h ^= *p;
			h *= 0x100000001b3ull;
		} while (*p++);
	}
	if (asprintf(&path, "%s/%016" PRIx64 ".db", cat->store_dir, h) < 0)
		return NULL;
	return path;
}

/* Open the store of @ds on first use. */
static int open_store(struct catalog *cat, struct dataset *ds)
{
	char *path;
	int err = 0;

	pthread_mutex_lock(&ds->store_lock);
	if (!ds->store) {
		path = store_path(cat, ds);
		err = path ? store_open(path, cat->origin, ds->owner, ds->slug,
					&ds->store)
			   : -ENOMEM;
		if (err)
			log_err("%s/%s: cannot open the listing store %s: %s",
				ds->owner, ds->slug, path ? path : "",
				strerror(-err));
		free(path);
	}
	pthread_mutex_unlock(&ds->store_lock);
	return err ? -EIO : 0;
}

/* Hands each page of a fetch to the store. */
static int add_page(void *ctx, struct item *const *v, size_t n)
{
	return store_listing_add(ctx, v, n);
}

/* Fetch a listing into a new generation and make it current: the body of
 * a listing's loader thread. */
static void *load_listing(void *p)
{
	struct listing *l = p;
	struct catalog *cat = l->cat;
	struct dataset *ds = l->ds;
	struct store_listing *sl = NULL;
	int64_t start = now_ms();
	uint64_t gen = 0, old = 0;
	char what[256];
	int err;

	snprintf(what, sizeof(what), "%s/%s %s", ds->owner, ds->slug,
		 l->kind == ITEM_KIND_ITEM ? "items" : "sequences");
	err = open_store(cat, ds);
	if (!err)
		err = store_listing_begin(ds->store, l->kind, &sl);
	if (!err)
		err = api_list(cat->api, ds->owner, ds->slug, l->kind, add_page,
			       sl);
	if (!err) {
		gen = store_listing_commit(sl);
		if (!gen)
			err = -EIO;
	} else {
		store_listing_abort(sl);
	}

	pthread_mutex_lock(&l->lock);
	l->loading = false;
	if (!err) {
		old = l->gen;
		l->old_gen = old;
		l->old_pins = l->pins;
		l->gen = gen;
		l->pins = 0;
		l->err = 0;
		l->fresh_until = trusted_until(cat, start);
		if (!l->stale)
			gone_clear(l);
	} else if (err == -EIO && l->gen) {
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
	/* the generation replaced goes once its last reader is done */
	while (old && l->old_pins > 0)
		pthread_cond_wait(&l->done, &l->lock);
	l->old_gen = 0;
	pthread_mutex_unlock(&l->lock);
	if (old)
		store_collect(ds->store, l->kind, gen);
	/* the pages were parsed and freed: give the heap they grew back */
	malloc_trim(0);
	return NULL;
}

/* Start a fetch of @l on its own thread. Called with l->lock held. */
static int start_loading(struct listing *l)
{
	int err;

	if (l->joinable) {
		/* the last loader has published (loading is false): it is at
		 * most a collection away from its end */
		pthread_t last = l->loader;

		l->joinable = false;
		pthread_mutex_unlock(&l->lock);
		pthread_join(last, NULL);
		pthread_mutex_lock(&l->lock);
		if (l->loading)
			return 0; /* another reader started one meanwhile */
	}
	err = pthread_create(&l->loader, NULL, load_listing, l);
	if (err)
		return -err;
	l->joinable = true;
	l->loading = true;
	return 0;
}

int catalog_pin(struct catalog *cat, struct dataset *ds, enum item_kind kind,
		uint64_t *gen)
{
	struct listing *l = &ds->lists[kind];
	int64_t deadline = now_ms() + cat->wait_ms;
	int err = 0;

	*gen = 0;
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
			if (!l->loading)
				continue;
		}
		if (util_cond_wait_until(&l->done, &l->lock, deadline) ==
		    ETIMEDOUT) {
			/* the fetch goes on; the reader is answered now */
			if (!l->gen) {
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
	if (!err && !l->gen)
		err = -EIO;
	if (!err) {
		*gen = l->gen;
		l->pins++;
	}
	pthread_mutex_unlock(&l->lock);
	return err;
}

void catalog_unpin(struct catalog *cat, struct dataset *ds, enum item_kind kind,
		   uint64_t gen)
{
	struct listing *l = &ds->lists[kind];

	(void)cat;
	pthread_mutex_lock(&l->lock);
	if (gen == l->gen) {
		l->pins--;
	} else if (gen == l->old_gen && l->old_pins > 0) {
		if (--l->old_pins == 0)
			pthread_cond_broadcast(&l->done);
	}
	pthread_mutex_unlock(&l->lock);
}

void catalog_forget(struct catalog *cat, struct dataset *ds,
		    enum item_kind kind, uint64_t oid)
{
	struct listing *l = &ds->lists[kind];
	struct gone *g;

	(void)cat;
	pthread_mutex_lock(&l->lock);
	HASH_FIND(hh, l->gone, &oid, sizeof(oid), g);
	if (!g && (g = calloc(1, sizeof(*g)))) {
		g->oid = oid;
		HASH_ADD(hh, l->gone, oid, sizeof(g->oid), g);
		__atomic_add_fetch(&l->n_gone, 1, __ATOMIC_RELAXED);
	}
	l->fresh_until = 0;
	if (l->loading)
		l->stale =
			true; /* the listing begun before may still hold it */
	pthread_mutex_unlock(&l->lock);
}

bool catalog_gone(struct catalog *cat, struct dataset *ds, enum item_kind kind,
		  uint64_t oid)
{
	struct listing *l = &ds->lists[kind];
	struct gone *g = NULL;

	(void)cat;
	if (!__atomic_load_n(&l->n_gone, __ATOMIC_RELAXED))
		return false;
	pthread_mutex_lock(&l->lock);
	HASH_FIND(hh, l->gone, &oid, sizeof(oid), g);
	pthread_mutex_unlock(&l->lock);
	return g != NULL;
}

int catalog_reresolve(struct catalog *cat, struct dataset *ds,
		      const struct item *it, struct item **out)
{
	int err =
		api_get(cat->api, ds->owner, ds->slug, it->kind, it->uid, out);

	if (err == -ENOENT)
		catalog_forget(cat, ds, it->kind, it->oid);
	return err;
}
