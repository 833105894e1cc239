/* The cache of bytes. Memory blocks are CACHE_BLOCK bytes of one object,
 * keyed by object and index, in LRU order under one byte budget shared by
 * cached data and readahead alike; blocks the kernel's page cache holds too
 * are on a second list, evicted first. Behind them, the disk: a run of
 * blocks claimed for filling is first looked for there, and what the
 * network filled is kept there once a whole unit (a small object, or a
 * DISK_BLOCK of a large one) is in memory.
 * Objects without blocks or users are freed past OBJ_IDLE_MAX of them.
 * Lock order: c->lock is a leaf, never held across disk or network I/O. */
#include "cache.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#define BLOCK_SHIFT CACHE_BLOCK_SHIFT
#define BLOCK_SIZE CACHE_BLOCK
#define UNIT_BLOCKS (DISK_BLOCK >> BLOCK_SHIFT) /* memory blocks a disk block */
#define PIECE_BLOCKS (DISK_PIECE >> BLOCK_SHIFT) /* memory blocks a piece */
#define ERR_HOLD_MS 1000
#define PUT_BLOCKS (DISK_WHOLE_MAX >> CACHE_BLOCK_SHIFT) /* of an entry */
#define PUT_BATCH 32 /* entries written in one go */
#define OBJ_IDLE_MAX 65536 /* idle objects kept for what they know */
#define SENT_SHIFT 12 /* block->sent counts pages of 4 KiB */
_Static_assert((BLOCK_SIZE >> SENT_SHIFT) <= 32, "block->sent is 32 bits");

/* What is known of one remote object. All fields protected by c->lock. */
struct cache_obj {
	char *id;
	int64_t size; /* -1 until known */
	bool size_listed; /* size is the listing's metadata.size */
	bool opened; /* the listing's view was given once */
	char etag[128]; /* "" until known */
	char *listed; /* the listing's time when last opened, or NULL */
	unsigned gen; /* bumped when the object changed */
	unsigned open_gen; /* gen at the last open */
	uint64_t ino; /* its inode, 0 before its first open */
	int err; /* the last fill's failure, for readers that waited on it */
	int64_t err_until; /* ms: until then, readers get err without a try */
	int refs; /* readers, runs and prefetches using it */
	size_t n_blocks; /* blocks of it in the cache */
	struct cache_obj *idle_prev, *idle_next; /* on c->idle when unused */
	bool is_idle;
	UT_hash_handle hh;
};

struct block_key {
	struct cache_obj *o;
	int64_t index;
};

/* All fields but data's bytes protected by c->lock; a run writes the bytes
 * of its own blocks before it marks them ready. */
struct cache_block {
	struct block_key key;
	char *data;
	size_t cap; /* bytes it will hold: BLOCK_SIZE but at the object's end
		     * (its buffer, counted in the budget, is BLOCK_SIZE) */
	size_t len; /* valid bytes */
	uint32_t sent; /* bit p: the kernel's page cache was sent its page p */
	bool ready; /* false while being filled */
	bool cached; /* in the hash and LRU list; false once dropped */
	int pins; /* readers waiting on or copying out of it, its run */
	bool in_kernel; /* on the list of blocks the kernel holds whole */
	bool on_disk; /* its bytes came from an entry on disk */
	bool offered; /* its bytes went to the disk in an entry */
	struct cache_block *lru_prev, *lru_next;
	UT_hash_handle hh;
};

/* An entry to be written to the disk, its blocks pinned until then. */
struct put {
	struct cache_obj *o; /* a reference */
	int64_t unit;
	struct disk_version v;
	struct cache_block *blocks[PUT_BLOCKS];
	int n;
	size_t bytes;
	struct put *next;
};

struct cache {
	pthread_mutex_t lock;
	pthread_cond_t changed; /* a block became ready, went away or unpinned */
	struct cache_obj *objs; /* protected by lock */
	size_t n_objs; /* protected by lock */
	struct cache_obj *idle_head, *idle_tail; /* protected by lock */
	size_t n_idle; /* protected by lock */
	struct cache_block *blocks; /* protected by lock */
	struct lru {
		struct cache_block *head, *tail; /* head newest */
	} lru[2]; /* protected by lock: [1] the blocks the kernel holds too */
	void *spare; /* protected by lock: free block buffers, linked */
	size_t spare_bytes; /* protected by lock */
	struct cache_stats stats; /* protected by lock */
	uint64_t *inval; /* protected by lock: inodes whose pages went stale */
	size_t n_inval, cap_inval; /* protected by lock */
	struct put *puts; /* protected by lock: entries to write, in order */
	size_t put_bytes; /* protected by lock: bytes they pin */
	pthread_cond_t put_ready; /* one was queued, or stopping */
	pthread_t writer;
	bool writer_started, stopping; /* protected by lock */
	struct disk *disk;
};

struct cache *cache_new(size_t budget, struct disk *disk)
{
	struct cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->changed, NULL);
	pthread_cond_init(&c->put_ready, NULL);
	c->stats.budget = budget;
	c->disk = disk;
	return c;
}

static void obj_free(struct cache_obj *o)
{
	free(o->id);
	free(o->listed);
	free(o);
}

void cache_free(struct cache *c)
{
	struct cache_block *b, *bt;
	struct cache_obj *o, *ot;

	if (!c)
		return;
	/* what is queued is written first */
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_broadcast(&c->put_ready);
	pthread_mutex_unlock(&c->lock);
	if (c->writer_started)
		pthread_join(c->writer, NULL);
	HASH_ITER(hh, c->blocks, b, bt) {
		HASH_DEL(c->blocks, b);
		free(b->data);
		free(b);
	}
	while (c->spare) {
		void *next = *(void **)c->spare;

		free(c->spare);
		c->spare = next;
	}
	HASH_ITER(hh, c->objs, o, ot) {
		HASH_DEL(c->objs, o);
		obj_free(o);
	}
	free(c->inval);
	pthread_cond_destroy(&c->put_ready);
	pthread_cond_destroy(&c->changed);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void cache_get_stats(struct cache *c, struct cache_stats *st)
{
	pthread_mutex_lock(&c->lock);
	*st = c->stats;
	pthread_mutex_unlock(&c->lock);
}

/* ---- objects ---- */

static void idle_unlink(struct cache *c, struct cache_obj *o)
{
	if (!o->is_idle)
		return;
	if (o->idle_prev)
		o->idle_prev->idle_next = o->idle_next;
	else
		c->idle_head = o->idle_next;
	if (o->idle_next)
		o->idle_next->idle_prev = o->idle_prev;
	else
		c->idle_tail = o->idle_prev;
	o->idle_prev = o->idle_next = NULL;
	o->is_idle = false;
	c->n_idle--;
}

/* Note whether @o is in use: an unused one goes on the idle list, whose
 * oldest are freed past OBJ_IDLE_MAX. Called with c->lock held. */
static void obj_check_idle(struct cache *c, struct cache_obj *o)
{
	bool idle = o->refs == 0 && o->n_blocks == 0;

	if (idle == o->is_idle)
		return;
	if (!idle) {
		idle_unlink(c, o);
		return;
	}
	o->is_idle = true;
	o->idle_next = c->idle_head;
	o->idle_prev = NULL;
	if (c->idle_head)
		c->idle_head->idle_prev = o;
	c->idle_head = o;
	if (!c->idle_tail)
		c->idle_tail = o;
	c->n_idle++;
	while (c->n_idle > OBJ_IDLE_MAX) {
		struct cache_obj *old = c->idle_tail;

		idle_unlink(c, old);
		HASH_DEL(c->objs, old);
		c->n_objs--;
		obj_free(old);
	}
}

struct cache_obj *cache_obj_get(struct cache *c, const char *id)
{
	struct cache_obj *o;

	pthread_mutex_lock(&c->lock);
	HASH_FIND_STR(c->objs, id, o);
	if (!o) {
		o = calloc(1, sizeof(*o));
		if (!o || !(o->id = strdup(id))) {
			free(o);
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		o->size = -1;
		HASH_ADD_KEYPTR(hh, c->objs, o->id, strlen(o->id), o);
		c->n_objs++;
	}
	o->refs++;
	idle_unlink(c, o);
	pthread_mutex_unlock(&c->lock);
	return o;
}

void cache_obj_put(struct cache *c, struct cache_obj *o)
{
	if (!o)
		return;
	pthread_mutex_lock(&c->lock);
	o->refs--;
	obj_check_idle(c, o);
	pthread_mutex_unlock(&c->lock);
}

/* ---- blocks ---- */

/* Free @b, keeping its buffer for the next block: freshly allocated
 * memory costs a page fault per page, a reused buffer none. The spare
 * buffers and the blocks together stay within the budget. Called with
 * c->lock held. */
static void block_release(struct cache *c, struct cache_block *b)
{
	struct cache_obj *o = b->key.o;

	c->stats.used -= BLOCK_SIZE;
	if (c->stats.used + c->spare_bytes + BLOCK_SIZE <= c->stats.budget) {
		*(void **)b->data = c->spare;
		c->spare = b->data;
		c->spare_bytes += BLOCK_SIZE;
	} else {
		free(b->data);
	}
	free(b);
	o->n_blocks--;
	obj_check_idle(c, o);
}

/* A block buffer: a spare one when there is one. Called with c->lock
 * held. */
static char *buffer_get(struct cache *c)
{
	char *buf;

	if (c->spare) {
		buf = c->spare;
		c->spare = *(void **)buf;
		c->spare_bytes -= BLOCK_SIZE;
		return buf;
	}
	return malloc(BLOCK_SIZE);
}

static void lru_unlink(struct cache *c, struct cache_block *b)
{
	struct lru *l = &c->lru[b->in_kernel];

	if (b->in_kernel)
		c->stats.kernel_held -= BLOCK_SIZE;
	if (b->lru_prev)
		b->lru_prev->lru_next = b->lru_next;
	else
		l->head = b->lru_next;
	if (b->lru_next)
		b->lru_next->lru_prev = b->lru_prev;
	else
		l->tail = b->lru_prev;
	b->lru_prev = b->lru_next = NULL;
}

/* Make @b the newest of its list: that of the blocks the kernel's page
 * cache holds when @in_kernel, else that of the others. */
static void lru_push(struct cache *c, struct cache_block *b, bool in_kernel)
{
	struct lru *l = &c->lru[in_kernel];

	b->in_kernel = in_kernel;
	if (in_kernel)
		c->stats.kernel_held += BLOCK_SIZE;
	b->lru_next = l->head;
	b->lru_prev = NULL;
	if (l->head)
		l->head->lru_prev = b;
	l->head = b;
	if (!l->tail)
		l->tail = b;
}

/* Take @b out of the cache; it is freed now, or by its last unpin. Called
 * with c->lock held. */
static void block_drop(struct cache *c, struct cache_block *b)
{
	if (b->cached) {
		HASH_DEL(c->blocks, b);
		lru_unlink(c, b);
		b->cached = false;
	}
	if (b->pins == 0)
		block_release(c, b);
}

static void block_unpin(struct cache *c, struct cache_block *b)
{
	if (--b->pins == 0 && !b->cached)
		block_release(c, b);
}

static struct cache_block *block_find(struct cache *c, struct cache_obj *o,
				      int64_t i)
{
	struct block_key key = { o, i };
	struct cache_block *b;

	HASH_FIND(hh, c->blocks, &key, sizeof(key), b);
	return b;
}

/* Drop least recently used blocks nobody reads until @need more bytes fit:
 * first those the kernel's page cache holds too, then the others. Returns
 * whether they fit. Called with c->lock held. */
static bool evict(struct cache *c, size_t need)
{
	int k;

	for (k = 1; k >= 0; k--) {
		struct cache_block *b = c->lru[k].tail, *prev;

		while (b && c->stats.used + need > c->stats.budget) {
			prev = b->lru_prev;
			if (b->ready && b->pins == 0) {
				block_drop(c, b);
				c->stats.evicted++;
			}
			b = prev;
		}
	}
	return c->stats.used + need <= c->stats.budget;
}

/* Back within the budget, once the pins that held it above are gone: a
 * claim bigger than the budget (a small file fetched whole) is let through
 * rather than waiting for ever, and must not stay. Called with c->lock
 * held. */
static void trim(struct cache *c)
{
	if (c->stats.used > c->stats.budget)
		evict(c, 0);
}

/* A new not-ready block @i of @o, in the cache and pinned for its run;
 * NULL on ENOMEM. Called with c->lock held, after room was made. */
static struct cache_block *block_new(struct cache *c, struct cache_obj *o,
				     int64_t i)
{
	struct cache_block *b = calloc(1, sizeof(*b));
	int64_t start = i << BLOCK_SHIFT;

	if (!b)
		return NULL;
	b->cap = BLOCK_SIZE;
	if (o->size >= 0 && o->size - start < BLOCK_SIZE)
		b->cap = o->size - start;
	b->data = buffer_get(c);
	if (!b->data) {
		free(b);
		return NULL;
	}
	b->key.o = o;
	b->key.index = i;
	b->cached = true;
	b->pins = 1;
	HASH_ADD(hh, c->blocks, key, sizeof(b->key), b);
	lru_push(c, b, false);
	o->n_blocks++;
	idle_unlink(c, o);
	c->stats.used += BLOCK_SIZE;
	if (c->stats.used > c->stats.peak)
		c->stats.peak = c->stats.used;
	return b;
}

/* Forget every cached block of @o: the object changed. Its inode goes on
 * the list of those whose kernel pages must go too. Called with c->lock
 * held. */
static void obj_invalidate(struct cache *c, struct cache_obj *o)
{
	struct cache_block *b, *tmp;

	/* blocks being filled go too: their runs write into them still, but
	 * no reader of the new version finds them */
	HASH_ITER(hh, c->blocks, b, tmp) {
		if (b->key.o == o)
			block_drop(c, b);
	}
	o->gen++;
	pthread_cond_broadcast(&c->changed);
	if (!o->ino || UTIL_GROW(c->inval, c->n_inval, c->cap_inval, 16))
		return; /* without memory, the next open drops them anyway */
	c->inval[c->n_inval++] = o->ino;
}

size_t cache_take_invalidations(struct cache *c, uint64_t *inos, size_t max)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = c->n_inval < max ? c->n_inval : max;
	if (n) {
		memcpy(inos, c->inval, n * sizeof(*inos));
		memmove(c->inval, c->inval + n,
			(c->n_inval - n) * sizeof(*inos));
		c->n_inval -= n;
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* ---- versions ---- */

int cache_obj_open(struct cache *c, struct cache_obj *o, const char *listed,
		   int64_t size, uint64_t ino, bool *keep_cache, unsigned *gen)
{
	bool changed;
	char *copy = NULL;

	if (listed && !(copy = strdup(listed)))
		return -ENOMEM;
	pthread_mutex_lock(&c->lock);
	/* the listing says the object changed since it was last seen: a
	 * time that is new, gone or appears for the first time, or another
	 * metadata.size */
	changed = o->opened && (!listed != !o->listed ||
				(listed && strcmp(listed, o->listed) != 0) ||
				(size >= 0 && size != o->size));
	if (changed) {
		obj_invalidate(c, o);
		o->etag[0] = '\0';
	}
	if (changed || !o->opened) {
		if (changed || size >= 0) {
			o->size = size;
			o->size_listed = size >= 0;
		}
		free(o->listed);
		o->listed = copy;
		copy = NULL;
		o->opened = true;
	}
	if (ino) {
		o->ino = ino;
		if (keep_cache)
			*keep_cache = o->gen == o->open_gen;
		o->open_gen = o->gen;
	}
	*gen = o->gen;
	pthread_mutex_unlock(&c->lock);
	free(copy);
	return 0;
}

int64_t cache_obj_size(struct cache *c, struct cache_obj *o)
{
	int64_t size;

	pthread_mutex_lock(&c->lock);
	size = o->size;
	pthread_mutex_unlock(&c->lock);
	return size;
}

bool cache_obj_was_opened(struct cache *c, struct cache_obj *o)
{
	bool opened;

	pthread_mutex_lock(&c->lock);
	opened = o->ino != 0;
	pthread_mutex_unlock(&c->lock);
	return opened;
}

bool cache_obj_changed(struct cache *c, struct cache_obj *o, unsigned gen)
{
	bool changed;

	pthread_mutex_lock(&c->lock);
	changed = o->gen != gen;
	pthread_mutex_unlock(&c->lock);
	return changed;
}

int cache_obj_error(struct cache *c, struct cache_obj *o)
{
	int err;

	pthread_mutex_lock(&c->lock);
	err = o->err && util_now_ms() < o->err_until ? o->err : 0;
	pthread_mutex_unlock(&c->lock);
	return err;
}

/* Called with c->lock held; *@drop: the disk's entries must go. */
static int obj_learn(struct cache *c, struct cache_obj *o, const char *etag,
		     int64_t total, const char *what, bool *drop)
{
	bool etag_changed, size_changed;

	if (o->size_listed && total >= 0 && total != o->size) {
		log_debug("%s: the server says %" PRId64 " bytes, the listing "
			  "%" PRId64,
			  what, total, o->size);
		return -EAGAIN;
	}
	etag_changed = o->etag[0] && etag[0] && strcmp(o->etag, etag) != 0;
	size_changed = o->size >= 0 && total >= 0 && total != o->size;
	if (etag_changed || size_changed) {
		log_err("%s changed on the server (%s), dropping cached bytes",
			what, etag_changed ? "new ETag" : "new size");
		obj_invalidate(c, o);
		snprintf(o->etag, sizeof(o->etag), "%s", etag);
		o->size = total;
		*drop = true;
		return -EIO;
	}
	if (!o->etag[0])
		snprintf(o->etag, sizeof(o->etag), "%s", etag);
	if (o->size < 0)
		o->size = total;
	return 0;
}

static void run_extend(struct cache_run *r, int64_t b);

int cache_run_learn(struct cache_run *r, const char *etag, int64_t total,
		    int64_t whole, const char *what)
{
	struct cache *c = r->c;
	struct cache_obj *o = r->o;
	bool drop = false;
	int err;

	pthread_mutex_lock(&c->lock);
	/* an answer to a claim of an older version teaches nothing of the
	 * current one */
	err = o->gen != r->gen ? -ESTALE
			       : obj_learn(c, o, etag, total, what, &drop);
	/* the size known, the run takes the blocks it brings before a
	 * reader that learns the size with it claims them again */
	if (!err && whole > 0 && r->a == 0 && o->size > 0 &&
	    (o->size <= whole || r->probe))
		run_extend(r, ((o->size < whole ? o->size : whole) - 1) >>
				      BLOCK_SHIFT);
	pthread_mutex_unlock(&c->lock);
	if (drop && c->disk)
		disk_drop(c->disk, o->id);
	return err;
}

/* ---- claiming and filling ---- */

static size_t count_missing(struct cache *c, struct cache_obj *o, int64_t a,
			    int64_t b)
{
	size_t n = 0;
	int64_t i;

	for (i = a; i <= b; i++)
		n += !block_find(c, o, i);
	return n;
}

int64_t cache_first_missing(struct cache *c, struct cache_obj *o, int64_t a,
			    int64_t b)
{
	int64_t i;

	pthread_mutex_lock(&c->lock);
	for (i = a; i <= b && block_find(c, o, i); i++)
		;
	pthread_mutex_unlock(&c->lock);
	return i;
}

static struct cache_run *run_new(struct cache *c, struct cache_obj *o,
				 int64_t a, int64_t b)
{
	struct cache_run *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->blocks = calloc(b - a + 1, sizeof(*r->blocks));
	if (!r->blocks) {
		free(r);
		return NULL;
	}
	r->c = c;
	r->o = o;
	r->gen = o->gen;
	r->a = r->from = a;
	r->b = a - 1; /* no block yet */
	o->refs++;
	return r;
}

/* cache_claim(), called with c->lock held. */
static int claim_locked(struct cache *c, struct cache_obj *o, int64_t a,
			int64_t b, bool wait, struct cache_run **runs)
{
	struct cache_run *run = NULL;
	size_t missing;
	int64_t i;
	int err = 0;

	/* wait holding nothing: blocks being filled and pinned ones are all
	 * released without needing room themselves. Eviction may take blocks
	 * of [a, b] too, so count again until the room made is enough. */
	for (;;) {
		missing = count_missing(c, o, a, b);
		if (missing == 0)
			break;
		if (evict(c, missing * BLOCK_SIZE)) {
			if (count_missing(c, o, a, b) == missing)
				break;
			continue;
		}
		if (!wait || c->stats.used == 0 ||
		    missing * BLOCK_SIZE > c->stats.budget)
			break;
		pthread_cond_wait(&c->changed, &c->lock);
	}
	for (i = a; i <= b; i++) {
		struct cache_block *blk = block_find(c, o, i);

		if (blk) {
			if (blk->ready) {
				lru_unlink(c, blk);
				lru_push(c, blk, blk->in_kernel);
				c->stats.hits++;
			}
			run = NULL;
			continue;
		}
		if (!wait && !evict(c, BLOCK_SIZE))
			break;
		if (!run) {
			run = run_new(c, o, i, b);
			if (!run) {
				err = -ENOMEM;
				break;
			}
			run->next = *runs;
			*runs = run;
		}
		blk = block_new(c, o, i);
		if (!blk) {
			err = -ENOMEM;
			break;
		}
		c->stats.misses++;
		run->blocks[i - run->a] = blk;
		run->b = i;
	}
	return err;
}

int cache_claim(struct cache *c, struct cache_obj *o, int64_t a, int64_t b,
		bool wait, struct cache_run **runs)
{
	int err;

	pthread_mutex_lock(&c->lock);
	err = claim_locked(c, o, a, b, wait, runs);
	pthread_mutex_unlock(&c->lock);
	return err;
}

/* Make block @i of @r readable; the run keeps its pin until it is
 * settled, so what it filled is still there to be kept on disk. Called
 * with c->lock held. */
static void block_done(struct cache_run *r, int64_t i)
{
	struct cache *c = r->c;

	r->blocks[i - r->a]->ready = true;
	pthread_cond_broadcast(&c->changed);
}

/* Grow @r, whose object's size became known, to block @b, or as far as
 * blocks fit and none is held already. Called with c->lock held. */
static void run_extend(struct cache_run *r, int64_t b)
{
	struct cache *c = r->c;
	struct cache_block **v;
	int64_t i;

	if (b <= r->b)
		return;
	v = realloc(r->blocks, (b - r->a + 1) * sizeof(*v));
	if (!v)
		return;
	r->blocks = v;
	for (i = r->b + 1; i <= b; i++) {
		struct cache_block *blk;

		if (block_find(c, r->o, i) || !evict(c, BLOCK_SIZE))
			break;
		blk = block_new(c, r->o, i);
		if (!blk)
			break;
		c->stats.misses++;
		r->blocks[i - r->a] = blk;
		r->b = i;
	}
}

/* Blocks [r->from, ...] of the unit at object offset @start, from @bytes
 * (@len of them): copied, and readable. */
static void fill_from(struct cache_run *r, int64_t start, const char *bytes,
		      size_t len)
{
	struct cache *c = r->c;
	int64_t i, last = (start + (int64_t)len - 1) >> BLOCK_SHIFT;

	pthread_mutex_lock(&c->lock);
	if (r->o->gen != r->gen) {
		/* the object changed since the entry was read: not its bytes */
		pthread_mutex_unlock(&c->lock);
		return;
	}
	run_extend(r, last);
	for (i = r->from; i <= r->b && i <= last; i++) {
		struct cache_block *b = r->blocks[i - r->a];
		int64_t at = (i << BLOCK_SHIFT) - start;
		size_t n = len - at < (size_t)BLOCK_SIZE ? len - at
							 : (size_t)BLOCK_SIZE;

		if (b->ready)
			continue;
		b->cap = n;
		memcpy(b->data, bytes + at, n);
		b->len = n;
		b->on_disk = true;
		c->stats.disk_read += n;
		block_done(r, i);
	}
	r->from = i;
	pthread_mutex_unlock(&c->lock);
}

/* Read entry @unit of @r's object, @len bytes from object offset @start,
 * straight into the run's blocks: when the run holds them all already (it
 * never grows for it: the entry may not be there) and none is filled yet,
 * and the entry is that long. Nothing is made readable (see
 * blocks_ready()). Returns disk_get_iov()'s result, or -EMSGSIZE when the
 * run cannot take it so. */
static ssize_t disk_into_run(struct cache_run *r, int64_t unit, int64_t start,
			     int64_t len, const struct disk_version *want,
			     struct disk_version *got)
{
	struct cache *c = r->c;
	struct iovec iov[PUT_BLOCKS > UNIT_BLOCKS ? PUT_BLOCKS : UNIT_BLOCKS];
	int64_t first = start >> BLOCK_SHIFT, last, i;
	bool ok;

	if (len <= 0 || r->from != first)
		return -EMSGSIZE;
	last = (start + len - 1) >> BLOCK_SHIFT;
	if (last - first + 1 > (int64_t)(sizeof(iov) / sizeof(*iov)))
		return -EMSGSIZE;
	pthread_mutex_lock(&c->lock);
	ok = r->b >= last && r->o->gen == r->gen;
	for (i = first; ok && i <= last; i++) {
		struct cache_block *b = r->blocks[i - r->a];
		int64_t end = start + len, at = i << BLOCK_SHIFT;

		ok = !b->ready && b->len == 0;
		iov[i - first].iov_base = b->data;
		iov[i - first].iov_len = end - at < BLOCK_SIZE ? end - at
							       : BLOCK_SIZE;
	}
	pthread_mutex_unlock(&c->lock);
	if (!ok)
		return -EMSGSIZE;
	return disk_get_iov(c->disk, r->o->id, unit, want, got, iov,
			    (int)(last - first + 1));
}

/* Make the blocks disk_into_run() filled with @len bytes from object
 * offset @start readable. */
static void blocks_ready(struct cache_run *r, int64_t start, int64_t len)
{
	struct cache *c = r->c;
	int64_t i, last = (start + len - 1) >> BLOCK_SHIFT;

	pthread_mutex_lock(&c->lock);
	if (r->o->gen != r->gen) {
		/* the object changed since the entry was read */
		pthread_mutex_unlock(&c->lock);
		return;
	}
	for (i = start >> BLOCK_SHIFT; i <= last; i++) {
		struct cache_block *b = r->blocks[i - r->a];
		int64_t at = i << BLOCK_SHIFT;

		b->cap = start + len - at < BLOCK_SIZE ? start + len - at
						       : BLOCK_SIZE;
		b->len = b->cap;
		b->on_disk = true;
		c->stats.disk_read += b->len;
		block_done(r, i);
	}
	r->from = last + 1;
	pthread_mutex_unlock(&c->lock);
}

/* The version a reader of @o expects, as the disk knows versions. Called
 * with c->lock held. */
static void want_of(const struct cache_obj *o, struct disk_version *v)
{
	v->total = o->size;
	snprintf(v->etag, sizeof(v->etag), "%s", o->etag);
	snprintf(v->listed, sizeof(v->listed), "%s",
		 o->listed ? o->listed : "");
}

/* Whether an entry of @unit with @n bytes agrees with the size it says
 * its object has. */
static bool entry_whole(int64_t unit, ssize_t n, int64_t total)
{
	int64_t len = disk_unit_len(unit, total);

	return (unit == DISK_WHOLE || len > 0) && n == len;
}

void cache_run_from_disk(struct cache_run *r)
{
	struct cache *c = r->c;
	struct disk_version want, got;
	int64_t missed = DISK_WHOLE; /* a block the disk lacks whole */

	if (!c->disk)
		return;
	while (r->from <= r->b) {
		int64_t size, unit, start, len;
		void *bytes = NULL;
		ssize_t n;
		bool fits;

		pthread_mutex_lock(&c->lock);
		want_of(r->o, &want);
		size = r->o->size;
		pthread_mutex_unlock(&c->lock);
		if (size >= 0 && r->from << BLOCK_SHIFT >= size)
			return;
		/* a size not known yet: a small object's whole entry, else a
		 * large one's first block; a block the disk lacks whole may
		 * have pieces */
		unit = size <= DISK_WHOLE_MAX ? DISK_WHOLE
					      : r->from / UNIT_BLOCKS;
		if (unit != DISK_WHOLE && unit == missed)
			unit = DISK_PIECES +
			       ((r->from << BLOCK_SHIFT) >> DISK_PIECE_SHIFT);
		start = disk_unit_start(unit);
		/* a size known: the entry's bytes go to the blocks as they
		 * are read, else to a buffer, then copied */
		len = disk_unit_len(unit, size);
		n = size < 0 ? -EMSGSIZE
			     : disk_into_run(r, unit, start, len, &want, &got);
		if (n == -EMSGSIZE)
			n = disk_get(c->disk, r->o->id, unit, &want, &got,
				     &bytes);
		if (n == -ENOENT && size < 0 && r->from == 0) {
			unit = 0;
			n = disk_get(c->disk, r->o->id, unit, &want, &got,
				     &bytes);
		}
		if (n == -ENOENT && size > DISK_WHOLE_MAX &&
		    unit < DISK_PIECES) {
			missed = unit;
			continue;
		}
		if (n < 0)
			return;
		/* an entry at odds with itself, or with what was learned of
		 * the object meanwhile, is not its bytes */
		pthread_mutex_lock(&c->lock);
		if (r->o->gen != r->gen) {
			/* the object changed since the claim: this run's
			 * bytes are not wanted, from here or the network, and
			 * the entry may well be the new version's */
			r->from = r->b + 1;
			pthread_mutex_unlock(&c->lock);
			free(bytes);
			return;
		}
		fits = entry_whole(unit, n, got.total) &&
		       (r->o->size < 0 || r->o->size == got.total) &&
		       (!r->o->etag[0] || strcmp(r->o->etag, got.etag) == 0);
		if (fits) {
			if (r->o->size < 0)
				r->o->size = got.total;
			if (!r->o->etag[0])
				snprintf(r->o->etag, sizeof(r->o->etag), "%s",
					 got.etag);
		}
		pthread_mutex_unlock(&c->lock);
		r->pieces |= fits && unit >= DISK_PIECES;
		if (fits && n > 0 && bytes)
			fill_from(r, disk_unit_start(unit), bytes, n);
		else if (fits && n > 0)
			blocks_ready(r, start, n);
		free(bytes);
		if (!fits) {
			disk_drop(c->disk, r->o->id);
			return;
		}
		if (n == 0) {
			r->from = r->b + 1; /* an empty object */
			return;
		}
	}
}

int cache_run_write(struct cache_run *r, int64_t off, const char *data,
		    size_t len)
{
	struct cache *c = r->c;

	while (len > 0) {
		int64_t i = off >> BLOCK_SHIFT;
		struct cache_block *b;
		size_t at = off & (BLOCK_SIZE - 1), n;

		if (i < r->from || i > r->b)
			return i > r->b ? 1 : -EIO;
		b = r->blocks[i - r->a];
		if (b->ready)
			return -EIO; /* never: a finished block gets no more */
		n = b->cap - at < len ? b->cap - at : len;
		if (at != b->len || n == 0)
			return -EIO;
		memcpy(b->data + at, data, n);
		b->len += n;
		r->net = true;
		if (b->len == b->cap) {
			bool stale;

			pthread_mutex_lock(&c->lock);
			stale = r->o->gen != r->gen;
			if (!stale) {
				c->stats.filled += b->len;
				/* whole: readers may have it, and once read,
				 * eviction may take it */
				block_done(r, i);
				r->from = i + 1;
			}
			pthread_mutex_unlock(&c->lock);
			if (stale)
				return -EIO; /* the object changed meanwhile */
		}
		off += n;
		data += n;
		len -= n;
	}
	return 0;
}

/* The first block of the disk unit holding block @i, and its last, of an
 * object of @size bytes. */
static void unit_of(int64_t size, int64_t i, int64_t *first, int64_t *last)
{
	int64_t end = (size - 1) >> BLOCK_SHIFT;

	if (size <= DISK_WHOLE_MAX) {
		*first = 0;
		*last = end;
	} else {
		*first = i / UNIT_BLOCKS * UNIT_BLOCKS;
		*last = *first + UNIT_BLOCKS - 1 < end
				? *first + UNIT_BLOCKS - 1
				: end;
	}
}

/* Write the puts of list @p to the disk in one go and let their blocks
 * go. */
static void puts_write(struct cache *c, struct put *p)
{
	struct disk_put many[PUT_BATCH];
	struct iovec iov[PUT_BATCH][PUT_BLOCKS];
	struct put *k, *next;
	int n = 0, i;

	for (k = p; k && n < PUT_BATCH; k = k->next, n++) {
		for (i = 0; i < k->n; i++) {
			iov[n][i].iov_base = k->blocks[i]->data;
			iov[n][i].iov_len = k->blocks[i]->len;
		}
		many[n] = (struct disk_put){ k->o->id, k->unit, &k->v,
					     iov[n],   k->n,	0 };
	}
	disk_put_many(c->disk, many, n);
	/* a block kept whole replaces the pieces of it kept before */
	for (k = p, i = 0; i < n; k = k->next, i++)
		if (many[i].err == 0 && k->unit >= 0 && k->unit < DISK_PIECES)
			disk_drop_pieces(c->disk, k->o->id, k->unit);
	pthread_mutex_lock(&c->lock);
	for (k = p; k; k = next) {
		next = k->next;
		for (i = 0; i < k->n; i++)
			block_unpin(c, k->blocks[i]);
		c->put_bytes -= k->bytes;
		k->o->refs--;
		obj_check_idle(c, k->o);
		free(k);
	}
	trim(c);
	pthread_cond_broadcast(&c->changed);
	pthread_mutex_unlock(&c->lock);
}

/* The thread that writes entries, so that no reader waits for the disk:
 * what queued up while it wrote goes in one batch. At the end it writes
 * what is queued still. */
static void *writer_main(void *arg)
{
	struct cache *c = arg;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		struct put *p = c->puts, *last = p;
		int n = 1;

		if (!p && c->stopping)
			break;
		if (!p) {
			pthread_cond_wait(&c->put_ready, &c->lock);
			continue;
		}
		while (last->next && n < PUT_BATCH) {
			last = last->next;
			n++;
		}
		c->puts = last->next;
		last->next = NULL;
		pthread_mutex_unlock(&c->lock);
		puts_write(c, p);
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* Queue @p for the writer, started on first use (after the daemon
 * forked). Called with c->lock held; false when it must be written here
 * (there is no writer). */
static bool put_queue(struct cache *c, struct put *p)
{
	struct put **tail = &c->puts;

	if (!c->writer_started && !c->stopping)
		c->writer_started =
			pthread_create(&c->writer, NULL, writer_main, c) == 0;
	if (!c->writer_started || c->stopping)
		return false;
	while (*tail)
		tail = &(*tail)->next;
	*tail = p;
	pthread_cond_signal(&c->put_ready);
	return true;
}

/* Keep blocks [i, j] of @o, generation @gen, on disk as entry @unit, when
 * every one is whole in memory (and, with @fetched, none came from the
 * disk or went to it already): they are pinned until written. False when
 * one is not. */
static bool keep_entry(struct cache *c, struct cache_obj *o, unsigned gen,
		       int64_t unit, int64_t i, int64_t j, bool fetched)
{
	struct put *p = calloc(1, sizeof(*p));
	bool whole = i <= j, queued = false;
	int64_t k;

	if (!p)
		return false;
	pthread_mutex_lock(&c->lock);
	for (k = i; whole && k <= j; k++) {
		struct cache_block *blk = block_find(c, o, k);

		whole = o->gen == gen && blk && blk->ready &&
			blk->len == blk->cap &&
			!(fetched && (blk->on_disk || blk->offered));
		if (!whole)
			break;
		blk->pins++;
		p->blocks[p->n++] = blk;
		p->bytes += blk->len;
	}
	if (!whole) {
		while (p->n > 0)
			block_unpin(c, p->blocks[--p->n]);
	} else {
		for (k = 0; k < p->n; k++)
			p->blocks[k]->offered = true;
		p->o = o;
		o->refs++;
		p->unit = unit;
		want_of(o, &p->v);
		c->put_bytes += p->bytes;
		queued = put_queue(c, p);
	}
	pthread_mutex_unlock(&c->lock);
	/* once queued, @p is the writer's */
	if (!whole)
		free(p);
	else if (!queued)
		puts_write(c, p);
	return whole;
}

/* Whether a block of [a, b] of @o is being filled. */
static bool blocks_coming(struct cache *c, struct cache_obj *o, int64_t a,
			  int64_t b)
{
	bool coming = false;

	pthread_mutex_lock(&c->lock);
	for (; !coming && a <= b; a++) {
		struct cache_block *blk = block_find(c, o, a);

		coming = blk && !blk->ready;
	}
	pthread_mutex_unlock(&c->lock);
	return coming;
}

/* Keep on disk every unit of @o that [a, b] touched and that is now whole
 * in memory; of a block of a large object that is not, and that no run
 * still fills, the pieces whole in memory (a random read keeps what it
 * fetched, and only that). */
static void keep_on_disk(struct cache *c, struct cache_obj *o, unsigned gen,
			 int64_t a, int64_t b)
{
	int64_t first, last, size, i;

	for (; a <= b; a = last + 1) {
		pthread_mutex_lock(&c->lock);
		size = o->gen == gen ? o->size : -1;
		pthread_mutex_unlock(&c->lock);
		if (size <= 0)
			return;
		unit_of(size, a, &first, &last);
		if (size <= DISK_WHOLE_MAX) {
			keep_entry(c, o, gen, DISK_WHOLE, first, last, false);
			continue;
		}
		if (keep_entry(c, o, gen, first / UNIT_BLOCKS, first, last,
			       false) ||
		    blocks_coming(c, o, first, last))
			continue; /* kept, or the run that ends it keeps it */
		for (i = first; i <= last; i += PIECE_BLOCKS)
			keep_entry(c, o, gen, DISK_PIECES + i / PIECE_BLOCKS, i,
				   i + PIECE_BLOCKS - 1 < last
					   ? i + PIECE_BLOCKS - 1
					   : last,
				   true);
	}
}

void cache_run_settle(struct cache_run *r, int err)
{
	struct cache *c = r->c;
	struct cache_obj *o = r->o;
	bool filled = false;
	int64_t i;

	pthread_mutex_lock(&c->lock);
	for (i = r->a; i <= r->b; i++) {
		struct cache_block *b = r->blocks[i - r->a];
		int64_t end = (i << BLOCK_SHIFT) + (int64_t)b->len;

		if (b->ready) {
			filled = true;
		} else if (!err && b->len > 0 && o->size >= 0 &&
			   end == o->size && o->gen == r->gen) {
			/* the object's last, short block */
			b->cap = b->len;
			c->stats.filled += b->len;
			b->ready = true;
			filled = true;
		} else {
			block_drop(c, b);
		}
	}
	/* a part fetched ahead that timed out fails no read: the reader
	 * that comes to its blocks asks for them again */
	if (o->gen == r->gen && !(r->ahead && err == -EIO)) {
		o->err = err;
		/* a server that just used up a whole deadline is not asked
		 * again at once: a kernel retrying the read would wait it out
		 * twice */
		o->err_until = err == -EIO ? util_now_ms() + ERR_HOLD_MS : 0;
	}
	pthread_cond_broadcast(&c->changed);
	pthread_mutex_unlock(&c->lock);
	/* what came from the network, and a block that pieces and the
	 * network made whole, whichever run ended last */
	if (c->disk && filled && (r->net || r->pieces))
		keep_on_disk(c, o, r->gen, r->a, r->b);
	pthread_mutex_lock(&c->lock);
	for (i = r->a; i <= r->b; i++)
		block_unpin(c, r->blocks[i - r->a]); /* the run's own pin */
	trim(c);
	pthread_cond_broadcast(&c->changed);
	pthread_mutex_unlock(&c->lock);
	cache_obj_put(c, o);
	free(r->blocks);
	free(r);
}

/* ---- reading ---- */

/* Pin the blocks of [@off, @off + @len) of @o (@len > 0) that are held or
 * coming, in @v, whose arrays are made; the bytes of the read that are
 * ready in them already count as read from memory. Called with c->lock
 * held. */
static void pin_locked(struct cache *c, struct cache_obj *o, int64_t off,
		       size_t len, struct cache_view *v)
{
	int64_t a = off >> BLOCK_SHIFT, b = (off + len - 1) >> BLOCK_SHIFT, i;

	for (i = a; i <= b; i++) {
		struct cache_block *blk = block_find(c, o, i);
		int64_t start = i << BLOCK_SHIFT, from, to;

		if (!blk)
			break;
		blk->pins++;
		v->blocks[v->n++] = blk;
		if (!blk->ready)
			continue;
		from = off > start ? off : start;
		to = off + (int64_t)len < start + (int64_t)blk->len
			     ? off + (int64_t)len
			     : start + (int64_t)blk->len;
		if (to > from)
			c->stats.memory_read += to - from;
	}
}

int cache_claim_pin(struct cache *c, struct cache_obj *o, int64_t a, int64_t b,
		    int64_t off, size_t len, struct cache_run **runs,
		    struct cache_view *v)
{
	size_t n = ((off + len - 1) >> BLOCK_SHIFT) - (off >> BLOCK_SHIFT) + 1;
	int err;

	memset(v, 0, sizeof(*v));
	v->blocks = calloc(n, sizeof(*v->blocks));
	v->iov = calloc(n, sizeof(*v->iov));
	if (!v->blocks || !v->iov) {
		cache_view_release(c, v, false);
		return -ENOMEM;
	}
	/* in one hold of the lock: a block found ready is pinned before any
	 * other reader's claim can evict it */
	pthread_mutex_lock(&c->lock);
	err = claim_locked(c, o, a, b, true, runs);
	if (!err)
		pin_locked(c, o, off, len, v);
	pthread_mutex_unlock(&c->lock);
	if (err)
		cache_view_release(c, v, false);
	return err;
}

int cache_wait(struct cache *c, struct cache_obj *o, unsigned gen, int64_t off,
	       size_t len, struct cache_view *v)
{
	int64_t a = off >> BLOCK_SHIFT, b = (off + len - 1) >> BLOCK_SHIFT, i;
	int err = 0;

	pthread_mutex_lock(&c->lock);
	for (i = 0; i < v->n; i++) {
		struct cache_block *blk = v->blocks[i];

		while (!blk->ready && blk->cached)
			pthread_cond_wait(&c->changed, &c->lock);
		if (!blk->ready && !err)
			err = o->err ? o->err : -EAGAIN;
	}
	if (!err && v->n != b - a + 1)
		err = -EAGAIN;
	if (!err && o->gen != gen)
		err = -EIO; /* the object changed: never mix versions */
	pthread_mutex_unlock(&c->lock);

	v->len = 0;
	for (i = 0; !err && i < v->n; i++) {
		struct cache_block *blk = v->blocks[i];
		int64_t from = off + (int64_t)v->len - ((a + i) << BLOCK_SHIFT);
		size_t n;

		if (from >= (int64_t)blk->len)
			break; /* the object ends here */
		n = blk->len - from;
		if (n > len - v->len)
			n = len - v->len;
		v->iov[i].iov_base = blk->data + from;
		v->iov[i].iov_len = n;
		v->len += n;
	}
	if (err)
		cache_view_release(c, v, false);
	return err;
}

/* Note the pages of @b that [@from, @from + @len) filled whole in the
 * kernel's page cache (the block's last page may be short); whether the
 * kernel now holds every page of it. Reads may come in any order. */
static bool block_sent(struct cache_block *b, size_t from, size_t len)
{
	size_t page = (size_t)1 << SENT_SHIFT, end = from + len, p, p_end;
	size_t pages = (b->len + page - 1) >> SENT_SHIFT;

	for (p = (from + page - 1) >> SENT_SHIFT; p < pages; p++) {
		p_end = (p + 1) << SENT_SHIFT;
		if (p_end > b->len)
			p_end = b->len;
		if (p_end > end)
			break;
		b->sent |= (uint32_t)1 << p;
	}
	return pages > 0 && b->sent == (uint32_t)(((uint64_t)1 << pages) - 1);
}

/* Drop the blocks of @o, a whole entry on disk, once the kernel holds
 * every one of them: they are in its page cache and on disk, and their
 * buffers serve the next reads (a walk over the disk cache then touches no
 * new memory). Called with c->lock held. */
static void drop_sent(struct cache *c, struct cache_obj *o)
{
	int64_t i, last;

	if (o->size <= 0 || o->size > DISK_WHOLE_MAX)
		return;
	last = (o->size - 1) >> BLOCK_SHIFT;
	for (i = 0; i <= last; i++) {
		struct cache_block *b = block_find(c, o, i);

		if (b && !(b->ready && b->in_kernel && b->on_disk))
			return;
	}
	for (i = 0; i <= last; i++) {
		struct cache_block *b = block_find(c, o, i);

		if (b)
			block_drop(c, b);
	}
}

void cache_view_release(struct cache *c, struct cache_view *v, bool sent)
{
	struct cache_obj *sent_whole = NULL;
	int i;

	if (v->n) {
		pthread_mutex_lock(&c->lock);
		for (i = 0; i < v->n; i++) {
			struct cache_block *b = v->blocks[i];

			/* the kernel keeps what it was sent: once it has every
			 * page of a block, the block is the first to go when
			 * room is needed, but stays for when the kernel lets
			 * its pages go (reclaim, drop_caches) and asks again */
			if (sent && v->drop_behind && v->iov &&
			    v->iov[i].iov_base && b->ready && b->cached &&
			    !b->in_kernel &&
			    block_sent(b, (char *)v->iov[i].iov_base - b->data,
				       v->iov[i].iov_len)) {
				lru_unlink(c, b);
				lru_push(c, b, true);
				if (b->on_disk)
					sent_whole = b->key.o;
			}
			block_unpin(c, b);
		}
		if (sent_whole)
			drop_sent(c, sent_whole);
		trim(c);
		pthread_cond_broadcast(&c->changed);
		pthread_mutex_unlock(&c->lock);
	}
	free(v->blocks);
	free(v->iov);
	memset(v, 0, sizeof(*v));
}
