/* The JSON of the Avala API (DESIGN section 1): items and sequences of both
 * field dialects into struct item, metadata.json back out of it, list pages,
 * the dataset list and error bodies. */
#ifndef AVALAFS_ITEM_JSON_H
#define AVALAFS_ITEM_JSON_H

#include <stddef.h>
#include <time.h>

#include "item.h"

/* A list of items, as one listing returns them. */
struct item_list {
	struct item **v;
	size_t n, cap;
};

/* Free every item of @list and its array. */
void item_list_clear(struct item_list *list);

/* @text with every ill-formed escape inside its strings (a lone surrogate,
 * "\u" without four hex digits, a backslash before a character that starts
 * no escape) written as U+FFFD, so one bad character costs that character,
 * not the page; cJSON refuses the first and reads "\uZZZZ" as a NUL that
 * ends the string. Only the ill-formed start of an escape is replaced: the
 * text after it stays text. Sets *@out to NULL when nothing needs repair
 * (no copy is made), else to a new NUL-terminated string of *@out_len
 * bytes. Returns 0 or -ENOMEM. */
int item_json_repair(const char *text, size_t len, char **out, size_t *out_len);

/* Parse one page: append its valid objects to @list (entries that are not
 * objects or lack a string uid are skipped and counted in @n_bad) and set
 * @next_cursor to the raw cursor of "next" (a new string) or NULL at the
 * end. Ill-formed escapes become U+FFFD (item_json_repair). Returns 0, -EIO
 * for a body that is not a page, or -ENOMEM. */
int item_json_decode_page(const char *body, size_t len, enum item_kind kind,
			  struct item_list *list, char **next_cursor,
			  size_t *n_bad);

/* An RFC 3339 time ("2024-05-01T12:34:56.789Z", "...+02:00") into @ts:
 * 0, or -EINVAL when @s is not one (a time without a zone included). */
int item_json_parse_time(const char *s, struct timespec *ts);

/* Parse one object (the answer of a get call, or as stored), ill-formed
 * escapes repaired; NULL when it is not one. */
struct item *item_json_decode(const char *body, size_t len,
			      enum item_kind kind);

/* The text of metadata.json for @it (pretty-printed, ending in \n, made on
 * first use and kept): borrowed from @it, with its length in @len. NULL on
 * ENOMEM. Safe from many threads at once. */
const char *item_json_pretty(struct item *it, size_t *len);

/* Takes one dataset of a page of the dataset list (both strings borrowed,
 * neither empty): 0, or a negative errno that ends the page. */
typedef int (*item_json_dataset_fn)(void *ctx, const char *owner,
				    const char *slug);

/* Parse one page of the dataset list: hand each dataset that names its
 * owner and slug to @fn (others are skipped) and set @next_cursor as
 * item_json_decode_page() does. Returns 0, -EIO for a body that is not a
 * page, or @fn's error or -ENOMEM (no cursor then). */
int item_json_decode_datasets(const char *body, size_t len,
			      item_json_dataset_fn fn, void *ctx,
			      char **next_cursor);

/* The "detail" of an error body ({"detail": "..."}), decoded: a new string,
 * or NULL for any other body (or on ENOMEM). */
char *item_json_error_detail(const char *body, size_t len);

/* The datasets @owners[i]/@slugs[i] as one page of the dataset list, which
 * item_json_decode_datasets() reads back: a new string, or NULL on
 * ENOMEM. */
char *item_json_encode_datasets(const char *const *owners,
				const char *const *slugs, size_t n);

/* Takes one field of an object: its name and its text (a new string that
 * @fn owns). 0, or a negative errno that ends the walk. */
typedef int (*item_json_field_fn)(void *ctx, const char *name, char *text);

/* Hand each of the fields @names of @it's JSON that is a string or a
 * number to @fn, as text (a number in decimal). 0, -EIO when the JSON is
 * not an object, -ENOMEM, or @fn's error. */
int item_json_fields(const struct item *it, const char *const *names, size_t n,
		     item_json_field_fn fn, void *ctx);

#endif
