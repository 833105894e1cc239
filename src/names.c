/* Key to file name rules (DESIGN section 3) and extension rules. Every name
 * produced here is at most NAMES_MAX bytes, free of '/' and NUL. */
#include "names.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

static bool must_escape(unsigned char c)
{
	return c == '/' || c == '%' || c < 0x20 || c == 0x7f;
}

char *names_escape(const char *key, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, o = 0, need = 1;
	char *out;

	if (len == 1 && key[0] == '.')
		return strdup("%2E");
	if (len == 2 && key[0] == '.' && key[1] == '.')
		return strdup("%2E%2E");
	for (i = 0; i < len; i++)
		need += must_escape(key[i]) ? 3 : 1;
	out = malloc(need);
	if (!out)
		return NULL;
	for (i = 0; i < len; i++) {
		unsigned char c = key[i];

		if (must_escape(c)) {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			out[o++] = c;
		}
	}
	out[o] = '\0';
	return out;
}

size_t names_ext(const char *s, size_t len, char ext[NAMES_EXT_MAX])
{
	size_t start = 0, dot = len, i;

	ext[0] = '\0';
	for (i = 0; i < len; i++) {
		if (s[i] == '/')
			start = i + 1;
	}
	for (i = len; i > start; i--) {
		if (s[i - 1] == '.') {
			dot = i - 1;
			break;
		}
	}
	/* a leading dot names a hidden file, not an extension */
	if (dot >= len || dot == start || len - dot - 1 < 1 ||
	    len - dot - 1 > NAMES_EXT_MAX - 2)
		return 0;
	for (i = dot + 1; i < len; i++) {
		if (!isalnum((unsigned char)s[i]))
			return 0;
	}
	memcpy(ext, s + dot, len - dot);
	ext[len - dot] = '\0';
	return len - dot;
}

size_t names_url_ext(const char *url, char ext[NAMES_EXT_MAX])
{
	const char *path = strstr(url, "://");
	size_t len;

	path = path ? strchr(path + 3, '/') : url;
	if (!path) {
		ext[0] = '\0';
		return 0;
	}
	len = strcspn(path, "?#");
	return names_ext(path, len, ext);
}

size_t names_format_ext(const char *format, char ext[NAMES_EXT_MAX])
{
	static const struct {
		const char *format, *ext;
	} known[] = {
		{ "jpeg", ".jpg" },	  { "jpg", ".jpg" },
		{ "png", ".png" },	  { "tiff", ".tif" },
		{ "image/jpeg", ".jpg" }, { "image/png", ".png" },
		{ "video/mp4", ".mp4" },
	};
	size_t i, len;

	ext[0] = '\0';
	if (!format)
		return 0;
	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strcasecmp(format, known[i].format) == 0) {
			strcpy(ext, known[i].ext);
			return strlen(ext);
		}
	}
	len = strlen(format);
	if (len < 1 || len > NAMES_EXT_MAX - 2)
		return 0;
	for (i = 0; i < len; i++) {
		if (!isalnum((unsigned char)format[i]))
			return 0;
	}
	ext[0] = '.';
	for (i = 0; i < len; i++)
		ext[i + 1] = tolower((unsigned char)format[i]);
	ext[len + 1] = '\0';
	return len + 1;
}

/* Largest cut <= @cut that splits neither a UTF-8 sequence nor a %XX. */
static size_t safe_cut(const char *s, size_t cut)
{
	while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80)
		cut--;
	if (cut >= 1 && s[cut - 1] == '%')
		cut -= 1;
	else if (cut >= 2 && s[cut - 2] == '%')
		cut -= 2;
	return cut;
}

char *names_decorate(const char *name, const char *uid, bool full_uid,
		     unsigned counter)
{
	char ext[NAMES_EXT_MAX], num[16] = "", *tag, *out;
	size_t len = strlen(name), elen, stem, tlen, nlen;

	tag = names_escape(uid, full_uid ? strlen(uid) : strnlen(uid, 8));
	if (!tag)
		return NULL;
	tlen = strlen(tag);
	if (tlen > NAMES_TAG_MAX)
		tlen = safe_cut(tag, NAMES_TAG_MAX); /* a hostile uid must not
							eat the whole name */
	if (counter)
		snprintf(num, sizeof(num), "~%u", counter);
	nlen = strlen(num);
	elen = names_ext(name, len, ext);
	stem = len - elen;
	if (stem + 1 + tlen + nlen + elen > NAMES_MAX)
		stem = safe_cut(name, NAMES_MAX - 1 - tlen - nlen - elen);
	out = malloc(stem + 1 + tlen + nlen + elen + 1);
	if (out) {
		char *o = out;

		memcpy(o, name, stem);
		o += stem;
		*o++ = '~';
		memcpy(o, tag, tlen);
		o += tlen;
		memcpy(o, num, nlen);
		o += nlen;
		memcpy(o, ext, elen + 1);
	}
	free(tag);
	return out;
}

/* Rule 3: a name longer than NAMES_MAX is cut and ends in ~uid8 (its
 * extension kept). Takes @name; returns it or its cut, NULL on ENOMEM. */
static char *fit(char *name, const char *uid)
{
	char *cut;

	if (!name || strlen(name) <= NAMES_MAX)
		return name;
	cut = names_decorate(name, uid, false, 0);
	free(name);
	return cut;
}

static unsigned fnv32(const char *s)
{
	unsigned h = 2166136261u;

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 16777619u;
	}
	return h;
}

char *names_base(const char *key, size_t len, const char *uid)
{
	if (!key || len == 0)
		return fit(names_escape(uid, strlen(uid)), uid);
	return fit(names_escape(key, len), uid);
}

int names_key_path(const char *key, size_t len, const char *uid,
		   const char *ext, char ***parts, size_t *n)
{
	size_t i = 0, count = 0, cap = 0;
	char **v = NULL;

	*parts = NULL;
	*n = 0;
	while (key && i < len) {
		size_t start = i, plen;
		char **grown;

		while (i < len && key[i] != '/')
			i++;
		plen = i - start;
		i++; /* past the '/' */
		if (plen == 0)
			continue; /* a leading, trailing or doubled '/' */
		if (count == cap) {
			cap = cap ? cap * 2 : 8;
			grown = realloc(v, cap * sizeof(*v));
			if (!grown)
				goto fail;
			v = grown;
		}
		v[count] = names_escape(key + start, plen);
		if (!v[count])
			goto fail;
		count++;
	}
	if (count == 0) {
		v = malloc(sizeof(*v));
		if (!v || !(v[0] = names_escape(uid, strlen(uid))))
			goto fail;
		count = 1;
	}
	/* the last part is the file: loaders filter by extension */
	if (ext && *ext) {
		char have[NAMES_EXT_MAX], *last = v[count - 1];
		size_t llen = strlen(last);

		if (!names_ext(last, llen, have)) {
			char *with = malloc(llen + strlen(ext) + 1);

			if (!with)
				goto fail;
			memcpy(with, last, llen);
			strcpy(with + llen, ext);
			free(last);
			v[count - 1] = with;
		}
	}
	for (i = 0; i < count; i++) {
		char tag[9];

		/* a folder is many objects': its tag comes from its own name,
		 * so that every object with that long part shares it */
		if (i + 1 < count)
			snprintf(tag, sizeof(tag), "%08x", fnv32(v[i]));
		v[i] = fit(v[i], i + 1 < count ? tag : uid);
		if (!v[i])
			goto fail;
	}
	*parts = v;
	*n = count;
	return 0;
fail:
	while (v && count > 0)
		free(v[--count]);
	free(v);
	return -ENOMEM;
}

/* The name of one object before collisions: escaped key, or uid. */
static char *base_name(const struct names_input *in)
{
	return names_base(in->key, in->key_len, in->uid);
}

struct name_count {
	const char *name;
	unsigned count;
	UT_hash_handle hh;
};

static void counts_free(struct name_count **tab)
{
	struct name_count *c, *tmp;

	HASH_ITER(hh, *tab, c, tmp) {
		HASH_DEL(*tab, c);
		free(c);
	}
}

/* Count one more use of @name (borrowed) in @tab. 0 or -ENOMEM. */
static int add_name(struct name_count **tab, const char *name)
{
	struct name_count *c;

	HASH_FIND_STR(*tab, name, c);
	if (!c) {
		c = calloc(1, sizeof(*c));
		if (!c)
			return -ENOMEM;
		c->name = name;
		HASH_ADD_KEYPTR(hh, *tab, c->name, strlen(c->name), c);
	}
	c->count++;
	return 0;
}

/* Count every name in @out into a fresh table. 0 or -ENOMEM. */
static int count_names(char **out, size_t n, struct name_count **tab)
{
	size_t i;

	*tab = NULL;
	for (i = 0; i < n; i++) {
		if (add_name(tab, out[i])) {
			counts_free(tab);
			return -ENOMEM;
		}
	}
	return 0;
}

static unsigned count_of(struct name_count *tab, const char *name)
{
	struct name_count *c;

	HASH_FIND_STR(tab, name, c);
	return c ? c->count : 0;
}

/* Rename, from @base, every object not @kept whose name in @out is shared.
 * @round 0 adds ~uid8, round 1 the whole uid, round 2 the uid and the
 * first free counter. Returns 0 or -ENOMEM. */
static int resolve_round(char **out, char **base, const bool *kept,
			 const struct names_input *in, size_t n, int round)
{
	struct name_count *tab;
	char **fresh;
	size_t i;
	int err = 0;

	fresh = calloc(n, sizeof(*fresh));
	if (!fresh || count_names(out, n, &tab)) {
		free(fresh);
		return -ENOMEM;
	}
	for (i = 0; i < n && !err; i++) {
		if (kept[i] || count_of(tab, out[i]) < 2)
			continue;
		if (round < 2) {
			fresh[i] = names_decorate(base[i], in[i].uid,
						  round == 1, 0);
		} else {
			unsigned k;

			/* n + 1 counters always hold a free one */
			for (k = 1; k <= n + 1; k++) {
				free(fresh[i]);
				fresh[i] = names_decorate(base[i], in[i].uid,
							  true, k);
				if (!fresh[i] || !count_of(tab, fresh[i]))
					break;
			}
			/* taken now: later objects of this round must not
			 * pick it too */
			if (fresh[i] && add_name(&tab, fresh[i]))
				err = -ENOMEM;
		}
		if (!fresh[i])
			err = -ENOMEM;
	}
	counts_free(&tab);
	for (i = 0; i < n; i++) {
		if (fresh[i] && !err) {
			free(out[i]);
			out[i] = fresh[i];
		} else {
			free(fresh[i]);
		}
	}
	free(fresh);
	return err;
}

int names_assign(const struct names_input *in, size_t n, char **out)
{
	char **base = calloc(n ? n : 1, sizeof(*base));
	bool *kept = calloc(n ? n : 1, sizeof(*kept));
	int err = 0, round;
	size_t i;

	for (i = 0; i < n; i++)
		out[i] = NULL;
	if (!base || !kept)
		err = -ENOMEM;
	for (i = 0; i < n && !err; i++) {
		base[i] = base_name(&in[i]);
		kept[i] = in[i].prev != NULL;
		out[i] = strdup(kept[i] ? in[i].prev : base[i] ? base[i] : "");
		if (!base[i] || !out[i])
			err = -ENOMEM;
	}
	for (round = 0; round < 3 && !err; round++)
		err = resolve_round(out, base, kept, in, n, round);
	for (i = 0; i < n && base; i++) {
		free(base[i]);
		if (err) {
			free(out[i]);
			out[i] = NULL;
		}
	}
	free(base);
	free(kept);
	return err;
}
