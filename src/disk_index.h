/* The index of the data cache on disk, and its policy: which entries are
 * kept, how often each was asked for, which one goes when room is needed
 * (the older of random pairs, and only for an entry asked for more often).
 * It knows entries by name and size alone and never touches their files:
 * what it evicts it hands to a callback, so it is tested without them.
 * Several mounts may share one index; each call is one transaction. */
#ifndef AVALAFS_DISK_INDEX_H
#define AVALAFS_DISK_INDEX_H

#include <stdbool.h>
#include <stdint.h>

#define DISK_NAME_MAX 64 /* "<32 hex>.<block>" and its NUL */

struct disk_index;

/* The room the cache has now: its cap, what the file system has free and
 * must keep free, and what the listings beside it take. */
struct disk_room {
	int64_t cap;
	int64_t fs_free, fs_reserve; /* -1: not known */
	int64_t others;
};

/* An entry offered for the cache: @in says whether it came in. */
struct disk_offer {
	const char *name;
	int64_t size;
	bool block; /* a block of a large object: it comes in the second
		     * time it is asked for */
	bool in;
};

/* Called for each entry the index evicted: its file must go. */
typedef void (*disk_evict_fn)(void *ctx, const char *name);

/* Open the index at @path (a database file made ready by
 * cachedir_prepare_db()). Returns 0, -EBADMSG or -EPROTO for a damaged or
 * foreign one (the caller sets it aside), or another negative errno. */
int disk_index_open(const char *path, struct disk_index **out);

/* Accepts NULL. Writes the hits noted since the last admission. */
void disk_index_close(struct disk_index *ix);

/* Decide which of the @n entries of @v come in (their @in), making room
 * in @room by evicting others through @evict. Entries that come in are
 * counted at once, before their files are written. Returns 0 or a
 * negative errno (then none came in). */
int disk_index_admit(struct disk_index *ix, struct disk_offer *v, int n,
		     const struct disk_room *room, int64_t now,
		     disk_evict_fn evict, void *ctx);

/* After the files of admitted entries were written: forget those in @v
 * whose file could not be written (@lost[i]), and say in @gone[i] which of
 * the others were evicted meanwhile (their file must go again). */
void disk_index_settle(struct disk_index *ix, const struct disk_offer *v,
		       const bool *lost, bool *gone, int n);

/* A reader found entry @name: it counts as asked for once more at the
 * next admission. Never waits for the index. */
void disk_index_hit(struct disk_index *ix, const char *name);

/* Forget entry @name: its file was damaged or stale and is gone. */
void disk_index_forget(struct disk_index *ix, const char *name);

/* Evict every entry whose name starts with @prefix (an object and all its
 * blocks), through @evict. */
void disk_index_drop(struct disk_index *ix, const char *prefix,
		     disk_evict_fn evict, void *ctx);

/* Evict entries, through @evict, until what is kept fits in @room. Returns
 * the bytes given back. */
int64_t disk_index_shrink(struct disk_index *ix, const struct disk_room *room,
			  disk_evict_fn evict, void *ctx);

/* The bytes the index counts as kept, and in @evicted (may be NULL) how
 * many entries this mount evicted to make room. */
int64_t disk_index_used(struct disk_index *ix, uint64_t *evicted);

/* The bytes the cache may hold in @room, given @used kept already. */
int64_t disk_room_limit(const struct disk_room *room, int64_t used);

#endif
