/* Owners, datasets and the freshness of their listings. A listing is
 * fetched page by page on a thread of its own into the dataset's store,
 * under a new generation that replaces the current one when complete;
 * readers pin the generation they read so that its rows outlive them, and
 * wait for a fetch at most wait_ms. Lock order: catalog->lock, then a
 * listing's lock; neither is held across a request or a store call. */
#include "catalog.h"
#include "cachedir.h"
#include "item_json.h"
#include "fresh.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>
#include <xxhash.h>

#define ERROR_HOLD_MS \
	1000 /* a failed fetch is answered from memory this long */

#define now_ms util_now_ms

/* An object the API answered 404 for since the listing. The mark hides
 * it in every generation until a listing made after the answer is served
 * (@until: that generation) and nobody reads an older one any more: a
 * lookup or a listing that pinned the old generation as the new one came
 * would otherwise show it again. */
struct gone {
	uint64_t oid;
	uint64_t until; /* 0: no listing made since */
	UT_hash_handle hh;
};

/* Readers of one generation. */
struct gen_pins {
	uint64_t gen;
	unsigned n;
};

struct listing {
	pthread_mutex_t lock;
	pthread_cond_t changed; /* a page came, or a load ended */
	struct catalog *cat;
	struct dataset *ds;
	enum item_kind kind;
	bool opened; /* atomic: what the store kept was looked at */
	struct fresh fresh; /* protected by lock */
	uint64_t gen; /* protected by lock: the complete generation served,
		       * 0 = none */
	uint64_t building; /* protected by lock: the one loading, 0 = none */
	uint64_t pages; /* protected by lock: pages of building so far */
	struct gen_pins *pins; /* protected by lock */
	size_t n_pins, cap_pins; /* protected by lock */
	uint64_t *retired; /* protected by lock: generations replaced, to
			    * remove once nobody reads them */
	size_t n_retired, cap_retired; /* protected by lock */
	struct gone *gone; /* protected by lock */
	size_t n_gone; /* atomic */
	/* for counters, all protected by lock: */
	int64_t objects; /* objects of gen; -1: not counted yet */
	int64_t building_objects; /* objects of building so far */
	int64_t listed_at; /* when gen was complete: seconds since the epoch */
	int last_err; /* the last load's error; 0 once one succeeds */
	uint64_t loads, failures; /* loads ended, and those that failed */
	uint64_t digest_gen; /* protected by lock: the generation of digest */
	char digest[33]; /* protected by lock */
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
	int store_dir_fd;
	int64_t store_budget;
	int64_t (*give_back)(void *ctx);
	void *give_back_ctx;
	void (*replaced)(void *ctx, struct dataset *ds, enum item_kind kind,
			 uint64_t old, uint64_t new);
	void *replaced_ctx;
	int loaders; /* protected by lock: load threads running */
	pthread_cond_t loaders_done; /* protected by lock */
	uint64_t noted; /* protected by lock: digest of the list last noted */
};

struct catalog *catalog_new(struct api *api, const struct catalog_config *cfg)
{
	struct catalog *cat = calloc(1, sizeof(*cat));

	if (!cat)
		return NULL;
	pthread_mutex_init(&cat->lock, NULL);
	cat->api = api;
	cat->ttl_s = cfg->ttl_s;
	cat->wait_ms = cfg->wait_ms;
	cat->discover = cfg->discover;
	cat->replaced = cfg->replaced;
	cat->replaced_ctx = cfg->replaced_ctx;
	pthread_cond_init(&cat->loaders_done, NULL);
	cat->origin = strdup(cfg->origin ? cfg->origin : "");
	cat->store_dir = strdup(cfg->store_dir ? cfg->store_dir : ".");
	cat->store_dir_fd = cfg->store_dir_fd;
	cat->store_budget = cfg->store_budget;
	cat->give_back = cfg->give_back;
	cat->give_back_ctx = cfg->give_back_ctx;
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

/* Whether a generation older than @gen is read. */
static bool pinned_below(const struct listing *l, uint64_t gen)
{
	size_t i;

	for (i = 0; i < l->n_pins; i++) {
		if (l->pins[i].n && l->pins[i].gen < gen)
			return true;
	}
	return false;
}

/* Drop the marks no reader needs any more; under the listing's lock. */
static void gone_settle(struct listing *l)
{
	struct gone *g, *tmp;

	HASH_ITER(hh, l->gone, g, tmp) {
		if (!g->until || pinned_below(l, g->until))
			continue;
		HASH_DEL(l->gone, g);
		free(g);
		__atomic_sub_fetch(&l->n_gone, 1, __ATOMIC_RELAXED);
	}
}

static void dataset_free(struct dataset *ds)
{
	int k;

	for (k = 0; k < 2; k++) {
		gone_clear(&ds->lists[k]);
		free(ds->lists[k].pins);
		free(ds->lists[k].retired);
		pthread_mutex_destroy(&ds->lists[k].lock);
		pthread_cond_destroy(&ds->lists[k].changed);
	}
	store_free(ds->store);
	pthread_mutex_destroy(&ds->store_lock);
	free(ds->owner);
	free(ds->slug);
	free(ds->owner_name);
	free(ds->slug_name);
	free(ds);
}

void catalog_quiesce(struct catalog *cat)
{
	pthread_mutex_lock(&cat->lock);
	while (cat->loaders > 0)
		pthread_cond_wait(&cat->loaders_done, &cat->lock);
	pthread_mutex_unlock(&cat->lock);
}

void catalog_free(struct catalog *cat)
{
	size_t i;

	if (!cat)
		return;
	catalog_quiesce(cat);
	for (i = 0; i < cat->n; i++)
		dataset_free(cat->v[i]);
	for (i = 0; i < cat->n_owners; i++)
		free(cat->owners[i]);
	free(cat->owners);
	free(cat->v);
	free(cat->origin);
	free(cat->store_dir);
	pthread_cond_destroy(&cat->loaders_done);
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
		util_cond_init(&ds->lists[k].changed);
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
	err = api_list_datasets(cat->api, &refs, &n, NULL);
	if (!err) {
		for (i = 0; i < n; i++)
			catalog_add(cat, refs[i].owner, refs[i].slug);
		api_free_datasets(refs, n);
		catalog_note_datasets(cat);
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

/* The file that names the datasets last listed at this origin, in the
 * listings' folder: what a start without the API and without dataset=
 * mounts. */
static void datasets_file(const struct catalog *cat, char name[48])
{
	snprintf(name, 48, "datasets-%016" PRIx64 ".json",
		 (uint64_t)XXH3_64bits(cat->origin, strlen(cat->origin)));
}

/* The catalog's datasets as a page of the dataset list: a new string, or
 * NULL on ENOMEM. */
static char *datasets_page(struct catalog *cat)
{
	const char **owners, **slugs;
	char *text = NULL;
	size_t i, n;

	pthread_mutex_lock(&cat->lock);
	n = cat->n;
	owners = calloc(n ? n : 1, sizeof(*owners));
	slugs = calloc(n ? n : 1, sizeof(*slugs));
	/* the datasets stay while the catalog does: only the array grows */
	for (i = 0; owners && slugs && i < n; i++) {
		owners[i] = cat->v[i]->owner;
		slugs[i] = cat->v[i]->slug;
	}
	pthread_mutex_unlock(&cat->lock);
	if (owners && slugs)
		text = item_json_encode_datasets(owners, slugs, n);
	free(owners);
	free(slugs);
	return text;
}

void catalog_note_datasets(struct catalog *cat)
{
	char name[48], tmp[96];
	char *text = datasets_page(cat);
	uint64_t sum;
	size_t len;
	int fd, err = 0;

	if (!text || cat->store_dir_fd < 0) {
		free(text);
		return;
	}
	len = strlen(text);
	sum = XXH3_64bits(text, len);
	pthread_mutex_lock(&cat->lock);
	if (cat->noted == sum) {
		pthread_mutex_unlock(&cat->lock);
		free(text);
		return; /* as it is on disk */
	}
	cat->noted = sum;
	pthread_mutex_unlock(&cat->lock);
	datasets_file(cat, name);
	/* a file of its own, renamed over the last: a reader sees one
	 * list or the other, never half of one */
	snprintf(tmp, sizeof(tmp), ".%s.%ld.%" PRIx64, name, (long)getpid(),
		 (uint64_t)now_ms());
	fd = cachedir_open_file(cat->store_dir_fd, tmp,
				O_RDWR | O_CREAT | O_EXCL);
	if (fd < 0)
		err = fd;
	else if (write(fd, text, len) != (ssize_t)len)
		err = -EIO;
	else if (renameat(cat->store_dir_fd, tmp, cat->store_dir_fd, name))
		err = -errno;
	if (fd >= 0)
		close(fd);
	if (err) {
		log_debug("cannot note the datasets listed: %s",
			  strerror(-err));
		if (fd >= 0)
			unlinkat(cat->store_dir_fd, tmp, 0);
		pthread_mutex_lock(&cat->lock);
		cat->noted = 0;
		pthread_mutex_unlock(&cat->lock);
	}
	free(text);
}

#define DATASETS_FILE_MAX (4 << 20) /* a list longer than this is not ours */

/* The text of the datasets file, NUL-terminated: a new string, or NULL. */
static char *read_datasets(struct catalog *cat)
{
	char name[48];
	struct stat st;
	char *text = NULL;
	ssize_t got = -1;
	int fd;

	if (cat->store_dir_fd < 0)
		return NULL;
	datasets_file(cat, name);
	fd = cachedir_open_file(cat->store_dir_fd, name, O_RDONLY);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) == 0 && st.st_size < DATASETS_FILE_MAX &&
	    (text = malloc((size_t)st.st_size + 1)))
		got = pread(fd, text, (size_t)st.st_size, 0);
	close(fd);
	if (!text || got != st.st_size) {
		free(text);
		return NULL;
	}
	text[got] = '\0';
	return text;
}

struct kept {
	struct catalog *cat;
	long added;
};

/* One dataset of the list noted: added when its listing is kept. */
static int add_kept(void *p, const char *owner, const char *slug)
{
	struct kept *k = p;
	int64_t listed_at;
	int err;

	if (catalog_kept(k->cat, owner, slug, &listed_at))
		return 0;
	err = catalog_add(k->cat, owner, slug);
	if (!err)
		k->added++;
	return err;
}

long catalog_add_kept(struct catalog *cat)
{
	char *text = read_datasets(cat), *next = NULL;
	struct kept k = { cat, 0 };
	int err = text ? item_json_decode_datasets(text, strlen(text), add_kept,
						   &k, &next)
		       : -ENOENT;

	free(text);
	free(next);
	if (err && !k.added)
		return err;
	return k.added ? k.added : -ENOENT;
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

static void listings_lost(void *ctx);

/* Open the store of @ds on first use. */
static int open_store(struct catalog *cat, struct dataset *ds)
{
	int err = 0;

	pthread_mutex_lock(&ds->store_lock);
	if (!ds->store) {
		struct store_config cfg = {
			.dir_fd = cat->store_dir_fd,
			.dir = cat->store_dir,
			.origin = cat->origin,
			.owner = ds->owner,
			.slug = ds->slug,
			.budget = cat->store_budget,
			.give_back = cat->give_back,
			.give_back_ctx = cat->give_back_ctx,
			.lost = listings_lost,
			.lost_ctx = ds,
		};

		err = store_open(&cfg, &ds->store);
		if (err)
			log_err("%s/%s: cannot open its listing store: %s",
				ds->owner, ds->slug, strerror(-err));
	}
	pthread_mutex_unlock(&ds->store_lock);
	return err ? -EIO : 0;
}

/* The store of a dataset set its damaged database aside: the generations
 * served are gone, and readers wait for a listing made anew. */
static void listings_lost(void *ctx)
{
	struct dataset *ds = ctx;
	struct fresh_clock clock = { .now = now_ms() };
	int k;

	for (k = 0; k < 2; k++) {
		struct listing *l = &ds->lists[k];

		pthread_mutex_lock(&l->lock);
		fresh_apply(&l->fresh, FRESH_LOST, 0, &clock);
		l->gen = 0;
		l->objects = 0;
		l->listed_at = 0;
		l->pages = 0; /* a listing being made is in the lost one */
		l->n_retired = 0;
		gone_clear(l);
		__atomic_store_n(&l->n_gone, 0, __ATOMIC_RELAXED);
		pthread_cond_broadcast(&l->changed);
		pthread_mutex_unlock(&l->lock);
	}
}

/* Fetch a listing into a new generation and make it current, as the first
 * or a refresh: the body of a loader thread. */
struct loader {
	struct listing *l;
	struct store_listing *sl;
};

/* Hands each page of a fetch to the store; readers of a first listing see
 * it from then on. */
static int add_page(void *ctx, struct item *const *v, size_t n)
{
	struct loader *ld = ctx;
	int added = store_listing_add(ld->sl, v, n);

	/* the store's failure, never one the server answered: the last
	 * listing stays served */
	if (added < 0 && added != -ENOMEM)
		added = -EIO;
	if (added >= 0) {
		pthread_mutex_lock(&ld->l->lock);
		ld->l->pages++;
		ld->l->building_objects += added;
		pthread_cond_broadcast(&ld->l->changed);
		pthread_mutex_unlock(&ld->l->lock);
	}
	return added;
}

/* Note that @gen is no longer served: it goes once unpinned. Called with
 * l->lock held. */
static void retire(struct listing *l, uint64_t gen)
{
	if (gen && !UTIL_GROW(l->retired, l->n_retired, l->cap_retired, 4))
		l->retired[l->n_retired++] = gen;
}

static unsigned pins_of(const struct listing *l, uint64_t gen)
{
	size_t i;

	for (i = 0; i < l->n_pins; i++) {
		if (l->pins[i].gen == gen)
			return l->pins[i].n;
	}
	return 0;
}

/* Remove the generations nobody reads any more: the ones this mount
 * replaced, once unpinned, and those other mounts or crashed loads left. */
static void collect(struct listing *l)
{
	uint64_t *keep;
	size_t n = 0, i, j;

	pthread_mutex_lock(&l->lock);
	keep = calloc(l->n_retired + 2, sizeof(*keep));
	if (keep) {
		keep[n++] = l->gen;
		keep[n++] = l->building;
		for (i = j = 0; i < l->n_retired; i++) {
			if (pins_of(l, l->retired[i]))
				keep[n++] = l->retired[j++] = l->retired[i];
		}
		l->n_retired = j;
	}
	pthread_mutex_unlock(&l->lock);
	if (keep)
		store_collect(l->ds->store, l->kind, keep, n);
	free(keep);
}

static void *load_listing(void *p)
{
	struct listing *l = p;
	struct catalog *cat = l->cat;
	struct dataset *ds = l->ds;
	struct loader ld = { l, NULL };
	struct fresh_clock clock = { .ttl = (int64_t)cat->ttl_s * 1000,
				     .hold = ERROR_HOLD_MS };
	int64_t start = now_ms();
	uint64_t prev, gen = 0, resets;
	char what[256];
	int err;

	snprintf(what, sizeof(what), "%s/%s %s", ds->owner, ds->slug,
		 l->kind == ITEM_KIND_ITEM ? "items" : "sequences");
	pthread_mutex_lock(&l->lock);
	prev = l->gen;
	pthread_mutex_unlock(&l->lock);
	resets = store_resets(ds->store);
	err = store_listing_begin(ds->store, l->kind, prev, &ld.sl);
	if (err && err != -ENOMEM)
		err = -EIO; /* the store's failure, not the server's answer */
	if (!err) {
		pthread_mutex_lock(&l->lock);
		l->building = store_listing_gen(ld.sl);
		l->pages = 0;
		l->building_objects = 0;
		pthread_mutex_unlock(&l->lock);
		err = api_list(cat->api, ds->owner, ds->slug, l->kind, add_page,
			       &ld);
	}
	if (!err) {
		gen = store_listing_commit(ld.sl);
		if (!gen)
			err = -EIO;
	}
	store_listing_free(ld.sl);

	pthread_mutex_lock(&l->lock);
	clock.now = now_ms();
	clock.took = clock.now - start;
	/* the database it went to was set aside meanwhile (the store counts
	 * that before it takes this lock to say so) */
	if (!err && store_resets(ds->store) != resets)
		err = -EIO;
	l->loads++;
	l->last_err = err;
	if (!err) {
		retire(l, l->gen);
		l->gen = gen;
		l->objects = l->building_objects;
		l->listed_at = time(NULL);
		/* made after every mark but those of a load that was on
		 * its way (again): those wait for the next */
		if (!l->fresh.again) {
			struct gone *g, *tmp;

			HASH_ITER(hh, l->gone, g, tmp) {
				if (!g->until)
					g->until = gen;
			}
		}
		fresh_apply(&l->fresh, FRESH_LOADED, 0, &clock);
	} else {
		l->failures++;
		retire(l, l->building);
		fresh_apply(&l->fresh, FRESH_LOAD_FAILED, err, &clock);
		if (l->gen && fresh_servable(&l->fresh))
			log_warn("%s: listing failed, serving the last one",
				 what);
		else if (l->gen)
			log_warn("%s: listing refused (%s): not shown until "
				 "it is accepted",
				 what, strerror(-err));
	}
	l->building = 0;
	gone_settle(l);
	pthread_cond_broadcast(&l->changed);
	pthread_mutex_unlock(&l->lock);

	if (!err && prev && cat->replaced)
		cat->replaced(cat->replaced_ctx, ds, l->kind, prev, gen);
	collect(l);
	/* the pages were parsed and freed: give the heap they grew back */
	malloc_trim(0);

	pthread_mutex_lock(&cat->lock);
	if (--cat->loaders == 0)
		pthread_cond_broadcast(&cat->loaders_done);
	pthread_mutex_unlock(&cat->lock);
	return NULL;
}

/* Start a load of @l on a thread of its own. Called with l->lock held. */
static int start_loading(struct listing *l)
{
	struct catalog *cat = l->cat;
	pthread_attr_t attr;
	pthread_t thread;
	int err;

	pthread_mutex_lock(&cat->lock);
	cat->loaders++;
	pthread_mutex_unlock(&cat->lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	err = pthread_create(&thread, &attr, load_listing, l);
	pthread_attr_destroy(&attr);
	if (err) {
		pthread_mutex_lock(&cat->lock);
		cat->loaders--;
		pthread_mutex_unlock(&cat->lock);
	}
	return -err;
}

/* Serve what the store kept of @l from an earlier mount (or another one):
 * the newest complete listing, trusted for what is left of its ttl. */
static void adopt_stored(struct catalog *cat, struct listing *l)
{
	int64_t listed_at, age;
	uint64_t gen;

	/* the store notes that this mount reads it */
	if (store_latest(l->ds->store, l->kind, &gen, &listed_at))
		return;
	pthread_mutex_lock(&l->lock);
	if (!l->gen && l->fresh.state == FRESH_EMPTY) {
		age = (int64_t)time(NULL) - listed_at;
		l->gen = gen;
		l->objects = -1; /* counted when asked for */
		l->listed_at = listed_at;
		l->fresh.state = FRESH_CURRENT;
		l->fresh.until =
			now_ms() +
			((int64_t)cat->ttl_s - (age > 0 ? age : 0)) * 1000;
	}
	pthread_mutex_unlock(&l->lock);
}

static void pin_gen(struct listing *l, uint64_t gen)
{
	size_t i;

	for (i = 0; i < l->n_pins; i++) {
		if (l->pins[i].gen == gen) {
			l->pins[i].n++;
			return;
		}
	}
	for (i = 0; i < l->n_pins; i++) {
		if (l->pins[i].n == 0)
			break;
	}
	if (i == l->n_pins &&
	    UTIL_GROW(l->pins, l->n_pins, l->cap_pins, 4) == 0)
		l->n_pins++;
	if (i < l->n_pins) {
		l->pins[i].gen = gen;
		l->pins[i].n = 1;
	}
}

int catalog_pin(struct catalog *cat, struct dataset *ds, enum item_kind kind,
		struct catalog_pin *pin)
{
	struct listing *l = &ds->lists[kind];
	struct fresh_clock clock = { .ttl = (int64_t)cat->ttl_s * 1000,
				     .hold = ERROR_HOLD_MS };
	int64_t deadline = now_ms() + cat->wait_ms;
	int err = open_store(cat, ds);

	memset(pin, 0, sizeof(*pin));
	if (err)
		return err;
	if (!__atomic_load_n(&l->opened, __ATOMIC_ACQUIRE)) {
		adopt_stored(cat, l);
		__atomic_store_n(&l->opened, true, __ATOMIC_RELEASE);
	}
	pthread_mutex_lock(&l->lock);
	for (;;) {
		clock.now = now_ms();
		if (fresh_apply(&l->fresh, FRESH_READ, 0, &clock)) {
			err = start_loading(l);
			if (err) {
				log_err("cannot start a listing: %s",
					strerror(-err));
				fresh_apply(&l->fresh, FRESH_LOAD_FAILED, -EIO,
					    &clock);
			}
		}
		if (fresh_servable(&l->fresh)) {
			pin->gen = l->gen;
			break;
		}
		if (l->fresh.state == FRESH_FAILED) {
			err = l->fresh.err;
			break;
		}
		/* the first listing: its pages as far as they came */
		if (l->building && l->pages > 0) {
			pin->gen = l->building;
			pin->partial = true;
			pin->pages = l->pages;
			break;
		}
		if (util_cond_wait_until(&l->changed, &l->lock, deadline) ==
		    ETIMEDOUT) {
			log_err("%s/%s %s: no listing after %" PRId64
				" ms, still fetching",
				ds->owner, ds->slug,
				kind == ITEM_KIND_ITEM ? "items" : "sequences",
				cat->wait_ms);
			err = -EIO;
			break;
		}
	}
	if (!err)
		pin_gen(l, pin->gen);
	pthread_mutex_unlock(&l->lock);
	return err;
}

void catalog_unpin(struct catalog *cat, struct dataset *ds, enum item_kind kind,
		   const struct catalog_pin *pin)
{
	struct listing *l = &ds->lists[kind];
	size_t i;

	(void)cat;
	pthread_mutex_lock(&l->lock);
	for (i = 0; i < l->n_pins; i++) {
		if (l->pins[i].gen == pin->gen && l->pins[i].n > 0) {
			/* the last reader of an older generation lets the
			 * marks it held go */
			if (!--l->pins[i].n && l->pins[i].gen < l->gen &&
			    __atomic_load_n(&l->n_gone, __ATOMIC_RELAXED))
				gone_settle(l);
			break;
		}
	}
	pthread_mutex_unlock(&l->lock);
}

int catalog_wait(struct catalog *cat, struct dataset *ds, enum item_kind kind,
		 struct catalog_pin *pin, int64_t deadline)
{
	struct listing *l = &ds->lists[kind];
	int err = 0;

	(void)cat;
	if (!pin->partial)
		return 1;
	pthread_mutex_lock(&l->lock);
	while (l->building == pin->gen && l->pages == pin->pages &&
	       util_cond_wait_until(&l->changed, &l->lock, deadline) !=
		       ETIMEDOUT)
		;
	if (l->gen == pin->gen) {
		pin->partial = false; /* complete now */
		err = 1;
	} else if (l->building == pin->gen && l->pages > pin->pages) {
		pin->pages = l->pages;
	} else {
		err = -EIO; /* failed, or no page in time */
	}
	pthread_mutex_unlock(&l->lock);
	return err;
}

void catalog_forget(struct catalog *cat, struct dataset *ds,
		    enum item_kind kind, uint64_t oid)
{
	struct listing *l = &ds->lists[kind];
	struct fresh_clock clock = { .now = now_ms() };
	struct gone *g;

	(void)cat;
	pthread_mutex_lock(&l->lock);
	HASH_FIND(hh, l->gone, &oid, sizeof(oid), g);
	if (g) {
		g->until = 0; /* gone again after a listing that held it */
	} else if ((g = calloc(1, sizeof(*g)))) {
		g->oid = oid;
		HASH_ADD(hh, l->gone, oid, sizeof(g->oid), g);
		__atomic_add_fetch(&l->n_gone, 1, __ATOMIC_RELAXED);
	}
	fresh_apply(&l->fresh, FRESH_FORGET, 0, &clock);
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

const char *catalog_origin(const struct catalog *cat)
{
	return cat->origin;
}

/* The running sum of the digests of a listing's objects. */
struct digest {
	uint64_t lo, hi;
};

static int digest_object(void *p, const char *uid, size_t len, int64_t mtime)
{
	struct digest *d = p;
	char buf[256];
	XXH128_hash_t h;
	int n;

	if (!uid)
		return 0;
	n = snprintf(buf, sizeof(buf), "%.*s%c%" PRId64,
		     (int)(len < 200 ? len : 200), uid, '\0', mtime);
	h = XXH3_128bits(buf, (size_t)n);
	d->lo += h.low64;
	d->hi += h.high64 + (d->lo < h.low64); /* the carry */
	return 0;
}

int catalog_listing_digest(struct catalog *cat, struct dataset *ds,
			   enum item_kind kind, uint64_t *gen, char hex[33])
{
	struct listing *l = &ds->lists[kind];
	struct digest d = { 0, 0 };
	struct catalog_pin pin;
	bool known;
	int err = catalog_pin(cat, ds, kind, &pin);

	if (err)
		return err;
	if (pin.partial) {
		catalog_unpin(cat, ds, kind, &pin);
		return -ENOENT; /* a first listing still coming */
	}
	pthread_mutex_lock(&l->lock);
	known = l->digest_gen == pin.gen;
	if (known)
		memcpy(hex, l->digest, 33);
	pthread_mutex_unlock(&l->lock);
	/* once per generation: a sum, so the order the store gives them in
	 * does not matter */
	if (!known)
		err = store_versions(dataset_store(ds), pin.gen, digest_object,
				     &d);
	if (!known && !err) {
		snprintf(hex, 33, "%016" PRIx64 "%016" PRIx64, d.hi, d.lo);
		pthread_mutex_lock(&l->lock);
		if (pin.gen > l->digest_gen) {
			l->digest_gen = pin.gen;
			memcpy(l->digest, hex, 33);
		}
		pthread_mutex_unlock(&l->lock);
	}
	*gen = pin.gen;
	catalog_unpin(cat, ds, kind, &pin);
	return err;
}

int catalog_kept(struct catalog *cat, const char *owner, const char *slug,
		 int64_t *listed_at)
{
	/* a store of its own, closed again: the mount may yet fork to the
	 * background, and a database is not to be used across a fork */
	struct store_config cfg = {
		.dir_fd = cat->store_dir_fd,
		.dir = cat->store_dir,
		.origin = cat->origin,
		.owner = owner,
		.slug = slug,
		.budget = cat->store_budget,
	};
	struct store *st;
	uint64_t gen;
	int err = store_open(&cfg, &st);

	if (err)
		return err;
	err = store_latest(st, ITEM_KIND_ITEM, &gen, listed_at);
	store_free(st);
	return err;
}

void catalog_listing_info(struct catalog *cat, struct dataset *ds,
			  enum item_kind kind, struct catalog_listing_info *out)
{
	struct listing *l = &ds->lists[kind];
	struct store *st = dataset_store(ds);
	int64_t n;

	pthread_mutex_lock(&l->lock);
	out->gen = l->gen;
	out->objects = l->gen ? l->objects : 0;
	out->listed_at = l->gen ? l->listed_at : 0;
	out->state = l->fresh.state;
	/* it goes stale when next read: say so from its time */
	if (out->state == FRESH_CURRENT && now_ms() >= l->fresh.until)
		out->state = FRESH_STALE;
	out->last_err = l->last_err;
	out->loads = l->loads;
	out->failures = l->failures;
	out->building = l->building ? l->building_objects : 0;
	out->pages = l->building ? l->pages : 0;
	pthread_mutex_unlock(&l->lock);
	if (out->objects >= 0 || !st)
		return;
	/* a listing kept from before this mount: counted once */
	n = store_objects(st, out->gen);
	pthread_mutex_lock(&l->lock);
	if (l->gen == out->gen && n >= 0)
		l->objects = n;
	pthread_mutex_unlock(&l->lock);
	out->objects = n;
}
