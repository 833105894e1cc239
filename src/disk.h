/* The data half of the cache on disk (DESIGN section 6): whole objects up to
 * DISK_WHOLE_MAX bytes, DISK_BLOCK-sized blocks of larger ones, and the
 * DISK_PIECE-sized pieces of a block that readers fetched without the rest
 * of it (a random read), each a file named by a hash of the object's
 * identity, holding the version it was fetched under and a checksum of its
 * bytes. An index (SQLite, beside the entries) counts what is kept and
 * chooses what goes: the older of random pairs by last use. When the cache
 * is full, an entry is admitted only if it was asked for more often than the
 * one it would evict, so a pass over more data than fits keeps what it has
 * instead of churning; a block or a piece of a large object is admitted the
 * second time it is asked for. Several mounts may share one folder. Nothing
 * is scanned at start. */
#ifndef AVALAFS_DISK_H
#define AVALAFS_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define DISK_WHOLE_MAX ((int64_t)8 << 20) /* objects kept whole, at most */
#define DISK_BLOCK_SHIFT 22
#define DISK_BLOCK ((int64_t)1 << DISK_BLOCK_SHIFT) /* 4 MiB */
#define DISK_WHOLE (-1) /* the unit of an entry holding a whole object */
#define DISK_PIECE_SHIFT 18
#define DISK_PIECE ((int64_t)1 << DISK_PIECE_SHIFT) /* 256 KiB */
/* The unit of piece k of a large object is DISK_PIECES + k; units below it
 * are its blocks. */
#define DISK_PIECES ((int64_t)1 << 40)

/* The object offset where entry @unit starts. */
static inline int64_t disk_unit_start(int64_t unit)
{
	if (unit == DISK_WHOLE)
		return 0;
	if (unit >= DISK_PIECES)
		return (unit - DISK_PIECES) << DISK_PIECE_SHIFT;
	return unit << DISK_BLOCK_SHIFT;
}

/* The length of entry @unit of an object of @total bytes (<= 0: it lies
 * past the end). */
static inline int64_t disk_unit_len(int64_t unit, int64_t total)
{
	int64_t most = unit == DISK_WHOLE    ? total
		       : unit >= DISK_PIECES ? DISK_PIECE
					     : DISK_BLOCK;
	int64_t rest = total - disk_unit_start(unit);

	return rest < most ? rest : most;
}

/* The version of an object as an entry records it, or as a reader expects
 * it: empty strings and -1 stand for "not known". */
struct disk_version {
	int64_t total; /* the object's size */
	char etag[128];
	char listed[64]; /* the listing's updated_at (or created_at) */
};

struct disk_stats {
	int64_t used, limit; /* bytes kept, bytes allowed now */
	int64_t listings; /* bytes the listings beside it take */
	uint64_t hits, misses, puts, refused, evicted, damaged;
	uint64_t write_errors; /* entries that could not be written */
	bool writing; /* the last entry was written, or the disk is full */
};

struct disk;

struct disk_config {
	int root_fd; /* the cache folder (cachedir.h): borrowed */
	const char *root; /* its path */
	int64_t cap; /* bytes for the data and the listings together */
	/* the bytes the listings take (counted in @cap), or NULL */
	int64_t (*others)(void *ctx);
	void *ctx;
};

/* Open the data cache in folder "data" of the cache folder (made 0700 when
 * missing), capped at @cfg->cap bytes with the listings and at 95% of its
 * file system. NULL when it cannot be used (logged): avalafs then reads
 * without it. */
struct disk *disk_open(const struct disk_config *cfg);

/* Accepts NULL. */
void disk_close(struct disk *d);

/* Read entry @unit (DISK_WHOLE or a block index) of the object named by
 * @id into a new buffer, *@bytes (free() it). An entry whose version
 * contradicts @want (the listing's time, a known size or ETag) is stale, and
 * one whose bytes fail their checksum, or that is cut short, is damaged:
 * both are removed and are misses. On a hit, @got is the entry's version.
 * Returns the length read, -ENOENT for a miss, or -ENOMEM or -EIO (the
 * entry stays). */
ssize_t disk_get(struct disk *d, const char *id, int64_t unit,
		 const struct disk_version *want, struct disk_version *got,
		 void **bytes);

/* disk_get() into @iov (@n pieces): the bytes of an entry exactly as long
 * as they are together, without a copy. Returns that length, -EMSGSIZE
 * for an entry of another length (nothing read, it stays), or what
 * disk_get() returns; on an error the pieces may hold anything. */
ssize_t disk_get_iov(struct disk *d, const char *id, int64_t unit,
		     const struct disk_version *want, struct disk_version *got,
		     const struct iovec *iov, int n);

/* Keep the bytes of @iov (@n pieces) as entry @unit of @id, at version @v,
 * when the admission rule lets it in and the disk has room; a block of a
 * large object comes in the second time it is offered (a file streamed
 * once does not fill the disk). Returns 0, -ENOSPC when it was not kept,
 * or another negative errno. */
int disk_put(struct disk *d, const char *id, int64_t unit,
	     const struct disk_version *v, const struct iovec *iov, int n);

/* One entry for disk_put_many(), with its result in @err. */
struct disk_put {
	const char *id;
	int64_t unit;
	const struct disk_version *v;
	const struct iovec *iov;
	int n;
	int err;
};

/* disk_put() for @n entries at once: one transaction decides which come
 * in. */
void disk_put_many(struct disk *d, struct disk_put *puts, int n);

/* Remove every entry of @id: the object changed. */
void disk_drop(struct disk *d, const char *id);

/* Remove the pieces of block @unit of @id: the block is kept whole. */
void disk_drop_pieces(struct disk *d, const char *id, int64_t unit);

/* Evict entries until the data and the listings fit in the cap and the
 * file system keeps its free share: a listing needs the room. Returns the
 * bytes given back. */
int64_t disk_give_back(struct disk *d);

void disk_get_stats(struct disk *d, struct disk_stats *st);

#endif
