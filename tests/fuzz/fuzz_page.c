/* libFuzzer target: any bytes as a list page and as one object, in both
 * kinds. Nothing may crash, leak, or hand back an item without a uid, and
 * the text kept for each item is the JSON cJSON sees for it. */
#include "item_json.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether @obj is one item_json_decode_page() keeps: an object with a string
 * uid. */
static int has_uid(const cJSON *obj)
{
	const cJSON *uid = cJSON_GetObjectItemCaseSensitive(obj, "uid");

	return cJSON_IsObject(obj) && cJSON_IsString(uid) && *uid->valuestring;
}

/* Each kept item's text parses to the element of "results" it came from.
 * Elements with an escaped NUL are skipped, and cJSON cannot tell which
 * those are: when the input has one, the kept items need only be a
 * subsequence. */
static void check_texts(const uint8_t *data, size_t size,
			const struct item_list *list)
{
	char *fixed;
	size_t len;
	cJSON *root;
	bool may_skip;
	const cJSON *obj;
	size_t i = 0;

	/* what item_json_decode_page() reads: ill-formed escapes repaired */
	if (item_json_repair((const char *)data, size, &fixed, &len))
		abort();
	if (fixed)
		data = (const uint8_t *)fixed;
	root = cJSON_ParseWithLength((const char *)data, len);
	may_skip = memmem(data, len, "\\u0000", 6) != NULL;

	cJSON_ArrayForEach(obj,
			   cJSON_GetObjectItemCaseSensitive(root, "results")) {
		cJSON *back;
		char *a, *b;

		if (!has_uid(obj))
			continue;
		if (i == list->n) {
			if (!may_skip)
				abort();
			continue;
		}
		/* printed, not cJSON_Compare: that is not reflexive for an
		 * object with a key twice */
		back = cJSON_ParseWithLength(list->v[i]->json,
					     list->v[i]->json_len);
		a = cJSON_PrintUnformatted(back);
		b = cJSON_PrintUnformatted(obj);
		if (!a || !b)
			abort();
		if (strcmp(a, b) == 0)
			i++;
		else if (!may_skip)
			abort();
		free(a);
		free(b);
		cJSON_Delete(back);
	}
	if (i != list->n)
		abort();
	cJSON_Delete(root);
	free(fixed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum item_kind kind = size && (data[0] & 1) ? ITEM_KIND_SEQUENCE
						    : ITEM_KIND_ITEM;
	struct item_list list = { 0 };
	size_t n_bad = 0, i, len;
	char *next = NULL;
	struct item *it;

	if (item_json_decode_page((const char *)data, size, kind, &list, &next,
				  &n_bad) == 0) {
		for (i = 0; i < list.n; i++) {
			if (!list.v[i]->uid || !*list.v[i]->uid)
				abort();
			if (!item_json_pretty(list.v[i], &len))
				abort();
		}
		check_texts(data, size, &list);
	}
	free(next);
	item_list_clear(&list);
	it = item_json_decode((const char *)data, size, kind);
	if (it && (!it->uid || !item_json_pretty(it, &len)))
		abort();
	item_unref(it);
	return 0;
}
