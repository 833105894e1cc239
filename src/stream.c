/* Block cache and data reads. Blocks are BLOCK_SIZE bytes of one file,
 * keyed by file and index, kept in LRU order under one byte budget; a block
 * being fetched is visible to other readers, who wait for it instead of
 * fetching it again. Lock order: s->lock is a leaf, never held across a
 * request. */
#include "stream.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_SHIFT 17
#define BLOCK_SIZE ((int64_t)1 << BLOCK_SHIFT)
#define MAX_TRIES 3

/* What is known of one remote file. */
struct sfile {
	char *key;
	int64_t size; /* -1 until known */
	char etag[128]; /* "" until known */
	char *url; /* a re-resolved URL, or NULL */
	char *url_of; /* the listing's URL that @url replaces */
	unsigned gen; /* bumped when the object changed */
	unsigned open_gen; /* gen at the last open */
	UT_hash_handle hh;
};

struct block_key {
	struct sfile *f;
	int64_t index;
};

struct block {
	struct block_key key;
	char *data;
	size_t len; /* valid bytes (short for the last block) */
	bool ready; /* false while being fetched */
	bool cached; /* in the hash and LRU list */
	int pins; /* readers copying out of it */
	struct block *lru_prev, *lru_next;
	UT_hash_handle hh;
};

struct stream {
	pthread_mutex_t lock;
	pthread_cond_t changed; /* a block became ready or went away */
	struct sfile *files; /* protected by lock */
	struct block *blocks; /* protected by lock */
	struct block *lru_head, *lru_tail; /* protected by lock; head = newest */
	size_t used; /* protected by lock: bytes of all blocks */
	size_t budget;
	size_t small_file;
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
	s->http = http;
	s->cat = cat;
	s->budget = cfg->cache_size;
	s->small_file = cfg->small_file;
	return s;
}

static void block_free(struct block *b)
{
	free(b->data);
	free(b);
}

void stream_free(struct stream *s)
{
	struct block *b, *bt;
	struct sfile *f, *ft;

	if (!s)
		return;
	HASH_ITER(hh, s->blocks, b, bt) {
		HASH_DEL(s->blocks, b);
		block_free(b);
	}
	HASH_ITER(hh, s->files, f, ft) {
		HASH_DEL(s->files, f);
		free(f->key);
		free(f->url);
		free(f->url_of);
		free(f);
	}
	pthread_cond_destroy(&s->changed);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

const char *stream_url(const struct item *it, enum stream_file which)
{
	return which == STREAM_DATA ? it->data_url : it->thumb_url;
}

size_t stream_cached_bytes(struct stream *s)
{
	size_t used;

	pthread_mutex_lock(&s->lock);
	used = s->used;
	pthread_mutex_unlock(&s->lock);
	return used;
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
	HASH_ADD_KEYPTR(hh, s->files, f->key, strlen(f->key), f);
	return f;
}

static void lru_unlink(struct stream *s, struct block *b)
{
	if (b->lru_prev)
		b->lru_prev->lru_next = b->lru_next;
	else
		s->lru_head = b->lru_next;
	if (b->lru_next)
		b->lru_next->lru_prev = b->lru_prev;
	else
		s->lru_tail = b->lru_prev;
	b->lru_prev = b->lru_next = NULL;
}

static void lru_push(struct stream *s, struct block *b)
{
	b->lru_next = s->lru_head;
	b->lru_prev = NULL;
	if (s->lru_head)
		s->lru_head->lru_prev = b;
	s->lru_head = b;
	if (!s->lru_tail)
		s->lru_tail = b;
}

/* Take @b out of the cache; it is freed now, or by its last unpin. Called
 * with s->lock held. */
static void block_drop(struct stream *s, struct block *b)
{
	if (b->cached) {
		HASH_DEL(s->blocks, b);
		lru_unlink(s, b);
		b->cached = false;
	}
	if (b->pins == 0) {
		s->used -= BLOCK_SIZE;
		block_free(b);
	}
}

/* Make room for @need more bytes by dropping the least recently used
 * blocks nobody reads. Called with s->lock held. */
static void evict(struct stream *s, size_t need)
{
	struct block *b = s->lru_tail, *prev;

	while (b && s->used + need > s->budget) {
		prev = b->lru_prev;
		if (b->ready && b->pins == 0)
			block_drop(s, b);
		b = prev;
	}
}

/* Forget every cached block of @f: the object changed. Called with s->lock
 * held. */
static void file_invalidate(struct stream *s, struct sfile *f)
{
	struct block *b, *tmp;

	HASH_ITER(hh, s->blocks, b, tmp) {
		if (b->key.f == f && b->ready)
			block_drop(s, b);
	}
	f->gen++;
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
 * 0, or -EIO when the object changed under us (cached bytes are dropped).
 * Called with s->lock held. */
static int file_check_version(struct stream *s, struct sfile *f,
			      const struct http_resp *r, const char *what)
{
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

/* GET bytes [@start, @start + @len) of @f into @buf, re-resolving an
 * expired URL once. Returns bytes stored or a negative errno. */
static ssize_t fetch(struct stream *s, struct dataset *ds, struct item *it,
		     enum stream_file which, struct sfile *f, char *buf,
		     int64_t start, size_t len)
{
	const char *listed = stream_url(it, which);
	char what[128];
	int tries, err = 0;

	snprintf(what, sizeof(what), "%s/%s/%s %s", dataset_owner(ds),
		 dataset_slug(ds), it->uid,
		 which == STREAM_DATA ? "data" : "thumbnail");
	for (tries = 0; tries < 2; tries++) {
		struct http_resp r;
		struct item *fresh;
		const char *fresh_url;
		char *url;

		pthread_mutex_lock(&s->lock);
		url = file_url(f, listed);
		pthread_mutex_unlock(&s->lock);
		if (!url)
			return -ENOMEM;
		err = http_data_get(s->http, url, start, len, buf, &r);
		free(url);
		if (err)
			return err == -ECANCELED || err == -EPERM ? -EIO : err;
		if (r.status == 200 || r.status == 206 || r.status == 416) {
			pthread_mutex_lock(&s->lock);
			err = file_check_version(s, f, &r, what);
			pthread_mutex_unlock(&s->lock);
			if (err)
				return err;
			return r.status == 416 ? 0 : (ssize_t)r.len;
		}
		if (r.status == 404 || r.status == 410) {
			log_err("%s: gone (HTTP %ld)", what, r.status);
			catalog_forget_item(s->cat, ds, it);
			return -ENOENT;
		}
		if (r.status != 403 || tries > 0)
			break;
		/* an expired presigned URL: ask the API for a fresh one */
		err = catalog_reresolve(s->cat, ds, it, &fresh);
		if (err)
			return err;
		fresh_url = stream_url(fresh, which);
		if (!fresh_url) {
			item_unref(fresh);
			return -ENOENT;
		}
		pthread_mutex_lock(&s->lock);
		free(f->url);
		free(f->url_of);
		f->url = strdup(fresh_url);
		f->url_of = strdup(listed);
		pthread_mutex_unlock(&s->lock);
		item_unref(fresh);
		log_debug("%s: URL re-resolved", what);
		err = -EACCES;
	}
	log_err("%s: refused by the server", what);
	return -EACCES;
}

/* Fetch blocks [@a, @b] of @f, which the caller created as not ready, and
 * make them ready or drop them. Returns 0 or a negative errno. */
static int fetch_blocks(struct stream *s, struct dataset *ds, struct item *it,
			enum stream_file which, struct sfile *f,
			struct block **run, int64_t a, int64_t b, int64_t size)
{
	int64_t start = a << BLOCK_SHIFT, end = (b + 1) << BLOCK_SHIFT;
	size_t len;
	ssize_t got;
	char *buf;
	int64_t i;

	if (size >= 0 && end > size)
		end = size;
	len = end > start ? end - start : 0;
	buf = len ? malloc(len) : NULL;
	got = !len ? 0 : buf ? fetch(s, ds, it, which, f, buf, start, len)
			     : -ENOMEM;

	pthread_mutex_lock(&s->lock);
	for (i = a; i <= b; i++) {
		struct block *blk = run[i - a];
		int64_t off = (i - a) << BLOCK_SHIFT;

		if (got >= 0 && off < got) {
			blk->len = got - off < BLOCK_SIZE ? got - off
							  : BLOCK_SIZE;
			memcpy(blk->data, buf + off, blk->len);
			blk->ready = true;
		} else {
			block_drop(s, blk);
		}
	}
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
	free(buf);
	return got < 0 ? (int)got : 0;
}

/* Make blocks [@a, @b] of @f present: start fetches for the missing ones
 * and wait for those others fetch. Returns 0 or a negative errno. */
static int load_blocks(struct stream *s, struct dataset *ds, struct item *it,
		       enum stream_file which, struct sfile *f, int64_t a,
		       int64_t b, int64_t size)
{
	struct block **run = calloc(b - a + 1, sizeof(*run));
	int64_t i, first = -1;
	int err = 0;

	if (!run)
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	evict(s, (b - a + 1) * BLOCK_SIZE);
	for (i = a; i <= b; i++) {
		struct block_key key = { f, i };
		struct block *blk;

		HASH_FIND(hh, s->blocks, &key, sizeof(key), blk);
		if (blk) {
			if (blk->ready) {
				lru_unlink(s, blk);
				lru_push(s, blk);
			}
			continue;
		}
		blk = calloc(1, sizeof(*blk));
		if (blk)
			blk->data = malloc(BLOCK_SIZE);
		if (!blk || !blk->data) {
			free(blk);
			err = -ENOMEM;
			break;
		}
		blk->key = key;
		blk->cached = true;
		HASH_ADD(hh, s->blocks, key, sizeof(key), blk);
		lru_push(s, blk);
		s->used += BLOCK_SIZE;
		run[i - a] = blk;
	}
	pthread_mutex_unlock(&s->lock);

	/* fetch each run of blocks this call created, one request a run */
	for (i = a; i <= b + 1; i++) {
		bool mine = i <= b && run[i - a];

		if (mine && first < 0)
			first = i;
		if (!mine && first >= 0) {
			int e = err ? -ECANCELED
				    : fetch_blocks(s, ds, it, which, f,
						   run + (first - a), first,
						   i - 1, size);

			if (e == -ECANCELED) {
				int64_t j;

				pthread_mutex_lock(&s->lock);
				for (j = first; j < i; j++)
					block_drop(s, run[j - a]);
				pthread_cond_broadcast(&s->changed);
				pthread_mutex_unlock(&s->lock);
			} else if (e && !err) {
				err = e;
			}
			first = -1;
		}
	}
	free(run);
	return err;
}

int stream_size(struct stream *s, struct dataset *ds, struct item *it,
		enum stream_file which, int64_t *size)
{
	struct sfile *f;
	int err;

	if (!stream_url(it, which))
		return -ENOENT;
	pthread_mutex_lock(&s->lock);
	f = file_get(s, ds, it, which);
	*size = f ? f->size : -1;
	pthread_mutex_unlock(&s->lock);
	if (!f)
		return -ENOMEM;
	if (*size >= 0)
		return 0;
	err = load_blocks(s, ds, it, which, f, 0, 0, -1);
	if (err)
		return err;
	pthread_mutex_lock(&s->lock);
	*size = f->size;
	pthread_mutex_unlock(&s->lock);
	if (*size < 0) {
		log_err("%s/%s/%s: the server gives no size for %s",
			dataset_owner(ds), dataset_slug(ds), it->uid,
			which == STREAM_DATA ? "data" : "thumbnail");
		return -EIO;
	}
	return 0;
}

/* Copy what blocks [@a, @b] hold of [@off, @off + @len) into @buf; returns
 * the bytes copied, or -EAGAIN when a block is missing (evicted or failed).
 * Waits for blocks other readers are fetching. */
static ssize_t copy_out(struct stream *s, struct sfile *f, char *buf,
			int64_t off, size_t len)
{
	int64_t a = off >> BLOCK_SHIFT, b = (off + len - 1) >> BLOCK_SHIFT, i;
	struct block **pinned = calloc(b - a + 1, sizeof(*pinned));
	ssize_t done = 0;
	bool missing = false;

	if (!pinned)
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	for (i = a; i <= b && !missing; i++) {
		struct block_key key = { f, i };
		struct block *blk;

		for (;;) {
			HASH_FIND(hh, s->blocks, &key, sizeof(key), blk);
			if (!blk || blk->ready)
				break;
			pthread_cond_wait(&s->changed, &s->lock);
		}
		if (blk) {
			blk->pins++;
			pinned[i - a] = blk;
		} else {
			missing = true;
		}
	}
	pthread_mutex_unlock(&s->lock);

	for (i = a; i <= b && !missing; i++) {
		struct block *blk = pinned[i - a];
		int64_t bstart = i << BLOCK_SHIFT;
		int64_t from = off + done - bstart;
		size_t n;

		if (from >= (int64_t)blk->len)
			break; /* the object ends here */
		n = blk->len - from;
		if (n > len - done)
			n = len - done;
		memcpy(buf + done, blk->data + from, n);
		done += n;
	}

	pthread_mutex_lock(&s->lock);
	for (i = a; i <= b; i++) {
		struct block *blk = pinned[i - a];

		if (blk && --blk->pins == 0 && !blk->cached) {
			s->used -= BLOCK_SIZE;
			block_free(blk);
		}
	}
	pthread_mutex_unlock(&s->lock);
	free(pinned);
	return missing ? -EAGAIN : done;
}

ssize_t stream_read(struct stream *s, struct dataset *ds, struct item *it,
		    enum stream_file which, char *buf, size_t size, off_t off)
{
	int64_t fsize, a, b;
	struct sfile *f;
	unsigned gen;
	int tries, err;
	ssize_t n = -EIO;

	err = stream_size(s, ds, it, which, &fsize);
	if (err)
		return err;
	if (off >= fsize || size == 0)
		return 0;
	if ((int64_t)size > fsize - off)
		size = fsize - off;
	pthread_mutex_lock(&s->lock);
	f = file_get(s, ds, it, which);
	gen = f ? f->gen : 0;
	pthread_mutex_unlock(&s->lock);
	if (!f)
		return -ENOMEM;

	a = off >> BLOCK_SHIFT;
	b = (off + (int64_t)size - 1) >> BLOCK_SHIFT;
	if ((size_t)fsize <= s->small_file) {
		/* small files come whole in one request */
		a = 0;
		b = (fsize - 1) >> BLOCK_SHIFT;
	}
	for (tries = 0; tries < MAX_TRIES; tries++) {
		err = load_blocks(s, ds, it, which, f, a, b, fsize);
		if (err)
			return err;
		pthread_mutex_lock(&s->lock);
		if (f->gen != gen)
			err = -EIO; /* the object changed: never mix versions */
		pthread_mutex_unlock(&s->lock);
		if (err)
			return err;
		n = copy_out(s, f, buf, off, size);
		if (n != -EAGAIN)
			return n;
	}
	return -EIO;
}

bool stream_keep_cache(struct stream *s, struct dataset *ds, struct item *it,
		       enum stream_file which)
{
	struct sfile *f;
	bool keep = false;

	pthread_mutex_lock(&s->lock);
	f = file_get(s, ds, it, which);
	if (f) {
		keep = f->gen == f->open_gen;
		f->open_gen = f->gen;
	}
	pthread_mutex_unlock(&s->lock);
	return keep;
}
