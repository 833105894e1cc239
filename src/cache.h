/* Bytes of remote files by object identity and version: memory blocks of
 * CACHE_BLOCK bytes under one budget, then the entries on disk (disk.h).
 * A block being filled is visible to every reader, who waits for it
 * instead of asking again; readers pin the blocks they copy from, so
 * eviction never takes bytes from under them. */
#ifndef AVALAFS_CACHE_H
#define AVALAFS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "disk.h"

#define CACHE_BLOCK_SHIFT 17
#define CACHE_BLOCK ((int64_t)1 << CACHE_BLOCK_SHIFT) /* 128 KiB */

/* Counters (bytes unless named otherwise). */
struct cache_stats {
	size_t used; /* held by memory blocks now */
	size_t peak; /* most ever held */
	size_t budget;
	size_t kernel_held; /* held by blocks the kernel's page cache has too */
	uint64_t hits, misses; /* blocks found / made for a read */
	uint64_t evicted; /* blocks dropped to make room */
	uint64_t filled; /* bytes that came from the network */
	uint64_t disk_read; /* bytes that came from the disk */
	uint64_t memory_read; /* bytes of reads found in memory, ready */
};

struct cache;
struct cache_obj;
struct cache_block;

/* A cache of @budget bytes in memory, with @disk (borrowed; NULL: none)
 * behind it. NULL on ENOMEM. */
struct cache *cache_new(size_t budget, struct disk *disk);

/* Accepts NULL. Nothing may be pinned or claimed. */
void cache_free(struct cache *c);

/* The object of identity @id (origin, dataset, uid, which file and URL
 * path: see DESIGN section 6), made on first use, with a reference held
 * for the caller. NULL on ENOMEM. */
struct cache_obj *cache_obj_get(struct cache *c, const char *id);

/* Drop a reference to @o; accepts NULL. An object nobody uses and without
 * blocks is kept a while for what it knows (its size, its ETag), then
 * freed. */
void cache_obj_put(struct cache *c, struct cache_obj *o);

/* What the listing says of @o as it is opened (inode @ino): its time
 * @listed (NULL: none) and @size (-1: not given). When they differ from
 * what was last seen, the object changed: its bytes are dropped. Returns
 * the object's generation (a reader sees one), and in @keep_cache whether
 * the kernel may keep the pages it has: no if it changed since the last
 * open. -ENOMEM on failure. */
int cache_obj_open(struct cache *c, struct cache_obj *o, const char *listed,
		   int64_t size, uint64_t ino, bool *keep_cache, unsigned *gen);

/* The object's size, -1 when not known yet. */
int64_t cache_obj_size(struct cache *c, struct cache_obj *o);

/* The error of the object's last failed fill while it is recent (a
 * server that just used up a deadline is not asked again at once), else
 * 0. */
int cache_obj_error(struct cache *c, struct cache_obj *o);

/* Whether @o was opened by a reader of this mount: then the kernel's page
 * cache likely holds what it read. */
bool cache_obj_was_opened(struct cache *c, struct cache_obj *o);

/* Whether @o changed since generation @gen. */
bool cache_obj_changed(struct cache *c, struct cache_obj *o, unsigned gen);

/* Take up to @max inodes whose kernel pages went stale (their object
 * changed) into @inos; returns how many. */
size_t cache_take_invalidations(struct cache *c, uint64_t *inos, size_t max);

/* Blocks [a, b] of an object claimed to be filled in one go: by the disk,
 * or one request that writes its bytes in order. */
struct cache_run {
	struct cache *c;
	struct cache_obj *o;
	int64_t a, b; /* blocks */
	int64_t from; /* the first block not filled yet */
	unsigned gen; /* the object's generation when claimed */
	bool net; /* bytes came from the network */
	bool pieces; /* bytes came from pieces of a block the disk lacks */
	bool probe; /* for a size (a stat): FETCH_PROBE_MAX bytes at most */
	bool ahead; /* for no reader yet: a failure is not the object's */
	struct cache_block **blocks; /* b - a + 1; NULL once settled */
	struct cache_run *next;
};

/* Learn from an answer to @r about its object (@etag may be "", @total
 * -1). Returns 0, -EAGAIN for an answer whose size contradicts the
 * listing's (a bad answer, never a size), -EIO when the object changed:
 * its bytes are dropped, in memory and on disk, or -ESTALE when it
 * changed after @r was claimed (the answer is of no use). Once the size
 * is known, a run from the first block of an object of at most @whole
 * bytes grows to all of it, and a probe's to its first @whole bytes (0:
 * none grows), as far as blocks are free: no reader that learns the size
 * with it claims them meanwhile. @what names it in logs. */
int cache_run_learn(struct cache_run *r, const char *etag, int64_t total,
		    int64_t whole, const char *what);

/* Claim the blocks of [a, b] that are neither held nor coming: runs of
 * them go on @runs (a run per gap), to be filled, then settled. With
 * @wait, wait until they fit in the budget (a reader needs them); without,
 * claim only those that fit now (readahead). Blocks found are made the
 * newest. Returns 0 or -ENOMEM. */
int cache_claim(struct cache *c, struct cache_obj *o, int64_t a, int64_t b,
		bool wait, struct cache_run **runs);

/* The index of the first block of [a, b] neither held nor coming, or
 * b + 1. */
int64_t cache_first_missing(struct cache *c, struct cache_obj *o, int64_t a,
			    int64_t b);

/* Fill what of @r the disk holds, from its first block on; r->from tells
 * where the rest starts (past r->b: all came). Never fails: what the disk
 * lacks is the network's to fill. */
void cache_run_from_disk(struct cache_run *r);

/* Bytes of @r at object offset @off, in order and never twice; each block
 * becomes readable once whole. Returns 0, 1 for bytes past the run (it has
 * all it wants), or -EIO (the object changed meanwhile). */
int cache_run_write(struct cache_run *r, int64_t off, const char *data,
		    size_t len);

/* End @r: a block filled up to the object's end is readable, anything else
 * is dropped; @err (0 or a negative errno) is what readers of the dropped
 * blocks are told for a while. What became whole is kept on disk. Frees
 * @r. */
void cache_run_settle(struct cache_run *r, int err);

/* Bytes of an object in place in the cache: @n pieces of @len bytes in
 * all, pinned until cache_view_release(). */
struct cache_view {
	struct iovec *iov;
	int n;
	size_t len;
	struct cache_block **blocks; /* the pinned blocks */
	bool drop_behind; /* the bytes go to the kernel's page cache: blocks
			   * it then holds whole are evicted first */
};

/* Claim [@a, @b] as cache_claim() does, waiting for room (a reader needs
 * them), and pin the blocks of [@off, @off + @len) (@len > 0) that are then
 * held or coming in @v, in the same hold: pinned before a fill starts, a
 * block that fails stays visible to its reader, who learns why, and one
 * found ready cannot be evicted before it is read. 0 or -ENOMEM (runs
 * claimed are on @runs all the same). */
int cache_claim_pin(struct cache *c, struct cache_obj *o, int64_t a, int64_t b,
		    int64_t off, size_t len, struct cache_run **runs,
		    struct cache_view *v);

/* Wait until the blocks @v pinned are ready and describe [@off, @off +
 * @len) with them. Returns 0, -EAGAIN when one is missing or failed
 * without a cause (claim and try again), -EIO when @o changed since
 * generation @gen (never mix versions), or the failed fill's errno. @v
 * holds nothing on error. */
int cache_wait(struct cache *c, struct cache_obj *o, unsigned gen, int64_t off,
	       size_t len, struct cache_view *v);

/* Unpin what @v holds; accepts an empty view. @sent: the bytes went to the
 * kernel's page cache. */
void cache_view_release(struct cache *c, struct cache_view *v, bool sent);

void cache_get_stats(struct cache *c, struct cache_stats *st);

#endif
