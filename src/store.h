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
	uint64_t pos; /* its place in its directory: entries list in the
		       * order they were first listed, after store_readdir's
		       * @after */
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
	bool names; /* only what names an entry: its status, sizes and time
		     * are left unknown (a walk that gives no attributes
		     * reads less) */
};

struct store;

/* Where a store lives, whose it is, and what it may take. */
struct store_config {
	int dir_fd; /* the listings folder (cachedir.h): borrowed */
	const char *dir; /* its path; SQLite opens files by name */
	const char *origin, *owner, *slug; /* the API and the dataset */
	int64_t budget; /* a database past this many bytes is kept in
			 * memory instead (disk_cache_size); 0: none */
	/* the data cache gives back room (listings count in its cap), or
	 * NULL */
	int64_t (*give_back)(void *ctx);
	void *give_back_ctx;
	/* the listings are gone: the database was damaged at run time and
	 * is set aside; everything must be listed again. Called with no lock
	 * of the store held. */
	void (*lost)(void *ctx);
	void *lost_ctx;
};

/* Open (creating when missing) the store of @cfg's dataset: one database
 * file per API origin and dataset in the listings folder. One that is of
 * another schema, origin or dataset, or damaged, is set aside (NAME.bad,
 * one at most, removed once a listing is complete) and made anew; on a
 * full disk, what it holds is served from memory. The strings of @cfg are
 * borrowed for the life of the store. Returns 0 or a negative errno. */
int store_open(const struct store_config *cfg, struct store **out);

/* How many times a damaged database was set aside at run time (and the
 * listings lost). */
uint64_t store_resets(struct store *st);

/* Accepts NULL. */
void store_free(struct store *st);

/* The newest complete generation of @kind in the database (made by this
 * mount or another) in @gen, with the time it was complete (seconds since
 * the epoch) in @listed_at, locked as read by this process so that no
 * other mount sharing the database collects it; nothing is written.
 * Returns 0, -ENOENT when there is none, or another negative errno. */
int store_latest(struct store *st, enum item_kind kind, uint64_t *gen,
		 int64_t *listed_at);

/* A listing being written. */
struct store_listing;

/* Start writing a listing of @kind under a new generation; the names that
 * generation @prev (0: none) gave are kept for objects whose key did not
 * change. */
int store_listing_begin(struct store *st, enum item_kind kind, uint64_t prev,
			struct store_listing **out);

/* The generation @l writes: readers may read it as it grows. */
uint64_t store_listing_gen(const struct store_listing *l);

/* Add one page of objects, naming them in every view; an object whose uid
 * came earlier in this listing is skipped. Each page is one transaction:
 * readers see it whole or not at all. Returns how many were added, or a
 * negative errno. */
int store_listing_add(struct store_listing *l, struct item *const *v, size_t n);

/* Mark the listing complete and read by this process; returns its
 * generation, or 0 on failure (logged). */
uint64_t store_listing_commit(struct store_listing *l);

/* Free what @l holds in memory (its rows stay). Accepts NULL. */
void store_listing_free(struct store_listing *l);

/* Remove the rows of generation @gen. 0 or a negative errno. */
int store_drop(struct store *st, uint64_t gen);

/* Remove the generations of @kind that are not in @keep, not read by
 * another running mount and not being made by one. */
void store_collect(struct store *st, enum item_kind kind, const uint64_t *keep,
		   size_t n_keep);

/* The entry @name of directory @dir in generation @gen that @filter shows:
 * 0, or -ENOENT when there is none, or another negative errno. */
int store_lookup(struct store *st, uint64_t gen, uint64_t dir, const char *name,
		 const struct store_filter *filter, struct store_entry *e);

/* Call @fn for the entries of @dir in @gen that @filter shows, in the
 * order they were first listed, starting after position @after (0 for the
 * first), until @fn returns non-zero (its value is returned) or @max were
 * given. Entries a listing still adds come after those there now. Returns
 * 0, @fn's value, or a negative errno. */
int store_readdir(struct store *st, uint64_t gen, uint64_t dir, uint64_t after,
		  const struct store_filter *filter, size_t max,
		  int (*fn)(void *ctx, const struct store_entry *e), void *ctx);

/* The object @oid as listed in @gen, parsed anew: a new reference in
 * @out. Returns 0, -ENOENT, or another negative errno. */
int store_object(struct store *st, uint64_t gen, enum item_kind kind,
		 uint64_t oid, struct item **out);

/* The attributes store_lookup() gives, of object @oid in @gen. */
int store_object_entry(struct store *st, uint64_t gen, uint64_t oid,
		       struct store_entry *e);

/* Where an object stands in a generation: its entry in items/ or
 * sequences/ (@list) and in its key-path folder (@folder, 0: none), each
 * with the position of the object entry after it (0: none). */
struct store_place {
	uint64_t list, list_pos, list_next;
	uint64_t folder, folder_pos, folder_next;
	uint64_t folder_rank; /* its place among the folder's names in byte
			       * order, from 1; 0: not known (far from
			       * the folder's start and from the last
			       * name given one) */
};

/* The place of object @oid of @kind in @gen. 0, -ENOENT, or another
 * negative errno. */
int store_object_place(struct store *st, uint64_t gen, enum item_kind kind,
		       uint64_t oid, struct store_place *p);

/* Call @fn for the entries of @dir in @gen in byte order of their names,
 * after the first @after of them: each entry's object (0 for a folder or a
 * held-back name) and its rank (from 1), until @fn returns non-zero or @n
 * were given. Returns 0, @fn's value, or a negative errno. */
int store_by_name(struct store *st, uint64_t gen, uint64_t dir, uint64_t after,
		  size_t n, int (*fn)(void *ctx, uint64_t oid, uint64_t rank),
		  void *ctx);

/* The parent of folder @dir (STORE_DIR_PATHS for a top folder), or 0. */
uint64_t store_dir_parent(struct store *st, uint64_t dir);

/* Call @fn for every object generation @gen lists, in no order: its uid
 * and its version (updated_at, else created_at, in ns since the epoch; 0
 * when it has neither), until @fn returns non-zero. Returns 0, @fn's
 * value, or a negative errno. */
int store_versions(struct store *st, uint64_t gen,
		   int (*fn)(void *ctx, const char *uid, size_t len,
			     int64_t mtime),
		   void *ctx);

/* How many objects generation @gen lists, or -1 when that cannot be
 * read. */
int64_t store_objects(struct store *st, uint64_t gen);

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

/* One change from one generation to the next. */
struct store_change {
	uint64_t dir; /* where the name was (0: an object without one) */
	const char *name; /* borrowed, not NUL-terminated; may be NULL */
	size_t name_len;
	uint64_t oid; /* the object it named, 0 for a folder */
	int status; /* that object's status in the older generation */
	bool object; /* the object itself changed (status, time or size),
		      * and @dir/@name is its place in the key-path tree */
};

/* What changed from generation @old to @new (of one kind), each to @fn:
 * every name of @old that is gone or names something else now, every name
 * that is new, then every object whose status, time or size changed. 0 or
 * a negative errno. */
int store_changes(struct store *st, uint64_t old, uint64_t new,
		  void (*fn)(void *ctx, const struct store_change *c),
		  void *ctx);

/* Remember the size (and ETag, may be "") of file @which (0 data, 1
 * thumbnail) of @it (from the store) for its version: listings of the
 * same updated_at show it. */
void store_learn_size(struct store *st, const struct item *it, int which,
		      int64_t size, const char *etag);

#endif
