/* The listing store: one SQLite database per dataset holding its listings
 * (each object's JSON and what getattr needs without it), the names of
 * every view, and what was learned about files. Listings are written under
 * a new generation and become current whole, at commit. */
#ifndef AVALAFS_STORE_H
#define AVALAFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "item.h"

/* Directories every generation has. Folders of the key-path tree get ids
 * above these, stable for the life of the database. */
#define STORE_DIR_ITEMS 1 /* items/: one entry per item */
#define STORE_DIR_SEQUENCES 2 /* sequences/ */
#define STORE_DIR_PATHS 3 /* the root of the key-path tree of the items */

/* What an object has, and what a folder has beneath it. */
#define STORE_HAS_DATA 1u
#define STORE_HAS_THUMB 2u

#define STORE_NO_STATUS 0 /* status id of an object without a status */

/* One directory entry of a generation, with what its attributes need. */
struct store_entry {
	const char *name; /* borrowed: valid until the callback returns */
	size_t name_len;
	uint64_t oid; /* a file or object: its object; 0 for a folder */
	uint64_t child; /* a folder: its dir id; 0 for an object */
	unsigned has; /* STORE_HAS_* of the object, or beneath the folder */
	int status; /* the object's status id */
	int64_t size; /* the data file's size (listed or learned), or -1 */
	int64_t thumb_size; /* the thumbnail's learned size, or -1 */
	struct timespec mtime; /* updated_at, else created_at */
	bool has_mtime;
};

/* Which entries store_readdir() and store_lookup() show. */
struct store_filter {
	unsigned has; /* entries (and folders) with all of these; 0: all */
	int status; /* only objects of this status id (and folders holding
		     * one); STORE_NO_STATUS: any */
};

struct store;

/* Open (creating when missing) the database at @path for the dataset
 * OWNER/SLUG of the API at @origin; one that is of another schema,
 * another origin or dataset, or unreadable is set aside and made anew.
 * Returns 0 or a negative errno. */
int store_open(const char *path, const char *origin, const char *owner,
	       const char *slug, struct store **out);

/* Accepts NULL. */
void store_free(struct store *st);

/* The last complete generation of @kind in the database, 0 when none. */
uint64_t store_current(struct store *st, enum item_kind kind);

/* A listing being written. */
struct store_listing;

/* Start writing a listing of @kind under a new generation; the names of
 * the current one are kept for objects whose key did not change. */
int store_listing_begin(struct store *st, enum item_kind kind,
			struct store_listing **out);

/* Add one page of objects, naming them in every view; an object whose uid
 * came earlier in this listing is skipped. Returns how many were added, or
 * a negative errno. */
int store_listing_add(struct store_listing *l, struct item *const *v, size_t n);

/* Make the listing the current generation of its kind and free @l;
 * returns the new generation, or 0 on failure (logged). */
uint64_t store_listing_commit(struct store_listing *l);

/* Drop what @l wrote and free it. Accepts NULL. */
void store_listing_abort(struct store_listing *l);

/* Remove the rows of every generation of @kind but @keep. */
void store_collect(struct store *st, enum item_kind kind, uint64_t keep);

/* The entry @name of directory @dir in generation @gen that @filter shows:
 * 0, or -ENOENT when there is none, or another negative errno. */
int store_lookup(struct store *st, uint64_t gen, uint64_t dir, const char *name,
		 const struct store_filter *filter, struct store_entry *e);

/* Call @fn for the entries of @dir in @gen that @filter shows, in byte
 * order of their names, starting after @after ("" for the first), until
 * @fn returns non-zero (its value is returned) or @max were given.
 * Returns 0, @fn's value, or a negative errno. */
int store_readdir(struct store *st, uint64_t gen, uint64_t dir,
		  const char *after, const struct store_filter *filter,
		  size_t max, int (*fn)(void *ctx, const struct store_entry *e),
		  void *ctx);

/* The object @oid as listed in @gen, parsed anew: a new reference in
 * @out. Returns 0, -ENOENT, or another negative errno. */
int store_object(struct store *st, uint64_t gen, enum item_kind kind,
		 uint64_t oid, struct item **out);

/* The attributes store_lookup() gives, of object @oid in @gen. */
int store_object_entry(struct store *st, uint64_t gen, uint64_t oid,
		       struct store_entry *e);

/* The parent of folder @dir (STORE_DIR_PATHS for a top folder), or 0. */
uint64_t store_dir_parent(struct store *st, uint64_t dir);

/* The status with id @status as a new string, or NULL; the id of @name
 * (0 when unknown). */
char *store_status_name(struct store *st, int status);
int store_status_id(struct store *st, const char *name);

/* The id of status @name, made when it has none: the id or a negative
 * errno. */
int store_status_ensure(struct store *st, const char *name);

/* The status ids the objects of @gen have, a new array in @out. Returns
 * the count or a negative errno. */
long store_statuses(struct store *st, uint64_t gen, int **out);

/* Remember the size (and ETag, may be "") of file @which (0 data, 1
 * thumbnail) of @it (from the store) for its version: listings of the
 * same updated_at show it. */
void store_learn_size(struct store *st, const struct item *it, int which,
		      int64_t size, const char *etag);

#endif
