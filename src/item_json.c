/* The JSON of the Avala API: items and sequences in both field dialects
 * into struct item and back into metadata.json, list pages and their
 * cursors, the dataset list and error details. Parsing is defensive (a
 * wrong type is a missing field, never a crash); cJSON is used only here. */
#include "item_json.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- where the tree of a list page lives ---- */

/* A list page of a thousand objects is some 60,000 nodes and strings:
 * malloc'd and freed one by one they cost more than the parse. The tree of
 * a page is taken from one arena instead, and given back whole. cJSON's
 * allocator is the process's: it takes from the arena of the calling
 * thread while page_parse() runs, and from malloc otherwise, so that what
 * cJSON allocates elsewhere (a print, a single object) is freed as ever. */
struct arena_block {
	struct arena_block *next;
	size_t used, cap;
	alignas(max_align_t) unsigned char data[];
};

static _Thread_local struct arena_block **parsing_into;

static void *arena_alloc(size_t n)
{
	struct arena_block *b = *parsing_into;
	size_t at = b ? (b->used + alignof(max_align_t) - 1) &
				    ~(alignof(max_align_t) - 1)
		      : 0;

	if (!b || n > b->cap || at > b->cap - n) {
		size_t cap = b ? b->cap * 2 : 256 * 1024;

		if (cap < n)
			cap = n;
		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->next = *parsing_into;
		b->cap = cap;
		at = 0;
		*parsing_into = b;
	}
	b->used = at + n;
	return b->data + at;
}

static void *json_malloc(size_t n)
{
	return parsing_into ? arena_alloc(n) : malloc(n);
}

/* What cJSON frees while parsing into the arena (a failed parse) goes with
 * the arena. */
static void json_free(void *p)
{
	if (!parsing_into)
		free(p);
}

__attribute__((constructor)) static void json_hooks(void)
{
	cJSON_Hooks hooks = { json_malloc, json_free };

	cJSON_InitHooks(&hooks);
}

static void arena_free(struct arena_block *b)
{
	while (b) {
		struct arena_block *next = b->next;

		free(b);
		b = next;
	}
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

int item_json_repair(const char *text, size_t len, char **out, size_t *out_len)
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
 * (item_json_repair). */
static cJSON *parse_repaired(const char *body, size_t len, bool escaped_too)
{
	char *copy;
	cJSON *root;

	if (item_json_repair(body, len, &copy, &len))
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

int item_json_parse_time(const char *s, struct timespec *ts)
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

		if (asprintf(&tags[i], "view%zu", i) < 0) {
			tags[i] = NULL;
			goto out;
		}
		if (asprintf(&files[i], "%s.json",
			     key && *key ? key : tags[i]) < 0) {
			files[i] = NULL;
			goto out;
		}
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
	it->has_mtime = item_json_parse_time(it->version, &it->mtime) == 0 ||
			item_json_parse_time(str_field(obj, "created_at"),
					     &it->mtime) == 0;
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

const char *item_json_pretty(struct item *it, size_t *len)
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

struct item *item_json_decode(const char *body, size_t len, enum item_kind kind)
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
	cJSON *root; /* in arena */
	struct arena_block *arena;
	const cJSON *results;
	struct span *spans; /* NULL: they did not line up with cJSON's view */
	bool escaped_nul;
};

static void page_close(struct page *pg)
{
	arena_free(pg->arena);
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
	if (item_json_repair(body, len, &pg->text, &len))
		return -ENOMEM;
	if (pg->text)
		body = pg->text;
	end = body + len;
	parsing_into = &pg->arena;
	pg->root = parse_body(body, len, false);
	parsing_into = NULL;
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

int item_json_decode_page(const char *body, size_t len, enum item_kind kind,
			  struct item_list *list, char **next_cursor,
			  size_t *n_bad)
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

int item_json_decode_datasets(const char *body, size_t len,
			      item_json_dataset_fn fn, void *ctx,
			      char **next_cursor)
{
	const cJSON *obj;
	struct page pg;
	long i = 0;
	int err = page_open(body, len, &pg, next_cursor);

	if (err)
		return err;
	cJSON_ArrayForEach(obj, pg.results) {
		const char *owner = dataset_ref_owner(obj);
		const char *slug = str_field(obj, "slug");

		if (!page_result_ok(&pg, i++) || !owner || !slug || !*owner ||
		    !*slug)
			continue;
		err = fn(ctx, owner, slug);
		if (err)
			break;
	}
	page_close(&pg);
	if (err) {
		free(*next_cursor);
		*next_cursor = NULL;
	}
	return err;
}

char *item_json_error_detail(const char *body, size_t len)
{
	cJSON *root = parse_repaired(body, len, false);
	const char *detail = str_field(root, "detail");
	char *copy = NULL;

	if (cJSON_IsObject(root) && detail)
		copy = strdup(detail);
	cJSON_Delete(root);
	return copy;
}

char *item_json_encode_datasets(const char *const *owners,
				const char *const *slugs, size_t n)
{
	cJSON *page = cJSON_CreateObject(), *results = NULL, *one;
	char *text = NULL;
	bool ok;
	size_t i;

	ok = page && cJSON_AddNullToObject(page, "next") &&
	     (results = cJSON_AddArrayToObject(page, "results"));
	for (i = 0; ok && i < n; i++) {
		ok = (one = cJSON_CreateObject()) &&
		     cJSON_AddItemToArray(results, one) &&
		     cJSON_AddStringToObject(one, "owner_name", owners[i]) &&
		     cJSON_AddStringToObject(one, "slug", slugs[i]);
	}
	if (ok)
		text = cJSON_PrintUnformatted(page);
	cJSON_Delete(page);
	return text;
}

/* @v as text: a string as it is, a number in decimal; NULL for any other
 * type (or on ENOMEM). A new string. */
static char *field_text(const cJSON *v)
{
	char *out = NULL;

	if (cJSON_IsString(v))
		return strdup(v->valuestring);
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
		return NULL;
	if (fabs(v->valuedouble) < 9.0e15 &&
	    v->valuedouble == (double)(int64_t)v->valuedouble) {
		if (asprintf(&out, "%" PRId64, (int64_t)v->valuedouble) < 0)
			out = NULL;
	} else if (asprintf(&out, "%.17g", v->valuedouble) < 0) {
		out = NULL;
	}
	return out;
}

int item_json_fields(const struct item *it, const char *const *names, size_t n,
		     item_json_field_fn fn, void *ctx)
{
	cJSON *root = cJSON_ParseWithLength(it->json, it->json_len);
	char *text;
	size_t i;
	int err = cJSON_IsObject(root) ? 0 : -EIO;

	for (i = 0; !err && i < n; i++) {
		const cJSON *v =
			cJSON_GetObjectItemCaseSensitive(root, names[i]);

		if (!cJSON_IsString(v) && !cJSON_IsNumber(v))
			continue;
		text = field_text(v);
		err = text ? fn(ctx, names[i], text) : -ENOMEM;
	}
	cJSON_Delete(root);
	return err;
}
