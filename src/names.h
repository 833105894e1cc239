/* The rules that turn an object's key into a file name (DESIGN section 3),
 * and the extension rules for data files. Pure functions, no I/O. */
#ifndef AVALAFS_NAMES_H
#define AVALAFS_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#define NAMES_MAX 255 /* longest file name, in bytes */
#define NAMES_EXT_MAX 12 /* longest extension kept, with its dot and NUL */

/* Escape @len bytes of @key: '/', '%', NUL and control bytes become %XX,
 * and "." / ".." become %2E / %2E%2E. Returns a new string, NULL on ENOMEM. */
char *names_escape(const char *key, size_t len);

/* Write into @ext the extension (".jpg") of the last path component of
 * @len bytes at @s: 1-10 letters or digits after its last dot. Returns its
 * length, 0 (and "") when there is none. */
size_t names_ext(const char *s, size_t len, char ext[NAMES_EXT_MAX]);

/* The extension of a URL's path (query and fragment ignored). */
size_t names_url_ext(const char *url, char ext[NAMES_EXT_MAX]);

/* The extension for a metadata.format value: jpeg -> .jpg, png -> .png. */
size_t names_format_ext(const char *format, char ext[NAMES_EXT_MAX]);

#define NAMES_TAG_MAX 64 /* most bytes of an escaped uid in a name */

/* Put "~" and the first 8 bytes of @uid (escaped) before the extension of
 * @name, cutting the stem on a UTF-8 boundary when the result would be
 * longer than NAMES_MAX. @full_uid uses the whole uid (at most NAMES_TAG_MAX
 * escaped bytes of it); a non-zero @counter follows as "~N". Returns a new
 * string, NULL on ENOMEM. */
char *names_decorate(const char *name, const char *uid, bool full_uid,
		     unsigned counter);

/* The name of an object in a flat view before collisions (rules 1-3): its
 * escaped key, or its uid when the key is missing or empty. A new string,
 * NULL on ENOMEM. */
char *names_base(const char *key, size_t len, const char *uid);

/* The parts of an object's path in a key-path view before collisions: @len
 * bytes of @key (may be NULL) split at '/', empty parts dropped, each named
 * by rules 1-3, the last given @ext (may be "") when it has no extension;
 * a key with no part left is named by @uid. A new array of @n new strings
 * in @parts. Returns 0 or -ENOMEM. */
int names_key_path(const char *key, size_t len, const char *uid,
		   const char *ext, char ***parts, size_t *n);

/* One object to name in names_assign(). */
struct names_input {
	const char *uid; /* never NULL */
	const char *key; /* NULL when the key is missing or not a string */
	size_t key_len;
	const char *prev; /* name given earlier in this mount, or NULL */
};

/* Give each of @n objects a distinct name by rules 1-4: @out[i] receives a
 * new string. An object with a usable earlier name keeps it; new objects that
 * collide with each other or with a kept name are decorated. Returns 0, or
 * -ENOMEM (then @out holds nothing to free). */
int names_assign(const struct names_input *in, size_t n, char **out);

#endif
