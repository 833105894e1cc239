/* What the unit tests of the listing store share: objects made to order,
 * a listing written in pages, and the names a directory of it lists. */
#ifndef AVALAFS_TESTS_STORE_FIXTURE_H
#define AVALAFS_TESTS_STORE_FIXTURE_H

#include "store.h"
#include "names.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static char dir[] = "/tmp/avalafs-test-store-XXXXXX";
static int dir_fd = -1;

static inline struct item *make(const char *uid, const char *key,
				const char *status, bool data, bool thumb)
{
	struct item *it = item_new(ITEM_KIND_ITEM);
	char json[256];

	it->uid = strdup(uid);
	if (key) {
		it->key = strdup(key);
		it->key_len = strlen(key);
		names_ext(key, strlen(key), it->data_ext);
	}
	if (!it->data_ext[0])
		strcpy(it->data_ext, ".jpg");
	strcpy(it->thumb_ext, ".jpg");
	it->status = status ? strdup(status) : NULL;
	it->data_url = data ? strdup("http://h/d") : NULL;
	it->thumb_url = thumb ? strdup("http://h/t") : NULL;
	snprintf(json, sizeof(json), "{\"uid\":\"%s\"}", uid);
	it->json = strdup(json);
	it->json_len = strlen(json);
	return it;
}

/* The newest complete generation of items, 0 when none. */
static inline uint64_t current(struct store *st)
{
	int64_t at;
	uint64_t gen;

	return store_latest(st, ITEM_KIND_ITEM, &gen, &at) ? 0 : gen;
}

/* Write one listing of @n objects in pages of @page, keeping the names of
 * the current one; returns its gen. */
static inline uint64_t list(struct store *st, struct item **v, size_t n,
			    size_t page)
{
	struct store_listing *l;
	uint64_t gen = 0;
	size_t i;

	if (store_listing_begin(st, ITEM_KIND_ITEM, current(st), &l))
		return 0;
	for (i = 0; i < n; i += page) {
		if (store_listing_add(l, v + i, n - i < page ? n - i : page) <
		    0)
			break;
	}
	if (i >= n)
		gen = store_listing_commit(l);
	store_listing_free(l);
	return gen;
}

static inline void free_items(struct item **v, size_t n)
{
	while (n > 0)
		item_unref(v[--n]);
}

struct names {
	char v[64][NAMES_MAX + 1];
	uint64_t oid[64], child[64];
	size_t n;
};

static inline int collect(void *ctx, const struct store_entry *e)
{
	struct names *ns = ctx;

	if (ns->n == 64)
		return 1;
	memcpy(ns->v[ns->n], e->name, e->name_len);
	ns->v[ns->n][e->name_len] = '\0';
	ns->oid[ns->n] = e->oid;
	ns->child[ns->n] = e->child;
	ns->n++;
	return 0;
}

static inline void ls(struct store *st, uint64_t gen, uint64_t d,
		      const struct store_filter *f, struct names *ns)
{
	ns->n = 0;
	CHECK(store_readdir(st, gen, d, 0, f, 1000, collect, ns) == 0);
}

/* The dir id of the folder @name in @d of @gen, 0 when none. */
static inline uint64_t folder_id(struct store *st, uint64_t gen, uint64_t d,
				 const char *name)
{
	struct store_entry e;

	if (store_lookup(st, gen, d, name, NULL, &e))
		return 0;
	return e.child;
}

static inline bool has_name(const struct names *ns, const char *name)
{
	size_t i;

	for (i = 0; i < ns->n; i++) {
		if (strcmp(ns->v[i], name) == 0)
			return true;
	}
	return false;
}

/* The store of dataset acme/@slug of @origin in folder @fd (@path). */
static inline struct store *open_in(int fd, const char *path,
				    const char *origin, const char *slug)
{
	struct store_config cfg = {
		.dir_fd = fd,
		.dir = path,
		.origin = origin,
		.owner = "acme",
		.slug = slug,
	};
	struct store *st = NULL;

	CHECK(store_open(&cfg, &st) == 0);
	return st;
}

static inline struct store *open_store(const char *slug)
{
	return open_in(dir_fd, dir, "http://api", slug);
}

/* The test's folder, made for it: 0, or 1 (said) when it cannot be. */
static inline int fixture_begin(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	dir_fd = open(dir, O_RDONLY | O_DIRECTORY);
	return 0;
}

/* Remove the test's folder. */
static inline void fixture_end(void)
{
	char cmd[128];

	close(dir_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

#endif
