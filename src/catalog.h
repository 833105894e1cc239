/* The catalog: owners and datasets (configured and discovered), and the
 * freshness of each dataset's listings of items and sequences, which live
 * in the dataset's store and are trusted for ttl seconds. */
#ifndef AVALAFS_CATALOG_H
#define AVALAFS_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "item.h"
#include "store.h"

struct dataset; /* lives as long as the catalog */

struct catalog_config {
	int ttl_s;
	int64_t wait_ms; /* longest a reader waits for a listing */
	bool discover; /* ask the server for its dataset list */
	const char *origin; /* the API's base URL, which stores are of */
	const char *store_dir; /* where the stores' databases are made */
};

struct catalog;

/* A catalog over @api (borrowed); NULL on ENOMEM. */
struct catalog *catalog_new(struct api *api, const struct catalog_config *cfg);

/* Accepts NULL. Fetches still running must have been cancelled. */
void catalog_free(struct catalog *cat);

/* Add OWNER/SLUG; adding one twice is harmless. 0 or -ENOMEM. */
int catalog_add(struct catalog *cat, const char *owner, const char *slug);

/* Ask the server for its datasets when the last answer is older than ttl
 * (or @force). Errors are logged and leave the known datasets as they are. */
void catalog_discover(struct catalog *cat, bool force);

/* The distinct owner directory names, sorted: a new array of new strings in
 * @out. Returns the count, or -ENOMEM. */
long catalog_owners(struct catalog *cat, char ***out);

/* The place of owner directory @name among the owners, stable for the life
 * of the catalog; -1 when there is no such owner. */
long catalog_owner_index(struct catalog *cat, const char *name);

/* The name of the owner at @index, a new string; NULL when none. */
char *catalog_owner_name(struct catalog *cat, size_t index);

/* The datasets of the owner directory @owner_name: a new array (of borrowed
 * pointers) in @out. Returns the count (0: no such owner) or -ENOMEM. */
long catalog_datasets(struct catalog *cat, const char *owner_name,
		      struct dataset ***out);

/* The dataset shown as @owner_name/@slug_name, or NULL. */
struct dataset *catalog_find(struct catalog *cat, const char *owner_name,
			     const char *slug_name);

/* The dataset at @index (stable for the life of the catalog), or NULL. */
struct dataset *catalog_dataset_at(struct catalog *cat, size_t index);
size_t dataset_index(const struct dataset *ds);

/* The directory names of a dataset and its API identity (borrowed). */
const char *dataset_slug_name(const struct dataset *ds);
const char *dataset_owner(const struct dataset *ds);
const char *dataset_slug(const struct dataset *ds);

/* The store of @ds: set once a listing was asked for (catalog_pin()). */
struct store *dataset_store(struct dataset *ds);

/* The current generation of the listing of @kind in @ds, fetched first
 * (on a thread of its own) when older than ttl, in @gen and pinned until
 * catalog_unpin(): its rows stay until then. A fetch that takes longer
 * than wait_ms goes on while the caller gets the last listing, or -EIO
 * when there is none. Returns 0 or a negative errno (EACCES, ENOENT,
 * EIO). */
int catalog_pin(struct catalog *cat, struct dataset *ds, enum item_kind kind,
		uint64_t *gen);

/* Release what catalog_pin() gave. */
void catalog_unpin(struct catalog *cat, struct dataset *ds, enum item_kind kind,
		   uint64_t gen);

/* The API answered 404 for object @oid of @kind: hide it, and list again
 * next time. */
void catalog_forget(struct catalog *cat, struct dataset *ds,
		    enum item_kind kind, uint64_t oid);

/* Whether @oid was forgotten since the current listing was made. */
bool catalog_gone(struct catalog *cat, struct dataset *ds, enum item_kind kind,
		  uint64_t oid);

/* Fetch @it afresh through "get item" (for a new data URL): a new reference
 * in @out. Returns 0 or a negative errno. */
int catalog_reresolve(struct catalog *cat, struct dataset *ds,
		      const struct item *it, struct item **out);

#endif
