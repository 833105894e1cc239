/* The catalog: owners and datasets (configured and discovered), and each
 * dataset's listings of items and sequences, fetched whole, named, and
 * trusted for ttl seconds. */
#ifndef AVALAFS_CATALOG_H
#define AVALAFS_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "item.h"

/* An immutable listing: items in API order, found by name or uid. */
struct snapshot {
	int refs; /* atomic */
	struct item **v;
	size_t n;
	struct item *by_uid; /* uthash on hh_uid */
	struct item *by_name; /* uthash on hh_name */
};

struct dataset; /* lives as long as the catalog */

struct catalog_config {
	int ttl_s;
	int64_t wait_ms; /* longest a reader waits for a listing */
	bool discover; /* ask the server for its dataset list */
};

struct catalog;

/* A catalog over @api (borrowed); NULL on ENOMEM. */
struct catalog *catalog_new(struct api *api, const struct catalog_config *cfg);

/* Accepts NULL. */
void catalog_free(struct catalog *cat);

/* Add OWNER/SLUG; adding one twice is harmless. 0 or -ENOMEM. */
int catalog_add(struct catalog *cat, const char *owner, const char *slug);

/* Ask the server for its datasets when the last answer is older than ttl
 * (or @force). Errors are logged and leave the known datasets as they are. */
void catalog_discover(struct catalog *cat, bool force);

/* The distinct owner directory names, sorted: a new array of new strings in
 * @out. Returns the count, or -ENOMEM. */
long catalog_owners(struct catalog *cat, char ***out);

/* The datasets of the owner directory @owner_name: a new array (of borrowed
 * pointers) in @out. Returns the count (0: no such owner) or -ENOMEM. */
long catalog_datasets(struct catalog *cat, const char *owner_name,
		      struct dataset ***out);

/* The dataset shown as @owner_name/@slug_name, or NULL. */
struct dataset *catalog_find(struct catalog *cat, const char *owner_name,
			     const char *slug_name);

/* The directory names of a dataset and its API identity (borrowed). */
const char *dataset_owner_name(const struct dataset *ds);
const char *dataset_slug_name(const struct dataset *ds);
const char *dataset_owner(const struct dataset *ds);
const char *dataset_slug(const struct dataset *ds);

/* The current listing of @kind in @ds, fetched first (on a thread of its
 * own) when older than ttl: a reference in @out to release with
 * snapshot_put(). A fetch that takes longer than wait_ms goes on while the
 * caller gets the last listing, or -EIO when there is none. Returns 0 or a
 * negative errno (EACCES, ENOENT, EIO). */
int catalog_snapshot(struct catalog *cat, struct dataset *ds,
		     enum item_kind kind, struct snapshot **out);

/* The listing of @kind in @ds as it is now, without fetching: a reference
 * to release with snapshot_put(), or NULL when there is none yet. */
struct snapshot *catalog_peek(struct catalog *cat, struct dataset *ds,
			      enum item_kind kind);

/* The item named @name / with @uid in @snap (borrowed), or NULL; items the
 * API has since answered 404 for are not found. */
struct item *snapshot_find_name(struct snapshot *snap, const char *name);
struct item *snapshot_find_uid(struct snapshot *snap, const char *uid);

/* Release a reference; accepts NULL. */
void snapshot_put(struct snapshot *snap);

/* The API answered 404 for @it: hide it and refetch the listing next time. */
void catalog_forget_item(struct catalog *cat, struct dataset *ds,
			 struct item *it);

/* Fetch @it afresh through "get item" (for a new data URL): a new reference
 * in @out. Returns 0 or a negative errno. */
int catalog_reresolve(struct catalog *cat, struct dataset *ds,
		      const struct item *it, struct item **out);

#endif
