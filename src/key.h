/* Where the API key comes from: a file, re-read whenever it changes so a
 * rotated key needs no remount, or a fixed string from the environment. */
#ifndef AVALAFS_KEY_H
#define AVALAFS_KEY_H

struct key_source;

/* A source reading the first line of @file, or holding @fixed when @file is
 * NULL (both copied). NULL on ENOMEM. */
struct key_source *key_source_new(const char *file, const char *fixed);

/* Accepts NULL. */
void key_source_free(struct key_source *ks);

/* The current key as a new string (re-reading the file when its inode, size
 * or mtime changed), or NULL when there is none; the reason is logged once.
 * Every key handed out is redacted from the log from then on. */
char *key_source_get(struct key_source *ks);

/* Where the key comes from, for messages: "api_key_file PATH" or
 * "AVALA_API_KEY" (borrowed, valid while @ks is). */
const char *key_source_origin(const struct key_source *ks);

#endif
