/* The catalog: owners and datasets (configured and discovered), and the
 * freshness of each dataset's listings of items and sequences, which live
 * in the dataset's store: a listing kept there is served at once, a stale
 * one while the next is fetched in the background, and a first one as its
 * pages come. */
#ifndef AVALAFS_CATALOG_H
#define AVALAFS_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "fresh.h"
#include "item.h"
#include "store.h"

struct dataset; /* lives as long as the catalog */

struct catalog_config {
	int ttl_s;
	int64_t wait_ms; /* longest a reader waits for a listing; > 0 */
	bool discover; /* ask the server for its dataset list */
	const char *origin; /* the API's base URL, which stores are of */
	const char *store_dir; /* where the stores' databases are made */
	int store_dir_fd; /* its descriptor (cachedir.h): borrowed */
	int64_t store_budget; /* store_config's budget */
	/* the data cache gives back room for a listing, or NULL */
	int64_t (*give_back)(void *ctx);
	void *give_back_ctx;
	/* called (on the loader's thread) when generation @new of a listing
	 * replaced @old: what the kernel holds of @old may be out of date */
	void (*replaced)(void *ctx, struct dataset *ds, enum item_kind kind,
			 uint64_t old, uint64_t new);
	void *replaced_ctx;
};

/* A generation pinned for reading: its rows stay until it is unpinned. */
struct catalog_pin {
	uint64_t gen;
	bool partial; /* the first listing, still loading: its pages so far */
	uint64_t pages; /* partial: how many pages were there */
};

struct catalog;

/* A catalog over @api (borrowed); NULL on ENOMEM. */
struct catalog *catalog_new(struct api *api, const struct catalog_config *cfg);

/* Wait for the listings being fetched to end (the engine's requests
 * cancelled first, they end soon). */
void catalog_quiesce(struct catalog *cat);

/* Accepts NULL. Calls catalog_quiesce(). */
void catalog_free(struct catalog *cat);

/* Add OWNER/SLUG; adding one twice is harmless. 0 or -ENOMEM. */
int catalog_add(struct catalog *cat, const char *owner, const char *slug);

/* Ask the server for its datasets when the last answer is older than ttl
 * (or @force). Errors are logged and leave the known datasets as they are. */
void catalog_discover(struct catalog *cat, bool force);

/* Note the datasets the catalog holds in the listings' folder, as the
 * list a start without the API mounts (catalog_add_kept()); written only
 * when it changed. */
void catalog_note_datasets(struct catalog *cat);

/* Add the datasets last noted at this origin that keep a complete listing
 * of their items: how many, or -ENOENT when none. */
long catalog_add_kept(struct catalog *cat);

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

/* The store of @ds: set once a listing was pinned (catalog_pin()). */
struct store *dataset_store(struct dataset *ds);

/* The listing of @kind in @ds to read, pinned in @pin until
 * catalog_unpin(): the complete one (a stale one is served while the next
 * is fetched on a thread of its own), else the first listing as far as
 * its pages came (@pin->partial). Only a dataset with no page of any
 * listing yet makes the caller wait, at most wait_ms. Returns 0 or a
 * negative errno (EACCES, ENOENT, EIO). */
int catalog_pin(struct catalog *cat, struct dataset *ds, enum item_kind kind,
		struct catalog_pin *pin);

/* Release what catalog_pin() gave. */
void catalog_unpin(struct catalog *cat, struct dataset *ds, enum item_kind kind,
		   const struct catalog_pin *pin);

/* For a partial @pin: wait until its listing has more pages than
 * @pin->pages (0, and @pin->pages updated) or is complete (1, and
 * @pin->partial cleared), or @deadline (ms, util_now_ms()) passed or the
 * load failed (-EIO). A complete pin returns 1 at once. */
int catalog_wait(struct catalog *cat, struct dataset *ds, enum item_kind kind,
		 struct catalog_pin *pin, int64_t deadline);

/* The API answered 404 for object @oid of @kind: hide it, and list again
 * next time. */
void catalog_forget(struct catalog *cat, struct dataset *ds,
		    enum item_kind kind, uint64_t oid);

/* Whether @oid was forgotten since the current listing was made. */
bool catalog_gone(struct catalog *cat, struct dataset *ds, enum item_kind kind,
		  uint64_t oid);

/* The API's base URL the catalog's stores are of. */
const char *catalog_origin(const struct catalog *cat);

/* What one listing of a dataset is now, for counters. */
struct catalog_listing_info {
	uint64_t gen; /* the complete generation held, 0: none */
	int64_t objects; /* objects it lists; -1: they cannot be counted */
	int64_t listed_at; /* when it was complete, seconds since the epoch;
			    * 0: none */
	enum fresh_state state; /* stale once past its time */
	int last_err; /* the last load's error (negative), 0 once one
		       * succeeds */
	uint64_t loads, failures; /* loads ended, and those that failed */
	int64_t building; /* objects of a listing being made, so far */
	uint64_t pages; /* its pages so far */
};

/* What the listing of @kind in @ds is now, in @out. The objects of a
 * listing an earlier mount kept are counted in the store the first time
 * they are asked for. */
void catalog_listing_info(struct catalog *cat, struct dataset *ds,
			  enum item_kind kind,
			  struct catalog_listing_info *out);

/* A digest of the listing of @kind in @ds served now, in @hex (32 hex
 * digits): the sum of the XXH3-128 of every object's uid and version
 * (updated_at, else created_at), so the same objects at the same versions
 * give the same digest on any machine, whatever their names there and the
 * order they came in. Reckoned once per generation; @gen says which. 0, or
 * a negative errno (-ENOENT: a first listing still coming). */
int catalog_listing_digest(struct catalog *cat, struct dataset *ds,
			   enum item_kind kind, uint64_t *gen, char hex[33]);

/* Whether the store of OWNER/SLUG keeps a complete listing of its items,
 * made by an earlier mount: 0 with the time it was complete in @listed_at
 * (seconds since the epoch), else -ENOENT (or another negative errno).
 * Nothing is asked of the server, and nothing stays open: for a start
 * without it. */
int catalog_kept(struct catalog *cat, const char *owner, const char *slug,
		 int64_t *listed_at);

/* Fetch @it afresh through "get item" (for a new data URL): a new reference
 * in @out. Returns 0 or a negative errno. */
int catalog_reresolve(struct catalog *cat, struct dataset *ds,
		      const struct item *it, struct item **out);

#endif
