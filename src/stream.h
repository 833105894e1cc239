/* Data reads: data, thumbnail and featured-image files fetched lazily with
 * Range GETs into a block cache that has one byte budget for all files, with
 * readahead for sequential readers. */
#ifndef AVALAFS_STREAM_H
#define AVALAFS_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "catalog.h"
#include "http.h"

#define STREAM_BLOCK_SHIFT 17 /* cache blocks of 128 KiB */

enum stream_file { STREAM_DATA, STREAM_THUMB };

struct stream_config {
	size_t cache_size; /* byte budget of the block cache */
	size_t small_file; /* files up to this size are fetched whole */
	size_t readahead_max; /* largest readahead window of one reader */
	int workers; /* threads fetching readahead */
};

/* Counters of the block cache (bytes unless named otherwise). */
struct stream_stats {
	size_t used; /* held by blocks now */
	size_t peak; /* most ever held */
	size_t budget;
	uint64_t fetches; /* GET requests for data */
	uint64_t fetched; /* bytes received */
	uint64_t hits, misses; /* blocks found / fetched for a read */
	size_t jobs; /* fetches queued or running */
	size_t kernel_held; /* held by blocks the kernel's page cache has too */
};

struct stream;
struct stream_reader;

/* A reader over @http and @cat (both borrowed); NULL on ENOMEM. */
struct stream *stream_new(struct http *http, struct catalog *cat,
			  const struct stream_config *cfg);

/* Stop the readahead threads and free everything. Accepts NULL. */
void stream_free(struct stream *s);

/* Open file @which of @it (inode @ino) for reading: its readahead state,
 * or NULL on ENOMEM. @direct: the reader bypasses the kernel's page cache
 * (O_DIRECT), so the cache here keeps what it reads. @keep_cache says
 * whether the kernel may keep its pages: yes unless the object changed
 * since the last open (a new ETag or size seen, or a new updated_at in the
 * listing). A reader sees one version: once the object changes, its reads
 * fail with EIO. */
struct stream_reader *stream_open(struct stream *s, struct dataset *ds,
				  struct item *it, enum stream_file which,
				  uint64_t ino, bool direct, bool *keep_cache);

/* Accepts NULL. */
void stream_reader_free(struct stream_reader *r);

/* The URL of file @which of @it, or NULL when it has none. */
const char *stream_url(const struct item *it, enum stream_file which);

/* The size of file @which of @it: metadata.size for data when given, else
 * from a first ranged GET whose bytes are kept for the first read. Returns
 * 0 or a negative errno. */
int stream_size(struct stream *s, struct dataset *ds, struct item *it,
		enum stream_file which, int64_t *size);

/* Start learning the size of file @which of @it, when unknown and not
 * being learned already, on the fetch threads: stream_size() then waits
 * for that answer instead of asking again. */
void stream_size_prefetch(struct stream *s, struct dataset *ds, struct item *it,
			  enum stream_file which);

/* Bytes of a file, in place in the cache: @n pieces of @len bytes in all,
 * pinned until stream_view_release(). */
struct stream_view {
	struct iovec *iov;
	int n;
	size_t len;
	struct block **blocks; /* the pinned blocks */
	bool drop_behind; /* the bytes go to the kernel's page cache: blocks
			   * it then holds whole are freed on release */
};

/* Describe up to @size bytes at @off of the file in @v, for reader @r
 * (NULL: no readahead). @v->len is short only at the end of the file.
 * Returns 0 (release @v after use) or a negative errno. */
int stream_read_view(struct stream *s, struct stream_reader *r,
		     struct dataset *ds, struct item *it,
		     enum stream_file which, size_t size, off_t off,
		     struct stream_view *v);

/* Unpin what @v holds; accepts an empty view. */
void stream_view_release(struct stream *s, struct stream_view *v);

/* Take up to @max inodes whose kernel pages and attributes went stale
 * (their object changed) into @inos; returns how many. */
size_t stream_take_invalidations(struct stream *s, uint64_t *inos, size_t max);

/* A snapshot of the counters. */
void stream_get_stats(struct stream *s, struct stream_stats *st);

#endif
