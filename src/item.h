/* struct item: one dataset object (an item or a sequence) as parsed from the
 * API, immutable once built and shared by reference count. */
#ifndef AVALAFS_ITEM_H
#define AVALAFS_ITEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "names.h"

enum item_kind { ITEM_KIND_ITEM, ITEM_KIND_SEQUENCE };

/* The item statuses of DESIGN section 1, in the platform's order. */
#define ITEM_N_STATUSES 7
extern const char *const item_statuses[ITEM_N_STATUSES];

/* One entry of a sequence's "views": shown as views/<name>. */
struct view {
	char *name; /* file name, with .json */
	char *json; /* pretty JSON text ending in \n */
	size_t json_len;
};

struct item {
	int refs; /* atomic */
	enum item_kind kind;
	uint64_t oid; /* its number in the dataset's store, 0 when not from it */
	char *uid;
	char *key; /* raw key bytes, NULL when missing or not a string */
	size_t key_len;
	char *status; /* NULL when the API gives none */
	char *data_url; /* item: data file, sequence: featured image; or NULL */
	char *thumb_url; /* item: thumbnail; or NULL */
	char data_ext[NAMES_EXT_MAX];
	char thumb_ext[NAMES_EXT_MAX];
	int64_t size; /* metadata.size of the data file, -1 when not given */
	char *version; /* updated_at, else created_at, or NULL */
	struct timespec mtime; /* updated_at, else created_at */
	bool has_mtime; /* false when neither is a valid time */
	char *json; /* the object as compact JSON */
	size_t json_len;
	char *pretty; /* atomic: metadata.json, made from json on first use */
	size_t pretty_len; /* set before pretty is published */
	struct view *views;
	size_t n_views;
};

/* A zeroed item holding one reference; NULL on ENOMEM. */
struct item *item_new(enum item_kind kind);

/* Take one more reference; returns @it. */
struct item *item_ref(struct item *it);

/* Drop a reference, freeing the item with the last. Accepts NULL. */
void item_unref(struct item *it);

#endif
