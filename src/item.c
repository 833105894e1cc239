/* Items and sequences: reference counting of struct item (the catalog's
 * listing holds one reference, each reader that outlives a refresh its own),
 * and the item statuses every dataset shows. */
#include "item.h"

#include <stdlib.h>

const char *const item_statuses[ITEM_N_STATUSES] = {
	"unattempted", "pending",	  "ready_for_annotation", "in_progress",
	"completed",   "rework_required", "customer_approved",
};

struct item *item_new(enum item_kind kind)
{
	struct item *it = calloc(1, sizeof(*it));

	if (it) {
		it->refs = 1;
		it->kind = kind;
		it->size = -1;
	}
	return it;
}

struct item *item_ref(struct item *it)
{
	__atomic_add_fetch(&it->refs, 1, __ATOMIC_RELAXED);
	return it;
}

void item_unref(struct item *it)
{
	size_t i;

	if (!it || __atomic_sub_fetch(&it->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	for (i = 0; i < it->n_views; i++) {
		free(it->views[i].name);
		free(it->views[i].json);
	}
	free(it->views);
	free(it->uid);
	free(it->key);
	free(it->status);
	free(it->data_url);
	free(it->thumb_url);
	free(it->version);
	free(it->json);
	free(it->pretty);
	free(it);
}
