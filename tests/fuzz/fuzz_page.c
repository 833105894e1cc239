/* libFuzzer target: any bytes as a list page and as one object, in both
 * kinds. Nothing may crash, leak, or hand back an item without a uid. */
#include "api.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum item_kind kind = size && (data[0] & 1) ? ITEM_KIND_SEQUENCE
						    : ITEM_KIND_ITEM;
	struct item_list list = { 0 };
	size_t n_bad = 0, i, len;
	char *next = NULL;
	struct item *it;

	if (api_parse_page((const char *)data, size, kind, &list, &next,
			   &n_bad) == 0) {
		for (i = 0; i < list.n; i++) {
			if (!list.v[i]->uid || !*list.v[i]->uid)
				abort();
			if (!api_item_pretty(list.v[i], &len) && len)
				abort();
		}
	}
	free(next);
	item_list_clear(&list);
	it = api_parse_object((const char *)data, size, kind);
	if (it && (!it->uid || !api_item_pretty(it, &len)))
		abort();
	item_unref(it);
	return 0;
}
