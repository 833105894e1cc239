/* Reads of open files: the blocks a read needs, readahead for a sequential
 * reader, the size of a file listed without one, and the next files of an
 * order (the listing, a folder) fetched ahead of readers that open files
 * in that order. Bytes live in the cache (cache.h) and come through
 * fetching (fetch.h). */
#ifndef AVALAFS_STREAM_H
#define AVALAFS_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cache.h"
#include "fetch.h"

/* The kernel's readahead on a mount (session.c raises it from FUSE's 128
 * KiB): sequential readers send large reads, and a read(2) at a random
 * offset is asked for as it is (the kernel takes a read larger than its
 * window for the start of a stream and reads ahead of it: at 1 MiB, a random
 * read of 1 MiB, 257 pages when unaligned, brought three). The reads of one
 * sequential reader arrive this far apart, and in any order. */
#define STREAM_KERNEL_READAHEAD ((int64_t)4 << 20)

struct stream_config {
	size_t small_file; /* files up to this size are fetched whole */
	size_t readahead_max; /* largest readahead window of one reader */
	unsigned connections; /* readahead parts of all readers on their way
			       * at once, about (0: no bound) */
	unsigned prefetch; /* files fetched ahead of an ordered reader */
};

/* Where an open file stands in the orders a reader may follow: in each,
 * @order names it (0: none), @pos is the file's place and @next that of
 * the file after it (0: the last). Positions grow along an order; who
 * opens does not matter (many readers may walk one order together). */
#define STREAM_ORDERS 3
struct stream_place {
	struct {
		uint64_t order, pos, next;
	} in[STREAM_ORDERS];
};

/* What the layer above tells of orders. */
struct stream_order_ops {
	/* Give the files of @order after position @after, up to @n of them,
	 * to stream_prefetch(), and their positions in @pos. Returns how
	 * many were given. */
	size_t (*ahead)(void *ctx, uint64_t order, uint64_t after, size_t n,
			uint64_t *pos);
};

struct stream_stats {
	uint64_t prefetched; /* files fetched ahead of a reader */
	uint64_t ordered; /* opens that followed an order */
	uint64_t disk_opens; /* opens that told no place: the disk kept up */
};

struct stream;
struct stream_reader;

/* Reads over @cache and @fetch (borrowed); @order (may be NULL) with
 * @order_ctx tells what comes next in an order. NULL on ENOMEM. */
struct stream *stream_new(struct cache *cache, struct fetch *fetch,
			  const struct stream_config *cfg,
			  const struct stream_order_ops *order,
			  void *order_ctx);

/* Accepts NULL. */
void stream_free(struct stream *s);

/* Open @src (a reference is taken) as inode @ino: a reader in @out. @direct:
 * it bypasses the kernel's page cache (O_DIRECT), so the cache here keeps
 * what it reads. @place (may be NULL) says where it stands in orders.
 * @keep_cache says whether the kernel may keep its pages: no when the
 * object changed since the last open. A reader sees one version: once the
 * object changes, its reads fail with EIO. Returns 0 or -ENOMEM. */
int stream_open(struct stream *s, struct fetch_src *src, uint64_t ino,
		bool direct, const struct stream_place *place, bool *keep_cache,
		struct stream_reader **out);

/* Accepts NULL. */
void stream_reader_free(struct stream *s, struct stream_reader *r);

/* Describe up to @size bytes at @off of @r's file in @v, pinned in the
 * cache: @v->len is short only at the end of the file. Returns 0 (then
 * stream_read_release() @v) or a negative errno. */
int stream_read(struct stream *s, struct stream_reader *r, size_t size,
		off_t off, struct cache_view *v);

/* Unpin what @v holds; @sent: its bytes went to the kernel's page cache. */
void stream_read_release(struct stream *s, struct cache_view *v, bool sent);

/* The size of @src's file: the listing's, one learned before, else from a
 * first GET whose bytes (the whole file when it is small) serve the first
 * read. Returns 0 or a negative errno. */
int stream_size(struct stream *s, struct fetch_src *src, int64_t *size);

/* Start learning the size of @src's file on the fetching threads, when
 * unknown and not being learned already: stream_size() then waits for
 * that answer instead of asking again. */
void stream_size_prefetch(struct stream *s, struct fetch_src *src);

/* Fetch @src's file whole on the fetching threads, when it is small and
 * fits in the cache without waiting. */
void stream_prefetch(struct stream *s, struct fetch_src *src);

void stream_get_stats(struct stream *s, struct stream_stats *st);

/* Whether an open should tell where its file stands (stream_open()'s
 * @place): not while the files fetched ahead lately were all on disk, as
 * their readers then read them there as fast (fetch_disk_keeps_up()); a
 * read that needs the network brings it back. */
bool stream_wants_place(struct stream *s);

/* The cache and the fetcher @s reads over (borrowed), for their counters. */
struct cache *stream_cache(struct stream *s);
struct fetch *stream_fetch(struct stream *s);

#endif
