/* Avala API calls: URL building, cursor pagination, the counters of calls
 * and the log lines of failed ones; what they carry is read by item_json.c. */
#include "api.h"
#include "item_json.h"
#include "log.h"
#include "util.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#define MAX_ITEMS 10000000 /* a dataset list longer than this is refused */
#define DETAIL_CHARS 200 /* the most of an error's "detail" that is logged */
#define API_AHEAD_MAX \
	(4u << 20) /* pages up to this big fetch the next at once */

/* A cursor already followed in one listing. */
struct seen_cursor {
	UT_hash_handle hh;
	char text[];
};

/* Remember @cursor; false when it was seen before (the server loops). */
static bool cursor_first_time(struct seen_cursor **seen, const char *cursor)
{
	size_t len = strlen(cursor);
	struct seen_cursor *c;

	HASH_FIND(hh, *seen, cursor, len, c);
	if (c)
		return false;
	c = malloc(sizeof(*c) + len + 1);
	if (c) {
		memcpy(c->text, cursor, len + 1);
		HASH_ADD_KEYPTR(hh, *seen, c->text, len, c);
	}
	return true;
}

static void seen_free(struct seen_cursor **seen)
{
	struct seen_cursor *c, *tmp;

	HASH_ITER(hh, *seen, c, tmp) {
		HASH_DEL(*seen, c);
		free(c);
	}
}

struct api {
	struct http *http;
	char *base; /* without a trailing slash */
	int page_size;
	char *ordering;
	int64_t list_timeout_ms;
	int auth_logged; /* last 401/403 logged, so each cause logs once */
	struct api_stats stats; /* atomic */
};

struct api *api_new(struct http *http, const struct api_config *cfg)
{
	struct api *api = calloc(1, sizeof(*api));
	size_t len;

	if (!api)
		return NULL;
	api->http = http;
	api->base = strdup(cfg->base_url);
	api->ordering = cfg->ordering ? strdup(cfg->ordering) : NULL;
	if (!api->base || (cfg->ordering && !api->ordering)) {
		api_free(api);
		return NULL;
	}
	len = strlen(api->base);
	while (len > 0 && api->base[len - 1] == '/')
		api->base[--len] = '\0';
	api->page_size = cfg->page_size;
	api->list_timeout_ms = (int64_t)cfg->list_timeout_s * 1000;
	return api;
}

void api_free(struct api *api)
{
	if (!api)
		return;
	free(api->base);
	free(api->ordering);
	free(api);
}

/* A new formatted string, NULL on ENOMEM. */
static char *strprintf(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static char *strprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* URL-escape one path segment; a new string or NULL. "." and ".." are
 * escaped too, or they would be taken as dot segments. */
static char *escape(const char *s)
{
	char *e, *out;

	if (strcmp(s, ".") == 0)
		return strdup("%2E");
	if (strcmp(s, "..") == 0)
		return strdup("%2E%2E");
	e = curl_easy_escape(NULL, s, 0);
	if (!e)
		return NULL;
	out = strdup(e);
	curl_free(e);
	return out;
}

/* base/datasets/OWNER/SLUG/<tail>: a new string or NULL. */
static char *dataset_url(struct api *api, const char *owner, const char *slug,
			 const char *tail)
{
	char *o = escape(owner), *s = escape(slug), *url = NULL;

	if (o && s)
		url = strprintf("%s/datasets/%s/%s/%s", api->base, o, s, tail);
	free(o);
	free(s);
	return url;
}

/* The "detail" of an error body ({"detail": "..."}) into @out (of @cap
 * bytes), JSON-decoded, secrets redacted, cut to DETAIL_CHARS characters;
 * "" for any other body. A server's own words are worth a log line, but
 * nothing else it sends is logged: an HTML page or a body that echoes the
 * request is noise, and perhaps the key in a form not foreseen. */
static void error_detail(const struct http_resp *resp, char *out, size_t cap)
{
	char *detail = item_json_error_detail(resp->body, resp->len);
	size_t i, chars = 0;

	*out = '\0';
	if (detail) {
		/* redact before cutting, or a cut key would slip through */
		log_redact(detail, out, cap);
		for (i = 0; out[i]; i++) {
			/* a character starts at every byte but 10xxxxxx */
			if (((unsigned char)out[i] & 0xc0) != 0x80 &&
			    chars++ == DETAIL_CHARS) {
				out[i] = '\0';
				break;
			}
		}
	}
	free(detail);
}

static void log_status(struct api *api, const char *what,
		       const struct http_resp *resp)
{
	char detail[DETAIL_CHARS * 4 + 64];

	if (resp->status == 401 || resp->status == 403) {
		if (__atomic_exchange_n(&api->auth_logged, (int)resp->status,
					__ATOMIC_RELAXED) == resp->status)
			return;
	}
	error_detail(resp, detail, sizeof(detail));
	if (resp->status == 401)
		log_err("%s: HTTP 401%s%s; the API key (%s) was rejected: "
			"unavailable until it is accepted",
			what, *detail ? ": " : "", detail,
			http_key_origin(api->http));
	else
		log_err("%s: HTTP %ld%s%s", what, resp->status,
			*detail ? ": " : "", detail);
}

void api_get_stats(struct api *api, struct api_stats *st)
{
	int c, o;

	for (c = 0; c < API_CALLS; c++)
		for (o = 0; o < UTIL_OUTCOMES; o++)
			st->calls[c][o] = __atomic_load_n(
				&api->stats.calls[c][o], __ATOMIC_RELAXED);
}

const char *api_call_name(enum api_call call)
{
	static const char *const names[API_CALLS] = {
		[API_CALL_LIST] = "list",
		[API_CALL_GET] = "get",
		[API_CALL_DATASETS] = "datasets",
		[API_CALL_CHECK] = "check",
	};

	return (unsigned)call < API_CALLS ? names[call] : "unknown";
}

/* GET @url with the key, counted as a @call. */
static int api_request(struct api *api, enum api_call call, const char *url,
		       bool shared, struct http_resp *resp)
{
	int err = http_api_get(api->http, url, API_MAX_BODY, shared, resp);
	enum util_outcome o = util_http_outcome(err ? 0 : resp->status, err);

	__atomic_add_fetch(&api->stats.calls[call][o], 1, __ATOMIC_RELAXED);
	return err;
}

/* GET @url and hand back a 200 body in @resp. Returns 0 or -errno. */
static int get_json(struct api *api, enum api_call call, const char *url,
		    const char *what, bool shared, struct http_resp *resp)
{
	int err = api_request(api, call, url, shared, resp);

	/* no answer: a listing or a read fails as the server being away,
	 * never as its refusal (resp->why tells which) */
	if (err)
		return err == -ENOMEM ? err : -EIO;
	if (resp->status == 200) {
		__atomic_store_n(&api->auth_logged, 0, __ATOMIC_RELAXED);
		return 0;
	}
	if (resp->status != 404)
		log_status(api, what, resp);
	err = util_http_errno(resp->status);
	http_resp_clear(resp);
	return err;
}

/* What @resp tells of a call that ended with @err, in @ans. */
static void answer_of(const struct http_resp *resp, int err,
		      struct api_answer *ans)
{
	if (!ans)
		return;
	ans->status = resp->status;
	ans->retry_after = resp->retry_after;
	ans->err = resp->status ? 0 : resp->err ? resp->err : err;
	snprintf(ans->why, sizeof(ans->why), "%s",
		 resp->why[0] ? resp->why
		 : err	      ? strerror(-err)
			      : "");
}

/* A listing paged by cursor: the items or sequences of a dataset, or the
 * datasets. Each kind says how a page is read and taken. */
struct listing {
	struct api *api;
	enum api_call call;
	const char *what; /* the listing, in log lines */
	int64_t timeout_ms; /* paging past this fails it; 0: never */
	bool ahead; /* ask for the next page while this one is taken */
	struct api_answer *ans; /* what the last call got, or NULL */
	/* Read a page's @body into *@objs (set even on failure, for drop) and
	 * its "next" cursor, counting skipped entries in @n_bad: 0, -EIO for
	 * a body that is not a page, or -ENOMEM. Runs on any thread. */
	int (*parse)(void *ctx, const char *body, size_t len, void **objs,
		     char **cursor, size_t *n_bad);
	/* Take the objects of the page from @url, @more when another page
	 * follows: how many are new, or a negative errno that ends it. */
	int (*take)(void *ctx, void *objs, const char *url, bool more);
	/* Free what parse made. Accepts NULL. */
	void (*drop)(void *objs);
	void *ctx;
	size_t n_bad; /* entries skipped, over every page */
};

/* One page of a listing, asked for on a thread of its own while the last
 * one is taken: the server and the taker work at once. */
struct list_page {
	struct listing *l;
	char *url;
	void *objs; /* what l->parse made of it */
	char *cursor; /* its "next" cursor, or NULL */
	size_t n_bad;
	size_t bytes; /* the page's body */
	int err;
	pthread_t thread;
	bool started;
};

/* Ask for @pg and parse it. */
static int list_page_get(struct list_page *pg)
{
	struct listing *l = pg->l;
	struct http_resp resp;
	int err = get_json(l->api, l->call, pg->url, l->what, true, &resp);

	answer_of(&resp, err, l->ans);
	if (err)
		return err;
	pg->bytes = resp.len;
	err = l->parse(l->ctx, resp.body, resp.len, &pg->objs, &pg->cursor,
		       &pg->n_bad);
	http_resp_clear(&resp);
	if (err == -EIO)
		log_err("%s: malformed page from %s", l->what, pg->url);
	return err;
}

static void *list_page_main(void *p)
{
	struct list_page *pg = p;

	pg->err = list_page_get(pg);
	return NULL;
}

/* Ask for @pg now, on a thread; if none can start, list_page_wait() asks
 * itself. */
static void list_page_start(struct list_page *pg)
{
	pg->started = pthread_create(&pg->thread, NULL, list_page_main, pg) ==
		      0;
}

/* @pg: waited for when it was started, else asked for now. */
static int list_page_wait(struct list_page *pg)
{
	if (!pg->started)
		return list_page_get(pg);
	pthread_join(pg->thread, NULL);
	pg->started = false;
	return pg->err;
}

/* Drop @pg: its objects, once they came, and its URL. */
static void list_page_clear(struct list_page *pg)
{
	if (pg->started)
		list_page_wait(pg);
	pg->l->drop(pg->objs);
	free(pg->cursor);
	free(pg->url);
	pg->objs = NULL;
	pg->cursor = pg->url = NULL;
	pg->n_bad = 0;
}

/* Every page of @l, from @url on (the next ones add "&cursor="), each
 * handed to l->take as it comes. A cursor seen before, or paging past
 * l->timeout_ms, ends it with -EIO. Returns 0 or a negative errno. */
static int listing_walk(struct listing *l, const char *url)
{
	struct seen_cursor *seen = NULL;
	/* two in turn: a thread fetches and parses the next page into the
	 * one it was started for while l->take has the other */
	struct list_page pages[2] = { { .l = l }, { .l = l } };
	struct list_page *cur = &pages[0], *next = &pages[1], *done;
	int64_t deadline = util_now_ms() + l->timeout_ms;
	int err = 0;

	cur->url = strdup(url);
	if (!cur->url)
		err = -ENOMEM;
	while (!err) {
		const char *cursor;
		int fresh;

		err = list_page_wait(cur);
		l->n_bad += cur->n_bad;
		if (err)
			break;
		cursor = cur->cursor;
		if (cursor && !cursor_first_time(&seen, cursor)) {
			log_err("%s: the server repeats a cursor", l->what);
			err = -EIO;
		} else if (cursor && l->timeout_ms > 0 &&
			   util_now_ms() > deadline) {
			log_err("%s: still listing after %" PRId64
				" s (list_timeout), at %s: listing refused",
				l->what, l->timeout_ms / 1000, cur->url);
			err = -EIO;
		} else if (cursor) {
			next->url = strprintf("%s&cursor=%s", url, cursor);
			/* a large page is taken before the next one is asked
			 * for: two at once would double what a listing holds
			 * in memory, for no gain in time */
			if (next->url && l->ahead &&
			    cur->bytes <= API_AHEAD_MAX)
				list_page_start(next);
			else if (!next->url)
				err = -ENOMEM;
		}
		if (err)
			break;
		fresh = l->take(l->ctx, cur->objs, cur->url, next->url != NULL);
		if (fresh < 0)
			err = fresh;
		list_page_clear(cur);
		done = cur;
		cur = next;
		next = done;
		if (!cur->url)
			break;
	}
	list_page_clear(cur);
	list_page_clear(next);
	seen_free(&seen);
	return err;
}

static const char *kind_path(enum item_kind kind)
{
	return kind == ITEM_KIND_ITEM ? "items" : "sequences";
}

/* What api_list() hands its pages to, and what it counts. */
struct item_walk {
	enum item_kind kind;
	const char *what;
	api_page_fn fn;
	void *ctx;
	size_t n_dup; /* entries listed twice */
};

static int items_parse(void *ctx, const char *body, size_t len, void **objs,
		       char **cursor, size_t *n_bad)
{
	struct item_walk *iw = ctx;
	struct item_list *list = calloc(1, sizeof(*list));

	*objs = list;
	if (!list)
		return -ENOMEM;
	return item_json_decode_page(body, len, iw->kind, list, cursor, n_bad);
}

static int items_take(void *ctx, void *objs, const char *url, bool more)
{
	struct item_walk *iw = ctx;
	struct item_list *list = objs;
	int fresh = iw->fn(iw->ctx, list->v, list->n);

	if (fresh < 0)
		return fresh;
	iw->n_dup += list->n - fresh;
	if (more && fresh == 0) {
		/* a page that brings nothing new and points on is a loop,
		 * whatever its cursor looks like */
		log_err("%s: the page from %s adds no new object but "
			"points to another: listing refused",
			iw->what, url);
		return -EIO;
	}
	return fresh;
}

static void items_drop(void *objs)
{
	if (objs)
		item_list_clear(objs);
	free(objs);
}

int api_list(struct api *api, const char *owner, const char *slug,
	     enum item_kind kind, api_page_fn fn, void *ctx)
{
	struct item_walk iw = { .kind = kind, .fn = fn, .ctx = ctx };
	struct listing l = {
		.api = api,
		.call = API_CALL_LIST,
		.timeout_ms = api->list_timeout_ms,
		.ahead = true,
		.parse = items_parse,
		.take = items_take,
		.drop = items_drop,
		.ctx = &iw,
	};
	char *what, *ord = NULL, *tail = NULL, *url = NULL;
	int err = -ENOMEM;

	what = strprintf("%s/%s %s", owner, slug, kind_path(kind));
	if (api->ordering)
		ord = escape(api->ordering);
	if (what && (!api->ordering || ord))
		tail = strprintf("%s/?limit=%d%s%s", kind_path(kind),
				 api->page_size, ord ? "&ordering=" : "",
				 ord ? ord : "");
	if (tail)
		url = dataset_url(api, owner, slug, tail);
	if (url) {
		l.what = iw.what = what;
		err = listing_walk(&l, url);
	}
	if (l.n_bad)
		log_err("%s: %zu entries skipped: not an object, no uid, or "
			"a NUL in a string",
			what, l.n_bad);
	if (iw.n_dup)
		log_warn("%s: %zu entries listed twice, repeats ignored", what,
			 iw.n_dup);
	free(url);
	free(tail);
	free(ord);
	free(what);
	return err;
}

int api_get(struct api *api, const char *owner, const char *slug,
	    enum item_kind kind, const char *uid, struct item **out)
{
	char *tail = NULL, *url = NULL, *u = escape(uid);
	struct http_resp resp;
	int err = -ENOMEM;

	*out = NULL;
	if (u)
		tail = strprintf("%s/%s/", kind_path(kind), u);
	if (tail)
		url = dataset_url(api, owner, slug, tail);
	if (url) {
		err = get_json(api, API_CALL_GET, url, url, false, &resp);
		if (!err) {
			*out = item_json_decode(resp.body, resp.len, kind);
			if (!*out) {
				log_err("malformed object from %s", url);
				err = -EIO;
			}
			http_resp_clear(&resp);
		}
	}
	free(url);
	free(tail);
	free(u);
	return err;
}

int api_check_dataset(struct api *api, const char *owner, const char *slug,
		      struct api_answer *ans)
{
	/* the listings' own ordering, so that one the server refuses is
	 * said now, not as every listing failing once mounted */
	char *ord = api->ordering ? escape(api->ordering) : NULL;
	char *tail = strprintf("items/?limit=1%s%s", ord ? "&ordering=" : "",
			       ord ? ord : "");
	char *url = tail ? dataset_url(api, owner, slug, tail) : NULL;
	struct http_resp resp;
	int err;

	memset(ans, 0, sizeof(*ans));
	ans->retry_after = -1;
	free(ord);
	free(tail);
	if (!url || (api->ordering && !ord)) {
		free(url);
		return -ENOMEM;
	}
	err = api_request(api, API_CALL_CHECK, url, false, &resp);
	free(url);
	if (!err)
		err = resp.status == 200 ? 0 : util_http_errno(resp.status);
	answer_of(&resp, err, ans);
	/* a refusal's reason, in the server's words */
	if (resp.status >= 400 && resp.status < 500) {
		char detail[sizeof(ans->why)];

		error_detail(&resp, detail, sizeof(detail));
		if (*detail)
			snprintf(ans->why, sizeof(ans->why), "%s", detail);
	}
	http_resp_clear(&resp);
	return err;
}

void api_free_datasets(struct dataset_ref *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(v[i].owner);
		free(v[i].slug);
	}
	free(v);
}

/* The datasets of a page, or of the whole list. */
struct dataset_list {
	struct dataset_ref *v;
	size_t n, cap;
};

static int dataset_add(void *ctx, const char *owner, const char *slug)
{
	struct dataset_list *dl = ctx;
	struct dataset_ref *ref;

	if (UTIL_GROW(dl->v, dl->n, dl->cap, 16))
		return -ENOMEM;
	ref = &dl->v[dl->n++];
	ref->owner = strdup(owner);
	ref->slug = strdup(slug);
	return ref->owner && ref->slug ? 0 : -ENOMEM;
}

static int datasets_parse(void *ctx, const char *body, size_t len, void **objs,
			  char **cursor, size_t *n_bad)
{
	struct dataset_list *page = calloc(1, sizeof(*page));

	*objs = page;
	if (!page)
		return -ENOMEM;
	return item_json_decode_datasets(body, len, dataset_add, page, cursor);
}

static int datasets_take(void *ctx, void *objs, const char *url, bool more)
{
	struct dataset_list *all = ctx, *page = objs;
	size_t n = page->n;

	if (all->n + n > all->cap) {
		struct dataset_ref *v =
			realloc(all->v, (all->n + n) * sizeof(*v));

		if (!v)
			return -ENOMEM;
		all->v = v;
		all->cap = all->n + n;
	}
	memcpy(all->v + all->n, page->v, n * sizeof(*page->v));
	all->n += n;
	page->n = 0;
	/* a list that never ends loops, whatever its cursors look like */
	if (more && all->n > MAX_ITEMS) {
		log_err("dataset list: the server repeats a cursor");
		return -EIO;
	}
	return (int)n;
}

static void datasets_drop(void *objs)
{
	struct dataset_list *page = objs;

	if (page)
		api_free_datasets(page->v, page->n);
	free(page);
}

int api_list_datasets(struct api *api, struct dataset_ref **out, size_t *n,
		      struct api_answer *ans)
{
	struct dataset_list all = { 0 };
	struct listing l = {
		.api = api,
		.call = API_CALL_DATASETS,
		.what = "dataset list",
		.ans = ans,
		.parse = datasets_parse,
		.take = datasets_take,
		.drop = datasets_drop,
		.ctx = &all,
	};
	char *url =
		strprintf("%s/datasets/?limit=%d", api->base, api->page_size);
	int err = url ? listing_walk(&l, url) : -ENOMEM;

	free(url);
	if (err) {
		api_free_datasets(all.v, all.n);
		all.v = NULL;
		all.n = 0;
	}
	*out = all.v;
	*n = all.n;
	return err;
}
