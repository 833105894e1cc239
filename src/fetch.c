/* Fetching runs of blocks. A job is one run and the source it comes from;
 * it is tried on the disk first, then with one GET of the blocks the disk
 * did not have. Jobs started ahead of readers go to a pool of threads,
 * started on first use (after the daemon forked).
 * Lock order: f->lock is a leaf, never held across a request. */
#include "fetch.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#define RESOLVED_MAX 4096 /* re-resolved URLs remembered */

struct fetch_src *fetch_src_ref(struct fetch_src *src)
{
	__atomic_add_fetch(&src->refs, 1, __ATOMIC_RELAXED);
	return src;
}

void fetch_src_unref(struct fetch_src *src)
{
	if (src && __atomic_sub_fetch(&src->refs, 1, __ATOMIC_ACQ_REL) == 0)
		src->ops->free(src);
}

/* A URL that replaced an expired one. */
struct resolved {
	char *listed; /* the listing's URL */
	char *fresh;
	UT_hash_handle hh;
};

struct job {
	struct fetch *f;
	struct fetch_src *src; /* a reference */
	struct cache_run *run;
	struct job *next;
};

struct fetch {
	pthread_mutex_t lock;
	pthread_cond_t work; /* a job was queued, or stop */
	struct job *queue, *queue_tail; /* protected by lock */
	pthread_t *threads; /* protected by lock */
	int n_threads; /* protected by lock */
	bool stopping; /* protected by lock */
	struct resolved *resolved; /* protected by lock */
	size_t n_resolved; /* protected by lock */
	struct fetch_stats stats; /* protected by lock */
	int max_threads;
	struct http *http;
	struct cache *cache;
	unsigned disk_streak; /* atomic: see fetch_disk_keeps_up() */
};

/* Runs fetched ahead that found all their bytes on disk, in a row, after
 * which the disk is taken to keep up. */
#define DISK_STREAK 32

struct fetch *fetch_new(struct http *http, struct cache *cache, int threads)
{
	struct fetch *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->work, NULL);
	f->http = http;
	f->cache = cache;
	f->max_threads = threads > 0 ? threads : 4;
	return f;
}

static void resolved_clear(struct fetch *f)
{
	struct resolved *r, *tmp;

	HASH_ITER(hh, f->resolved, r, tmp) {
		HASH_DEL(f->resolved, r);
		free(r->listed);
		free(r->fresh);
		free(r);
	}
	f->n_resolved = 0;
}

static void job_free(struct job *j)
{
	fetch_src_unref(j->src);
	free(j);
}

void fetch_free(struct fetch *f)
{
	struct job *j;
	int i;

	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->stopping = true;
	pthread_cond_broadcast(&f->work);
	pthread_mutex_unlock(&f->lock);
	for (i = 0; i < f->n_threads; i++)
		pthread_join(f->threads[i], NULL);
	free(f->threads);
	while ((j = f->queue)) {
		f->queue = j->next;
		cache_run_settle(j->run, -ECANCELED);
		job_free(j);
	}
	resolved_clear(f);
	pthread_cond_destroy(&f->work);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

void fetch_get_stats(struct fetch *f, struct fetch_stats *st)
{
	pthread_mutex_lock(&f->lock);
	*st = f->stats;
	pthread_mutex_unlock(&f->lock);
}

const char *fetch_kind_name(enum fetch_kind kind)
{
	return kind == FETCH_THUMBNAIL ? "thumbnail" : "data";
}

/* The URL to fetch @src from: the re-resolved one when its listing URL
 * expired. A new string. */
static char *src_url(struct fetch *f, struct fetch_src *src)
{
	struct resolved *r;
	char *url;

	pthread_mutex_lock(&f->lock);
	HASH_FIND_STR(f->resolved, src->url, r);
	url = strdup(r ? r->fresh : src->url);
	pthread_mutex_unlock(&f->lock);
	return url;
}

static int src_resolve(struct fetch *f, struct fetch_src *src)
{
	struct resolved *r;
	char *fresh = NULL;
	int err = src->ops->resolve(src, &fresh);

	if (err)
		return err;
	pthread_mutex_lock(&f->lock);
	if (f->n_resolved >= RESOLVED_MAX)
		resolved_clear(f); /* listings moved on: most are not used */
	HASH_FIND_STR(f->resolved, src->url, r);
	if (!r && (r = calloc(1, sizeof(*r)))) {
		if ((r->listed = strdup(src->url))) {
			HASH_ADD_KEYPTR(hh, f->resolved, r->listed,
					strlen(r->listed), r);
			f->n_resolved++;
		} else {
			free(r);
			r = NULL;
		}
	}
	if (r) {
		free(r->fresh);
		r->fresh = fresh;
		fresh = NULL;
	}
	pthread_mutex_unlock(&f->lock);
	free(fresh);
	return r ? 0 : -ENOMEM;
}

static int job_check(void *ctx, const struct http_resp *r)
{
	struct job *j = ctx;
	struct cache_run *run = j->run;

	/* a first answer that says the object is small brings it whole, and
	 * a probe what it asked for */
	return cache_run_learn(run, r->etag, r->total,
			       run->probe ? FETCH_PROBE_MAX : DISK_WHOLE_MAX,
			       j->src->what);
}

static int job_write(void *ctx, int64_t off, const char *data, size_t len)
{
	struct job *j = ctx;

	return cache_run_write(j->run, off, data, len);
}

/* GET the run's bytes, re-resolving an expired URL once. Returns 0 or a
 * negative errno; @r describes the last answer. */
static int job_fetch(struct job *j, struct http_resp *r)
{
	struct fetch *f = j->f;
	struct cache_run *run = j->run;
	struct http_sink sink = { job_check, job_write, j };
	struct http_data_req req;
	int64_t size = cache_obj_size(f->cache, run->o);
	int64_t start = run->from << CACHE_BLOCK_SHIFT;
	int64_t end = (run->b + 1) << CACHE_BLOCK_SHIFT;
	int tries, err;

	/* small objects come whole; a size alone costs its first bytes */
	if (size < 0 && run->from == 0 && run->probe && end < FETCH_PROBE_MAX)
		end = FETCH_PROBE_MAX;
	else if (size < 0 && run->from == 0 && !run->probe &&
		 end < DISK_WHOLE_MAX)
		end = DISK_WHOLE_MAX;
	if (size >= 0 && end > size)
		end = size;
	if (end <= start)
		return 0;
	for (tries = 0; tries < 2; tries++) {
		char *url = src_url(f, j->src);

		if (!url)
			return -ENOMEM;
		pthread_mutex_lock(&f->lock);
		f->stats.requests++;
		pthread_mutex_unlock(&f->lock);
		/* after a re-resolve, a tier asks the origin again */
		req = (struct http_data_req){
			url, j->src->id, j->src->listed,
			tries > 0 || __atomic_load_n(&j->src->refused,
						     __ATOMIC_RELAXED)
		};
		err = http_data_stream(f->http, &req, start, end - start, &sink,
				       r);
		free(url);
		/* a URL refused here, or no memory to ask: nothing was sent */
		if (r->status ||
		    (err != -EPERM && err != -EINVAL && err != -ENOMEM)) {
			enum util_outcome o = util_http_outcome(r->status, err);

			pthread_mutex_lock(&f->lock);
			f->stats.ended[j->src->kind][o]++;
			pthread_mutex_unlock(&f->lock);
		}
		/* bytes refused (not what is known of the object): the reads
		 * that try again go past a tier's copy */
		__atomic_store_n(&j->src->refused, err && err != -ECANCELED,
				 __ATOMIC_RELAXED);
		if (err)
			return err == -ECANCELED || err == -EPERM ||
					       err == -EHOSTUNREACH
				       ? -EIO
				       : err;
		if (r->status == 200 || r->status == 206 || r->status == 416) {
			/* an empty object or one that shrank: learn its size */
			err = cache_run_learn(run, r->etag, r->total, 0,
					      j->src->what);
			return err == -EAGAIN ? -EIO : err;
		}
		if (r->status == 404 || r->status == 410) {
			log_err("%s: gone (HTTP %ld)", j->src->what, r->status);
			if (j->src->ops->gone)
				j->src->ops->gone(j->src);
			return -ENOENT;
		}
		if (r->status != 403 || tries > 0)
			break;
		/* an expired presigned URL: ask the API for a fresh one */
		err = src_resolve(f, j->src);
		if (err)
			return err;
		log_debug("%s: URL re-resolved", j->src->what);
	}
	log_err("%s: refused by the server (HTTP %ld)", j->src->what,
		r->status);
	return util_http_errno(r->status) == -EACCES ? -EACCES : -EIO;
}

/* Fill the job's run, from the disk first, and settle it. */
static void job_run(struct job *j)
{
	struct fetch *f = j->f;
	struct http_resp r;
	bool on_disk;
	int err = 0;

	cache_run_from_disk(j->run);
	on_disk = j->run->from > j->run->b;
	/* a run ahead that the disk served lengthens the streak; one that
	 * needs the network, ahead or for a reader, ends it */
	if (j->run->ahead && on_disk)
		__atomic_add_fetch(&f->disk_streak, 1, __ATOMIC_RELAXED);
	else if (!on_disk)
		__atomic_store_n(&f->disk_streak, 0, __ATOMIC_RELAXED);
	if (!on_disk)
		err = job_fetch(j, &r);
	cache_run_settle(j->run, err);
}

bool fetch_disk_keeps_up(struct fetch *f)
{
	return __atomic_load_n(&f->disk_streak, __ATOMIC_RELAXED) >=
	       DISK_STREAK;
}

static void *worker_main(void *p)
{
	struct fetch *f = p;

	pthread_mutex_lock(&f->lock);
	for (;;) {
		struct job *j;

		while (!f->queue && !f->stopping)
			pthread_cond_wait(&f->work, &f->lock);
		if (f->stopping)
			break;
		j = f->queue;
		f->queue = j->next;
		if (!f->queue)
			f->queue_tail = NULL;
		pthread_mutex_unlock(&f->lock);
		job_run(j);
		job_free(j);
		pthread_mutex_lock(&f->lock);
		f->stats.jobs--;
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

/* Queue @j for the pool, starting its threads on first use. Called with
 * f->lock held; false when no thread could run it. */
static bool job_queue(struct fetch *f, struct job *j)
{
	if (!f->threads) {
		f->threads = calloc(f->max_threads, sizeof(*f->threads));
		while (f->threads && f->n_threads < f->max_threads &&
		       pthread_create(&f->threads[f->n_threads], NULL,
				      worker_main, f) == 0)
			f->n_threads++;
	}
	if (f->n_threads == 0 || f->stopping)
		return false;
	j->next = NULL;
	if (f->queue_tail)
		f->queue_tail->next = j;
	else
		f->queue = j;
	f->queue_tail = j;
	pthread_cond_signal(&f->work);
	return true;
}

void fetch_start(struct fetch *f, struct fetch_src *src, struct cache_run *runs,
		 bool inline_first)
{
	while (runs) {
		struct cache_run *run = runs;
		struct job *j = calloc(1, sizeof(*j));
		bool queued = false;

		runs = run->next;
		if (!j) {
			cache_run_settle(run, -ENOMEM);
			continue;
		}
		j->f = f;
		j->src = fetch_src_ref(src);
		j->run = run;
		pthread_mutex_lock(&f->lock);
		f->stats.jobs++;
		if (!inline_first)
			queued = job_queue(f, j);
		pthread_mutex_unlock(&f->lock);
		if (queued)
			continue;
		inline_first = false;
		job_run(j);
		job_free(j);
		pthread_mutex_lock(&f->lock);
		f->stats.jobs--;
		pthread_mutex_unlock(&f->lock);
	}
}
