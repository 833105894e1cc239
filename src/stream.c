/* Block cache and data reads. Blocks are BLOCK_SIZE bytes of one file,
 * keyed by file and index, kept in LRU order under one byte budget shared by
 * cached data and readahead alike. A block being fetched is visible to every
 * reader, who waits for it instead of fetching it again; bytes become
 * readable block by block as they arrive. Readers pin the blocks they copy
 * from, so eviction never takes bytes from under them.
 * Lock order: s->lock is a leaf, never held across a request. */
#include "stream.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/uio.h>
#include <uthash.h>

#define BLOCK_SHIFT STREAM_BLOCK_SHIFT
#define BLOCK_SIZE ((int64_t)1 << BLOCK_SHIFT)
#define RA_MIN (2 * BLOCK_SIZE) /* first readahead window */
#define SEQ_SLACK \
	(1 << 20) /* reads this close to the last count as sequential */
#define MAX_TRIES 3
#define SENT_SHIFT 12 /* block->sent counts pages of 4 KiB */
_Static_assert((BLOCK_SIZE >> SENT_SHIFT) <= 32, "block->sent is 32 bits");

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What is known of one remote file. All fields protected by s->lock. */
struct sfile {
	char *key;
	int64_t size; /* -1 until known */
	bool size_listed; /* size is the listing's metadata.size */
	char etag[128]; /* "" until known */
	char *url; /* a re-resolved URL, or NULL */
	char *url_of; /* the listing's URL that @url replaces */
	unsigned gen; /* bumped when the object changed */
	unsigned open_gen; /* gen at the last open */
	char *version; /* the listing's updated_at when last seen, or NULL */
	uint64_t ino; /* the file's inode, 0 before its first open */
	int err; /* the last fetch's failure, for readers that waited on it */
	int64_t err_until; /* ms: until then, readers get err without a try */
	bool fetched_whole; /* a small file's one whole fetch was made */
	UT_hash_handle hh;
};

struct block_key {
	struct sfile *f;
	int64_t index;
};

/* All fields but data's bytes protected by s->lock; a fetch writes the bytes
 * of its own blocks before it marks them ready. */
struct block {
	struct block_key key;
	char *data;
	size_t cap; /* bytes it will hold: BLOCK_SIZE but at the object's end
		     * (its buffer, counted in the budget, is BLOCK_SIZE) */
	size_t len; /* valid bytes */
	uint32_t sent; /* bit p: the kernel's page cache was sent its page p */
	bool ready; /* false while being fetched */
	bool cached; /* in the hash and LRU list; false once dropped */
	int pins; /* readers waiting on or copying out of it */
	bool in_kernel; /* on the list of blocks the kernel holds whole */
	struct block *lru_prev, *lru_next;
	UT_hash_handle hh;
};

/* One GET for blocks [a, b] of a file, created not ready by its caller;
 * the job holds a pin on each until it is whole or settled (then its entry
 * in @blocks is NULL). */
struct job {
	struct stream *s;
	struct dataset *ds;
	struct item *it; /* a reference */
	enum stream_file which;
	struct sfile *f;
	int64_t a, b;
	unsigned gen; /* the file's generation when the job was planned */
	struct block **blocks; /* b - a + 1 */
	struct job *next;
};

struct stream_reader {
	int64_t next_off; /* protected by s->lock: end of the last read */
	int64_t window; /* protected by s->lock: readahead bytes, 0 = none */
	unsigned gen; /* the file's generation at open */
	bool page_cached; /* the kernel keeps what it reads (no O_DIRECT) */
};

struct stream {
	pthread_mutex_t lock;
	pthread_cond_t changed; /* a block became ready, went away or unpinned */
	pthread_cond_t work; /* a job was queued, or stop */
	struct sfile *files; /* protected by lock */
	struct block *blocks; /* protected by lock */
	struct lru {
		struct block *head, *tail; /* head newest */
	} lru[2]; /* protected by lock: [1] the blocks the kernel holds too */
	struct job *queue, *queue_tail; /* protected by lock */
	pthread_t *threads; /* protected by lock */
	int n_threads; /* protected by lock */
	bool stopping; /* protected by lock */
	struct stream_stats stats; /* protected by lock */
	uint64_t *inval; /* protected by lock: inodes whose pages went stale */
	size_t n_inval, cap_inval; /* protected by lock */
	void *spare; /* protected by lock: free block buffers, linked */
	size_t spare_bytes; /* protected by lock */
	size_t small_file;
	int64_t readahead_max;
	int workers;
	struct http *http;
	struct catalog *cat;
};

struct stream *stream_new(struct http *http, struct catalog *cat,
			  const struct stream_config *cfg)
{
	struct stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->changed, NULL);
	pthread_cond_init(&s->work, NULL);
	s->http = http;
	s->cat = cat;
	s->stats.budget = cfg->cache_size;
	s->small_file = cfg->small_file;
	s->readahead_max = cfg->readahead_max;
	s->workers = cfg->workers > 0 ? cfg->workers : 4;
	return s;
}

static void block_free(struct block *b)
{
	free(b->data);
	free(b);
}

/* Free @b, keeping its buffer for the next block: freshly allocated
 * memory costs a page fault per page, a reused buffer none. The spare
 * buffers and the blocks together stay within the budget. Called with
 * s->lock held. */
static void block_release(struct stream *s, struct block *b)
{
	s->stats.used -= BLOCK_SIZE;
	if (s->stats.used + s->spare_bytes + BLOCK_SIZE <= s->stats.budget) {
		*(void **)b->data = s->spare;
		s->spare = b->data;
		s->spare_bytes += BLOCK_SIZE;
		free(b);
		return;
	}
	block_free(b);
}

/* A block buffer: a spare one when there is one. Called with s->lock
 * held. */
static char *buffer_get(struct stream *s)
{
	char *buf;

	if (s->spare) {
		buf = s->spare;
		s->spare = *(void **)buf;
		s->spare_bytes -= BLOCK_SIZE;
		return buf;
	}
	return malloc(BLOCK_SIZE);
}

static void job_free(struct job *j)
{
	item_unref(j->it);
	free(j->blocks);
	free(j);
}

/* Take @b out of the cache; it is freed now, or by its last unpin. Called
 * with s->lock held. */
static void block_drop(struct stream *s, struct block *b);
static void block_unpin(struct stream *s, struct block *b);

void stream_free(struct stream *s)
{
	struct block *b, *bt;
	struct sfile *f, *ft;
	struct job *j;
	int i;

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_broadcast(&s->work);
	pthread_mutex_unlock(&s->lock);
	for (i = 0; i < s->n_threads; i++)
		pthread_join(s->threads[i], NULL);
	free(s->threads);
	while ((j = s->queue)) {
		int64_t i;

		s->queue = j->next;
		for (i = j->a; i <= j->b; i++) {
			block_drop(s, j->blocks[i - j->a]);
			block_unpin(s, j->blocks[i - j->a]);
		}
		job_free(j);
	}
	HASH_ITER(hh, s->blocks, b, bt) {
		HASH_DEL(s->blocks, b);
		block_free(b);
	}
	while (s->spare) {
		void *next = *(void **)s->spare;

		free(s->spare);
		s->spare = next;
	}
	HASH_ITER(hh, s->files, f, ft) {
		HASH_DEL(s->files, f);
		free(f->key);
		free(f->url);
		free(f->url_of);
		free(f->version);
		free(f);
	}
	free(s->inval);
	pthread_cond_destroy(&s->work);
	pthread_cond_destroy(&s->changed);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void stream_reader_free(struct stream_reader *r)
{
	free(r);
}

const char *stream_url(const struct item *it, enum stream_file which)
{
	return which == STREAM_DATA ? it->data_url : it->thumb_url;
}

void stream_get_stats(struct stream *s, struct stream_stats *st)
{
	pthread_mutex_lock(&s->lock);
	*st = s->stats;
	pthread_mutex_unlock(&s->lock);
}

/* The state of one file, created on first use. Called with s->lock held. */
static struct sfile *file_get(struct stream *s, struct dataset *ds,
			      const struct item *it, enum stream_file which)
{
	struct sfile *f;
	char *key;

	if (asprintf(&key, "%p/%d/%d/%s", (void *)ds, it->kind, which,
		     it->uid) < 0)
		return NULL;
	HASH_FIND_STR(s->files, key, f);
	if (f) {
		free(key);
		return f;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		free(key);
		return NULL;
	}
	f->key = key;
	f->size = which == STREAM_DATA ? it->size : -1;
	f->size_listed = f->size >= 0;
	if (it->version && !(f->version = strdup(it->version))) {
		free(f->key);
		free(f);
		return NULL;
	}
	HASH_ADD_KEYPTR(hh, s->files, f->key, strlen(f->key), f);
	return f;
}

static void lru_unlink(struct stream *s, struct block *b)
{
	struct lru *l = &s->lru[b->in_kernel];

	if (b->in_kernel)
		s->stats.kernel_held -= BLOCK_SIZE;
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
static void lru_push(struct stream *s, struct block *b, bool in_kernel)
{
	struct lru *l = &s->lru[in_kernel];

	b->in_kernel = in_kernel;
	if (in_kernel)
		s->stats.kernel_held += BLOCK_SIZE;
	b->lru_next = l->head;
	b->lru_prev = NULL;
	if (l->head)
		l->head->lru_prev = b;
	l->head = b;
	if (!l->tail)
		l->tail = b;
}

static void block_drop(struct stream *s, struct block *b)
{
	if (b->cached) {
		HASH_DEL(s->blocks, b);
		lru_unlink(s, b);
		b->cached = false;
	}
	if (b->pins == 0)
		block_release(s, b);
}

static void block_unpin(struct stream *s, struct block *b)
{
	if (--b->pins == 0 && !b->cached)
		block_release(s, b);
}

/* Drop least recently used blocks nobody reads until @need more bytes fit:
 * first those the kernel's page cache holds too, then the others. Returns
 * whether they fit. Called with s->lock held. */
static bool evict(struct stream *s, size_t need)
{
	int k;

	for (k = 1; k >= 0; k--) {
		struct block *b = s->lru[k].tail, *prev;

		while (b && s->stats.used + need > s->stats.budget) {
			prev = b->lru_prev;
			if (b->ready && b->pins == 0)
				block_drop(s, b);
			b = prev;
		}
	}
	return s->stats.used + need <= s->stats.budget;
}

/* Forget every cached block of @f: the object changed. Its inode goes on
 * the list of those whose kernel pages must go too. Called with s->lock
 * held. */
static void file_invalidate(struct stream *s, struct sfile *f)
{
	struct block *b, *tmp;

	HASH_ITER(hh, s->blocks, b, tmp) {
		if (b->key.f == f && b->ready)
			block_drop(s, b);
	}
	f->gen++;
	f->fetched_whole = false;
	if (!f->ino)
		return;
	if (s->n_inval == s->cap_inval) {
		size_t cap = s->cap_inval ? s->cap_inval * 2 : 16;
		uint64_t *v = realloc(s->inval, cap * sizeof(*v));

		if (!v)
			return; /* the next open drops the pages anyway */
		s->inval = v;
		s->cap_inval = cap;
	}
	s->inval[s->n_inval++] = f->ino;
}

size_t stream_take_invalidations(struct stream *s, uint64_t *inos, size_t max)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = s->n_inval < max ? s->n_inval : max;
	if (n) {
		memcpy(inos, s->inval, n * sizeof(*inos));
		memmove(s->inval, s->inval + n,
			(s->n_inval - n) * sizeof(*inos));
		s->n_inval -= n;
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* The URL to fetch @f from: the re-resolved one while the listing still
 * shows the URL it replaced. A new string. Called with s->lock held. */
static char *file_url(struct sfile *f, const char *listed)
{
	if (f->url && f->url_of && strcmp(f->url_of, listed) == 0)
		return strdup(f->url);
	return strdup(listed);
}

/* Check an answer against what we know of @f, and learn from it. Returns
 * 0, -EAGAIN for an answer whose size contradicts the listing's (a bad
 * answer, never a size), or -EIO when the object changed under us (cached
 * bytes are dropped). Called with s->lock held. */
static int file_check_version(struct stream *s, struct sfile *f,
			      const struct http_resp *r, const char *what)
{
	if (f->size_listed && r->total >= 0 && r->total != f->size) {
		log_debug("%s: the server says %" PRId64 " bytes, the listing "
			  "%" PRId64,
			  what, r->total, f->size);
		return -EAGAIN;
	}
	bool etag_changed = f->etag[0] && r->etag[0] &&
			    strcmp(f->etag, r->etag) != 0;
	bool size_changed = f->size >= 0 && r->total >= 0 &&
			    r->total != f->size;

	if (etag_changed || size_changed) {
		log_err("%s changed on the server (%s), dropping cached bytes",
			what, etag_changed ? "new ETag" : "new size");
		file_invalidate(s, f);
		snprintf(f->etag, sizeof(f->etag), "%s", r->etag);
		f->size = r->total;
		return -EIO;
	}
	if (!f->etag[0])
		snprintf(f->etag, sizeof(f->etag), "%s", r->etag);
	if (f->size < 0)
		f->size = r->total;
	return 0;
}

static void job_what(const struct job *j, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/%s/%s %s", dataset_owner(j->ds),
		 dataset_slug(j->ds), j->it->uid,
		 j->which == STREAM_DATA ? "data" : "thumbnail");
}

static int job_check(void *ctx, const struct http_resp *r)
{
	struct job *j = ctx;
	char what[160];
	int err;

	job_what(j, what, sizeof(what));
	pthread_mutex_lock(&j->s->lock);
	err = file_check_version(j->s, j->f, r, what);
	pthread_mutex_unlock(&j->s->lock);
	return err;
}

/* Copy arriving bytes into the job's blocks; each block becomes readable as
 * soon as it is whole. */
static int job_write(void *ctx, int64_t off, const char *data, size_t len)
{
	struct job *j = ctx;
	struct stream *s = j->s;

	while (len > 0) {
		int64_t i = off >> BLOCK_SHIFT;
		struct block *b;
		size_t at = off & (BLOCK_SIZE - 1), n;

		if (i < j->a || i > j->b)
			return -EIO; /* more than the object had when planned */
		b = j->blocks[i - j->a];
		if (!b)
			return -EIO; /* never: a finished block gets no more */
		n = b->cap - at < len ? b->cap - at : len;
		if (at != b->len || n == 0)
			return -EIO;
		memcpy(b->data + at, data, n);
		b->len += n;
		if (b->len == b->cap) {
			bool stale;

			pthread_mutex_lock(&s->lock);
			stale = j->f->gen != j->gen;
			if (!stale) {
				b->ready = true;
				s->stats.fetched += b->len;
				/* whole: readers may have it, and once read,
				 * eviction may take it */
				block_unpin(s, b);
				j->blocks[i - j->a] = NULL;
				pthread_cond_broadcast(&s->changed);
			}
			pthread_mutex_unlock(&s->lock);
			if (stale)
				return -EIO; /* the object changed meanwhile */
		}
		off += n;
		data += n;
		len -= n;
	}
	return 0;
}

/* GET the job's range, re-resolving an expired URL once. Returns 0 or a
 * negative errno; @r describes the last answer. */
static int job_fetch(struct job *j, struct http_resp *r)
{
	struct stream *s = j->s;
	const char *listed = stream_url(j->it, j->which);
	struct http_sink sink = { job_check, job_write, j };
	int64_t start = j->a << BLOCK_SHIFT, end = (j->b + 1) << BLOCK_SHIFT;
	char what[160];
	int tries, err;

	job_what(j, what, sizeof(what));
	pthread_mutex_lock(&s->lock);
	if (j->f->size >= 0 && end > j->f->size)
		end = j->f->size;
	pthread_mutex_unlock(&s->lock);
	if (end <= start)
		return 0;
	for (tries = 0; tries < 2; tries++) {
		struct item *fresh;
		const char *fresh_url;
		char *url;

		pthread_mutex_lock(&s->lock);
		url = file_url(j->f, listed);
		s->stats.fetches++;
		pthread_mutex_unlock(&s->lock);
		if (!url)
			return -ENOMEM;
		err = http_data_stream(s->http, url, start, end - start, &sink,
				       r);
		free(url);
		if (err)
			return err == -ECANCELED || err == -EPERM ? -EIO : err;
		if (r->status == 200 || r->status == 206 || r->status == 416) {
			/* an empty object or one that shrank: learn its size */
			pthread_mutex_lock(&s->lock);
			err = file_check_version(s, j->f, r, what);
			pthread_mutex_unlock(&s->lock);
			return err == -EAGAIN ? -EIO : err;
		}
		if (r->status == 404 || r->status == 410) {
			log_err("%s: gone (HTTP %ld)", what, r->status);
			catalog_forget(s->cat, j->ds, j->it->kind, j->it->oid);
			return -ENOENT;
		}
		if (r->status != 403 || tries > 0)
			break;
		/* an expired presigned URL: ask the API for a fresh one */
		err = catalog_reresolve(s->cat, j->ds, j->it, &fresh);
		if (err)
			return err;
		fresh_url = stream_url(fresh, j->which);
		if (!fresh_url) {
			item_unref(fresh);
			return -ENOENT;
		}
		pthread_mutex_lock(&s->lock);
		free(j->f->url);
		free(j->f->url_of);
		j->f->url = strdup(fresh_url);
		j->f->url_of = strdup(listed);
		pthread_mutex_unlock(&s->lock);
		item_unref(fresh);
		log_debug("%s: URL re-resolved", what);
	}
	log_err("%s: refused by the server (HTTP %ld)", what, r->status);
	return util_http_errno(r->status) == -EACCES ? -EACCES : -EIO;
}

/* Run a job: fetch, then settle every block — a block the answer filled up
 * to the end of the object is ready, anything else is dropped. */
static void job_run(struct job *j)
{
	struct stream *s = j->s;
	struct http_resp r;
	int64_t i;
	int err = job_fetch(j, &r);

	pthread_mutex_lock(&s->lock);
	for (i = j->a; i <= j->b; i++) {
		struct block *b = j->blocks[i - j->a];
		int64_t end;

		if (!b)
			continue; /* finished and released while it came */
		end = (i << BLOCK_SHIFT) + (int64_t)b->len;
		if (b->ready) {
			/* done */
		} else if (!err && b->len > 0 && j->f->size >= 0 &&
			   end == j->f->size && j->f->gen == j->gen) {
			b->ready = true; /* the object's last, short block */
			s->stats.fetched += b->len;
		} else {
			block_drop(s, b);
		}
		block_unpin(s, b); /* the job's own pin */
	}
	j->f->err = err;
	/* a server that just used up a whole deadline is not asked again at
	 * once: a kernel retrying the read would wait it out twice */
	j->f->err_until = err == -EIO && j->f->gen == j->gen ? now_ms() + 1000
							     : 0;
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
}

static void *worker_main(void *p)
{
	struct stream *s = p;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct job *j;

		while (!s->queue && !s->stopping)
			pthread_cond_wait(&s->work, &s->lock);
		if (s->stopping)
			break;
		j = s->queue;
		s->queue = j->next;
		if (!s->queue)
			s->queue_tail = NULL;
		pthread_mutex_unlock(&s->lock);
		job_run(j);
		job_free(j);
		pthread_mutex_lock(&s->lock);
		s->stats.jobs--;
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Queue @j for the readahead threads, starting them on first use (after
 * the daemon forked). Called with s->lock held; false when no thread could
 * run it. */
static bool job_queue(struct stream *s, struct job *j)
{
	if (!s->threads) {
		s->threads = calloc(s->workers, sizeof(*s->threads));
		while (s->threads && s->n_threads < s->workers &&
		       pthread_create(&s->threads[s->n_threads], NULL,
				      worker_main, s) == 0)
			s->n_threads++;
	}
	if (s->n_threads == 0 || s->stopping)
		return false;
	j->next = NULL;
	if (s->queue_tail)
		s->queue_tail->next = j;
	else
		s->queue = j;
	s->queue_tail = j;
	s->stats.jobs++;
	pthread_cond_signal(&s->work);
	return true;
}

/* A new not-ready block @i of @f, in the cache; NULL on ENOMEM. Called with
 * s->lock held, after room was made. */
static struct block *block_new(struct stream *s, struct sfile *f, int64_t i)
{
	struct block *b = calloc(1, sizeof(*b));
	int64_t start = i << BLOCK_SHIFT;

	if (!b)
		return NULL;
	b->cap = BLOCK_SIZE;
	if (f->size >= 0 && f->size - start < BLOCK_SIZE)
		b->cap = f->size - start;
	b->data = buffer_get(s);
	if (!b->data) {
		free(b);
		return NULL;
	}
	b->key.f = f;
	b->key.index = i;
	b->cached = true;
	HASH_ADD(hh, s->blocks, key, sizeof(b->key), b);
	lru_push(s, b, false);
	s->stats.used += BLOCK_SIZE;
	if (s->stats.used > s->stats.peak)
		s->stats.peak = s->stats.used;
	return b;
}

static struct block *block_find(struct stream *s, struct sfile *f, int64_t i)
{
	struct block_key key = { f, i };
	struct block *b;

	HASH_FIND(hh, s->blocks, &key, sizeof(key), b);
	return b;
}

static struct job *job_new(struct stream *s, struct dataset *ds,
			   struct item *it, enum stream_file which,
			   struct sfile *f, int64_t a, int64_t b)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->blocks = calloc(b - a + 1, sizeof(*j->blocks));
	if (!j->blocks) {
		free(j);
		return NULL;
	}
	j->s = s;
	j->ds = ds;
	j->it = item_ref(it);
	j->which = which;
	j->f = f;
	j->gen = f->gen;
	j->a = a;
	j->b = b;
	return j;
}

static size_t count_missing(struct stream *s, struct sfile *f, int64_t a,
			    int64_t b)
{
	size_t n = 0;
	int64_t i;

	for (i = a; i <= b; i++)
		n += !block_find(s, f, i);
	return n;
}

/* Create not-ready blocks for the missing ones in [a, b] and gather each run
 * of them into a job on @jobs. With @wait, first wait until they fit in the
 * budget (a reader needs them); without, create only those that fit
 * (readahead). Called with s->lock held. Returns 0 or -ENOMEM. */
static int plan(struct stream *s, struct dataset *ds, struct item *it,
		enum stream_file which, struct sfile *f, int64_t a, int64_t b,
		bool wait, struct job **jobs)
{
	struct job *run = NULL;
	size_t missing;
	int64_t i;

	/* wait holding nothing: blocks in flight and pinned ones are all
	 * released without needing room themselves. Eviction may take blocks
	 * of [a, b] too, so count again until the room made is enough. */
	for (;;) {
		missing = count_missing(s, f, a, b);
		if (missing == 0)
			break;
		if (evict(s, missing * BLOCK_SIZE)) {
			if (count_missing(s, f, a, b) == missing)
				break;
			continue;
		}
		if (!wait || s->stats.used == 0 ||
		    missing * BLOCK_SIZE > s->stats.budget)
			break;
		pthread_cond_wait(&s->changed, &s->lock);
	}
	for (i = a; i <= b; i++) {
		struct block *blk = block_find(s, f, i);

		if (blk) {
			if (blk->ready) {
				lru_unlink(s, blk);
				lru_push(s, blk, blk->in_kernel);
				s->stats.hits++;
			}
			run = NULL;
			continue;
		}
		if (!wait && !evict(s, BLOCK_SIZE))
			break;
		blk = block_new(s, f, i);
		if (!blk)
			return -ENOMEM;
		s->stats.misses++;
		if (!run) {
			run = job_new(s, ds, it, which, f, i, b);
			if (!run) {
				block_drop(s, blk);
				return -ENOMEM;
			}
			run->next = *jobs;
			*jobs = run;
		}
		blk->pins++; /* held by the job until it settles the block */
		run->blocks[i - run->a] = blk;
		run->b = i;
	}
	return 0;
}

/* Start @jobs: the first on this thread when @inline_first (a reader waits
 * for it anyway), the rest on the readahead threads. */
static void start_jobs(struct stream *s, struct job *jobs, bool inline_first)
{
	while (jobs) {
		struct job *j = jobs;
		bool queued;

		jobs = j->next;
		if (!inline_first) {
			pthread_mutex_lock(&s->lock);
			queued = job_queue(s, j);
			pthread_mutex_unlock(&s->lock);
			if (queued)
				continue;
		}
		inline_first = false;
		pthread_mutex_lock(&s->lock);
		s->stats.jobs++;
		pthread_mutex_unlock(&s->lock);
		job_run(j);
		job_free(j);
		pthread_mutex_lock(&s->lock);
		s->stats.jobs--;
		pthread_mutex_unlock(&s->lock);
	}
}

/* Update @r for a read of [@off, @off + @size) and return the blocks to
 * read ahead after block @b as [*ra_a, *ra_b] (empty when *ra_a > *ra_b).
 * Called with s->lock held. */
static void readahead_plan(struct stream *s, struct stream_reader *r,
			   struct sfile *f, int64_t off, size_t size, int64_t b,
			   int64_t fsize, int64_t *ra_a, int64_t *ra_b)
{
	int64_t last = (fsize - 1) >> BLOCK_SHIFT, wblocks, i;
	bool sequential = r->next_off > 0 && off >= r->next_off - SEQ_SLACK &&
			  off <= r->next_off + SEQ_SLACK;

	*ra_a = 1;
	*ra_b = 0;
	if (sequential)
		r->window = r->window ? r->window * 2 : RA_MIN;
	else
		r->window = off == 0 ? RA_MIN : 0; /* a new reader or a seek */
	if (r->window > s->readahead_max)
		r->window = s->readahead_max;
	if (off + (int64_t)size > r->next_off || !sequential)
		r->next_off = off + size;
	wblocks = r->window >> BLOCK_SHIFT;
	if (wblocks == 0 || b >= last)
		return;
	/* refill only when less than half the window is still ahead, so
	 * readahead goes out in large requests */
	for (i = b + 1; i <= b + wblocks && i <= last; i++) {
		if (!block_find(s, f, i))
			break;
	}
	if (i > b + wblocks || i > last || i - b - 1 > wblocks / 2)
		return;
	*ra_a = i;
	*ra_b = b + wblocks < last ? b + wblocks : last;
}

/* Load blocks [a, b] of @f for a reader (fetching [fa, fb] when missing, and
 * the readahead range), wait for them, and describe [off, off + len) in @v
 * with the blocks pinned. Returns 0, -EAGAIN when a block failed without a
 * cause, or a negative errno (@v then holds nothing). */
static int view_once(struct stream *s, struct stream_reader *r, bool ahead,
		     struct dataset *ds, struct item *it,
		     enum stream_file which, struct sfile *f, int64_t fsize,
		     int64_t off, size_t len, int64_t fa, int64_t fb,
		     struct stream_view *v)
{
	int64_t a = off >> BLOCK_SHIFT, b = (off + len - 1) >> BLOCK_SHIFT, i;
	int64_t ra_a = 1, ra_b = 0;
	struct job *demand = NULL, *jobs_ahead = NULL;
	unsigned gen;
	int err = 0;

	v->n = 0;
	v->len = 0;
	v->drop_behind = false;
	v->blocks = calloc(b - a + 1, sizeof(*v->blocks));
	v->iov = calloc(b - a + 1, sizeof(*v->iov));
	if (!v->blocks || !v->iov) {
		stream_view_release(s, v);
		return -ENOMEM;
	}
	pthread_mutex_lock(&s->lock);
	gen = f->gen;
	if (f->err && now_ms() < f->err_until)
		err = f->err;
	if (!err)
		err = plan(s, ds, it, which, f, fa, fb, true, &demand);
	for (i = a; !err && i <= b; i++) {
		struct block *blk = block_find(s, f, i);

		if (blk) {
			blk->pins++;
			v->blocks[v->n++] = blk;
		}
	}
	/* the kernel's page cache keeps what a reader read: holding it here
	 * too would only crowd the cache, so blocks read whole go */
	v->drop_behind = r && r->page_cached;
	if (!err && r && ahead) {
		readahead_plan(s, r, f, off, len, fb, fsize, &ra_a, &ra_b);
		/* readahead is best effort: no room, no readahead */
		if (ra_a <= ra_b)
			plan(s, ds, it, which, f, ra_a, ra_b, false,
			     &jobs_ahead);
	}
	pthread_mutex_unlock(&s->lock);

	start_jobs(s, jobs_ahead, false);
	start_jobs(s, demand, true);

	pthread_mutex_lock(&s->lock);
	if (!err && v->n != b - a + 1)
		err = -EAGAIN;
	for (i = 0; i < v->n; i++) {
		struct block *blk = v->blocks[i];

		while (!blk->ready && blk->cached)
			pthread_cond_wait(&s->changed, &s->lock);
		if (!blk->ready && !err)
			err = f->err ? f->err : -EAGAIN;
	}
	if (!err && (f->gen != gen || (r && r->gen != gen)))
		err = -EIO; /* the object changed: never mix versions */
	pthread_mutex_unlock(&s->lock);

	for (i = 0; !err && i < v->n; i++) {
		struct block *blk = v->blocks[i];
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
		stream_view_release(s, v);
	return err;
}

/* Note the pages of @b that [@from, @from + @len) filled whole in the
 * kernel's page cache (the block's last page may be short); whether the
 * kernel now holds every page of it. Reads may come in any order. */
static bool block_sent(struct block *b, size_t from, size_t len)
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

void stream_view_release(struct stream *s, struct stream_view *v)
{
	int i;

	if (v->n) {
		pthread_mutex_lock(&s->lock);
		for (i = 0; i < v->n; i++) {
			struct block *b = v->blocks[i];

			/* the kernel keeps what it was sent: once it has every
			 * page of a block, the block is the first to go when
			 * room is needed, but stays for when the kernel lets
			 * its pages go (reclaim, drop_caches) and asks again */
			if (v->drop_behind && v->iov && v->iov[i].iov_base &&
			    b->ready && b->cached && !b->in_kernel &&
			    block_sent(b, (char *)v->iov[i].iov_base - b->data,
				       v->iov[i].iov_len)) {
				lru_unlink(s, b);
				lru_push(s, b, true);
			}
			block_unpin(s, b);
		}
		pthread_cond_broadcast(&s->changed);
		pthread_mutex_unlock(&s->lock);
	}
	free(v->blocks);
	free(v->iov);
	memset(v, 0, sizeof(*v));
}

void stream_size_prefetch(struct stream *s, struct dataset *ds, struct item *it,
			  enum stream_file which)
{
	struct job *probe = NULL;
	struct sfile *f;

	if (!stream_url(it, which))
		return;
	pthread_mutex_lock(&s->lock);
	f = file_get(s, ds, it, which);
	if (f && f->size < 0 && !block_find(s, f, 0))
		plan(s, ds, it, which, f, 0, 0, false, &probe);
	pthread_mutex_unlock(&s->lock);
	start_jobs(s, probe, false);
}

int stream_size(struct stream *s, struct dataset *ds, struct item *it,
		enum stream_file which, int64_t *size)
{
	struct job *probe = NULL;
	struct sfile *f;
	int err = 0;

	if (!stream_url(it, which))
		return -ENOENT;
	pthread_mutex_lock(&s->lock);
	f = file_get(s, ds, it, which);
	*size = f ? f->size : -1;
	if (f && *size < 0) {
		/* block 0, fetched to learn the size, serves the first read */
		struct block *b0 = block_find(s, f, 0);

		if (!b0)
			err = plan(s, ds, it, which, f, 0, 0, true, &probe);
	}
	pthread_mutex_unlock(&s->lock);
	if (!f)
		return -ENOMEM;
	if (*size >= 0)
		return 0;
	start_jobs(s, probe, true);
	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct block *b0 = block_find(s, f, 0);

		if (f->size >= 0 || !b0 || b0->ready)
			break;
		pthread_cond_wait(&s->changed, &s->lock);
	}
	*size = f->size;
	if (*size < 0 && !err)
		err = f->err;
	pthread_mutex_unlock(&s->lock);
	if (*size >= 0)
		return 0;
	if (!err) {
		log_err("%s/%s/%s: the server gives no size for its %s",
			dataset_owner(ds), dataset_slug(ds), it->uid,
			which == STREAM_DATA ? "data" : "thumbnail");
		err = -EIO;
	}
	return err;
}

int stream_read_view(struct stream *s, struct stream_reader *r,
		     struct dataset *ds, struct item *it,
		     enum stream_file which, size_t size, off_t off,
		     struct stream_view *v)
{
	int64_t fsize, fa, fb;
	struct sfile *f;
	bool ahead = true;
	int tries, err;

	memset(v, 0, sizeof(*v));
	err = stream_size(s, ds, it, which, &fsize);
	if (err)
		return err;
	if (off >= fsize || size == 0)
		return 0;
	if ((int64_t)size > fsize - off)
		size = fsize - off;
	pthread_mutex_lock(&s->lock);
	f = file_get(s, ds, it, which);
	pthread_mutex_unlock(&s->lock);
	if (!f)
		return -ENOMEM;
	fa = off >> BLOCK_SHIFT;
	fb = (off + (int64_t)size - 1) >> BLOCK_SHIFT;
	if ((size_t)fsize <= s->small_file) {
		/* small files come whole in one request, once: blocks that
		 * readers then dropped are in the kernel's page cache */
		ahead = false;
		pthread_mutex_lock(&s->lock);
		if (!f->fetched_whole) {
			f->fetched_whole = true;
			fa = 0;
			fb = (fsize - 1) >> BLOCK_SHIFT;
		}
		pthread_mutex_unlock(&s->lock);
	}
	for (tries = 0; tries < MAX_TRIES; tries++) {
		err = view_once(s, r, ahead, ds, it, which, f, fsize, off, size,
				fa, fb, v);
		if (err != -EAGAIN)
			return err;
	}
	return -EIO;
}

struct stream_reader *stream_open(struct stream *s, struct dataset *ds,
				  struct item *it, enum stream_file which,
				  uint64_t ino, bool direct, bool *keep_cache)
{
	struct stream_reader *r = calloc(1, sizeof(*r));
	struct sfile *f;

	if (!r)
		return NULL;
	r->page_cached = !direct;
	pthread_mutex_lock(&s->lock);
	f = file_get(s, ds, it, which);
	if (!f) {
		pthread_mutex_unlock(&s->lock);
		free(r);
		return NULL;
	}
	f->ino = ino;
	/* the listing says the object changed since it was last seen: an
	 * updated_at that is new, gone or appears for the first time, or
	 * another metadata.size */
	if (!it->version != !f->version ||
	    (it->version && strcmp(it->version, f->version)) ||
	    (which == STREAM_DATA && it->size >= 0 && it->size != f->size)) {
		char *v = it->version ? strdup(it->version) : NULL;

		if (it->version && !v) {
			pthread_mutex_unlock(&s->lock);
			free(r);
			return NULL;
		}
		file_invalidate(s, f);
		f->etag[0] = '\0';
		f->size = which == STREAM_DATA ? it->size : -1;
		f->size_listed = f->size >= 0;
		free(f->version);
		f->version = v;
	}
	*keep_cache = f->gen == f->open_gen;
	f->open_gen = f->gen;
	r->gen = f->gen;
	pthread_mutex_unlock(&s->lock);
	return r;
}
