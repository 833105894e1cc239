/* The API key's source. A key file is checked with stat() on each use and
 * read again only when it changed; the caller erases and frees the copies it
 * gets. */
#include "key.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct key_source {
	pthread_mutex_t lock;
	char *file;
	char *origin; /* where the key comes from, in words */
	char *key; /* protected by lock */
	struct stat seen; /* protected by lock: the file as last read */
	bool have_seen; /* protected by lock */
	int last_errno; /* protected by lock: logged once per cause */
};

struct key_source *key_source_new(const char *file, const char *fixed)
{
	struct key_source *ks = calloc(1, sizeof(*ks));

	if (!ks)
		return NULL;
	pthread_mutex_init(&ks->lock, NULL);
	if (file) {
		ks->file = strdup(file);
		if (asprintf(&ks->origin, "api_key_file %s", file) < 0)
			ks->origin = NULL;
	} else if (fixed && *fixed)
		ks->key = strdup(fixed);
	if ((file && !ks->file) || (!file && fixed && *fixed && !ks->key)) {
		key_source_free(ks);
		return NULL;
	}
	if (ks->key)
		log_add_secret(ks->key);
	return ks;
}

static void erase(char *s)
{
	if (s) {
		memset(s, 0, strlen(s));
		free(s);
	}
}

void key_source_free(struct key_source *ks)
{
	if (!ks)
		return;
	erase(ks->key);
	free(ks->file);
	free(ks->origin);
	pthread_mutex_destroy(&ks->lock);
	free(ks);
}

/* A first line with nothing but spaces: an errno that neither fopen() nor
 * getline() sets stands for it. */
#define KEY_BLANK_LINE ENOMSG

/* Why @path gave no key, for a log line. */
static const char *key_problem(int err)
{
	switch (err) {
	case EISDIR:
		return "it is a folder, not the file that holds the key";
	case ENODATA:
		return "it is empty";
	case KEY_BLANK_LINE:
		return "its first line is blank, and the key must be on it";
	default:
		return strerror(err);
	}
}

/* Read the first line of the key file, trimmed; NULL with errno set
 * (EISDIR, ENODATA: empty, KEY_BLANK_LINE, or the system's). */
static char *read_key_file(const char *path, struct stat *st)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int err;
	FILE *f = fopen(path, "re");

	if (!f)
		return NULL;
	/* fopen() opens a folder too; reading it fails only later */
	err = fstat(fileno(f), st) ? errno : S_ISDIR(st->st_mode) ? EISDIR : 0;
	if (err) {
		fclose(f);
		errno = err;
		return NULL;
	}
	if (st->st_mode & 077)
		log_warn("api_key_file %s is readable by group or others",
			 path);
	len = getline(&line, &cap, f);
	fclose(f);
	while (len > 0 && isspace((unsigned char)line[len - 1]))
		line[--len] = '\0';
	if (len <= 0) {
		free(line);
		errno = len == 0 ? KEY_BLANK_LINE : ENODATA;
		return NULL;
	}
	return line;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

char *key_source_get(struct key_source *ks)
{
	struct stat st;
	char *key = NULL;

	pthread_mutex_lock(&ks->lock);
	if (ks->file && (stat(ks->file, &st) != 0 || !ks->have_seen ||
			 !same_file(&st, &ks->seen))) {
		char *fresh = read_key_file(ks->file, &st);

		if (fresh) {
			if (ks->key && strcmp(ks->key, fresh) != 0)
				log_info("api_key_file %s changed: using the "
					 "new key",
					 ks->file);
			log_add_secret(fresh);
			erase(ks->key);
			ks->key = fresh;
			ks->seen = st;
			ks->have_seen = true;
			ks->last_errno = 0;
		} else if (errno != ks->last_errno) {
			ks->last_errno = errno;
			log_err("cannot use api_key_file %s: %s%s", ks->file,
				key_problem(errno),
				ks->key ? " (keeping the last key)" : "");
		}
	}
	if (ks->key)
		key = strdup(ks->key);
	pthread_mutex_unlock(&ks->lock);
	return key;
}

const char *key_source_origin(const struct key_source *ks)
{
	return ks->origin ? ks->origin : "AVALA_API_KEY";
}
