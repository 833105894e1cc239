/* Data reads: data, thumbnail and featured-image files fetched lazily with
 * Range GETs into a block cache that has one byte budget for all files. */
#ifndef AVALAFS_STREAM_H
#define AVALAFS_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "catalog.h"
#include "http.h"

enum stream_file { STREAM_DATA, STREAM_THUMB };

struct stream_config {
	size_t cache_size; /* byte budget of the block cache */
	size_t small_file; /* files up to this size are fetched whole */
};

struct stream;

/* A reader over @http and @cat (both borrowed); NULL on ENOMEM. */
struct stream *stream_new(struct http *http, struct catalog *cat,
			  const struct stream_config *cfg);

/* Accepts NULL. */
void stream_free(struct stream *s);

/* The URL of file @which of @it, or NULL when it has none. */
const char *stream_url(const struct item *it, enum stream_file which);

/* The size of file @which of @it: metadata.size for data when given, else
 * from a first ranged GET whose bytes are kept for the first read. Returns
 * 0 or a negative errno. */
int stream_size(struct stream *s, struct dataset *ds, struct item *it,
		enum stream_file which, int64_t *size);

/* Read up to @size bytes at @off into @buf. Returns the byte count (short
 * only at the end of the file) or a negative errno. */
ssize_t stream_read(struct stream *s, struct dataset *ds, struct item *it,
		    enum stream_file which, char *buf, size_t size, off_t off);

/* Whether an open of the file may keep the kernel's page cache: true
 * unless the object changed since the last open. */
bool stream_keep_cache(struct stream *s, struct dataset *ds,
		       struct item *it, enum stream_file which);

/* Bytes held in the cache now (for tests and the benchmark). */
size_t stream_cached_bytes(struct stream *s);

#endif
