/* Avala API calls: URL building, cursor pagination, both field dialects, and
 * defensive parsing (a wrong type is a missing field, never a crash). */
#include "api.h"
#include "log.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
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

void item_list_clear(struct item_list *list)
{
	size_t i;

	for (i = 0; i < list->n; i++)
		item_unref(list->v[i]);
	free(list->v);
	list->v = NULL;
	list->n = list->cap = 0;
}

static int list_push(struct item_list *list, struct item *it)
{
	if (UTIL_GROW(list->v, list->n, list->cap, 128))
		return -ENOMEM;
	list->v[list->n++] = it;
	return 0;
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

/* Whether [p, end) holds an escaped NUL, \u0000 (a backslash always
 * starts a two-byte pair, so "\\u0000" is not one). cJSON ends a string
 * at it: "a\u0000b" would pass for "a". */
static bool has_escaped_nul(const char *p, const char *end)
{
	while ((p = memchr(p, '\\', end - p)) && end - p >= 2) {
		if (p[1] == 'u' && end - p >= 6 && !memcmp(p + 2, "0000", 4))
			return true;
		p += 2;
	}
	return false;
}

/* The value of hex digit @c, or -1. */
static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The UTF-16 code unit of the \uXXXX at @p, or -1 when [p, end) does not
 * start with one. */
static long json_code_unit(const char *p, const char *end)
{
	long v = 0;
	int i, d;

	if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
		return -1;
	for (i = 2; i < 6; i++) {
		d = hex_digit(p[i]);
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

static bool is_high_surrogate(long u)
{
	return u >= 0xd800 && u <= 0xdbff;
}

static bool is_low_surrogate(long u)
{
	return u >= 0xdc00 && u <= 0xdfff;
}

/* The length of the escape at @p, a backslash inside a string; *@bad tells
 * whether those bytes are ill-formed. An ill-formed escape is only its
 * longest start that could still have been a good one (a backslash before
 * a character that starts no escape, or "\u" and the hex digits that
 * follow it): what comes next is read as text again, and is never a quote
 * or a backslash, so the strings of the text stay where they were. */
static size_t json_escape_len(const char *p, const char *end, bool *bad)
{
	long u;
	size_t n;

	*bad = false;
	if (end - p < 2)
		return 1; /* the text ends here: cJSON refuses it */
	if (p[1] && strchr("\"\\/bfnrt", p[1]))
		return 2;
	*bad = true;
	if (p[1] != 'u')
		return 1;
	u = json_code_unit(p, end);
	if (u < 0) {
		for (n = 2; n < 5 && p + n < end && hex_digit(p[n]) >= 0; n++)
			;
		return n;
	}
	if (is_high_surrogate(u) &&
	    is_low_surrogate(json_code_unit(p + 6, end))) {
		*bad = false;
		return 12;
	}
	*bad = is_high_surrogate(u) || is_low_surrogate(u);
	return 6;
}

/* Copy [p, end) to @out, when not NULL, with each ill-formed escape inside
 * a string written as U+FFFD; returns the length of the copy and counts
 * the escapes repaired in *@n_bad. */
static size_t json_repair(const char *p, const char *end, char *out,
			  size_t *n_bad)
{
	static const char fffd[] = "\xef\xbf\xbd";
	const char *run = p;
	size_t o = 0, n;
	bool in_string = false, bad;

	*n_bad = 0;
	while (p < end) {
		if (*p == '"')
			in_string = !in_string;
		if (*p != '\\' || !in_string) {
			p++;
			continue;
		}
		n = json_escape_len(p, end, &bad);
		if (bad) {
			if (out) {
				memcpy(out + o, run, p - run);
				memcpy(out + o + (p - run), fffd, 3);
			}
			o += (p - run) + 3;
			run = p + n;
			(*n_bad)++;
		}
		p += n;
	}
	if (out)
		memcpy(out + o, run, end - run);
	return o + (end - run);
}

int api_json_repair(const char *text, size_t len, char **out, size_t *out_len)
{
	size_t n_bad, n;

	*out = NULL;
	*out_len = len;
	/* most pages hold no escape at all: one fast scan says so */
	if (len == 0 || !memchr(text, '\\', len))
		return 0;
	n = json_repair(text, text + len, NULL, &n_bad);
	if (!n_bad)
		return 0;
	*out = malloc(n + 1);
	if (!*out)
		return -ENOMEM;
	json_repair(text, text + len, *out, &n_bad);
	(*out)[n] = '\0';
	*out_len = n;
	return 0;
}

/* A raw NUL is never valid JSON, and cJSON would end a string at it: a body
 * holding one is refused, as is, where noted, one with an escaped NUL. */
static cJSON *parse_body(const char *body, size_t len, bool escaped_too)
{
	if (!body || memchr(body, '\0', len) ||
	    (escaped_too && has_escaped_nul(body, body + len)))
		return NULL;
	return cJSON_ParseWithLength(body, len);
}

/* parse_body() of @body with its ill-formed escapes repaired
 * (api_json_repair). */
static cJSON *parse_repaired(const char *body, size_t len, bool escaped_too)
{
	char *copy;
	cJSON *root;

	if (api_json_repair(body, len, &copy, &len))
		return NULL;
	root = parse_body(copy ? copy : body, len, escaped_too);
	free(copy);
	return root;
}

/* A string field, or NULL when absent or of another type. */
static const char *str_field(const cJSON *obj, const char *name)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsString(f) ? f->valuestring : NULL;
}

/* @n decimal digits at *@p into @v, advancing *@p; false when they are not
 * all digits. */
static bool digits(const char **p, int n, int *v)
{
	*v = 0;
	for (; n > 0; n--, (*p)++) {
		if (**p < '0' || **p > '9')
			return false;
		*v = *v * 10 + (**p - '0');
	}
	return true;
}

static bool leap_year(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int api_parse_time(const char *s, struct timespec *ts)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30,
				     31, 31, 30, 31, 30, 31 };
	struct tm tm = { 0 };
	int y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0, sign = 0;
	long ns = 0, scale = 100000000;
	time_t t;

	if (!s || !digits(&s, 4, &y) || *s++ != '-' || !digits(&s, 2, &mo) ||
	    *s++ != '-' || !digits(&s, 2, &d))
		return -EINVAL;
	if (y < 1 || mo < 1 || mo > 12 || d < 1 ||
	    d > mdays[mo - 1] + (mo == 2 && leap_year(y)))
		return -EINVAL;
	if (sizeof(time_t) < 8 && y > 2037)
		return -EINVAL; /* past a 32-bit time_t */
	/* a time without its zone would be a guess: refused */
	if (*s != 'T' && *s != 't' && *s != ' ')
		return -EINVAL;
	s++;
	if (!digits(&s, 2, &h) || *s++ != ':' || !digits(&s, 2, &mi) ||
	    *s++ != ':' || !digits(&s, 2, &sec))
		return -EINVAL;
	/* a leap second only ends a minute: the last of an hour in UTC, or
	 * of a half or quarter hour under an offset */
	if (h > 23 || mi > 59 || sec > 60 || (sec == 60 && mi % 15 != 14))
		return -EINVAL;
	if (*s == '.') {
		if (*++s < '0' || *s > '9')
			return -EINVAL;
		/* nanoseconds: digits past the ninth are dropped */
		for (; *s >= '0' && *s <= '9'; s++, scale /= 10)
			ns += (*s - '0') * scale;
	}
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		bool colon;

		sign = *s++ == '-' ? -1 : 1;
		if (!digits(&s, 2, &oh) || oh > 23)
			return -EINVAL;
		/* minutes: after a colon, required; without one, optional */
		colon = *s == ':';
		if (colon)
			s++;
		if ((colon || *s) && (!digits(&s, 2, &om) || om > 59))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (*s)
		return -EINVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec; /* a leap second is the next minute's first */
	t = timegm(&tm);
	ts->tv_sec = t - sign * (oh * 3600 + om * 60);
	ts->tv_nsec = ns;
	return 0;
}

static int dup_field(char **dst, const char *src)
{
	*dst = NULL;
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

/* Pretty-print @obj into a new string ending in \n, indented by two spaces
 * with "key": value, as jq and json.dumps show it. cJSON escapes tabs inside
 * strings, so every raw tab in its output is layout. */
static char *pretty(const cJSON *obj, size_t *len)
{
	char *text = cJSON_Print(obj), *out, *o;
	const char *p;
	size_t tabs = 0;

	if (!text)
		return NULL;
	for (p = text; *p; p++)
		tabs += *p == '\t';
	out = malloc(p - text + tabs + 2);
	if (!out) {
		free(text);
		return NULL;
	}
	for (p = text, o = out; *p; p++) {
		if (*p != '\t')
			*o++ = *p;
		else if (p > text && p[-1] == ':')
			*o++ = ' ';
		else {
			*o++ = ' ';
			*o++ = ' ';
		}
	}
	*o++ = '\n';
	*o = '\0';
	*len = o - out;
	free(text);
	return out;
}

static const char *thumbnail_url(const cJSON *obj)
{
	const cJSON *thumbs =
		cJSON_GetObjectItemCaseSensitive(obj, "thumbnails");
	const char *url = str_field(obj, "thumbnail_url");

	if (url)
		return url;
	if (cJSON_IsArray(thumbs) &&
	    cJSON_IsString(cJSON_GetArrayItem(thumbs, 0)))
		return cJSON_GetArrayItem(thumbs, 0)->valuestring;
	return str_field(obj, "video_thumbnail");
}

/* The extension of a file: from the key for data, the URL first for
 * thumbnails (a video's thumbnail is a picture), then metadata.format. */
static void pick_ext(char ext[NAMES_EXT_MAX], const struct item *it,
		     const char *url, const char *format, bool url_first)
{
	if (url_first && url && names_url_ext(url, ext))
		return;
	if (it->key && names_ext(it->key, it->key_len, ext))
		return;
	if (!url_first && url && names_url_ext(url, ext))
		return;
	names_format_ext(format, ext);
}

/* Views become views/<key>.json, named by the rules of section 3 with the
 * view's index standing in for a uid. */
static int parse_views(struct item *it, const cJSON *views)
{
	size_t i, n = cJSON_GetArraySize(views);
	struct names_input *in;
	char **files, **tags, **out;
	int err = -ENOMEM;

	if (n == 0)
		return 0;
	in = calloc(n, sizeof(*in));
	files = calloc(n, sizeof(*files));
	tags = calloc(n, sizeof(*tags));
	out = calloc(n, sizeof(*out));
	it->views = calloc(n, sizeof(*it->views));
	if (!in || !files || !tags || !out || !it->views)
		goto out;
	for (i = 0; i < n; i++) {
		const cJSON *v = cJSON_GetArrayItem(views, i);
		const char *key = cJSON_IsObject(v) ? str_field(v, "key")
						    : NULL;

		tags[i] = strprintf("view%zu", i);
		files[i] = tags[i] ? strprintf("%s.json",
					       key && *key ? key : tags[i])
				   : NULL;
		if (!files[i])
			goto out;
		in[i].uid = tags[i];
		in[i].key = files[i];
		in[i].key_len = strlen(files[i]);
	}
	if (names_assign(in, n, out))
		goto out;
	for (i = 0; i < n; i++) {
		struct view *view = &it->views[i];

		view->name = out[i];
		out[i] = NULL;
		view->json =
			pretty(cJSON_GetArrayItem(views, i), &view->json_len);
		it->n_views = i + 1;
		if (!view->json)
			goto out;
	}
	err = 0;
out:
	for (i = 0; i < n; i++) {
		free(tags ? tags[i] : NULL);
		free(files ? files[i] : NULL);
		free(out ? out[i] : NULL);
	}
	free(tags);
	free(files);
	free(out);
	free(in);
	return err;
}

/* Raw JSON text, for text cJSON has already accepted: where the value at
 * @p ends, and the elements of the top-level "results" array. The bytes of
 * an item are kept as the server sent them (minus whitespace), which is
 * cheaper than printing the parsed tree back and loses nothing. */
struct span {
	const char *p;
	size_t len;
};

/* Whitespace as cJSON skips it: every byte up to the space, NUL included. */
static bool json_ws(char c)
{
	return (unsigned char)c <= ' ';
}

static const char *json_skip_ws(const char *p, const char *end)
{
	while (p < end && json_ws(*p))
		p++;
	return p;
}

/* Past the quote that ends the string whose text starts at @p, just after
 * its opening quote; NULL when it does not end. A quote is escaped when an
 * odd run of backslashes comes before it. */
static const char *json_string_end(const char *p, const char *end)
{
	const char *q = p, *b;

	while ((q = memchr(q, '"', end - q))) {
		for (b = q; b > p && b[-1] == '\\'; b--)
			;
		if ((q - b) % 2 == 0)
			return q + 1;
		q++;
	}
	return NULL;
}

/* The end of the value starting at @p, or NULL when it does not end. */
static const char *json_value_end(const char *p, const char *end)
{
	int depth = 0;

	for (; p < end; p++) {
		if (*p == '"') {
			p = json_string_end(p + 1, end);
			if (!p || depth == 0)
				return p;
			p--;
		} else if (depth == 0 && (*p == ',' || *p == ']' || *p == '}' ||
					  *p == ':' || json_ws(*p))) {
			return p; /* a number or a literal ends here */
		} else if (*p == '{' || *p == '[') {
			depth++;
		} else if ((*p == '}' || *p == ']') && --depth == 0) {
			return p + 1;
		}
	}
	return depth == 0 ? p : NULL;
}

/* The spans of the elements of the first top-level "results" array of the
 * object in [p, end) into @spans (room for @max); their number, or -1. */
static long results_spans(const char *p, const char *end, struct span *spans,
			  size_t max)
{
	long n = -1;

	p = json_skip_ws(p, end);
	if (p == end || *p++ != '{')
		return -1;
	for (;;) {
		const char *key, *key_end, *v_end;

		p = json_skip_ws(p, end);
		if (p == end)
			return -1;
		if (*p == '}')
			return n;
		key = p;
		key_end = json_value_end(p, end);
		/* an escaped key could spell "results" too: leave those to
		 * cJSON alone */
		if (!key_end || *key != '"' || memchr(key, '\\', key_end - key))
			return -1;
		p = json_skip_ws(key_end, end);
		if (p == end || *p++ != ':')
			return -1;
		p = json_skip_ws(p, end);
		if (n < 0 && key_end - key == 9 &&
		    !memcmp(key, "\"results\"", 9) && p < end && *p == '[') {
			n = 0;
			p = json_skip_ws(p + 1, end);
			while (p < end && *p != ']') {
				v_end = json_value_end(p, end);
				if (!v_end || v_end == p || (size_t)n == max)
					return -1;
				spans[n].p = p;
				spans[n++].len = v_end - p;
				p = json_skip_ws(v_end, end);
				if (p < end && *p == ',')
					p = json_skip_ws(p + 1, end);
			}
			if (p == end)
				return -1;
			v_end = p + 1;
		} else {
			v_end = json_value_end(p, end);
			if (!v_end || v_end == p)
				return -1;
		}
		p = json_skip_ws(v_end, end);
		if (p < end && *p == ',')
			p++;
	}
}

/* @raw without the whitespace between tokens: a new string, or NULL. */
static char *json_compact(const char *raw, size_t len, size_t *out_len)
{
	const char *p = raw, *end = raw + len, *e;
	char *out = malloc(len + 1), *o = out;

	if (!out)
		return NULL;
	while (p < end) {
		if (*p == '"') {
			e = json_string_end(p + 1, end);
			if (!e)
				e = end;
			memcpy(o, p, e - p);
			o += e - p;
			p = e;
		} else if (json_ws(*p)) {
			p++;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	*out_len = o - out;
	return out;
}

/* Build an item from one JSON object, whose text is @raw when known;
 * NULL when it has no string uid. */
static struct item *item_from_json(const cJSON *obj, const struct span *raw,
				   enum item_kind kind)
{
	const cJSON *meta, *size, *key, *views;
	const char *data_url, *thumb_url, *format = NULL;
	struct item *it;

	if (!cJSON_IsObject(obj) || !str_field(obj, "uid") ||
	    !*str_field(obj, "uid"))
		return NULL;
	it = item_new(kind);
	if (!it)
		return NULL;
	key = cJSON_GetObjectItemCaseSensitive(obj, "key");
	meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
	if (cJSON_IsObject(meta)) {
		format = str_field(meta, "format");
		size = cJSON_GetObjectItemCaseSensitive(meta, "size");
		if (cJSON_IsNumber(size) && size->valuedouble >= 0 &&
		    size->valuedouble < 9e15 &&
		    floor(size->valuedouble) == size->valuedouble)
			it->size = (int64_t)size->valuedouble;
	}
	if (kind == ITEM_KIND_ITEM) {
		data_url = str_field(obj, "data_url");
		if (!data_url)
			data_url = str_field(obj, "url");
		thumb_url = thumbnail_url(obj);
	} else {
		data_url = str_field(obj, "featured_image");
		thumb_url = NULL;
		it->size = -1; /* metadata.size, if any, is not the image's */
	}
	if (dup_field(&it->uid, str_field(obj, "uid")) ||
	    dup_field(&it->status, str_field(obj, "status")) ||
	    dup_field(&it->data_url, data_url) ||
	    dup_field(&it->thumb_url, thumb_url) ||
	    dup_field(&it->version, str_field(obj, "updated_at")
					    ? str_field(obj, "updated_at")
					    : str_field(obj, "created_at")))
		goto fail;
	/* a field of the wrong type or an odd spelling only costs the time */
	it->has_mtime =
		api_parse_time(it->version, &it->mtime) == 0 ||
		api_parse_time(str_field(obj, "created_at"), &it->mtime) == 0;
	if (cJSON_IsString(key)) {
		it->key_len = strlen(key->valuestring);
		it->key = strdup(key->valuestring);
		if (!it->key)
			goto fail;
	}
	pick_ext(it->data_ext, it, data_url, format, kind != ITEM_KIND_ITEM);
	pick_ext(it->thumb_ext, it, thumb_url, format, true);
	views = cJSON_GetObjectItemCaseSensitive(obj, "views");
	if (kind == ITEM_KIND_SEQUENCE && cJSON_IsArray(views) &&
	    parse_views(it, views))
		goto fail;
	/* compact now; metadata.json is made from it when first asked for */
	if (raw && raw->len >= 2 && raw->p[0] == '{' &&
	    raw->p[raw->len - 1] == '}') {
		it->json = json_compact(raw->p, raw->len, &it->json_len);
	} else {
		it->json = cJSON_PrintUnformatted(obj);
		it->json_len = it->json ? strlen(it->json) : 0;
	}
	if (!it->json)
		goto fail;
	return it;
fail:
	item_unref(it);
	return NULL;
}

const char *api_item_pretty(struct item *it, size_t *len)
{
	char *text = __atomic_load_n(&it->pretty, __ATOMIC_ACQUIRE), *expected;
	cJSON *root;
	size_t n = 0;

	if (text) {
		*len = it->pretty_len;
		return text;
	}
	root = parse_repaired(it->json, it->json_len, false);
	text = root ? pretty(root, &n) : NULL;
	cJSON_Delete(root);
	if (!text)
		return NULL;
	expected = NULL;
	/* the length is the same whoever wins: publish it first */
	__atomic_store_n(&it->pretty_len, n, __ATOMIC_RELAXED);
	if (!__atomic_compare_exchange_n(&it->pretty, &expected, text, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		free(text);
		text = expected;
	}
	*len = it->pretty_len;
	return text;
}

struct item *api_parse_object(const char *body, size_t len, enum item_kind kind)
{
	cJSON *root = parse_repaired(body, len, true);
	struct item *it = item_from_json(root, NULL, kind);

	cJSON_Delete(root);
	return it;
}

/* The raw value of the "cursor" query parameter of @url, or NULL. */
static char *cursor_of(const char *url)
{
	const char *q = strchr(url, '?');

	while (q) {
		q++;
		if (strncmp(q, "cursor=", 7) == 0) {
			size_t n = strcspn(q + 7, "&#");

			return strndup(q + 7, n);
		}
		q = strchr(q, '&');
	}
	return NULL;
}

/* A list page: its envelope checked, its next cursor taken out, and the
 * raw text of each result found. cJSON ends a string at an escaped NUL
 * (\u0000), so "a\u0000b" would pass for "a": a result holding one is to be
 * skipped (page_result_ok), and a page with one outside its results, where
 * it could cut the cursor short, or without the spans to tell where, is
 * refused. */
struct page {
	char *text; /* the body with its escapes repaired, or NULL: as sent */
	cJSON *root;
	const cJSON *results;
	struct span *spans; /* NULL: they did not line up with cJSON's view */
	bool escaped_nul;
};

static void page_close(struct page *pg)
{
	cJSON_Delete(pg->root);
	free(pg->spans);
	free(pg->text);
	memset(pg, 0, sizeof(*pg));
}

/* Whether the text around the spans of @pg holds an escaped NUL. */
static bool nul_outside_results(const struct page *pg, const char *body,
				const char *end, long n)
{
	const char *p = body;
	long i;

	for (i = 0; i < n; i++) {
		if (has_escaped_nul(p, pg->spans[i].p))
			return true;
		p = pg->spans[i].p + pg->spans[i].len;
	}
	return has_escaped_nul(p, end);
}

static int page_open(const char *body, size_t len, struct page *pg,
		     char **next_cursor)
{
	const char *end;
	const cJSON *next;
	int n;

	memset(pg, 0, sizeof(*pg));
	*next_cursor = NULL;
	if (api_json_repair(body, len, &pg->text, &len))
		return -ENOMEM;
	if (pg->text)
		body = pg->text;
	end = body + len;
	pg->root = parse_body(body, len, false);
	pg->results = cJSON_GetObjectItemCaseSensitive(pg->root, "results");
	next = cJSON_GetObjectItemCaseSensitive(pg->root, "next");
	if (!cJSON_IsObject(pg->root) || !cJSON_IsArray(pg->results) ||
	    (next && !cJSON_IsNull(next) && !cJSON_IsString(next)))
		goto bad;
	/* the raw text of each result, when it lines up with cJSON's view */
	n = cJSON_GetArraySize(pg->results);
	pg->spans = malloc((n + 1) * sizeof(*pg->spans));
	if (pg->spans && results_spans(body, end, pg->spans, n) != n) {
		free(pg->spans);
		pg->spans = NULL;
	}
	pg->escaped_nul = has_escaped_nul(body, end);
	if (pg->escaped_nul &&
	    (!pg->spans || nul_outside_results(pg, body, end, n)))
		goto bad;
	if (cJSON_IsString(next)) {
		*next_cursor = cursor_of(next->valuestring);
		if (!*next_cursor)
			goto bad;
	}
	return 0;
bad:
	page_close(pg);
	return -EIO;
}

/* Whether result @i of @pg holds no escaped NUL. */
static bool page_result_ok(const struct page *pg, long i)
{
	return !pg->escaped_nul ||
	       !has_escaped_nul(pg->spans[i].p,
				pg->spans[i].p + pg->spans[i].len);
}

int api_parse_page(const char *body, size_t len, enum item_kind kind,
		   struct item_list *list, char **next_cursor, size_t *n_bad)
{
	const cJSON *obj;
	struct page pg;
	long i = 0;
	int err = page_open(body, len, &pg, next_cursor);

	if (err)
		return err;
	cJSON_ArrayForEach(obj, pg.results) {
		struct item *it = NULL;

		if (page_result_ok(&pg, i))
			it = item_from_json(obj, pg.spans ? &pg.spans[i] : NULL,
					    kind);
		i++;
		if (!it) {
			(*n_bad)++;
			continue;
		}
		err = list_push(list, it);
		if (err) {
			item_unref(it);
			break;
		}
	}
	page_close(&pg);
	if (err) {
		free(*next_cursor);
		*next_cursor = NULL;
	}
	return err;
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
	cJSON *root = parse_repaired(resp->body, resp->len, false);
	const char *detail = str_field(root, "detail");
	size_t i, chars = 0;

	*out = '\0';
	if (cJSON_IsObject(root) && detail) {
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
	cJSON_Delete(root);
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

static const char *kind_path(enum item_kind kind)
{
	return kind == ITEM_KIND_ITEM ? "items" : "sequences";
}

/* A page asked for on a thread of its own while the last one is stored:
 * the server and the store work at once. */
struct fetch {
	struct api *api;
	const char *what;
	enum item_kind kind;
	char *url;
	struct item_list list; /* the page's objects */
	char *cursor; /* its "next" cursor, or NULL */
	size_t n_bad;
	size_t bytes; /* the page's body */
	int err;
	pthread_t thread;
	bool started;
};

/* Ask for @f's page and parse it. */
static int fetch_page(struct fetch *f)
{
	struct http_resp resp;
	int err = get_json(f->api, API_CALL_LIST, f->url, f->what, true, &resp);

	if (err)
		return err;
	f->bytes = resp.len;
	err = api_parse_page(resp.body, resp.len, f->kind, &f->list, &f->cursor,
			     &f->n_bad);
	http_resp_clear(&resp);
	if (err == -EIO)
		log_err("%s: malformed page from %s", f->what, f->url);
	return err;
}

static void *fetch_main(void *p)
{
	struct fetch *f = p;

	f->err = fetch_page(f);
	return NULL;
}

/* Ask for @f's page now, on a thread; if none can start, fetch_wait()
 * asks itself. */
static void fetch_start(struct fetch *f)
{
	f->started = pthread_create(&f->thread, NULL, fetch_main, f) == 0;
}

/* @f's page: waited for when it was started, else asked for now. */
static int fetch_wait(struct fetch *f)
{
	if (!f->started)
		return fetch_page(f);
	pthread_join(f->thread, NULL);
	f->started = false;
	return f->err;
}

/* Drop @f: its page, once it came, and its URL. */
static void fetch_clear(struct fetch *f)
{
	if (f->started)
		fetch_wait(f);
	item_list_clear(&f->list);
	free(f->cursor);
	free(f->url);
	f->cursor = f->url = NULL;
	f->n_bad = 0;
}

static char *page_url(struct api *api, const char *owner, const char *slug,
		      enum item_kind kind, const char *ord, const char *cursor)
{
	char *tail, *url;

	tail = strprintf("%s/?limit=%d%s%s%s%s", kind_path(kind),
			 api->page_size, ord ? "&ordering=" : "",
			 ord ? ord : "", cursor ? "&cursor=" : "",
			 cursor ? cursor : "");
	url = tail ? dataset_url(api, owner, slug, tail) : NULL;
	free(tail);
	return url;
}

int api_list(struct api *api, const char *owner, const char *slug,
	     enum item_kind kind, api_page_fn fn, void *ctx)
{
	char *what, *ord = NULL;
	struct seen_cursor *seen = NULL;
	/* two in turn: a thread fetches and parses the next page into the
	 * one it was started for while @fn stores the other */
	struct fetch pages[2] = { { .api = api, .kind = kind },
				  { .api = api, .kind = kind } };
	struct fetch *cur = &pages[0], *next = &pages[1], *done;
	int64_t deadline = util_now_ms() + api->list_timeout_ms;
	size_t n_bad = 0, n_dup = 0;
	int err = 0;

	what = strprintf("%s/%s %s", owner, slug, kind_path(kind));
	if (api->ordering)
		ord = escape(api->ordering);
	cur->what = next->what = what;
	cur->url = what ? page_url(api, owner, slug, kind, ord, NULL) : NULL;
	if (!cur->url || (api->ordering && !ord))
		err = -ENOMEM;
	while (!err) {
		const char *cursor;
		int fresh;

		err = fetch_wait(cur);
		n_bad += cur->n_bad;
		if (err)
			break;
		cursor = cur->cursor;
		if (cursor && !cursor_first_time(&seen, cursor)) {
			log_err("%s: the server repeats a cursor", what);
			err = -EIO;
		} else if (cursor && api->list_timeout_ms > 0 &&
			   util_now_ms() > deadline) {
			log_err("%s: still listing after %" PRId64
				" s (list_timeout), at %s: listing refused",
				what, api->list_timeout_ms / 1000, cur->url);
			err = -EIO;
		} else if (cursor) {
			next->url =
				page_url(api, owner, slug, kind, ord, cursor);
			/* a large page is stored before the next one is asked
			 * for: two at once would double what a listing holds
			 * in memory, for no gain in time */
			if (next->url && cur->bytes <= API_AHEAD_MAX)
				fetch_start(next);
			else if (!next->url)
				err = -ENOMEM;
		}
		if (err)
			break;
		fresh = fn(ctx, cur->list.v, cur->list.n);
		if (fresh >= 0)
			n_dup += cur->list.n - fresh;
		if (fresh < 0) {
			err = fresh;
		} else if (next->url && fresh == 0) {
			/* a page that brings nothing new and points on is a
			 * loop, whatever its cursor looks like */
			log_err("%s: the page from %s adds no new object but "
				"points to another: listing refused",
				what, cur->url);
			err = -EIO;
		}
		fetch_clear(cur);
		done = cur;
		cur = next;
		next = done;
		if (!cur->url)
			break;
	}
	if (n_bad)
		log_err("%s: %zu entries skipped: not an object, no uid, or "
			"a NUL in a string",
			what, n_bad);
	if (n_dup)
		log_warn("%s: %zu entries listed twice, repeats ignored", what,
			 n_dup);
	fetch_clear(cur);
	fetch_clear(next);
	seen_free(&seen);
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
			*out = api_parse_object(resp.body, resp.len, kind);
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

/* The owner of a dataset object: "owner_name", or "owner" as a string or an
 * object with "username"/"name"/"slug". */
static const char *dataset_ref_owner(const cJSON *obj)
{
	const cJSON *owner = cJSON_GetObjectItemCaseSensitive(obj, "owner");
	const char *name = str_field(obj, "owner_name");

	if (name)
		return name;
	if (cJSON_IsString(owner))
		return owner->valuestring;
	if (cJSON_IsObject(owner)) {
		if ((name = str_field(owner, "username")) ||
		    (name = str_field(owner, "slug")) ||
		    (name = str_field(owner, "name")))
			return name;
	}
	return NULL;
}

int api_list_datasets(struct api *api, struct dataset_ref **out, size_t *n,
		      struct api_answer *ans)
{
	struct dataset_ref *v = NULL;
	struct seen_cursor *seen = NULL;
	char *cursor = NULL;
	size_t cap = 0;
	int err = 0;

	*out = NULL;
	*n = 0;
	while (!err) {
		struct http_resp resp;
		const cJSON *obj;
		struct page pg;
		char *url;
		long i = 0;

		url = strprintf("%s/datasets/?limit=%d%s%s", api->base,
				api->page_size, cursor ? "&cursor=" : "",
				cursor ? cursor : "");
		if (!url) {
			err = -ENOMEM;
			break;
		}
		err = get_json(api, API_CALL_DATASETS, url, "dataset list",
			       true, &resp);
		free(url);
		answer_of(&resp, err, ans);
		if (err)
			break;
		free(cursor);
		err = page_open(resp.body, resp.len, &pg, &cursor);
		if (err) {
			if (err == -EIO)
				log_err("dataset list: malformed page");
			http_resp_clear(&resp);
			break;
		}
		cJSON_ArrayForEach(obj, pg.results) {
			const char *owner = dataset_ref_owner(obj);
			const char *slug = str_field(obj, "slug");

			if (!page_result_ok(&pg, i++) || !owner || !slug ||
			    !*owner || !*slug)
				continue;
			if (*n == cap) {
				struct dataset_ref *nv;

				cap = cap ? cap * 2 : 16;
				nv = realloc(v, cap * sizeof(*v));
				if (!nv) {
					err = -ENOMEM;
					break;
				}
				v = nv;
			}
			v[*n].owner = strdup(owner);
			v[*n].slug = strdup(slug);
			(*n)++;
			if (!v[*n - 1].owner || !v[*n - 1].slug)
				err = -ENOMEM;
		}
		page_close(&pg);
		http_resp_clear(&resp);
		if (!cursor)
			break;
		if (!cursor_first_time(&seen, cursor) || *n > MAX_ITEMS) {
			log_err("dataset list: the server repeats a cursor");
			err = -EIO;
		}
	}
	seen_free(&seen);
	free(cursor);
	if (err) {
		api_free_datasets(v, *n);
		v = NULL;
		*n = 0;
	}
	*out = v;
	return err;
}
