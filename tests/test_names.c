/* Unit tests of src/names.c: escaping, extensions, decoration and the
 * collision rules that give every object a distinct file name (DESIGN §3). */
#include "names.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Whether @n bytes at @s are well-formed UTF-8 (no overlongs, surrogates or
 * code points past U+10FFFF). */
static bool utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		unsigned c = p[i], need, cp, k;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (i + need >= n)
			return false;
		for (k = 1; k <= need; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		i += need + 1;
	}
	return true;
}

/* Whether every '%' in @s starts a whole %XX escape with uppercase hex. */
static bool escapes_whole(const char *s)
{
	for (; *s; s++) {
		if (*s != '%')
			continue;
		if (!isxdigit((unsigned char)s[1]) ||
		    islower((unsigned char)s[1]) ||
		    !isxdigit((unsigned char)s[2]) ||
		    islower((unsigned char)s[2]))
			return false;
		s += 2;
	}
	return true;
}

static bool ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);

	return n >= t && memcmp(s + n - t, tail, t) == 0;
}

/* Check names_escape() of @len bytes at @key against @want. */
#define CHECK_ESCAPE(key, len, want)                                          \
	do {                                                                  \
		char *got_ = names_escape(key, len);                          \
		check_str(__FILE__, __LINE__, "names_escape(" #key ")", got_, \
			  want);                                              \
		free(got_);                                                   \
	} while (0)

static void test_escape_unchanged(void)
{
	CHECK_ESCAPE("cat.png", 7, "cat.png");
	CHECK_ESCAPE("ñandú.png", strlen("ñandú.png"), "ñandú.png");
	CHECK_ESCAPE("...", 3, "...");
	CHECK_ESCAPE(".hidden", 7, ".hidden");
	CHECK_ESCAPE("a b~c", 5, "a b~c");
	CHECK_ESCAPE("", 0, "");
	/* only @len bytes count */
	CHECK_ESCAPE("abc/def", 3, "abc");
	CHECK_ESCAPE("..x", 2, "%2E%2E");
}

static void test_escape_special(void)
{
	CHECK_ESCAPE("a/b", 3, "a%2Fb");
	CHECK_ESCAPE("/", 1, "%2F");
	CHECK_ESCAPE("100%", 4, "100%25");
	CHECK_ESCAPE("%2F", 3, "%252F");
	CHECK_ESCAPE("%2E", 3, "%252E");
	CHECK_ESCAPE("a\0b", 3, "a%00b");
	CHECK_ESCAPE("\t\n\r", 3, "%09%0A%0D");
	CHECK_ESCAPE("\x01\x1b\x1f", 3, "%01%1B%1F");
	CHECK_ESCAPE("del\x7f", 4, "del%7F");
	CHECK_ESCAPE(" ", 1, " ");
	CHECK_ESCAPE(".", 1, "%2E");
	CHECK_ESCAPE("..", 2, "%2E%2E");
	CHECK_ESCAPE("./", 2, ".%2F");
	CHECK_ESCAPE("../x", 4, "..%2Fx");
}

static void test_escape_invalid_utf8(void)
{
	static const char bad[] = "\xff\xfe\xc3(\x80\xe2\x82z.png";
	char *got = names_escape(bad, sizeof(bad) - 1);

	CHECK(got != NULL);
	CHECK(got && strlen(got) == sizeof(bad) - 1);
	CHECK(got && memcmp(got, bad, sizeof(bad) - 1) == 0);
	free(got);
	/* a control byte inside invalid UTF-8 is still escaped */
	CHECK_ESCAPE("\xc3\x01", 2, "\xc3%01");
}

/* Check the extension the call @fn writes into ext_ against @want, and that
 * it returns its length. */
#define CHECK_EXT(fn, want)                                     \
	do {                                                    \
		char ext_[NAMES_EXT_MAX];                       \
		size_t n_ = fn;                                 \
		check_str(__FILE__, __LINE__, #fn, ext_, want); \
		CHECK(n_ == strlen(want));                      \
	} while (0)

#define EXT(s, want) CHECK_EXT(names_ext(s, strlen(s), ext_), want)
#define URL_EXT(s, want) CHECK_EXT(names_url_ext(s, ext_), want)
#define FMT_EXT(s, want) CHECK_EXT(names_format_ext(s, ext_), want)

static void test_ext(void)
{
	char ext[NAMES_EXT_MAX];

	EXT("photo.png", ".png");
	EXT("photo.JPG", ".JPG");
	EXT("archive.tar.gz", ".gz");
	EXT("dir/sub/file.tiff", ".tiff");
	EXT("a.abcdefghij", ".abcdefghij");
	EXT("a.abcdefghijk", "");
	EXT("a.mp4", ".mp4");
	EXT(".bashrc", "");
	EXT("dir/.hidden", "");
	EXT("..", "");
	EXT("...", "");
	EXT("a.", "");
	EXT("noext", "");
	EXT("", "");
	EXT("dir.d/file", "");
	EXT("x.png/", "");
	EXT("a.we-bp", "");
	EXT("a.p g", "");
	EXT("a.pñg", "");
	EXT("a.%2F", "");
	EXT("ñandú.png", ".png");
	/* only @len bytes count */
	CHECK(names_ext("a.png.txt", 5, ext) == 4 && strcmp(ext, ".png") == 0);
}

static void test_url_ext(void)
{
	URL_EXT("https://s3.example/bucket/a.jpg", ".jpg");
	URL_EXT("https://s3.example/bucket/a.jpg?X-Amz-Signature=x.png",
		".jpg");
	URL_EXT("https://s3.example/b/a.png#frag.gif", ".png");
	URL_EXT("https://s3.example/b/file?name=x.png", "");
	URL_EXT("https://s3.example/b/file#x.png", "");
	URL_EXT("https://s3.example/dir.v2/file?x=y.jpg", "");
	URL_EXT("https://cdn.example.com", "");
	URL_EXT("https://cdn.example.com?f=a.png", "");
	URL_EXT("https://cdn.example.com/", "");
	URL_EXT("https://h/.env", "");
	URL_EXT("https://h/a.we-bp", "");
	URL_EXT("https://h/v/clip.MP4?a=1&b=2", ".MP4");
	URL_EXT("/local/path/v.mp4", ".mp4");
	URL_EXT("", "");
}

static void test_format_ext(void)
{
	FMT_EXT("jpeg", ".jpg");
	FMT_EXT("JPEG", ".jpg");
	FMT_EXT("jpg", ".jpg");
	FMT_EXT("png", ".png");
	FMT_EXT("PNG", ".png");
	FMT_EXT("tiff", ".tif");
	FMT_EXT("image/jpeg", ".jpg");
	FMT_EXT("image/png", ".png");
	FMT_EXT("video/mp4", ".mp4");
	FMT_EXT("webp", ".webp");
	FMT_EXT("WebP", ".webp");
	FMT_EXT(NULL, "");
	FMT_EXT("", "");
	FMT_EXT("x/y", "");
	FMT_EXT("bad fmt", "");
	FMT_EXT(".png", "");
	FMT_EXT("abcdefghijk", "");
	FMT_EXT("abcdefghij", ".abcdefghij");
}

static void test_decorate_short(void)
{
	char *s;

	s = names_decorate("cat.png", "0123456789abcdef", false, 0);
	CHECK_STR(s, "cat~01234567.png");
	free(s);
	s = names_decorate("cat.png", "0123456789abcdef", true, 0);
	CHECK_STR(s, "cat~0123456789abcdef.png");
	free(s);
	s = names_decorate("README", "0123456789abcdef", false, 0);
	CHECK_STR(s, "README~01234567");
	free(s);
	s = names_decorate(".bashrc", "0123456789abcdef", false, 0);
	CHECK_STR(s, ".bashrc~01234567");
	free(s);
	s = names_decorate("a.tar.gz", "abc", false, 0);
	CHECK_STR(s, "a.tar~abc.gz");
	free(s);
	/* the uid is escaped like a key */
	s = names_decorate("x.png", "a/b%c/d/e", false, 0);
	CHECK_STR(s, "x~a%2Fb%25c%2Fd%2F.png");
	free(s);
}

/* A key of @lead ASCII bytes then 'é' up to @len bytes in all, then @ext. */
static char *e_acute_key(size_t lead, size_t len, const char *ext)
{
	size_t i, elen = strlen(ext);
	char *k = malloc(len + elen + 1);

	if (!k)
		abort();
	for (i = 0; i < lead; i++)
		k[i] = 'a';
	for (; i + 1 < len; i += 2) {
		k[i] = '\xc3';
		k[i + 1] = '\xa9';
	}
	for (; i < len; i++)
		k[i] = 'b';
	memcpy(k + i, ext, elen + 1);
	return k;
}

/* A 300-byte key cut on each UTF-8 alignment keeps a valid prefix and its
 * extension. */
static void test_decorate_long_utf8(void)
{
	static const char uid[] = "fedcba9876543210";
	size_t lead;
	int bad_len = 0, bad_utf8 = 0, bad_tail = 0, bad_prefix = 0;

	for (lead = 0; lead < 4; lead++) {
		char *key = e_acute_key(lead, 296, ".png");
		char *name = names_escape(key, strlen(key));
		char *s = name ? names_decorate(name, uid, false, 0) : NULL;
		size_t n = s ? strlen(s) : 0, stem;

		CHECK(strlen(key) == 300);
		CHECK(s != NULL);
		if (!s) {
			free(key);
			free(name);
			continue;
		}
		stem = n - strlen("~fedcba98.png");
		bad_len += n > NAMES_MAX || n < NAMES_MAX - 2;
		bad_utf8 += !utf8_valid(s, n);
		bad_tail += !ends_with(s, "~fedcba98.png");
		bad_prefix += memcmp(s, key, stem) != 0;
		free(s);
		free(name);
		free(key);
	}
	CHECK(bad_len == 0);
	CHECK(bad_utf8 == 0);
	CHECK(bad_tail == 0);
	CHECK(bad_prefix == 0);
}

/* A long escaped key is never cut inside a %XX escape. */
static void test_decorate_long_escapes(void)
{
	size_t lead, i;
	int bad_len = 0, bad_esc = 0, bad_tail = 0;

	for (lead = 0; lead < 6; lead++) {
		char key[400], *name, *s;
		size_t n = 0;

		for (i = 0; i < lead; i++)
			key[n++] = 'a';
		for (i = 0; i < 100; i++)
			key[n++] = i % 3 == 2 ? '%' : '/';
		memcpy(key + n, ".jpg", 4);
		n += 4;
		name = names_escape(key, n);
		s = name ? names_decorate(name, "0123456789", false, 0) : NULL;
		CHECK(s != NULL);
		if (s) {
			bad_len += strlen(s) > NAMES_MAX;
			bad_esc += !escapes_whole(s);
			bad_tail += !ends_with(s, "~01234567.jpg");
		}
		free(s);
		free(name);
	}
	CHECK(bad_len == 0);
	CHECK(bad_esc == 0);
	CHECK(bad_tail == 0);
}

/* A long extension-less name and a long name with a long extension. */
static void test_decorate_long_other(void)
{
	char name[301], *s;

	memset(name, 'x', 300);
	name[300] = '\0';
	s = names_decorate(name, "0123456789", false, 0);
	CHECK(s && strlen(s) == NAMES_MAX);
	CHECK(s && ends_with(s, "x~01234567"));
	free(s);
	memcpy(name + 289, ".abcdefghij", 11);
	s = names_decorate(name, "0123456789", true, 0);
	CHECK(s && strlen(s) == NAMES_MAX);
	CHECK(s && ends_with(s, "x~0123456789.abcdefghij"));
	free(s);
}

/* Run names_assign() over @n inputs into @out; checks it returns 0. */
static void assign(const struct names_input *in, size_t n, char **out)
{
	int err = names_assign(in, n, out);

	CHECK(err == 0);
	if (err)
		memset(out, 0, n * sizeof(*out));
}

static void free_names(char **out, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(out[i]);
}

#define KEY(s) s, sizeof(s) - 1

static void test_assign_plain(void)
{
	const struct names_input in[] = {
		{ "u1", KEY("cat.png"), NULL },
		{ "u2", KEY("a/b.jpg"), NULL },
		{ "u3", KEY("."), NULL },
		{ "u4", KEY(".."), NULL },
		{ "u5", KEY("%2E"), NULL },
		{ "u6", KEY("ñandú.png"), NULL },
	};
	char *out[6];

	assign(in, 6, out);
	CHECK_STR(out[0], "cat.png");
	CHECK_STR(out[1], "a%2Fb.jpg");
	CHECK_STR(out[2], "%2E");
	CHECK_STR(out[3], "%2E%2E");
	CHECK_STR(out[4], "%252E");
	CHECK_STR(out[5], "ñandú.png");
	free_names(out, 6);
	CHECK(names_assign(in, 0, out) == 0);
}

static void test_assign_same_key(void)
{
	const struct names_input in[] = {
		{ "11111111-aaaa", KEY("a.png"), NULL },
		{ "b.png-uid", KEY("b.png"), NULL },
		{ "22222222-bbbb", KEY("a.png"), NULL },
	};
	char *out[3];

	assign(in, 3, out);
	CHECK_STR(out[0], "a~11111111.png");
	CHECK_STR(out[1], "b.png");
	CHECK_STR(out[2], "a~22222222.png");
	free_names(out, 3);
}

static void test_assign_prev(void)
{
	const struct names_input in[] = {
		{ "bbbbbbbb-new", KEY("x.jpg"), NULL },
		{ "aaaaaaaa-old", KEY("x.jpg"), "x.jpg" },
		/* a renamed key keeps the name given earlier */
		{ "cccccccc-ren", KEY("renamed.jpg"), "orig.jpg" },
		{ "dddddddd-new", KEY("orig.jpg"), NULL },
	};
	char *out[4];

	assign(in, 4, out);
	CHECK_STR(out[0], "x~bbbbbbbb.jpg");
	CHECK_STR(out[1], "x.jpg");
	CHECK_STR(out[2], "orig.jpg");
	CHECK_STR(out[3], "orig~dddddddd.jpg");
	free_names(out, 4);
}

static void test_assign_no_key(void)
{
	const struct names_input in[] = {
		{ "uid/1", NULL, 0, NULL },	   { "uid2", "", 0, NULL },
		{ "uid3", "ignored", 0, NULL },	   { "dup", NULL, 0, NULL },
		{ "k-dup-uid", KEY("dup"), NULL },
	};
	char *out[5];

	assign(in, 5, out);
	CHECK_STR(out[0], "uid%2F1");
	CHECK_STR(out[1], "uid2");
	CHECK_STR(out[2], "uid3");
	/* a key equal to a key-less object's uid: both decorated */
	CHECK_STR(out[3], "dup~dup");
	CHECK_STR(out[4], "dup~k-dup-ui");
	free_names(out, 5);
}

/* Whether the @n names are non-NULL and pairwise distinct. */
static bool all_distinct(char **out, size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		if (!out[i])
			return false;
		for (j = 0; j < i; j++) {
			if (strcmp(out[i], out[j]) == 0) {
				fprintf(stderr, "  duplicate name \"%s\"\n",
					out[i]);
				return false;
			}
		}
	}
	return true;
}

static void test_assign_decorated_clash(void)
{
	const struct names_input in[] = {
		{ "11111111-x", KEY("a.png"), NULL },
		{ "22222222-y", KEY("a.png"), NULL },
		{ "33333333-z", KEY("a~11111111.png"), NULL },
		{ "44444444-w", KEY("a~11111111-x.png"), NULL },
	};
	const struct names_input kept[] = {
		{ "11111111-x", KEY("a.png"), NULL },
		{ "22222222-y", KEY("a.png"), NULL },
		{ "33333333-z", KEY("a~11111111.png"), "a~11111111.png" },
	};
	/* uids sharing their first 8 bytes need the whole uid */
	const struct names_input prefix[] = {
		{ "abcdefgh-1", KEY("p.png"), NULL },
		{ "abcdefgh-2", KEY("p.png"), NULL },
		{ "abcdefgh-3", KEY("p.png"), NULL },
	};
	/* every round: uid8, whole uid, then uid and a counter that skips
	 * the names already taken */
	const struct names_input deep[] = {
		{ "11111111-x", KEY("a.png"), NULL },
		{ "11111111-y", KEY("a.png"), NULL },
		{ "33333333-z", KEY("a~11111111-x.png"), NULL },
		{ "44444444-w", KEY("a~11111111-x~1.png"), NULL },
	};
	char *out[4];

	assign(in, 4, out);
	CHECK(all_distinct(out, 4));
	CHECK_STR(out[1], "a~22222222.png");
	free_names(out, 4);

	assign(deep, 4, out);
	CHECK(all_distinct(out, 4));
	CHECK_STR(out[0], "a~11111111-x~2.png");
	CHECK_STR(out[1], "a~11111111-y.png");
	CHECK_STR(out[3], "a~11111111-x~1.png");
	free_names(out, 4);

	assign(kept, 3, out);
	CHECK(all_distinct(out, 3));
	CHECK_STR(out[1], "a~22222222.png");
	CHECK_STR(out[2], "a~11111111.png");
	CHECK_STR(out[0], "a~11111111-x.png");
	free_names(out, 3);

	assign(prefix, 3, out);
	CHECK_STR(out[0], "p~abcdefgh-1.png");
	CHECK_STR(out[1], "p~abcdefgh-2.png");
	CHECK_STR(out[2], "p~abcdefgh-3.png");
	free_names(out, 3);
}

/* Long uids that share a long prefix must still end with distinct names. */
/* uids that escape to more than a name may hold: the counter still tells
 * them apart, quickly */
static void test_assign_escaped_uids(void)
{
	char uid1[64], uid2[64];
	const struct names_input in[] = {
		{ uid1, "k.jpg", 5, NULL },
		{ uid2, "k.jpg", 5, NULL },
	};
	char *out[2];

	memset(uid1, '/', 40);
	memset(uid2, '/', 40);
	strcpy(uid1 + 40, "one");
	strcpy(uid2 + 40, "two");
	assign(in, 2, out);
	CHECK(all_distinct(out, 2));
	CHECK(strlen(out[0]) <= NAMES_MAX && !strchr(out[0], '/'));
	free_names(out, 2);
}

static void test_assign_long_uids(void)
{
	char uid1[128], uid2[128];
	struct names_input in[2] = {
		{ uid1, KEY("k.png"), NULL },
		{ uid2, KEY("k.png"), NULL },
	};
	char *out[2];

	memset(uid1, 'a', 100);
	memset(uid2, 'a', 100);
	strcpy(uid1 + 100, "-1");
	strcpy(uid2 + 100, "-2");
	assign(in, 2, out);
	/* uids that agree in every byte a decoration keeps still end up
	 * with distinct names */
	CHECK(all_distinct(out, 2));
	free_names(out, 2);
}

static void test_assign_long_key(void)
{
	char *key = e_acute_key(1, 296, ".png");
	const struct names_input in[] = {
		{ "0123456789", key, strlen(key), NULL },
	};
	char *out[1];

	assign(in, 1, out);
	CHECK(out[0] && strlen(out[0]) <= NAMES_MAX);
	CHECK(out[0] && utf8_valid(out[0], strlen(out[0])));
	CHECK(out[0] && ends_with(out[0], "~01234567.png"));
	free_names(out, 1);
	free(key);
}

/* --- the randomized batch --- */

#define N_BATCH 2000
#define N_NEWCOMERS 500
#define KEY_MAX 480

struct rand_obj {
	char uid[40];
	char key[KEY_MAX];
	size_t key_len;
	bool has_key;
};

static unsigned rnd(unsigned n)
{
	return (unsigned)rand() % n;
}

/* Fill @o: uids share one of a few 8-byte prefixes, keys come from a small
 * pool, are long, missing, copies of another object's uid or decorated name,
 * or carry escapes and bad bytes. @objs[0..i) are already filled. */
static void random_obj(struct rand_obj *objs, size_t i)
{
	static const char *const pool[] = {
		"img.png",
		"IMG.png",
		"a/b.png",
		"%2F",
		".",
		"..",
		"...",
		"scan",
		"ñandú.png",
		"img",
		"clip.mp4",
		"img~x.png",
		"\xff\xfeimg.png",
		"tab\t.png",
		"%",
		"x.tar.gz",
	};
	struct rand_obj *o = &objs[i];
	const struct rand_obj *other = i ? &objs[rnd(i)] : o;
	size_t j, len;

	snprintf(o->uid, sizeof(o->uid), "%08x-%04x-4%03x-%012zx",
		 0x1000000u + rnd(24) * 0x111111u, rnd(0x10000), rnd(0x1000),
		 i);
	o->has_key = true;
	switch (rnd(12)) {
	case 0:
	case 1:
	case 2:
	case 3:
		strcpy(o->key, pool[rnd(sizeof(pool) / sizeof(pool[0]))]);
		break;
	case 4:
		o->has_key = false;
		o->key[0] = '\0';
		break;
	case 5:
		o->key[0] = '\0';
		break;
	case 6:
	case 7:
		/* long keys sharing a long prefix, so their cuts collide */
		len = 250 + rnd(150);
		for (j = 0; j + 1 < len;) {
			unsigned r = rnd(20);

			if (j < 200 || r < 12) {
				o->key[j++] = '\xc3';
				o->key[j++] = '\xa9';
			} else if (r < 15) {
				o->key[j++] = '/';
			} else if (r < 17) {
				o->key[j++] = '%';
			} else {
				o->key[j++] = 'a' + rnd(3);
			}
		}
		o->key[j] = '\0';
		strcat(o->key, rnd(2) ? ".png" : "");
		break;
	case 8:
		snprintf(o->key, sizeof(o->key), "img~%.8s.png", other->uid);
		break;
	case 9:
		snprintf(o->key, sizeof(o->key), "img~%s.png", other->uid);
		break;
	case 10:
		strcpy(o->key, other->uid);
		break;
	default:
		snprintf(o->key, sizeof(o->key), "img%c%u.png",
			 "\x01/%\x7f"[rnd(4)], rnd(4));
		break;
	}
	o->key_len = strlen(o->key);
}

static int strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Check the rules every batch of names keeps: each name non-empty, at most
 * NAMES_MAX bytes, no '/', not "." or "..", whole %XX escapes, valid UTF-8
 * when its key was, and all of them distinct. */
static void check_batch(const struct rand_obj *objs, char **out, size_t n)
{
	size_t i, bad_shape = 0, bad_utf8 = 0, bad_esc = 0, dups = 0;
	char **sorted = malloc(n * sizeof(*sorted));

	for (i = 0; i < n; i++) {
		const char *s = out[i];
		size_t len = s ? strlen(s) : 0;

		if (!s || len == 0 || len > NAMES_MAX || strchr(s, '/') ||
		    strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
			if (!bad_shape++)
				fprintf(stderr, "  bad name \"%s\"\n",
					s ? s : "(null)");
			continue;
		}
		if (utf8_valid(objs[i].key, objs[i].key_len) &&
		    !utf8_valid(s, len))
			bad_utf8++;
		bad_esc += !escapes_whole(s);
	}
	CHECK(bad_shape == 0);
	CHECK(bad_utf8 == 0);
	CHECK(bad_esc == 0);
	if (!sorted || bad_shape) {
		free(sorted);
		return;
	}
	memcpy(sorted, out, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), strcmp_p);
	for (i = 1; i < n; i++) {
		if (strcmp(sorted[i - 1], sorted[i]) == 0 && !dups++)
			fprintf(stderr, "  duplicate name \"%s\"\n", sorted[i]);
	}
	CHECK(dups == 0);
	free(sorted);
}

static void fill_inputs(struct names_input *in, const struct rand_obj *objs,
			size_t n, char **prev)
{
	size_t i;

	for (i = 0; i < n; i++) {
		in[i].uid = objs[i].uid;
		in[i].key = objs[i].has_key ? objs[i].key : NULL;
		in[i].key_len = objs[i].has_key ? objs[i].key_len : 0;
		in[i].prev = prev ? prev[i] : NULL;
	}
}

/* 2000 objects, then the same again (same names), then a refresh where they
 * keep their names and 500 newcomers collide with them. */
static void test_assign_random(void)
{
	const size_t all = N_BATCH + N_NEWCOMERS;
	struct rand_obj *objs = calloc(all, sizeof(*objs));
	struct names_input *in = calloc(all, sizeof(*in));
	char **out1 = calloc(all, sizeof(char *));
	char **out2 = calloc(all, sizeof(char *));
	char **prev = calloc(all, sizeof(char *));
	size_t i, changed = 0, same = 0;

	if (!objs || !in || !out1 || !out2 || !prev)
		abort();
	srand(20240501);
	for (i = 0; i < all; i++)
		random_obj(objs, i);

	fill_inputs(in, objs, N_BATCH, NULL);
	assign(in, N_BATCH, out1);
	check_batch(objs, out1, N_BATCH);

	/* the mapping is a function of its input */
	assign(in, N_BATCH, out2);
	for (i = 0; i < N_BATCH; i++)
		same += out1[i] && out2[i] && strcmp(out1[i], out2[i]) == 0;
	CHECK(same == N_BATCH);
	free_names(out2, N_BATCH);

	for (i = 0; i < N_BATCH; i++)
		prev[i] = out1[i];
	fill_inputs(in, objs, all, prev);
	assign(in, all, out2);
	check_batch(objs, out2, all);
	for (i = 0; i < N_BATCH; i++)
		changed += !out2[i] || strcmp(out1[i], out2[i]) != 0;
	CHECK(changed == 0);

	free_names(out1, N_BATCH);
	free_names(out2, all);
	free(prev);
	free(out1);
	free(out2);
	free(in);
	free(objs);
}

/* Parts of a key path as one string joined by '|', for checks. */
static void key_path_is(const char *key, size_t len, const char *ext,
			const char *want)
{
	char **parts, got[2048] = "";
	size_t n, i;

	CHECK(names_key_path(key, len, "0123456789ab", ext, &parts, &n) == 0);
	for (i = 0; i < n; i++) {
		if (i)
			strcat(got, "|");
		strcat(got, parts[i]);
		CHECK(parts[i][0] && !strchr(parts[i], '/') &&
		      strlen(parts[i]) <= NAMES_MAX && strcmp(parts[i], ".") &&
		      strcmp(parts[i], ".."));
		free(parts[i]);
	}
	free(parts);
	CHECK_STR(got, want);
}

static void test_key_path(void)
{
	char long_part[600];

	key_path_is("cars/sedan/0001.jpg", 19, ".jpg", "cars|sedan|0001.jpg");
	key_path_is("flat.png", 8, ".png", "flat.png");
	/* empty parts dropped; a key with none is named by its uid */
	key_path_is("//a//b//", 8, ".jpg", "a|b.jpg");
	key_path_is("///", 3, ".jpg", "0123456789ab.jpg");
	key_path_is(NULL, 0, ".jpg", "0123456789ab.jpg");
	key_path_is("", 0, "", "0123456789ab");
	/* the last part gets the extension when it has none */
	key_path_is("cars/0002", 9, ".jpg", "cars|0002.jpg");
	key_path_is("a.b/c.tar.gz", 12, ".jpg", "a.b|c.tar.gz");
	/* "." and ".." are never names, nor are '%' and control bytes bare */
	key_path_is("./../x", 6, ".jpg", "%2E|%2E%2E|x.jpg");
	key_path_is("100%/a\nb", 8, "", "100%25|a%0Ab");
	key_path_is("..", 2, "", "%2E%2E");
	/* a long part is cut and tagged, extension kept */
	memset(long_part, 'x', 300);
	strcpy(long_part + 300, "/y.jpg");
	{
		char **parts;
		size_t n;

		char **other;
		size_t n2;

		CHECK(names_key_path(long_part, 306, "0123456789ab", ".jpg",
				     &parts, &n) == 0);
		CHECK(n == 2 && strlen(parts[0]) <= NAMES_MAX &&
		      strchr(parts[0], '~') != NULL);
		CHECK_STR(parts[1], "y.jpg");
		/* a long folder is one folder whatever object is in it; a
		 * long file name carries its object's uid */
		CHECK(names_key_path(long_part, 306, "fedcba9876", ".jpg",
				     &other, &n2) == 0);
		CHECK(n2 == 2 && strcmp(parts[0], other[0]) == 0);
		while (n2 > 0)
			free(other[--n2]);
		free(other);
		while (n > 0)
			free(parts[--n]);
		free(parts);
		CHECK(names_key_path(long_part, 300, "0123456789ab", ".jpg",
				     &parts, &n) == 0);
		CHECK(n == 1 && strstr(parts[0], "~01234567.jpg") != NULL);
		while (n > 0)
			free(parts[--n]);
		free(parts);
	}
}

static void test_base(void)
{
	char *name = names_base("a/b.jpg", 7, "u1");

	CHECK_STR(name, "a%2Fb.jpg");
	free(name);
	name = names_base(NULL, 0, "u1");
	CHECK_STR(name, "u1");
	free(name);
	name = names_base("", 0, "u/1");
	CHECK_STR(name, "u%2F1");
	free(name);
}

int main(void)
{
	test_escape_unchanged();
	test_escape_special();
	test_escape_invalid_utf8();
	test_ext();
	test_url_ext();
	test_format_ext();
	test_decorate_short();
	test_decorate_long_utf8();
	test_decorate_long_escapes();
	test_decorate_long_other();
	test_assign_plain();
	test_assign_same_key();
	test_assign_prev();
	test_assign_no_key();
	test_assign_decorated_clash();
	test_assign_long_uids();
	test_assign_escaped_uids();
	test_assign_long_key();
	test_assign_random();
	test_key_path();
	test_base();
	return check_report();
}
