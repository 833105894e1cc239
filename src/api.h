/* The Avala API calls of DESIGN section 1: listings paged by cursor, one
 * object, the start-up check, the dataset list. Their JSON: item_json.h. */
#ifndef AVALAFS_API_H
#define AVALAFS_API_H

#include <stddef.h>

#include "http.h"
#include "item.h"
#include "util.h"

#define API_MAX_BODY (64u << 20) /* largest page accepted */

struct api_config {
	const char *base_url;
	int page_size;
	const char *ordering; /* or NULL */
	int list_timeout_s; /* a listing still paging after this fails; 0: never */
};

/* A dataset named by the discovery call. */
struct dataset_ref {
	char *owner;
	char *slug;
};

struct api;

/* The calls an api makes, as its counters name them. */
enum api_call {
	API_CALL_LIST, /* a page of a listing */
	API_CALL_GET, /* one object: a fresh data URL */
	API_CALL_DATASETS, /* a page of the dataset list */
	API_CALL_CHECK, /* the start-up check of a dataset */
	API_CALLS
};

/* Calls made, by how they ended (after the engine's retries). */
struct api_stats {
	uint64_t calls[API_CALLS][UTIL_OUTCOMES];
};

/* The counters of @api, read as they are now. */
void api_get_stats(struct api *api, struct api_stats *st);

/* The name of @call in counters: "list", "get", "datasets", "check". */
const char *api_call_name(enum api_call call);

/* A client over @http (borrowed); NULL on ENOMEM. */
struct api *api_new(struct http *http, const struct api_config *cfg);

/* Accepts NULL. */
void api_free(struct api *api);

/* Takes one page of a listing (the objects are borrowed, and freed once it
 * returns): returns how many of them are new to the listing, or a negative
 * errno that ends it. */
typedef int (*api_page_fn)(void *ctx, struct item *const *v, size_t n);

/* Fetch every page of the items or sequences of OWNER/SLUG, handing each to
 * @fn as it comes. A page that adds no new object but points to another, a
 * cursor seen before, or paging past list_timeout ends it with -EIO.
 * Returns 0 or a negative errno (see util_http_errno()). */
int api_list(struct api *api, const char *owner, const char *slug,
	     enum item_kind kind, api_page_fn fn, void *ctx);

/* Get one item or sequence by uid into @out (a new reference). */
int api_get(struct api *api, const char *owner, const char *slug,
	    enum item_kind kind, const char *uid, struct item **out);

/* What the server answered a call, for a message that says it. */
struct api_answer {
	long status; /* the HTTP status, 0 when no answer came */
	long retry_after; /* its Retry-After in seconds, or -1 */
	int err; /* no answer: -EPROTO (not trusted), -EHOSTUNREACH, -EIO */
	char why[HTTP_WHY_MAX]; /* and why, in words */
};

/* Ask for one item of OWNER/SLUG, in the configured ordering: the start-up
 * check. Returns 0 or a negative errno, with what came in @ans (for a 4xx,
 * the server's "detail" in its why, redacted and cut). */
int api_check_dataset(struct api *api, const char *owner, const char *slug,
		      struct api_answer *ans);

/* The datasets the key can see: a new array in @out of @n. Returns 0,
 * -ENOENT when the server has no such call, or another negative errno;
 * what came, in @ans when not NULL. */
int api_list_datasets(struct api *api, struct dataset_ref **out, size_t *n,
		      struct api_answer *ans);

/* Free an array from api_list_datasets(). */
void api_free_datasets(struct dataset_ref *v, size_t n);

#endif
