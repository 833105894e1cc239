/* Reads of open files. A read claims the blocks it needs (a small file's
 * whole), starts what is missing on its own thread and what a sequential
 * reader will want next on the fetching threads, then waits for its blocks.
 *
 * Orders: each open tells where its file stands in up to STREAM_ORDERS
 * orders and which file comes next in each, and who opens it. An order
 * follows up to CURSORS readers at once (say xargs -P8 over a listing, each
 * cat at its own place): a reader's open of the file that comes after its
 * last moves its cursor on; three in a row (two that follow) and the next
 * files of that order are fetched ahead of it, topped up in batches as it
 * goes, up to cfg.prefetch files ahead. An open out of order stops it, so a
 * reader in random order (a training loader that shuffles) makes no
 * request ahead.
 * Lock order: s->lock is a leaf; cache and fetch calls are made without
 * it. */
#include "stream.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_SHIFT CACHE_BLOCK_SHIFT
#define BLOCK_SIZE CACHE_BLOCK
#define RA_MIN (2 * BLOCK_SIZE) /* first readahead window */
/* reads this close to the last are sequential: the kernel's reads ahead of
 * one reader overtake one another */
#define SEQ_SLACK (2 * STREAM_KERNEL_READAHEAD)
/* After a seek, a reader reads ahead only once it has read this much in a
 * row: a random read fetches what it reads (the kernel sends a large read
 * in pieces of at most 1 MiB, which alone prove nothing). */
#define SEQ_PROOF ((int64_t)4 << 20)
/* a read's fetch starts and ends on one: what the disk keeps of a block
 * fetched in part */
#define READ_UNIT DISK_PIECE
/* Readahead goes out in parts of this many blocks, fetched at once on as
 * many connections: one connection to a far store carries a capped rate,
 * and a window grown to tens of MiB would otherwise be one request. */
#define PART_BLOCKS ((int64_t)(4 << 20) >> CACHE_BLOCK_SHIFT)
#define MAX_TRIES 8 /* claims a read makes while eviction takes its blocks */
#define ORDER_SLOTS 64 /* orders followed at once */
#define CURSORS 8 /* readers of one order followed at once */
#define AHEAD_MAX 64
/* an open this close to a walk's front (in positions) is the walk's: the
 * reorderings that readers running at once bring */
#define WALK_SLACK 16

struct stream_reader {
	struct fetch_src *src; /* a reference */
	struct cache_obj *o; /* a reference */
	unsigned gen; /* the object's generation at open */
	bool page_cached; /* the kernel keeps what it reads (no O_DIRECT) */
	int64_t next_off; /* protected by s->lock: end of the last read */
	int64_t run_from; /* protected by s->lock: where its reads in a row
			   * began */
	int64_t window; /* protected by s->lock: readahead bytes, 0 = none */
	bool big; /* protected by s->lock: counted in s->big */
};

/* A walk through an order: the furthest position opened, the one that
 * would follow it, and the files fetched ahead of it. The opens of a walk
 * may come from many readers at once (threads taking the next file of one
 * list, a loader's workers, xargs -P8): an open near the front, ahead of
 * it or a little behind, is the walk's, whoever makes it. */
struct cursor {
	uint64_t start; /* the position it began at */
	uint64_t opens; /* its opens at or after start */
	uint64_t front; /* the furthest position opened */
	uint64_t next; /* the one after it; 0: free */
	unsigned run; /* opens in a row that moved the front on */
	uint64_t used; /* when it last moved, for reuse */
	uint64_t ahead[AHEAD_MAX]; /* ring: positions fetched ahead */
	unsigned ahead_first, ahead_n;
	bool busy; /* a thread is fetching ahead for it */
};

/* The readers of one order: several may go through it at once (xargs -P8
 * over a listing), each at its own place. */
struct order {
	uint64_t order; /* 0: a free slot */
	struct cursor cursors[CURSORS];
	uint64_t tick;
	uint64_t last; /* the stream's tick of its last open */
};

struct stream {
	pthread_mutex_t lock;
	struct order orders[ORDER_SLOTS]; /* protected by lock */
	uint64_t ticks; /* protected by lock: opens that told their place */
	struct stream_stats stats; /* protected by lock */
	uint64_t disk_opens; /* atomic: stats.disk_opens */
	struct cache *cache;
	struct fetch *fetch;
	size_t small_file;
	int64_t readahead_max;
	unsigned connections;
	unsigned big; /* protected by lock: readers whose window holds parts */
	unsigned prefetch;
	const struct stream_order_ops *order_ops;
	void *order_ctx;
};

struct stream *stream_new(struct cache *cache, struct fetch *fetch,
			  const struct stream_config *cfg,
			  const struct stream_order_ops *order, void *order_ctx)
{
	struct stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	s->cache = cache;
	s->fetch = fetch;
	s->small_file = cfg->small_file;
	s->readahead_max = cfg->readahead_max;
	s->connections = cfg->connections;
	s->prefetch = cfg->prefetch < AHEAD_MAX ? cfg->prefetch : AHEAD_MAX;
	s->order_ops = order;
	s->order_ctx = order_ctx;
	return s;
}

void stream_free(struct stream *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void stream_get_stats(struct stream *s, struct stream_stats *st)
{
	pthread_mutex_lock(&s->lock);
	*st = s->stats;
	pthread_mutex_unlock(&s->lock);
	st->disk_opens = __atomic_load_n(&s->disk_opens, __ATOMIC_RELAXED);
}

struct cache *stream_cache(struct stream *s)
{
	return s->cache;
}

struct fetch *stream_fetch(struct stream *s)
{
	return s->fetch;
}

/* @src's object, told what the listing says of it: a reference, or NULL
 * on ENOMEM. */
static struct cache_obj *src_obj(struct stream *s, struct fetch_src *src,
				 uint64_t ino, bool *keep_cache, unsigned *gen)
{
	struct cache_obj *o = cache_obj_get(s->cache, src->id);
	unsigned g;

	if (o && cache_obj_open(s->cache, o, src->listed, src->size, ino,
				keep_cache, gen ? gen : &g)) {
		cache_obj_put(s->cache, o);
		o = NULL;
	}
	return o;
}

/* ---- sizes ---- */

/* The size of @o, from a first GET when no one knows it: the run claimed
 * for block 0 grows to the whole object when that answer says it is small.
 * Returns 0 or a negative errno. */
static int obj_size(struct stream *s, struct fetch_src *src,
		    struct cache_obj *o, unsigned gen, bool probe,
		    int64_t *size)
{
	struct cache_run *runs = NULL, *r;
	struct cache_view v;
	int err;

	*size = cache_obj_size(s->cache, o);
	if (*size >= 0)
		return 0;
	err = cache_obj_error(s->cache, o);
	if (!err)
		err = cache_claim_pin(s->cache, o, 0, 0, 0, 1, &runs, &v);
	for (r = runs; r; r = r->next)
		r->probe = probe;
	if (err) {
		fetch_start(s->fetch, src, runs, false); /* what was claimed */
		return err;
	}
	/* fetch it, or wait for the one being fetched already */
	fetch_start(s->fetch, src, runs, true);
	err = cache_wait(s->cache, o, gen, 0, 1, &v);
	if (!err)
		cache_view_release(s->cache, &v, false);
	*size = cache_obj_size(s->cache, o);
	if (*size >= 0)
		return 0;
	if (!err || err == -EAGAIN) {
		log_err("%s: the server gives no size for it", src->what);
		err = -EIO;
	}
	return err;
}

int stream_size(struct stream *s, struct fetch_src *src, int64_t *size)
{
	unsigned gen;
	struct cache_obj *o = src_obj(s, src, 0, NULL, &gen);
	int err;

	if (!o)
		return -ENOMEM;
	err = obj_size(s, src, o, gen, true, size);
	cache_obj_put(s->cache, o);
	return err;
}

/* Claim blocks [a, b] of @src's object @o without waiting for room, and
 * fetch them on the fetching threads. Returns whether anything was
 * claimed. */
static bool fetch_ahead(struct stream *s, struct fetch_src *src,
			struct cache_obj *o, int64_t a, int64_t b, bool probe)
{
	struct cache_run *runs = NULL, *r;

	if (cache_claim(s->cache, o, a, b, false, &runs) == 0 && !runs)
		return false;
	for (r = runs; r; r = r->next) {
		r->probe = probe;
		r->ahead = true;
	}
	fetch_start(s->fetch, src, runs, false);
	return runs != NULL;
}

void stream_size_prefetch(struct stream *s, struct fetch_src *src)
{
	struct cache_obj *o = src_obj(s, src, 0, NULL, NULL);

	if (!o)
		return;
	if (cache_obj_size(s->cache, o) < 0)
		fetch_ahead(s, src, o, 0, 0, true);
	cache_obj_put(s->cache, o);
}

void stream_prefetch(struct stream *s, struct fetch_src *src)
{
	struct cache_obj *o = src_obj(s, src, 0, NULL, NULL);
	int64_t size;
	bool started = false;

	if (!o)
		return;
	size = cache_obj_size(s->cache, o);
	/* a size not known yet: the first block's fetch brings a small file
	 * whole; a file read before is in the kernel's page cache */
	if (size != 0 && size <= (int64_t)s->small_file &&
	    !cache_obj_error(s->cache, o) && !cache_obj_was_opened(s->cache, o))
		started = fetch_ahead(s, src, o, 0,
				      size < 0 ? 0 : (size - 1) >> BLOCK_SHIFT,
				      false);
	cache_obj_put(s->cache, o);
	if (started) {
		pthread_mutex_lock(&s->lock);
		s->stats.prefetched++;
		pthread_mutex_unlock(&s->lock);
	}
}

/* ---- orders ---- */

static bool order_busy(const struct order *o)
{
	int i;

	for (i = 0; i < CURSORS; i++) {
		if (o->cursors[i].busy)
			return true;
	}
	return false;
}

#define ORDER_PROBES 4 /* slots an order may take */

/* The slot of @order: its own, else a free one or the one used last
 * longest ago among its ORDER_PROBES, taken over; NULL when all are busy.
 * The ids of one folder's orders differ in a few high bits: mixed, so
 * that they do not share a slot and wipe each other at every open. */
static struct order *order_slot(struct stream *s, uint64_t order)
{
	uint64_t h = order;
	struct order *o, *take = NULL;
	int i;

	h = (h ^ h >> 30) * 0xbf58476d1ce4e5b9ULL;
	h = (h ^ h >> 27) * 0x94d049bb133111ebULL;
	h ^= h >> 31;
	for (i = 0; i < ORDER_PROBES; i++) {
		o = &s->orders[(h + i) & (ORDER_SLOTS - 1)];
		if (o->order == order)
			return o;
		if (!order_busy(o) && (!take || !o->order ||
				       (take->order && o->last < take->last)))
			take = o;
	}
	if (take) {
		memset(take, 0, sizeof(*take));
		take->order = order;
	}
	return take;
}

/* The walk of @o that an open at @pos belongs to: the one whose front is
 * nearest, within WALK_SLACK; or NULL. */
static struct cursor *walk_of(struct order *o, uint64_t pos)
{
	struct cursor *best = NULL;
	uint64_t best_d = WALK_SLACK + 1, d;
	int i;

	for (i = 0; i < CURSORS; i++) {
		struct cursor *k = &o->cursors[i];

		if (!k->next)
			continue;
		d = pos > k->front ? pos - k->front : k->front - pos;
		if (d < best_d) {
			best = k;
			best_d = d;
		}
	}
	return best;
}

/* Note an open at @pos (followed by @next) in @order. When it moves a walk
 * on, returns how many files are wanted ahead of it, after position
 * *@after, by cursor *@cur (then busy). Called with s->lock held. */
static size_t order_open(struct stream *s, struct order *o, uint64_t pos,
			 uint64_t next, uint64_t *after, struct cursor **cur)
{
	struct cursor *c = walk_of(o, pos), *oldest = NULL;
	uint64_t span;
	size_t want;
	int i;

	if (!c) {
		/* a new walk takes the place of the one that moved last
		 * longest ago */
		for (i = 0; i < CURSORS; i++) {
			struct cursor *k = &o->cursors[i];

			if (!k->busy && (!oldest || k->used < oldest->used))
				oldest = k;
		}
		if (oldest && next) {
			memset(oldest, 0, sizeof(*oldest));
			oldest->start = pos;
			oldest->opens = 1;
			oldest->front = pos;
			oldest->next = next;
			oldest->used = ++o->tick;
		}
		return 0;
	}
	c->used = ++o->tick;
	if (pos >= c->start)
		c->opens++;
	if (pos <= c->front)
		return 0; /* a reader a little behind the others */
	c->front = pos;
	c->next = next;
	c->run++;
	s->stats.ordered++;
	/* the files fetched ahead that are now behind the front */
	while (c->ahead_n && c->ahead[c->ahead_first % AHEAD_MAX] <= pos) {
		c->ahead_first++;
		c->ahead_n--;
	}
	/* a walk opens most of what it passes, all of it at first; readers
	 * in random order land near a front now and then, far apart (a
	 * folder whose files are between folders of its own is walked with
	 * gaps, and not taken for a walk) */
	span = c->front - c->start + 1;
	if (c->run < 2 || c->opens < (span < 8 ? span : span * 3 / 4) ||
	    c->busy || c->ahead_n >= s->prefetch || !next)
		return 0;
	want = s->prefetch - c->ahead_n;
	/* fetch in batches, not one file per open */
	if (c->ahead_n && want < (s->prefetch + 3) / 4)
		return 0;
	*after =
		c->ahead_n
			? c->ahead[(c->ahead_first + c->ahead_n - 1) % AHEAD_MAX]
			: pos;
	c->busy = true;
	*cur = c;
	return want;
}

/* Follow the orders of an open at @place, fetching ahead when it is
 * ordered. */
static void follow_orders(struct stream *s, const struct stream_place *place)
{
	uint64_t pos[AHEAD_MAX], after = 0, order = 0;
	struct cursor *cur = NULL;
	size_t want = 0, got, i;
	int k;

	pthread_mutex_lock(&s->lock);
	for (k = 0; k < STREAM_ORDERS; k++) {
		struct cursor *c = NULL;
		struct order *o;
		uint64_t a;
		size_t w;

		if (!place->in[k].order)
			continue;
		o = order_slot(s, place->in[k].order);
		if (!o)
			continue;
		o->last = ++s->ticks;
		w = order_open(s, o, place->in[k].pos, place->in[k].next, &a,
			       &c);
		if (w && !want) {
			want = w;
			after = a;
			cur = c;
			order = o->order;
		} else if (w) {
			c->busy = false; /* one order fetches ahead */
		}
	}
	if (want && fetch_disk_keeps_up(s->fetch)) {
		/* its files are on disk: its readers read them there */
		cur->busy = false;
		want = 0;
	}
	pthread_mutex_unlock(&s->lock);
	if (!want)
		return;
	got = s->order_ops->ahead(s->order_ctx, order, after, want, pos);
	pthread_mutex_lock(&s->lock);
	for (i = 0; i < got && cur->ahead_n < AHEAD_MAX; i++)
		cur->ahead[(cur->ahead_first + cur->ahead_n++) % AHEAD_MAX] =
			pos[i];
	cur->busy = false;
	pthread_mutex_unlock(&s->lock);
}

bool stream_wants_place(struct stream *s)
{
	if (!fetch_disk_keeps_up(s->fetch))
		return true;
	__atomic_add_fetch(&s->disk_opens, 1, __ATOMIC_RELAXED);
	return false;
}

/* ---- readers ---- */

int stream_open(struct stream *s, struct fetch_src *src, uint64_t ino,
		bool direct, const struct stream_place *place, bool *keep_cache,
		struct stream_reader **out)
{
	struct stream_reader *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (!r)
		return -ENOMEM;
	r->o = src_obj(s, src, ino, keep_cache, &r->gen);
	if (!r->o) {
		free(r);
		return -ENOMEM;
	}
	r->src = fetch_src_ref(src);
	r->page_cached = !direct;
	if (place && s->prefetch && s->order_ops)
		follow_orders(s, place);
	*out = r;
	return 0;
}

void stream_reader_free(struct stream *s, struct stream_reader *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&s->lock);
	if (r->big)
		s->big--;
	pthread_mutex_unlock(&s->lock);
	cache_obj_put(s->cache, r->o);
	fetch_src_unref(r->src);
	free(r);
}

/* Update @r for a read of [@off, @off + @size) and return the blocks to
 * read ahead after block @b as [*ra_a, *ra_b] (empty when *ra_a > *ra_b).
 * Called with s->lock held. */
static void readahead_plan(struct stream *s, struct stream_reader *r,
			   int64_t off, size_t size, int64_t b, int64_t fsize,
			   int64_t *ra_a, int64_t *ra_b)
{
	int64_t last = (fsize - 1) >> BLOCK_SHIFT, wblocks;
	bool sequential = r->next_off > 0 && off >= r->next_off - SEQ_SLACK &&
			  off <= r->next_off + SEQ_SLACK;

	*ra_a = 1;
	*ra_b = 0;
	if (!sequential)
		r->run_from = off; /* a new reader or a seek */
	if (off + (int64_t)size > r->next_off || !sequential)
		r->next_off = off + size;
	/* a reader from the start is taken as sequential at once; after a
	 * seek, once it has proved it */
	if (r->run_from != 0 && r->next_off - r->run_from < SEQ_PROOF)
		r->window = 0;
	else if (sequential || off == 0)
		r->window = r->window ? r->window * 2 : RA_MIN;
	else
		r->window = 0;
	if (r->window > s->readahead_max)
		r->window = s->readahead_max;
	/* big readers share the connections: each its part of them; one
	 * that seeks or reaches the end is big no more */
	if (!r->big && r->window >= 2 * (PART_BLOCKS << BLOCK_SHIFT) &&
	    b < last) {
		r->big = true;
		s->big++;
	} else if (r->big && (r->window < 2 * (PART_BLOCKS << BLOCK_SHIFT) ||
			      b >= last)) {
		r->big = false;
		s->big--;
	}
	if (r->big && s->connections) {
		int64_t parts = s->connections / s->big;

		parts = parts < 2 ? 2 : parts;
		if (r->window > parts * (PART_BLOCKS << BLOCK_SHIFT))
			r->window = parts * (PART_BLOCKS << BLOCK_SHIFT);
	}
	wblocks = r->window >> BLOCK_SHIFT;
	if (wblocks == 0 || b >= last)
		return;
	*ra_a = b + 1;
	*ra_b = b + wblocks < last ? b + wblocks : last;
}

/* Start reading ahead of @r after block @b: the one big reader's window
 * whenever a whole part of it is missing, so that as many parts are on
 * their way as the window holds; else when less than half of the window is
 * still ahead, so that it goes out in large requests and big readers take
 * turns fairly (one that refilled at every part would outrun the others). */
static void read_ahead(struct stream *s, struct stream_reader *r, int64_t off,
		       size_t size, int64_t b, int64_t fsize)
{
	int64_t ra_a, ra_b, i;
	bool alone;

	pthread_mutex_lock(&s->lock);
	readahead_plan(s, r, off, size, b, fsize, &ra_a, &ra_b);
	alone = r->big && s->big == 1;
	pthread_mutex_unlock(&s->lock);
	if (ra_a > ra_b)
		return;
	i = cache_first_missing(s->cache, r->o, ra_a, ra_b);
	if (i > ra_b)
		return;
	if (alone ? ra_b - i + 1 < PART_BLOCKS
		  : i - ra_a > (ra_b - ra_a + 1) / 2)
		return;
	/* readahead is best effort: no room, no readahead; in parts aligned
	 * with the disk's units */
	while (i <= ra_b) {
		int64_t end = (i / PART_BLOCKS + 1) * PART_BLOCKS - 1;

		fetch_ahead(s, r->src, r->o, i, end < ra_b ? end : ra_b, false);
		i = end + 1;
	}
}

int stream_read(struct stream *s, struct stream_reader *r, size_t size,
		off_t off, struct cache_view *v)
{
	int64_t fsize, fa, fb;
	bool small;
	int tries, err;

	memset(v, 0, sizeof(*v));
	err = obj_size(s, r->src, r->o, r->gen, false, &fsize);
	if (err)
		return err;
	if (off >= fsize || size == 0)
		return 0;
	if ((int64_t)size > fsize - off)
		size = fsize - off;
	small = fsize <= (int64_t)s->small_file;
	/* small files come whole in one request */
	fa = small ? 0 : (off & ~(READ_UNIT - 1)) >> BLOCK_SHIFT;
	fb = small ? (fsize - 1) >> BLOCK_SHIFT
		   : (off + (int64_t)size - 1) >> BLOCK_SHIFT;
	if (!small) {
		/* the kernel asks in pieces: fewer, larger requests */
		int64_t end = (off + (int64_t)size + READ_UNIT - 1) /
			      READ_UNIT * READ_UNIT;

		end = end < fsize ? end : fsize;
		if ((end - 1) >> BLOCK_SHIFT > fb)
			fb = (end - 1) >> BLOCK_SHIFT;
	}
	for (tries = 0; tries < MAX_TRIES; tries++) {
		struct cache_run *runs = NULL;

		err = cache_obj_error(s->cache, r->o);
		if (!err)
			err = cache_claim_pin(s->cache, r->o, fa, fb, off, size,
					      &runs, v);
		if (err) {
			fetch_start(s->fetch, r->src, runs, false);
			return err;
		}
		if (!small && tries == 0)
			read_ahead(s, r, off, size, fb, fsize);
		fetch_start(s->fetch, r->src, runs, true);
		err = cache_wait(s->cache, r->o, r->gen, off, size, v);
		if (err != -EAGAIN)
			break;
	}
	if (err == -EAGAIN)
		err = -EIO;
	/* the kernel's page cache keeps what a reader read: holding it here
	 * too would only crowd the cache, so blocks it holds whole go first */
	v->drop_behind = !err && r->page_cached;
	return err;
}

void stream_read_release(struct stream *s, struct cache_view *v, bool sent)
{
	cache_view_release(s->cache, v, sent);
}
