/* Fetching: the bytes of claimed cache runs, from the disk when it has
 * them, else with one ranged GET each, on the caller's thread or on a pool
 * of threads. A presigned URL that expired is re-resolved through its
 * source's callback, once, and the fresh URL serves later fetches of it. */
#ifndef AVALAFS_FETCH_H
#define AVALAFS_FETCH_H

#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "http.h"
#include "util.h"

struct fetch_src;

/* What only the layer above knows of a source. */
struct fetch_src_ops {
	/* A fresh URL for @src, whose presigned one expired: 0 and a new
	 * string in *@url, or a negative errno (-ENOENT: it has none). */
	int (*resolve)(struct fetch_src *src, char **url);
	/* The server says the object is gone (404, 410). May be NULL. */
	void (*gone)(struct fetch_src *src);
	/* Free @src (its last reference went). */
	void (*free)(struct fetch_src *src);
};

/* What a file is, for the counters of its requests. */
enum fetch_kind {
	FETCH_DATA, /* a data file */
	FETCH_THUMBNAIL, /* a thumbnail */
	FETCH_KINDS
};

/* Where the bytes of one file come from, made by the layer above (which
 * embeds it) and counted: fetches queued hold a reference. */
struct fetch_src {
	int refs; /* atomic */
	char *id; /* the object's identity (cache_obj_get) */
	char *url; /* the listing's URL */
	char *listed; /* the listing's updated_at (else created_at), or NULL */
	int64_t size; /* the listing's size, -1 when not given */
	char *what; /* "owner/slug/uid data", for logs */
	enum fetch_kind kind;
	bool refused; /* atomic: its last answer was refused: a tier is to
		       * ask the origin for the next */
	const struct fetch_src_ops *ops;
};

/* Take one more reference; returns @src. */
struct fetch_src *fetch_src_ref(struct fetch_src *src);

/* Drop a reference; accepts NULL. */
void fetch_src_unref(struct fetch_src *src);

struct fetch_stats {
	uint64_t requests; /* GET requests for data */
	/* those that were sent, by kind and how they ended */
	uint64_t ended[FETCH_KINDS][UTIL_OUTCOMES];
	size_t jobs; /* runs being filled or waiting for a thread */
};

/* The name of @kind in counters: "data", "thumbnail". */
const char *fetch_kind_name(enum fetch_kind kind);

struct fetch;

/* Whether the last runs fetched ahead all found their bytes on disk, and
 * no run since needed the network: a walk over files the disk holds is
 * served as fast by its readers' own reads, and fetching ahead then costs
 * only look-ups and threads. */
bool fetch_disk_keeps_up(struct fetch *f);

/* Fetch over @http into @cache (both borrowed) with up to @threads
 * threads for what is fetched ahead. NULL on ENOMEM. */
struct fetch *fetch_new(struct http *http, struct cache *cache, int threads);

/* What a size costs at most: a stat of a file whose size the listing
 * lacks keeps the first bytes, or the whole of a file that fits, and the
 * rest comes when it is read. */
#define FETCH_PROBE_MAX ((int64_t)256 << 10)

/* Stop the threads; runs still queued are settled as failed. Accepts
 * NULL. */
void fetch_free(struct fetch *f);

/* Fill @runs (a list, from cache_claim) of @src's object @o and settle
 * them: the first on this thread when @inline_first (a reader waits for it
 * anyway), the rest on the pool, or here when it cannot take them. A run
 * of an object whose size is not known yet that starts at its first block
 * asks for DISK_WHOLE_MAX bytes: a small object comes whole in one
 * request, and a large one stops after the run; a run for a size alone
 * (cache_run.probe) asks for FETCH_PROBE_MAX bytes and keeps them. */
void fetch_start(struct fetch *f, struct fetch_src *src, struct cache_run *runs,
		 bool inline_first);

void fetch_get_stats(struct fetch *f, struct fetch_stats *st);

#endif
