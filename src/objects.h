/* Parsed objects of the current listings, beneath the node kinds: an
 * object is parsed from the store on use and kept while its listing is. */
#ifndef AVALAFS_OBJECTS_H
#define AVALAFS_OBJECTS_H

#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"
#include "item.h"
#include "store.h"

struct objects;

/* The listings one operation reads: each pinned on its first use and held
 * until objects_op_end(), so that every object the operation reads comes
 * from one generation and a listing is pinned once, however many of its
 * objects are read. The functions below take one, or NULL (a pin each). */
#define OBJECTS_OP_PINS 2

struct objects_op {
	struct objects_pin {
		struct dataset *ds;
		enum item_kind kind;
		struct catalog_pin pin;
	} held[OBJECTS_OP_PINS];
	int n;
};

/* Release what @op holds; accepts NULL. */
void objects_op_end(struct objects *o, struct objects_op *op);

/* A cache of the objects of @cat's listings; NULL on ENOMEM. */
struct objects *objects_new(struct catalog *cat);
void objects_free(struct objects *o);

/* The object of @kind @oid in @ds as the current listing has it: a new
 * reference in @out. 0, -ENOENT, or another negative errno. */
int objects_get(struct objects *o, struct objects_op *op, struct dataset *ds,
		enum item_kind kind, uint64_t oid, struct item **out);

/* The store's entry of object @oid of @kind in the current listing of @ds
 * (its sizes and time) in @e. 0, -ENOENT, or another negative errno. */
int objects_entry(struct objects *o, struct objects_op *op, struct dataset *ds,
		  enum item_kind kind, uint64_t oid, struct store_entry *e);

/* Where object @oid of @kind stands in the current listing of @ds (kept
 * with the parsed object). 0 or a negative errno. */
int objects_place(struct objects *o, struct objects_op *op, struct dataset *ds,
		  enum item_kind kind, uint64_t oid, struct store_place *place);

/* Whether object @oid of @kind (0: a folder, never) is hidden from the
 * current listing of @ds: the API answered 404 for it since the listing
 * was made. Every read of an object or of a listing's entries asks. */
bool objects_gone(struct objects *o, struct dataset *ds, enum item_kind kind,
		  uint64_t oid);

#endif
