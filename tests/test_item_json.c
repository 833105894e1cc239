/* Unit tests of src/item_json.c, the API's JSON, without network: pages,
 * objects of both field dialects, wrong types, cursors, sequences and their
 * views, ill-formed escapes. */
#include "item_json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define FFFD "\xef\xbf\xbd" /* U+FFFD in UTF-8 */

static struct item *parse_item(const char *body)
{
	return item_json_decode(body, strlen(body), ITEM_KIND_ITEM);
}

static struct item *parse_seq(const char *body)
{
	return item_json_decode(body, strlen(body), ITEM_KIND_SEQUENCE);
}

/* Whether @json (of @len bytes) is pretty-printed text ending in \n, laid
 * out with two-space indents and "key": value, that parses back to an
 * object equal to @want. */
static bool json_matches(const char *json, size_t len, const cJSON *want)
{
	cJSON *back;
	bool ok;

	if (!json || !want || len == 0 || strlen(json) != len ||
	    json[len - 1] != '\n' || strchr(json, '\t'))
		return false;
	if (cJSON_IsObject(want) && cJSON_GetArraySize(want) > 0 &&
	    strncmp(json, "{\n  \"", 5) != 0)
		return false;
	back = cJSON_ParseWithLength(json, len);
	ok = back && cJSON_Compare(back, want, true);
	cJSON_Delete(back);
	return ok;
}

/* metadata.json of @it, made on first use. */
static const char *pretty_text(struct item *it)
{
	size_t len;

	return item_json_pretty(it, &len);
}

static size_t pretty_len(struct item *it)
{
	size_t len = 0;

	item_json_pretty(it, &len);
	return len;
}

/* Whether metadata.json of @it parses back to the object of @body. */
static bool metadata_is(struct item *it, const char *body)
{
	cJSON *want = cJSON_Parse(body);
	bool ok = it && json_matches(pretty_text(it), pretty_len(it), want);

	cJSON_Delete(want);
	return ok;
}

static const char documented_item[] =
	"{\"uid\": \"d-0001\", \"key\": \"cat.png\", \"status\": \"completed\","
	" \"data_url\": \"https://s3.example/b/cat.png?X-Amz-Signature=a\","
	" \"thumbnail_url\": \"https://s3.example/t/cat_t.jpg?sig=b\","
	" \"annotations_count\": 3, \"created_at\": \"2024-01-02T03:04:05Z\","
	" \"updated_at\": \"2024-02-01T00:00:00Z\", \"metadata\": {\"width\":"
	" 640, \"height\": 480, \"format\": \"png\", \"size\": 12345}}";

static const char sdk_item[] =
	"{\"uid\": \"s-0002\", \"key\": \"dog.jpeg\","
	" \"url\": \"https://cdn.example/x/dog.jpeg?token=1\","
	" \"thumbnails\": [\"https://cdn.example/t/dog.webp\","
	" \"https://cdn.example/t/dog2.png\"],"
	" \"video_thumbnail\": \"https://cdn.example/v.gif\","
	" \"annotations\": {\"boxes\": [1, 2]}, \"metadata\": {}}";

static void test_item_documented(void)
{
	struct item *it = parse_item(documented_item);

	CHECK(it != NULL);
	if (!it)
		return;
	CHECK(it->kind == ITEM_KIND_ITEM);
	CHECK_STR(it->uid, "d-0001");
	CHECK_STR(it->key, "cat.png");
	CHECK(it->key_len == 7);
	CHECK_STR(it->status, "completed");
	CHECK_STR(it->data_url,
		  "https://s3.example/b/cat.png?X-Amz-Signature=a");
	CHECK_STR(it->thumb_url, "https://s3.example/t/cat_t.jpg?sig=b");
	CHECK_STR(it->version, "2024-02-01T00:00:00Z");
	CHECK(it->size == 12345);
	CHECK_STR(it->data_ext, ".png");
	CHECK_STR(it->thumb_ext, ".jpg");
	CHECK(it->oid == 0);
	CHECK(it->n_views == 0 && it->views == NULL);
	CHECK(metadata_is(it, documented_item));
	item_unref(it);
}

static void test_item_sdk(void)
{
	struct item *it = parse_item(sdk_item);

	CHECK(it != NULL);
	if (!it)
		return;
	CHECK_STR(it->uid, "s-0002");
	CHECK_STR(it->key, "dog.jpeg");
	CHECK(it->status == NULL);
	CHECK_STR(it->data_url, "https://cdn.example/x/dog.jpeg?token=1");
	CHECK_STR(it->thumb_url, "https://cdn.example/t/dog.webp");
	CHECK(it->size == -1);
	CHECK(it->version == NULL);
	CHECK_STR(it->data_ext, ".jpeg");
	CHECK_STR(it->thumb_ext, ".webp");
	CHECK(metadata_is(it, sdk_item));
	item_unref(it);
}

static void test_item_thumbnail_fallbacks(void)
{
	static const struct {
		const char *body, *thumb, *ext;
	} cases[] = {
		{ "{\"uid\": \"v1\", \"key\": \"clip.mp4\", \"thumbnails\": [],"
		  " \"video_thumbnail\": \"https://c.example/v1.jpg\"}",
		  "https://c.example/v1.jpg", ".jpg" },
		{ "{\"uid\": \"v2\", \"key\": \"clip.mp4\","
		  " \"thumbnails\": [5],"
		  " \"video_thumbnail\": \"https://c.example/v2.png\"}",
		  "https://c.example/v2.png", ".png" },
		{ "{\"uid\": \"v3\", \"key\": \"clip.mp4\","
		  " \"thumbnails\": \"https://c.example/s.png\","
		  " \"video_thumbnail\": \"https://c.example/v3.jpg\"}",
		  "https://c.example/v3.jpg", ".jpg" },
		{ "{\"uid\": \"v4\", \"key\": \"clip.mp4\","
		  " \"thumbnails\": \"https://c.example/s.png\"}",
		  NULL, NULL },
		{ "{\"uid\": \"v5\","
		  " \"thumbnail_url\": \"https://c.example/d.png\","
		  " \"thumbnails\": [\"https://c.example/s.jpg\"],"
		  " \"video_thumbnail\": \"https://c.example/v.gif\"}",
		  "https://c.example/d.png", ".png" },
		{ "{\"uid\": \"v6\", \"thumbnail_url\": 7,"
		  " \"thumbnails\": [\"https://c.example/s.jpg\"]}",
		  "https://c.example/s.jpg", ".jpg" },
		{ "{\"uid\": \"v7\", \"video_thumbnail\": null}", NULL, NULL },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct item *it = parse_item(cases[i].body);

		CHECK(it != NULL);
		if (!it)
			continue;
		CHECK_STR(it->thumb_url, cases[i].thumb);
		if (cases[i].ext)
			CHECK_STR(it->thumb_ext, cases[i].ext);
		CHECK(metadata_is(it, cases[i].body));
		item_unref(it);
	}
}

static void test_item_data_url_precedence(void)
{
	struct item *it;

	it = parse_item("{\"uid\": \"p1\", \"data_url\": \"https://a/1.png\","
			" \"url\": \"https://a/2.jpg\"}");
	CHECK(it && it->data_url &&
	      strcmp(it->data_url, "https://a/1.png") == 0);
	CHECK(it && strcmp(it->data_ext, ".png") == 0);
	item_unref(it);
	it = parse_item("{\"uid\": \"p2\", \"data_url\": null,"
			" \"url\": \"https://a/2.jpg\"}");
	CHECK(it && it->data_url &&
	      strcmp(it->data_url, "https://a/2.jpg") == 0);
	item_unref(it);
	it = parse_item("{\"uid\": \"p3\", \"data_url\": 17, \"url\": [1]}");
	CHECK(it && it->data_url == NULL);
	item_unref(it);
}

/* Only a non-negative integral number counts as metadata.size. */
static void test_item_size(void)
{
	static const struct {
		const char *metadata;
		int64_t size;
	} cases[] = {
		{ "{\"size\": 12345}", 12345 },
		{ "{\"size\": 0}", 0 },
		{ "{\"size\": 1099511627776}", 1099511627776LL },
		{ "{\"size\": 1.0e3}", 1000 },
		{ "{}", -1 },
		{ "{\"size\": -5}", -1 },
		{ "{\"size\": -0.5}", -1 },
		{ "{\"size\": 10.5}", -1 },
		{ "{\"size\": \"123\"}", -1 },
		{ "{\"size\": null}", -1 },
		{ "{\"size\": true}", -1 },
		{ "{\"size\": [1]}", -1 },
		{ "{\"size\": {\"bytes\": 1}}", -1 },
		{ "{\"size\": 1e300}", -1 },
		{ "\"size=12\"", -1 },
		{ "[12]", -1 },
		{ "null", -1 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char body[256];
		struct item *it;

		snprintf(body, sizeof(body),
			 "{\"uid\": \"z%zu\", \"key\": \"a.png\","
			 " \"metadata\": %s}",
			 i, cases[i].metadata);
		it = parse_item(body);
		CHECK(it != NULL);
		if (!it)
			continue;
		if (it->size != cases[i].size)
			fprintf(stderr, "  metadata %s: size %lld\n",
				cases[i].metadata, (long long)it->size);
		CHECK(it->size == cases[i].size);
		item_unref(it);
	}
}

/* A sequence's metadata.size is not the size of its featured image. */
static void test_sequence_size(void)
{
	struct item *it = parse_seq("{\"uid\": \"q\", \"metadata\":"
				    " {\"size\": 99}}");

	CHECK(it && it->size == -1);
	item_unref(it);
}

/* A field of the wrong type is a missing field, never a crash. */
static void test_item_wrong_types(void)
{
	static const char body[] =
		"{\"uid\": \"w1\", \"status\": 3,"
		" \"key\": {\"name\": \"a.png\"},"
		" \"thumbnails\": \"https://c.example/t.png\","
		" \"data_url\": [\"https://c.example/d.png\"], \"url\": false,"
		" \"updated_at\": 5,"
		" \"metadata\": {\"format\": 7, \"size\": \"9\"},"
		" \"views\": \"not for items\"}";
	struct item *it = parse_item(body);

	CHECK(it != NULL);
	if (!it)
		return;
	CHECK_STR(it->uid, "w1");
	CHECK(it->status == NULL);
	CHECK(it->key == NULL && it->key_len == 0);
	CHECK(it->thumb_url == NULL);
	CHECK(it->data_url == NULL);
	CHECK(it->version == NULL);
	CHECK(it->size == -1);
	CHECK_STR(it->data_ext, "");
	CHECK_STR(it->thumb_ext, "");
	CHECK(it->n_views == 0);
	CHECK(metadata_is(it, body));
	item_unref(it);

	it = parse_item("{\"uid\": \"w2\", \"key\": null, \"status\": null,"
			" \"metadata\": \"png\"}");
	CHECK(it && it->key == NULL && it->status == NULL && it->size == -1);
	CHECK(it && it->data_ext[0] == '\0');
	item_unref(it);

	it = parse_seq("{\"uid\": \"w3\", \"views\": {\"key\": \"front\"},"
		       " \"featured_image\": 12}");
	CHECK(it && it->n_views == 0 && it->data_url == NULL);
	item_unref(it);
}

/* Pretty JSON: two-space indents, "key": value, tabs in strings escaped,
 * ending in \n, equal to the input once parsed back. */
static void test_item_json(void)
{
	static const char body[] =
		"{\"uid\":\"j1\",\"key\":\"tab\\there:\\tx.png\","
		"\"n\":[1,2.5,-3,{\"deep\":{\"a\":[],\"b\":{}}}],"
		"\"t\":true,\"f\":false,\"z\":null,"
		"\"u\":\"\\u00f1and\\u00fa \\u2603 \\ud83d\\ude00\","
		"\"q\":\"\\\"\\\\/\","
		"\"metadata\":{\"format\":\"jpeg\",\"size\":7}}";
	struct item *it = parse_item(body);

	CHECK(it != NULL);
	if (!it)
		return;
	CHECK(metadata_is(it, body));
	CHECK(strstr(pretty_text(it), "\n  \"uid\": \"j1\",\n") != NULL);
	CHECK(strstr(pretty_text(it), "\n    \"format\": \"jpeg\",\n") != NULL);
	CHECK(strstr(pretty_text(it), "\"tab\\there:\\tx.png\"") != NULL);
	CHECK(strcmp(pretty_text(it) + pretty_len(it) - 3, "\n}\n") == 0);
	CHECK_STR(it->key, "tab\there:\tx.png");
	item_unref(it);

	it = parse_item("{\"uid\":\"j2\"}");
	CHECK(it && pretty_text(it) &&
	      strcmp(pretty_text(it), "{\n  \"uid\": \"j2\"\n}\n") == 0);
	CHECK(it && pretty_len(it) == strlen("{\n  \"uid\": \"j2\"\n}\n"));
	item_unref(it);
}

/* Raw invalid UTF-8 in a key is kept byte for byte. */
static void test_item_invalid_utf8_key(void)
{
	static const char key[] = "bad\xff\xfe\xc3(\x80name.png";
	static const char body[] =
		"{\"uid\": \"b1\", \"key\": \"bad\xff\xfe\xc3(\x80name.png\"}";
	struct item *it = parse_item(body);

	CHECK(it != NULL);
	if (!it)
		return;
	CHECK(it->key_len == sizeof(key) - 1);
	CHECK(it->key && memcmp(it->key, key, sizeof(key)) == 0);
	CHECK_STR(it->data_ext, ".png");
	CHECK(pretty_text(it) && strstr(pretty_text(it), key) != NULL);
	CHECK(metadata_is(it, body));
	item_unref(it);
}

/* An escaped NUL in a key (the only way a key can hold one): cJSON would
 * end the key there, so the item is refused rather than listed under a
 * key that is not its own. */
static void test_item_nul_key(void)
{
	static const char body[] =
		"{\"uid\": \"n1\", \"key\": \"a\\u0000b.png\"}";

	CHECK(parse_item(body) == NULL);
}

/* The extension rules of pick_ext(): data from the key, then the URL's path,
 * then metadata.format; thumbnails and featured images URL first. */
static void test_item_ext(void)
{
	static const struct {
		enum item_kind kind;
		const char *body, *data_ext, *thumb_ext;
	} cases[] = {
		{ ITEM_KIND_ITEM,
		  "{\"uid\": \"e1\", \"key\": \"a.png\","
		  " \"data_url\": \"https://h/x.jpg\","
		  " \"thumbnail_url\": \"https://h/t.webp\","
		  " \"metadata\": {\"format\": \"tiff\"}}",
		  ".png", ".webp" },
		{ ITEM_KIND_ITEM,
		  "{\"uid\": \"e2\", \"key\": \"scan_001\","
		  " \"data_url\": \"https://h/b/scan_001.tif?sig=x.png\","
		  " \"metadata\": {\"format\": \"png\"}}",
		  ".tif", ".png" },
		{ ITEM_KIND_ITEM,
		  "{\"uid\": \"e3\", \"key\": \"scan\","
		  " \"data_url\": \"https://h/file?name=x.png\","
		  " \"thumbnail_url\": \"https://h/thumb?x=y.gif\","
		  " \"metadata\": {\"format\": \"jpeg\"}}",
		  ".jpg", ".jpg" },
		{ ITEM_KIND_ITEM,
		  "{\"uid\": \"e4\", \"key\": \".hidden\","
		  " \"metadata\": {\"format\": \"image/png\"}}",
		  ".png", ".png" },
		{ ITEM_KIND_ITEM, "{\"uid\": \"e5\", \"key\": \"noext\"}", "",
		  "" },
		{ ITEM_KIND_ITEM,
		  "{\"uid\": \"e6\", \"key\": \"clip.mp4\","
		  " \"url\": \"https://h/clip\","
		  " \"video_thumbnail\": \"https://h/clip_thumb\"}",
		  ".mp4", ".mp4" },
		{ ITEM_KIND_ITEM,
		  "{\"uid\": \"e7\", \"key\": \"a.we-bp\","
		  " \"url\": \"https://h.example.com?f=a.png\","
		  " \"metadata\": {\"format\": \"x/y\"}}",
		  "", "" },
		{ ITEM_KIND_ITEM,
		  "{\"uid\": \"e8\", \"key\": \"dir/photo.JPG\"}", ".JPG",
		  ".JPG" },
		{ ITEM_KIND_SEQUENCE,
		  "{\"uid\": \"e9\", \"key\": \"drive.mcap\","
		  " \"featured_image\": \"https://h/f/img.png?sig=1\"}",
		  ".png", "" },
		{ ITEM_KIND_SEQUENCE,
		  "{\"uid\": \"e10\", \"key\": \"drive.mcap\","
		  " \"featured_image\": \"https://h/f/img\"}",
		  ".mcap", "" },
		{ ITEM_KIND_SEQUENCE,
		  "{\"uid\": \"e11\", \"key\": \"drive\","
		  " \"featured_image\": \"https://h/f/img\","
		  " \"metadata\": {\"format\": \"JPEG\"}}",
		  ".jpg", "" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *body = cases[i].body;
		struct item *it =
			item_json_decode(body, strlen(body), cases[i].kind);

		CHECK(it != NULL);
		if (!it)
			continue;
		if (strcmp(it->data_ext, cases[i].data_ext) != 0)
			fprintf(stderr, "  case %zu: data_ext \"%s\"\n", i,
				it->data_ext);
		CHECK(strcmp(it->data_ext, cases[i].data_ext) == 0);
		if (cases[i].kind == ITEM_KIND_ITEM) {
			if (strcmp(it->thumb_ext, cases[i].thumb_ext) != 0)
				fprintf(stderr,
					"  case %zu: thumb_ext \"%s\"\n", i,
					it->thumb_ext);
			CHECK(strcmp(it->thumb_ext, cases[i].thumb_ext) == 0);
		}
		item_unref(it);
	}
}

/* Bodies that are not one object give NULL. */
static void test_object_bad(void)
{
	static const char *const bodies[] = {
		"",
		"not json",
		"[]",
		"[{\"uid\": \"x\"}]",
		"null",
		"\"uid\"",
		"7",
		"{}",
		"{\"uid\": 5}",
		"{\"uid\": \"\"}",
		"{\"uid\": null}",
		"{\"uid\": [\"x\"]}",
		"{\"key\": \"a.png\"}",
		"{\"uid\": \"x\", \"key\": \"a",
		"{\"next\": null, \"results\": [{\"uid\": \"x\"}]}",
	};
	size_t i;

	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct item *it = parse_item(bodies[i]);

		if (it)
			fprintf(stderr, "  body %s parsed\n", bodies[i]);
		CHECK(it == NULL);
		item_unref(it);
	}
	/* only @len bytes count */
	CHECK(item_json_decode(documented_item, sizeof(documented_item) / 2,
			       ITEM_KIND_ITEM) == NULL);
}

/* Parse @body as a page into @list, with fresh @cursor and @n_bad. */
static int parse_page(const char *body, enum item_kind kind,
		      struct item_list *list, char **cursor, size_t *n_bad)
{
	*n_bad = 0;
	*cursor = (char *)"poison";
	return item_json_decode_page(body, strlen(body), kind, list, cursor,
				     n_bad);
}

/* Both dialects in one page, item by item, and "next": null. */
static void test_page_mixed(void)
{
	char body[2048], *cursor;
	struct item_list list = { 0 };
	cJSON *want;
	size_t n_bad;
	int err;

	snprintf(body, sizeof(body),
		 "{\"next\": null, \"previous\": null, \"results\": [%s, %s]}",
		 documented_item, sdk_item);
	err = parse_page(body, ITEM_KIND_ITEM, &list, &cursor, &n_bad);
	CHECK(err == 0);
	CHECK(cursor == NULL);
	CHECK(n_bad == 0);
	CHECK(list.n == 2);
	if (list.n == 2) {
		CHECK_STR(list.v[0]->uid, "d-0001");
		CHECK_STR(list.v[0]->status, "completed");
		CHECK_STR(list.v[0]->data_url,
			  "https://s3.example/b/cat.png?X-Amz-Signature=a");
		CHECK(list.v[0]->size == 12345);
		CHECK_STR(list.v[1]->uid, "s-0002");
		CHECK(list.v[1]->status == NULL);
		CHECK_STR(list.v[1]->data_url,
			  "https://cdn.example/x/dog.jpeg?token=1");
		CHECK_STR(list.v[1]->thumb_url,
			  "https://cdn.example/t/dog.webp");
		CHECK(list.v[1]->size == -1);
		want = cJSON_Parse(body);
		CHECK(json_matches(
			pretty_text(list.v[0]), pretty_len(list.v[0]),
			cJSON_GetArrayItem(cJSON_GetObjectItem(want, "results"),
					   0)));
		CHECK(json_matches(
			pretty_text(list.v[1]), pretty_len(list.v[1]),
			cJSON_GetArrayItem(cJSON_GetObjectItem(want, "results"),
					   1)));
		cJSON_Delete(want);
	}
	item_list_clear(&list);
	CHECK(list.v == NULL && list.n == 0 && list.cap == 0);

	/* no "next" at all also ends the listing */
	err = parse_page("{\"results\": []}", ITEM_KIND_ITEM, &list, &cursor,
			 &n_bad);
	CHECK(err == 0 && cursor == NULL && list.n == 0);
	item_list_clear(&list);
}

/* Each item keeps the text the server sent, minus the whitespace between
 * tokens: strings with spaces, quotes, brackets and escapes stay intact and
 * numbers keep their spelling. An escaped key that spells "results" leaves
 * the work to cJSON, whose first "results" wins either way. */
static void test_page_raw_text(void)
{
	static const char body[] =
		"{ \"count\" : 2 , \"next\" : null,\n"
		"  \"results\" : [ {\"uid\": \"r1\", \"key\": \"a b {c} [d],"
		" \\\"e\\\" \\\\\", \"n\": 1.50e0 } ,\n"
		"\t{ \"uid\" : \"r2\", \"x\": [ 1 , { } , [ ] , true , null ] } ] ,\n"
		"  \"results\": [{\"uid\": \"ignored\"}] }";
	static const char escaped[] =
		"{\"res\\u0075lts\": [{ \"uid\": \"first\" }],"
		" \"results\": [{\"uid\": \"second\"}], \"next\": null}";
	static const char nul_key[] =
		"{\"results\0x\": [{\"uid\": \"evil1\"}],"
		" \"results\": [{\"uid\": \"a\", \"secret\": 1}]}";
	struct item_list list = { 0 };
	struct item *it;
	char *cursor;
	size_t n_bad;

	CHECK(parse_page(body, ITEM_KIND_ITEM, &list, &cursor, &n_bad) == 0);
	CHECK(list.n == 2);
	if (list.n == 2) {
		CHECK_STR(list.v[0]->json,
			  "{\"uid\":\"r1\",\"key\":\"a b {c} [d], \\\"e\\\" "
			  "\\\\\",\"n\":1.50e0}");
		CHECK(list.v[0]->json_len == strlen(list.v[0]->json));
		CHECK_STR(list.v[0]->key, "a b {c} [d], \"e\" \\");
		CHECK_STR(list.v[1]->json,
			  "{\"uid\":\"r2\",\"x\":[1,{},[],true,null]}");
		CHECK(strstr(pretty_text(list.v[0]), "\"n\": 1.5\n") != NULL);
	}
	item_list_clear(&list);

	CHECK(parse_page(escaped, ITEM_KIND_ITEM, &list, &cursor, &n_bad) == 0);
	CHECK(list.n == 1);
	if (list.n == 1) {
		CHECK_STR(list.v[0]->uid, "first");
		CHECK_STR(list.v[0]->json, "{\"uid\":\"first\"}");
	}
	item_list_clear(&list);

	/* cJSON skips every byte up to the space between tokens: so does
	 * the text kept */
	CHECK(parse_page("{\"results\":[\x01{\"uid\":\x1f\"c1\"}\x02]}",
			 ITEM_KIND_ITEM, &list, &cursor, &n_bad) == 0);
	CHECK(list.n == 1 && strcmp(list.v[0]->json, "{\"uid\":\"c1\"}") == 0);
	item_list_clear(&list);

	/* one object: its own text, never what follows it */
	it = parse_item(" \n{ \"uid\" : \"o1\" }\n");
	CHECK(it && strcmp(it->json, "{\"uid\":\"o1\"}") == 0);
	item_unref(it);
	it = parse_item("{\"uid\": \"o2\"} {\"uid\": \"o3\"}");
	/* cJSON takes the first value and ignores the rest */
	CHECK(it && strcmp(it->json, "{\"uid\":\"o2\"}") == 0);
	item_unref(it);

	/* a raw NUL is not JSON: cJSON would end the key "results\0x" at it
	 * and take the wrong array; the page is refused whole */
	CHECK(item_json_decode_page(nul_key, sizeof(nul_key) - 1,
				    ITEM_KIND_ITEM, &list, &cursor,
				    &n_bad) == -EIO);
	CHECK(list.n == 0 && cursor == NULL);
	CHECK(item_json_decode("{\"uid\": \"a\0b\"}", 14, ITEM_KIND_ITEM) ==
	      NULL);

	/* an escaped NUL would cut a string short too ("a\u0000b" passing for
	 * "a"): the items holding one are bad, the others stay; an escaped
	 * backslash before "u0000" is no such escape */
	CHECK(parse_page("{\"results\": [{\"uid\": \"a\"}, "
			 "{\"uid\": \"a\\u0000b\"}, "
			 "{\"uid\": \"c\", \"m\": [\"x\\u0000\"]}, "
			 "{\"uid\": \"d\", \"k\": \"\\\\u0000\"}]}",
			 ITEM_KIND_ITEM, &list, &cursor, &n_bad) == 0);
	CHECK(list.n == 2 && n_bad == 2);
	if (list.n == 2) {
		CHECK_STR(list.v[0]->uid, "a");
		CHECK_STR(list.v[1]->uid, "d");
		CHECK_STR(list.v[1]->json,
			  "{\"uid\":\"d\",\"k\":\"\\\\u0000\"}");
	}
	item_list_clear(&list);
	/* without the spans to tell which item holds it, the page is bad */
	CHECK(parse_page("{\"res\\u0075lts\": [{\"uid\": \"a\\u0000b\"}]}",
			 ITEM_KIND_ITEM, &list, &cursor, &n_bad) == -EIO);
	CHECK(list.n == 0);
	/* nor outside the results, where it could cut the cursor short */
	CHECK(parse_page("{\"next\": \"http://h/?cursor=ab\\u0000cd\", "
			 "\"results\": [{\"uid\": \"a\"}]}",
			 ITEM_KIND_ITEM, &list, &cursor, &n_bad) == -EIO);
	CHECK(list.n == 0 && cursor == NULL);
	CHECK(parse_page("{\"results\": [{\"uid\": \"a\"}], "
			 "\"x\": \"\\u0000\"}",
			 ITEM_KIND_ITEM, &list, &cursor, &n_bad) == -EIO);
	CHECK(list.n == 0);
	CHECK(parse_page("{\"next\": \"http://h/?cursor=ab\\\\u0000\", "
			 "\"results\": []}",
			 ITEM_KIND_ITEM, &list, &cursor, &n_bad) == 0);
	CHECK(cursor && strcmp(cursor, "ab\\u0000") == 0);
	free(cursor);
	cursor = NULL;
	CHECK(parse_item("{\"uid\": \"a\\u0000b\"}") == NULL);
	it = parse_item("{\"uid\": \"e\", \"k\": \"\\\\u0000\"}");
	CHECK(it && strcmp(it->uid, "e") == 0);
	item_unref(it);
	item_list_clear(&list);
}

/* Entries that are not objects or lack a string uid are skipped, counted. */
static void test_page_bad_entries(void)
{
	static const char body[] =
		"{\"next\": null, \"results\": [{\"key\": \"a.png\"},"
		" {\"uid\": 5}, 7, \"x\", null, [], {\"uid\": \"\"},"
		" {\"uid\": \"ok-1\", \"key\": \"a.png\"}, true,"
		" {\"uid\": {\"v\": \"u\"}}, {\"uid\": \"ok-2\"}]}";
	struct item_list list = { 0 };
	size_t n_bad;
	char *cursor;
	int err;

	err = parse_page(body, ITEM_KIND_ITEM, &list, &cursor, &n_bad);
	CHECK(err == 0);
	CHECK(cursor == NULL);
	CHECK(n_bad == 9);
	CHECK(list.n == 2);
	if (list.n == 2) {
		CHECK_STR(list.v[0]->uid, "ok-1");
		CHECK_STR(list.v[1]->uid, "ok-2");
	}
	item_list_clear(&list);
}

/* The cursor is the raw query value of "next", whatever its host. */
static void test_page_cursor(void)
{
	static const struct {
		const char *next, *cursor;
	} cases[] = {
		{ "http://evil.example/x/"
		  "?limit=5&cursor=abc%3D%3D&ordering=key",
		  "abc%3D%3D" },
		{ "https://api.avala.ai/api/v1/datasets/o/s/items/?cursor=cD0x",
		  "cD0x" },
		{ "https://h/items/?xcursor=no&cursor=yes", "yes" },
		{ "https://h/items/?limit=5&cursor=a%2Bb%2F#frag", "a%2Bb%2F" },
		{ "https://h/items/?limit=5&cursor=c&cursor=d", "c" },
	};
	static const char *const no_cursor[] = {
		"https://h/items/?limit=5",
		"https://h/items/?xcursor=abc",
		"https://h/items/",
		"https://h/items/#cursor=abc",
		"",
	};
	struct item_list list = { 0 };
	size_t i, n_bad;
	char body[512], *cursor;
	int err;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(body, sizeof(body),
			 "{\"next\": \"%s\", \"previous\": null,"
			 " \"results\": [{\"uid\": \"c%zu\"}]}",
			 cases[i].next, i);
		err = parse_page(body, ITEM_KIND_ITEM, &list, &cursor, &n_bad);
		CHECK(err == 0);
		CHECK_STR(cursor, cases[i].cursor);
		free(err ? NULL : cursor);
	}
	CHECK(list.n == sizeof(cases) / sizeof(cases[0]));
	item_list_clear(&list);

	for (i = 0; i < sizeof(no_cursor) / sizeof(no_cursor[0]); i++) {
		snprintf(body, sizeof(body),
			 "{\"next\": \"%s\", \"results\": [{\"uid\": \"n\"}]}",
			 no_cursor[i]);
		err = parse_page(body, ITEM_KIND_ITEM, &list, &cursor, &n_bad);
		if (err != -EIO)
			fprintf(stderr, "  next \"%s\": %d\n", no_cursor[i],
				err);
		CHECK(err == -EIO);
		CHECK(cursor == NULL);
		CHECK(list.n == 0);
		item_list_clear(&list);
	}
}

/* Bodies that are not a page are -EIO and leave the list alone. */
static void test_page_not_page(void)
{
	static const char *const bodies[] = {
		"",
		"not json",
		"<html>502 Bad Gateway</html>",
		"[{\"uid\": \"x\"}]",
		"null",
		"{}",
		"{\"detail\": \"Not found.\"}",
		"{\"next\": null}",
		"{\"next\": null, \"results\": {\"uid\": \"x\"}}",
		"{\"next\": null, \"results\": \"x\"}",
		"{\"next\": null, \"results\": null}",
		"{\"next\": 5, \"results\": []}",
		"{\"next\": [\"https://h/?cursor=a\"], \"results\": []}",
		"{\"next\": null, \"results\": [{\"uid\": \"x\"}",
		"{\"next\": null, \"results\": [{\"uid\": \"x\"}]",
		"{\"next\": null, \"results\": [{\"uid\": \"x\", \"key\": \"a",
	};
	struct item_list list = { 0 };
	struct item *keep = item_new(ITEM_KIND_ITEM);
	size_t i, n_bad;
	char *cursor;
	int err;

	CHECK(keep != NULL);
	list.v = calloc(1, sizeof(*list.v));
	CHECK(list.v != NULL);
	if (!keep || !list.v) {
		item_unref(keep);
		free(list.v);
		return;
	}
	list.v[0] = keep;
	list.n = list.cap = 1;
	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		err = parse_page(bodies[i], ITEM_KIND_ITEM, &list, &cursor,
				 &n_bad);
		if (err != -EIO)
			fprintf(stderr, "  body %s: %d\n", bodies[i], err);
		CHECK(err == -EIO);
		CHECK(cursor == NULL);
		CHECK(list.n == 1 && list.v[0] == keep);
	}
	/* a whole page cut short by @len */
	{
		static const char page[] =
			"{\"next\": null, \"results\": [{\"uid\": \"x\"}]}";

		cursor = NULL;
		n_bad = 0;
		err = item_json_decode_page(page, sizeof(page) - 3,
					    ITEM_KIND_ITEM, &list, &cursor,
					    &n_bad);
		CHECK(err == -EIO && cursor == NULL && list.n == 1);
	}
	item_list_clear(&list);
}

/* Pages append to the list, past its first allocation. */
static void test_page_append(void)
{
	struct item_list list = { 0 };
	size_t i, n_bad, len = 0, cap = 300 * 64;
	char *body = malloc(cap), *cursor;
	int err, ok = 1;

	if (!body)
		abort();
	len += snprintf(body + len, cap - len,
			"{\"next\": \"https://h/?cursor=p2\", \"results\": [");
	for (i = 0; i < 300; i++)
		len += snprintf(body + len, cap - len,
				"%s{\"uid\": \"u%03zu\", \"key\": \"k.png\"}",
				i ? ", " : "", i);
	snprintf(body + len, cap - len, "]}");
	err = parse_page(body, ITEM_KIND_ITEM, &list, &cursor, &n_bad);
	CHECK(err == 0 && list.n == 300 && n_bad == 0);
	CHECK_STR(cursor, "p2");
	free(err ? NULL : cursor);
	err = parse_page(body, ITEM_KIND_ITEM, &list, &cursor, &n_bad);
	CHECK(err == 0 && list.n == 600);
	free(err ? NULL : cursor);
	for (i = 0; i < list.n; i++) {
		char uid[16];

		snprintf(uid, sizeof(uid), "u%03zu", i % 300);
		ok &= strcmp(list.v[i]->uid, uid) == 0;
	}
	CHECK(ok);
	item_list_clear(&list);
	free(body);
}

static const char sequence[] =
	"{\"uid\": \"seq-1\", \"key\": \"drive_01\","
	" \"status\": \"labeling_4d\","
	" \"featured_image\": \"https://cdn.example/f/img.jpeg?sig=1\","
	" \"number_of_frames\": 10, \"metadata\": {\"size\": 5},"
	" \"views\": ["
	"{\"key\": \"front\", \"load\": {\"x\": 1}, \"metrics\": {\"n\": 2}},"
	" {\"key\": \"cam/rear\", \"metrics\": {}},"
	" {\"key\": \"front\"},"
	" {\"load\": 3},"
	" {\"key\": \"\"},"
	" 5,"
	" {\"key\": 9},"
	" {\"key\": \"..\"},"
	" {\"key\": \"view1\"}"
	"]}";

static void test_sequence(void)
{
	static const char *const names[] = {
		"front~view0.json", "cam%2Frear.json", "front~view2.json",
		"view3.json",	    "view4.json",      "view5.json",
		"view6.json",	    "...json",	       NULL,
	};
	struct item *it = parse_seq(sequence);
	cJSON *want = cJSON_Parse(sequence);
	const cJSON *views = cJSON_GetObjectItem(want, "views");
	size_t i, j;
	int json_ok = 1, distinct = 1;

	CHECK(it != NULL);
	if (!it) {
		cJSON_Delete(want);
		return;
	}
	CHECK(it->kind == ITEM_KIND_SEQUENCE);
	CHECK_STR(it->uid, "seq-1");
	CHECK_STR(it->key, "drive_01");
	CHECK_STR(it->status, "labeling_4d");
	CHECK_STR(it->data_url, "https://cdn.example/f/img.jpeg?sig=1");
	CHECK(it->thumb_url == NULL);
	CHECK_STR(it->data_ext, ".jpeg");
	CHECK(it->size == -1);
	CHECK(metadata_is(it, sequence));
	CHECK(it->n_views == 9);
	if (it->n_views != 9) {
		item_unref(it);
		cJSON_Delete(want);
		return;
	}
	for (i = 0; names[i]; i++)
		CHECK_STR(it->views[i].name, names[i]);
	for (i = 0; i < it->n_views; i++) {
		json_ok &= json_matches(it->views[i].json,
					it->views[i].json_len,
					cJSON_GetArrayItem(views, i));
		for (j = 0; j < i; j++)
			distinct &= strcmp(it->views[i].name,
					   it->views[j].name) != 0;
	}
	CHECK(json_ok);
	CHECK(distinct);
	/* "view1" as a key and view 1's stand-in uid do not clash */
	CHECK(strcmp(it->views[8].name, "view1.json") == 0);
	item_unref(it);
	cJSON_Delete(want);
}

/* Many views with the same key, in a page of sequences. */
static void test_sequence_dup_views(void)
{
	struct item_list list = { 0 };
	size_t i, j, n_bad, len = 0;
	char body[8192], *cursor;
	int err, distinct = 1, shaped = 1;

	len += snprintf(body + len, sizeof(body) - len,
			"{\"next\": null, \"results\": ["
			"{\"uid\": \"s1\", \"views\": [");
	for (i = 0; i < 40; i++)
		len += snprintf(body + len, sizeof(body) - len,
				"%s{\"key\": \"%s\"}", i ? ", " : "",
				i % 2 ? "cam/a" : "cam");
	snprintf(body + len, sizeof(body) - len,
		 "]}, {\"uid\": \"s2\", \"views\": []}]}");
	err = parse_page(body, ITEM_KIND_SEQUENCE, &list, &cursor, &n_bad);
	CHECK(err == 0 && list.n == 2 && n_bad == 0 && cursor == NULL);
	if (list.n != 2) {
		item_list_clear(&list);
		return;
	}
	CHECK(list.v[0]->n_views == 40);
	CHECK(list.v[1]->n_views == 0);
	for (i = 0; i < list.v[0]->n_views; i++) {
		const char *name = list.v[0]->views[i].name;

		shaped &= !strchr(name, '/') && strlen(name) <= NAMES_MAX &&
			  strlen(name) > 5 &&
			  strcmp(name + strlen(name) - 5, ".json") == 0;
		for (j = 0; j < i; j++)
			distinct &= strcmp(name, list.v[0]->views[j].name) != 0;
	}
	CHECK(shaped);
	CHECK(distinct);
	CHECK_STR(list.v[0]->views[0].name, "cam~view0.json");
	CHECK_STR(list.v[0]->views[1].name, "cam%2Fa~view1.json");
	item_list_clear(&list);
}

/* RFC 3339 times as Django and others write them; anything else, a time
 * without its zone included, is refused, never guessed. */
static void test_time(void)
{
	static const struct {
		const char *s;
		long long sec; /* -1: refused */
		long nsec;
	} cases[] = {
		{ "1970-01-01T00:00:00Z", 0, 0 },
		{ "2024-05-01T12:34:56Z", 1714566896, 0 },
		{ "2024-05-01T12:34:56.789012Z", 1714566896, 789012000 },
		{ "2024-05-01t12:34:56.5z", 1714566896, 500000000 },
		{ "2024-05-01 12:34:56+00:00", 1714566896, 0 },
		{ "2024-05-01T12:34:56.123456789123Z", 1714566896, 123456789 },
		{ "2024-05-01T14:34:56+02:00", 1714566896, 0 },
		{ "2024-05-01T07:04:56-0530", 1714566896, 0 },
		{ "2024-05-01T13:34:56+01", 1714566896, 0 },
		{ "2024-02-29T00:00:00Z", 1709164800, 0 },
		{ "2016-12-31T23:59:60Z", 1483228800, 0 },
		{ "2017-01-01T05:29:60+05:30", 1483228800, 0 },
		{ "2024-05-01T12:34:60Z", -1, 0 },
		{ "2024-05-01T12:34:56", -1, 0 },
		{ "2024-05-01", -1, 0 },
		{ "2024-05-01T12:34:56+02:", -1, 0 },
		{ "2024-05-01T12:34:56+02:00:", -1, 0 },
		{ "2024-05-01T12:34:56+0", -1, 0 },
		{ "2023-02-29T00:00:00Z", -1, 0 },
		{ "2024-13-01T00:00:00Z", -1, 0 },
		{ "2024-04-31T00:00:00Z", -1, 0 },
		{ "2024-05-01T24:00:00Z", -1, 0 },
		{ "2024-05-01T12:60:00Z", -1, 0 },
		{ "2024-05-01T12:34:56.Z", -1, 0 },
		{ "2024-05-01T12:34:56+2", -1, 0 },
		{ "2024-05-01T12:34:56+02:7", -1, 0 },
		{ "2024-05-01T12:34:56+02:60", -1, 0 },
		{ "2024-05-01T12:34:56+027", -1, 0 },
		{ "2024-05-01T12:34:56+24:00", -1, 0 },
		{ "2024-05-01T12:34:56Zjunk", -1, 0 },
		{ "2024-05-01T12:34", -1, 0 },
		{ "2024-5-1", -1, 0 },
		{ "0000-01-01", -1, 0 },
		{ "yesterday", -1, 0 },
		{ "", -1, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct timespec ts = { -7, -7 };
		int err = item_json_parse_time(cases[i].s, &ts);

		if (cases[i].sec < 0) {
			CHECK(err == -EINVAL);
			if (err != -EINVAL)
				fprintf(stderr, "  accepted %s\n", cases[i].s);
		} else {
			CHECK(err == 0 && ts.tv_sec == cases[i].sec &&
			      ts.tv_nsec == cases[i].nsec);
			if (err || ts.tv_sec != cases[i].sec)
				fprintf(stderr, "  %s: %d %lld.%09ld\n",
					cases[i].s, err, (long long)ts.tv_sec,
					ts.tv_nsec);
		}
	}
	CHECK(item_json_parse_time(NULL, &(struct timespec){ 0 }) == -EINVAL);
}

/* An object's time is its updated_at, else its created_at; one of the wrong
 * type or spelling is passed over, never fatal. */
static void test_item_time(void)
{
	struct item *it;

	it = parse_item("{\"uid\": \"t1\", \"created_at\": "
			"\"2024-01-01T00:00:00Z\", \"updated_at\": "
			"\"2024-05-01T12:34:56.25Z\"}");
	CHECK(it && it->has_mtime && it->mtime.tv_sec == 1714566896 &&
	      it->mtime.tv_nsec == 250000000);
	item_unref(it);
	it = parse_item("{\"uid\": \"t2\", \"created_at\": "
			"\"2024-01-01T00:00:00Z\", \"updated_at\": 17}");
	CHECK(it && it->has_mtime && it->mtime.tv_sec == 1704067200);
	item_unref(it);
	it = parse_item("{\"uid\": \"t3\", \"created_at\": \"soon\", "
			"\"updated_at\": null}");
	CHECK(it && !it->has_mtime);
	item_unref(it);
	it = parse_seq("{\"uid\": \"s1\", \"created_at\": "
		       "\"2024-01-01T01:00:00+01:00\"}");
	CHECK(it && it->has_mtime && it->mtime.tv_sec == 1704067200);
	item_unref(it);
}

/* Ill-formed escapes in strings become U+FFFD; the rest of the text, and
 * what is outside strings, is left as it is. */
static void test_json_repair(void)
{
	static const struct {
		const char *in, *out; /* out NULL: nothing to repair */
	} cases[] = {
		{ "\"a\\ud800b\"", "\"a" FFFD "b\"" },
		{ "\"\\udc00x\"", "\"" FFFD "x\"" },
		{ "\"\\ud800\\ud83d\\ude00\"", "\"" FFFD "\\ud83d\\ude00\"" },
		{ "\"\\ud800\\ud800\"", "\"" FFFD FFFD "\"" },
		{ "\"a\\ud800\"", "\"a" FFFD "\"" },
		{ "\"a\\ud800", "\"a" FFFD },
		{ "\"\\ud800\\u0041\"", "\"" FFFD "\\u0041\"" },
		{ "\"\\uDBFF\\uDFFF \\uDBFF\"", "\"\\uDBFF\\uDFFF " FFFD "\"" },
		{ "\"\\\\\\ud800\"", "\"\\\\" FFFD "\"" },
		{ "{\"k\\udc00\": \"\\ud800\"}",
		  "{\"k" FFFD "\": \"" FFFD "\"}" },
		{ "\"\\uZZZZ\"", "\"" FFFD "ZZZZ\"" },
		{ "\"\\u12G4\"", "\"" FFFD "G4\"" },
		{ "\"\\u12\"", "\"" FFFD "\"" },
		{ "\"\\u-123\"", "\"" FFFD "-123\"" },
		{ "\"\\q\\x\"", "\"" FFFD "q" FFFD "x\"" },
		{ "\"a\\", NULL },
		{ "\"\\ud83d\\ude00\"", NULL },
		{ "\"\\\\ud800\"", NULL },
		{ "\"\\\\\\\\ud800\"", NULL },
		{ "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u0000\"", NULL },
		{ "[1, \\ud800]", NULL },
		{ "{\"a\": \"x\"} \\ud800", NULL },
		{ "", NULL },
	};
	size_t i, len;
	char *out;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		out = (char *)"poison";
		CHECK(item_json_repair(cases[i].in, strlen(cases[i].in), &out,
				       &len) == 0);
		CHECK_STR(out, cases[i].out);
		CHECK(len == strlen(out ? out : cases[i].in));
		free(out);
	}
}

/* One bad character costs that character: the page parses, every item is
 * listed, and the text kept and metadata.json hold U+FFFD. cJSON alone
 * would refuse the page, or end "a\uZZZZb" at the \u. */
static void test_page_bad_escapes(void)
{
	static const char body[] =
		"{\"next\": null, \"results\": [{\"uid\": \"e1\"}, "
		"{\"uid\": \"e2\", \"key\": \"k\\ud800.png\", "
		"\"metadata\": {\"n\\udc00\": \"a\\uZZZZb\", "
		"\"ok\": \"\\ud83d\\ude00\"}}, {\"uid\": \"e3\"}]}";
	struct item_list list = { 0 };
	struct item *it;
	const char *text;
	cJSON *back;
	size_t n_bad;
	char *cursor;

	CHECK(parse_page(body, ITEM_KIND_ITEM, &list, &cursor, &n_bad) == 0);
	CHECK(list.n == 3 && n_bad == 0 && cursor == NULL);
	if (list.n == 3) {
		it = list.v[1];
		CHECK_STR(it->key, "k" FFFD ".png");
		CHECK_STR(it->data_ext, ".png");
		CHECK_STR(it->json, "{\"uid\":\"e2\",\"key\":\"k" FFFD ".png\","
				    "\"metadata\":{\"n" FFFD "\":\"a" FFFD
				    "ZZZZb\",\"ok\":\"\\ud83d\\ude00\"}}");
		text = pretty_text(it);
		back = text ? cJSON_Parse(text) : NULL;
		CHECK(back != NULL);
		CHECK(text && strstr(text, "\"n" FFFD "\": \"a" FFFD
					   "ZZZZb\"") != NULL);
		CHECK(text && strstr(text, "\xf0\x9f\x98\x80") != NULL);
		cJSON_Delete(back);
	}
	item_list_clear(&list);

	it = parse_item("{\"uid\": \"o\\udc00\", \"key\": \"\\ud800\"}");
	CHECK(it && strcmp(it->uid, "o" FFFD) == 0);
	CHECK(it && strcmp(it->key, FFFD) == 0);
	item_unref(it);

	/* text kept from before (a store) is repaired as it is read */
	it = item_new(ITEM_KIND_ITEM);
	if (it) {
		it->json = strdup("{\"uid\":\"s\",\"k\":\"\\ud800\"}");
		it->json_len = it->json ? strlen(it->json) : 0;
		CHECK_STR(pretty_text(it),
			  "{\n  \"uid\": \"s\",\n  \"k\": \"" FFFD "\"\n}\n");
	}
	item_unref(it);
}

int main(void)
{
	test_time();
	test_item_time();
	test_item_documented();
	test_item_sdk();
	test_item_thumbnail_fallbacks();
	test_item_data_url_precedence();
	test_item_size();
	test_sequence_size();
	test_item_wrong_types();
	test_item_json();
	test_item_invalid_utf8_key();
	test_item_nul_key();
	test_item_ext();
	test_object_bad();
	test_page_mixed();
	test_page_raw_text();
	test_page_bad_entries();
	test_page_cursor();
	test_page_not_page();
	test_page_append();
	test_sequence();
	test_sequence_dup_views();
	test_json_repair();
	test_page_bad_escapes();
	return check_report();
}
