/* Parsed objects of the current listings: each is parsed from the store on
 * use and kept, in a small LRU cache, while the listing it came from is. */
#include "objects.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <uthash.h>

#define OBJECT_CACHE_MAX 1024 /* parsed objects kept */
#define OBJECT_CACHE_BYTES (64 << 20) /* their JSON, and its pretty form */

struct cached_key {
	size_t ds;
	uint64_t oid;
	uint64_t sequence; /* 1 for a sequence, 0 for an item */
};

struct cached {
	struct cached_key key;
	uint64_t gen;
	struct item *it;
	struct store_place place;
	bool placed; /* place is known */
	struct cached *prev, *next; /* LRU, head newest */
	UT_hash_handle hh;
};

struct objects {
	struct catalog *cat;
	pthread_mutex_t lock;
	struct cached *by_key; /* protected by lock */
	struct cached *head, *tail; /* protected by lock */
	size_t n; /* protected by lock */
	size_t bytes; /* protected by lock: cost() of those kept */
};

/* What an object kept costs: its JSON, and the pretty form metadata.json
 * makes of it (about as long), so that a few objects with huge metadata
 * do not hold hundreds of MB. */
static size_t cost(const struct item *it)
{
	return 2 * it->json_len + 1024;
}

struct objects *objects_new(struct catalog *cat)
{
	struct objects *c = calloc(1, sizeof(*c));

	if (c) {
		c->cat = cat;
		pthread_mutex_init(&c->lock, NULL);
	}
	return c;
}

static void lru_unlink(struct objects *c, struct cached *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(struct objects *c, struct cached *e)
{
	e->next = c->head;
	e->prev = NULL;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (!c->tail)
		c->tail = e;
}

static void cached_drop(struct objects *c, struct cached *e)
{
	HASH_DEL(c->by_key, e);
	lru_unlink(c, e);
	c->bytes -= cost(e->it);
	item_unref(e->it);
	free(e);
	c->n--;
}

void objects_free(struct objects *c)
{
	if (!c)
		return;
	while (c->head)
		cached_drop(c, c->head);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static struct cached_key key_of(struct dataset *ds, enum item_kind kind,
				uint64_t oid)
{
	struct cached_key key = { dataset_index(ds), oid,
				  kind == ITEM_KIND_SEQUENCE };

	return key;
}

/* Pin @ds's @kind listing for a read by @op, in *@p: *@own tells whether
 * the caller gives it back (unless @op holds it already or takes it). */
static int pin(struct objects *c, struct objects_op *op, struct dataset *ds,
	       enum item_kind kind, struct catalog_pin *p, bool *own)
{
	struct objects_pin *h;
	int i, err;

	*own = false;
	for (i = 0; op && i < op->n; i++) {
		if (op->held[i].ds == ds && op->held[i].kind == kind) {
			*p = op->held[i].pin;
			return 0;
		}
	}
	err = catalog_pin(c->cat, ds, kind, p);
	if (err)
		return err;
	if (op && op->n < OBJECTS_OP_PINS) {
		h = &op->held[op->n++];
		h->ds = ds;
		h->kind = kind;
		h->pin = *p;
	} else {
		*own = true;
	}
	return 0;
}

void objects_op_end(struct objects *c, struct objects_op *op)
{
	int i;

	if (!op)
		return;
	for (i = 0; i < op->n; i++)
		catalog_unpin(c->cat, op->held[i].ds, op->held[i].kind,
			      &op->held[i].pin);
	op->n = 0;
}

int objects_get(struct objects *c, struct objects_op *op, struct dataset *ds,
		enum item_kind kind, uint64_t oid, struct item **out)
{
	struct cached_key key = key_of(ds, kind, oid);
	struct cached *e;
	struct item *it = NULL;
	struct catalog_pin p;
	bool own;
	int err;

	*out = NULL;
	if (objects_gone(c, ds, kind, oid))
		return -ENOENT;
	err = pin(c, op, ds, kind, &p, &own);
	if (err)
		return err;
	pthread_mutex_lock(&c->lock);
	HASH_FIND(hh, c->by_key, &key, sizeof(key), e);
	if (e && e->gen == p.gen) {
		lru_unlink(c, e);
		lru_push(c, e);
		it = item_ref(e->it);
	}
	pthread_mutex_unlock(&c->lock);
	if (!it) {
		err = store_object(dataset_store(ds), p.gen, kind, oid, &it);
		if (!err) {
			pthread_mutex_lock(&c->lock);
			HASH_FIND(hh, c->by_key, &key, sizeof(key), e);
			if (e)
				cached_drop(c, e);
			e = calloc(1, sizeof(*e));
			if (e) {
				e->key = key;
				e->gen = p.gen;
				e->it = item_ref(it);
				HASH_ADD(hh, c->by_key, key, sizeof(e->key), e);
				lru_push(c, e);
				c->n++;
				c->bytes += cost(it);
				while (c->n > 1 &&
				       (c->n > OBJECT_CACHE_MAX ||
					c->bytes > OBJECT_CACHE_BYTES))
					cached_drop(c, c->tail);
			}
			pthread_mutex_unlock(&c->lock);
		}
	}
	if (own)
		catalog_unpin(c->cat, ds, kind, &p);
	*out = it;
	return err;
}

int objects_place(struct objects *c, struct objects_op *op, struct dataset *ds,
		  enum item_kind kind, uint64_t oid, struct store_place *place)
{
	struct cached_key key = key_of(ds, kind, oid);
	struct cached *e;
	struct catalog_pin p;
	bool found = false, own;
	int err;

	err = pin(c, op, ds, kind, &p, &own);
	if (err)
		return err;
	pthread_mutex_lock(&c->lock);
	HASH_FIND(hh, c->by_key, &key, sizeof(key), e);
	if (e && e->gen == p.gen && e->placed) {
		*place = e->place;
		found = true;
	}
	pthread_mutex_unlock(&c->lock);
	if (!found) {
		err = store_object_place(dataset_store(ds), p.gen, kind, oid,
					 place);
		pthread_mutex_lock(&c->lock);
		HASH_FIND(hh, c->by_key, &key, sizeof(key), e);
		if (!err && e && e->gen == p.gen) {
			e->place = *place;
			e->placed = true;
		}
		pthread_mutex_unlock(&c->lock);
	}
	if (own)
		catalog_unpin(c->cat, ds, kind, &p);
	return err;
}

int objects_entry(struct objects *c, struct objects_op *op, struct dataset *ds,
		  enum item_kind kind, uint64_t oid, struct store_entry *e)
{
	struct catalog_pin p;
	bool own;
	int err;

	if (objects_gone(c, ds, kind, oid))
		return -ENOENT;
	err = pin(c, op, ds, kind, &p, &own);
	if (err)
		return err;
	err = store_object_entry(dataset_store(ds), p.gen, oid, e);
	if (own)
		catalog_unpin(c->cat, ds, kind, &p);
	return err;
}

bool objects_gone(struct objects *c, struct dataset *ds, enum item_kind kind,
		  uint64_t oid)
{
	return oid && catalog_gone(c->cat, ds, kind, oid);
}
