/* Unit tests of src/store.c: generations, the names of every view (DESIGN
 * section 3: collisions, a file that is also a folder, names kept across
 * listings), filters, and databases that must be set aside. */
#include "store.h"
#include "names.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "check.h"

static char dir[] = "/tmp/avalafs-test-store-XXXXXX";
static int dir_fd = -1;

static struct item *make(const char *uid, const char *key, const char *status,
			 bool data, bool thumb)
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
static uint64_t current(struct store *st)
{
	int64_t at;
	uint64_t gen;

	return store_latest(st, ITEM_KIND_ITEM, &gen, &at) ? 0 : gen;
}

/* Write one listing of @n objects in pages of @page, keeping the names of
 * the current one; returns its gen. */
static uint64_t list(struct store *st, struct item **v, size_t n, size_t page)
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

static void free_items(struct item **v, size_t n)
{
	while (n > 0)
		item_unref(v[--n]);
}

struct names {
	char v[64][NAMES_MAX + 1];
	uint64_t oid[64], child[64];
	size_t n;
};

static int collect(void *ctx, const struct store_entry *e)
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

static void ls(struct store *st, uint64_t gen, uint64_t d,
	       const struct store_filter *f, struct names *ns)
{
	ns->n = 0;
	CHECK(store_readdir(st, gen, d, 0, f, 1000, collect, ns) == 0);
}

/* The dir id of the folder @name in @d of @gen, 0 when none. */
static uint64_t folder_id(struct store *st, uint64_t gen, uint64_t d,
			  const char *name)
{
	struct store_entry e;

	if (store_lookup(st, gen, d, name, NULL, &e))
		return 0;
	return e.child;
}

static bool has_name(const struct names *ns, const char *name)
{
	size_t i;

	for (i = 0; i < ns->n; i++) {
		if (strcmp(ns->v[i], name) == 0)
			return true;
	}
	return false;
}

/* The store of dataset acme/@slug of @origin in folder @fd (@path). */
static struct store *open_in(int fd, const char *path, const char *origin,
			     const char *slug)
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

static struct store *open_store(const char *slug)
{
	return open_in(dir_fd, dir, "http://api", slug);
}

static void test_views(void)
{
	struct store *st = open_store("views");
	struct item *v[] = {
		make("u-flat", "flat.png", "completed", true, true),
		make("u-sedan", "cars/sedan/0001.jpg", "completed", true, true),
		make("u-truck", "cars/truck/0002", "pending", true, false),
		make("u-thumb", "thumbs/only.jpg", "odd_status", false, true),
		make("u-nokey", NULL, NULL, true, true),
		make("u-slash", "//a//b//", "pending", true, true),
	};
	struct store_filter data = { STORE_HAS_DATA, STORE_NO_STATUS };
	struct store_filter thumbs = { STORE_HAS_THUMB, STORE_NO_STATUS };
	struct store_filter done = { STORE_HAS_DATA, 0 };
	struct store_entry e;
	struct names ns;
	uint64_t gen, cars, sedan;
	int *ids;
	long n;

	if (!st)
		return;
	gen = list(st, v, 6, 4);
	CHECK(gen != 0 && current(st) == gen);
	ls(st, gen, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 6);
	/* in the order they were listed */
	CHECK_STR(ns.v[0], "flat.png");
	CHECK_STR(ns.v[1], "cars%2Fsedan%2F0001.jpg");
	CHECK_STR(ns.v[4], "u-nokey");
	CHECK_STR(ns.v[5], "%2F%2Fa%2F%2Fb%2F%2F");

	/* the key-path tree: folders first made, files named by their key */
	ls(st, gen, STORE_DIR_PATHS, &data, &ns);
	CHECK(ns.n == 4); /* a/, cars/, flat.png, u-nokey.jpg */
	CHECK(has_name(&ns, "a") && has_name(&ns, "cars"));
	CHECK(has_name(&ns, "flat.png") && has_name(&ns, "u-nokey.jpg"));
	CHECK(!has_name(&ns, "thumbs")); /* no data file beneath */
	cars = folder_id(st, gen, STORE_DIR_PATHS, "cars");
	CHECK(cars > STORE_DIR_PATHS);
	sedan = folder_id(st, gen, cars, "sedan");
	ls(st, gen, sedan, &data, &ns);
	CHECK(ns.n == 1 && strcmp(ns.v[0], "0001.jpg") == 0);
	CHECK(store_dir_parent(st, sedan) == cars);
	/* the last part gets the data file's extension */
	ls(st, gen, folder_id(st, gen, cars, "truck"), &data, &ns);
	CHECK(ns.n == 1 && strcmp(ns.v[0], "0002.jpg") == 0);
	ls(st, gen, folder_id(st, gen, STORE_DIR_PATHS, "a"), NULL, &ns);
	CHECK(ns.n == 1 && strcmp(ns.v[0], "b.jpg") == 0);

	/* thumbnails: their own files only, under the same names */
	ls(st, gen, STORE_DIR_PATHS, &thumbs, &ns);
	CHECK(has_name(&ns, "thumbs") && has_name(&ns, "flat.png") &&
	      has_name(&ns, "cars") && has_name(&ns, "a"));
	ls(st, gen, cars, &thumbs, &ns);
	CHECK(ns.n == 1 && strcmp(ns.v[0], "sedan") == 0);

	/* by status: files and the folders that hold one */
	done.status = store_status_id(st, "completed");
	CHECK(done.status > 0);
	ls(st, gen, STORE_DIR_PATHS, &done, &ns);
	CHECK(ns.n == 2 && has_name(&ns, "cars") && has_name(&ns, "flat.png"));
	ls(st, gen, cars, &done, &ns);
	CHECK(ns.n == 1 && strcmp(ns.v[0], "sedan") == 0);
	CHECK(store_lookup(st, gen, cars, "truck", &done, &e) == -ENOENT);
	n = store_statuses(st, gen, &ids);
	CHECK(n == 3);
	if (n > 0)
		free(ids);

	/* attributes come with the entry */
	CHECK(store_lookup(st, gen, STORE_DIR_PATHS, "flat.png", NULL, &e) ==
	      0);
	CHECK(e.oid != 0 && e.child == 0 && e.size == -1 &&
	      e.has == (STORE_HAS_DATA | STORE_HAS_THUMB));
	store_learn_size(st, &(struct item){ .oid = e.oid }, 0, 1234, "");
	CHECK(store_lookup(st, gen, STORE_DIR_PATHS, "flat.png", NULL, &e) ==
	      0);
	CHECK(e.size == 1234 && e.thumb_size == -1);
	free_items(v, 6);
	store_free(st);
}

static void test_collisions(void)
{
	struct store *st = open_store("collide");
	struct item *v[] = {
		make("aaaaaaaa-1", "dup.jpg", NULL, true, true),
		make("bbbbbbbb-2", "dup.jpg", NULL, true, true),
		make("cccccccc-3", "dup.jpg", NULL, true, true),
		/* a file that is also a folder: the folder keeps the name,
		 * whichever comes first */
		make("dddddddd-4", "x.jpg", NULL, true, true),
		make("eeeeeeee-5", "x.jpg/y.jpg", NULL, true, true),
		make("ffffffff-6", "z.jpg/w.jpg", NULL, true, true),
		make("99999999-7", "z.jpg", NULL, true, true),
	};
	struct names ns;
	uint64_t gen;

	if (!st)
		return;
	/* one page each: collisions across pages are resolved alike */
	gen = list(st, v, 7, 1);
	ls(st, gen, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 7);
	CHECK(!has_name(&ns, "dup.jpg"));
	CHECK(has_name(&ns, "dup~aaaaaaaa.jpg"));
	CHECK(has_name(&ns, "dup~bbbbbbbb.jpg"));
	CHECK(has_name(&ns, "dup~cccccccc.jpg"));
	ls(st, gen, STORE_DIR_PATHS, NULL, &ns);
	CHECK(ns.n == 7);
	CHECK(has_name(&ns, "dup~aaaaaaaa.jpg") &&
	      has_name(&ns, "dup~cccccccc.jpg"));
	CHECK(has_name(&ns, "x.jpg") && has_name(&ns, "x~dddddddd.jpg"));
	CHECK(has_name(&ns, "z.jpg") && has_name(&ns, "z~99999999.jpg"));
	CHECK(folder_id(st, gen, STORE_DIR_PATHS, "x.jpg") != 0);
	CHECK(folder_id(st, gen, STORE_DIR_PATHS, "z.jpg") != 0);
	free_items(v, 7);
	store_free(st);
}

static void test_names_kept(void)
{
	struct store *st = open_store("kept");
	struct item *first[] = { make("aaaaaaaa-1", "dup.jpg", "pending", true,
				      true) };
	struct item *second[] = {
		make("bbbbbbbb-2", "dup.jpg", "pending", true, true),
		make("aaaaaaaa-1", "dup.jpg", "completed", true, true),
		make("aaaaaaaa-1", "dup.jpg", "completed", true, true),
	};
	struct store_listing *l;
	struct names ns;
	uint64_t g1, g2, g3;

	if (!st)
		return;
	g1 = list(st, first, 1, 1);
	ls(st, g1, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 1 && strcmp(ns.v[0], "dup.jpg") == 0);
	/* the next listing: the old object keeps its name even when the new
	 * one comes first; a uid listed twice counts once */
	CHECK(store_listing_begin(st, ITEM_KIND_ITEM, g1, &l) == 0);
	CHECK(store_listing_add(l, second, 3) == 2);
	CHECK(current(st) == g1);
	/* a listing in the making is read as it grows, in listing order */
	ls(st, store_listing_gen(l), STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 2 && strcmp(ns.v[0], "dup~bbbbbbbb.jpg") == 0);
	g2 = store_listing_commit(l);
	store_listing_free(l);
	CHECK(g2 > g1 && current(st) == g2);
	ls(st, g2, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 2 && has_name(&ns, "dup.jpg") &&
	      has_name(&ns, "dup~bbbbbbbb.jpg"));
	ls(st, g2, STORE_DIR_PATHS, NULL, &ns);
	CHECK(ns.n == 2 && has_name(&ns, "dup.jpg"));
	/* the old generation is there until collected */
	ls(st, g1, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 1);
	store_collect(st, ITEM_KIND_ITEM, &g2, 1);
	ls(st, g1, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 0);
	ls(st, g2, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 2);
	/* the decorated names stay decorated, and their plain name held
	 * back: a third "dup.jpg" is decorated too */
	{
		struct item *third[] = {
			make("cccccccc-3", "dup.jpg", NULL, true, true),
			make("aaaaaaaa-1", "dup.jpg", NULL, true, true),
			make("bbbbbbbb-2", "dup.jpg", NULL, true, true),
		};

		g3 = list(st, third, 3, 3);
		ls(st, g3, STORE_DIR_ITEMS, NULL, &ns);
		CHECK(ns.n == 3 && has_name(&ns, "dup.jpg") &&
		      has_name(&ns, "dup~bbbbbbbb.jpg") &&
		      has_name(&ns, "dup~cccccccc.jpg"));
		free_items(third, 3);
	}
	/* a listing left unfinished is not current, and goes when collected */
	CHECK(store_listing_begin(st, ITEM_KIND_ITEM, g3, &l) == 0);
	CHECK(store_listing_add(l, first, 1) == 1);
	ls(st, store_listing_gen(l), STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 1);
	g2 = store_listing_gen(l);
	store_listing_free(l);
	CHECK(current(st) == g3);
	store_collect(st, ITEM_KIND_ITEM, &g3, 1);
	ls(st, g2, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 0);
	free_items(first, 1);
	free_items(second, 3);
	store_free(st);
}

/* The one database file of folder @sub of the test's folder, in @path. */
static bool only_db(const char *sub, char *path, size_t cap)
{
	char cmd[512];
	FILE *p;
	bool found;

	snprintf(cmd, sizeof(cmd), "ls %s/%s/*.db", dir, sub);
	p = popen(cmd, "r");
	found = p && fgets(path, cap, p);
	if (found)
		path[strcspn(path, "\n")] = '\0';
	if (p)
		pclose(p);
	return found;
}

static void test_set_aside(void)
{
	char sub[300], path[512], aside[600];
	struct store *st = NULL;
	int fd;
	FILE *f;

	snprintf(sub, sizeof(sub), "%s/aside", dir);
	CHECK(mkdir(sub, 0700) == 0);
	fd = open(sub, O_RDONLY | O_DIRECTORY);
	st = open_in(fd, sub, "http://api", "cars");
	store_free(st);
	CHECK(only_db("aside", path, sizeof(path)));
	f = fopen(path, "w");
	fputs("this is not a database, not even close, and it is long enough "
	      "to be read as a header by SQLite, which it is not\n",
	      f);
	fclose(f);
	st = open_in(fd, sub, "http://api", "cars");
	CHECK(st != NULL && current(st) == 0);
	store_free(st);
	snprintf(aside, sizeof(aside), "%s.bad", path);
	CHECK(access(aside, F_OK) == 0);
	/* of another API origin: another file, never mixed */
	list(st = open_in(fd, sub, "http://api", "cars"), NULL, 0, 1);
	CHECK(current(st) != 0);
	store_free(st);
	st = open_in(fd, sub, "http://other", "cars");
	CHECK(st != NULL && current(st) == 0);
	store_free(st);
	close(fd);
}

/* The write-ahead log of the "shared" store, in @st: its file is named by
 * an FNV-1a hash of the origin, owner and slug. */
static bool wal_stat(struct stat *st)
{
	const char *parts[3] = { "http://api", "acme", "shared" };
	uint64_t h = 0xcbf29ce484222325ull;
	char path[512];
	size_t i;

	for (i = 0; i < 3; i++) {
		const unsigned char *p = (const unsigned char *)parts[i];

		do {
			h ^= *p;
			h *= 0x100000001b3ull;
		} while (*p++);
	}
	snprintf(path, sizeof(path), "%s/%016" PRIx64 ".db-wal", dir, h);
	return stat(path, st) == 0;
}

/* Two mounts share a database: what one reads, the other never removes,
 * and reading writes nothing. */
static void test_shared(void)
{
	struct item *v[] = { make("s-1", "one.jpg", "completed", true, true),
			     make("s-2", "two.jpg", "completed", true, true) };
	struct store *a = open_store("shared"), *b = open_store("shared");
	struct stat before, after;
	struct names ns;
	uint64_t g1, g2, keep[1];

	g1 = list(a, v, 2, 1);
	/* b reads g1, and reading writes nothing: not even to the log */
	CHECK(wal_stat(&before));
	CHECK(current(b) == g1);
	CHECK(wal_stat(&after));
	CHECK(before.st_size == after.st_size &&
	      before.st_mtim.tv_nsec == after.st_mtim.tv_nsec &&
	      before.st_mtim.tv_sec == after.st_mtim.tv_sec);
	g2 = list(a, v, 2, 1);
	CHECK(g2 > g1);
	keep[0] = g2;
	store_collect(a, ITEM_KIND_ITEM, keep, 1);
	ls(b, g1, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 2);
	/* b gone: a collects it */
	store_free(b);
	store_collect(a, ITEM_KIND_ITEM, keep, 1);
	ls(a, g1, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 0);
	ls(a, g2, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 2);
	store_free(a);
	free_items(v, 2);
}

/* A listing larger than its budget moves to memory; its file goes. */
static void test_budget(void)
{
	char sub[300], path[512];
	struct store_config cfg = {
		.dir = sub,
		.origin = "http://api",
		.owner = "acme",
		.slug = "huge",
		.budget = 1,
	};
	struct item *v[] = { make("h-1", "one.jpg", "completed", true, true),
			     make("h-2", "two.jpg", "completed", true, true) };
	struct store *st = NULL;
	struct names ns;
	uint64_t gen;

	snprintf(sub, sizeof(sub), "%s/budget", dir);
	CHECK(mkdir(sub, 0700) == 0);
	cfg.dir_fd = open(sub, O_RDONLY | O_DIRECTORY);
	CHECK(store_open(&cfg, &st) == 0);
	gen = list(st, v, 2, 1);
	CHECK(gen != 0);
	ls(st, gen, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 2);
	CHECK(!only_db("budget", path, sizeof(path)));
	/* and listings go on there */
	gen = list(st, v, 2, 1);
	ls(st, gen, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(gen != 0 && ns.n == 2);
	store_free(st);
	close(cfg.dir_fd);
	free_items(v, 2);
}

/* A listing of items and one of sequences written at once: when the store
 * moves to memory for one, the other goes on there. */
static void test_two_kinds_move_together(void)
{
	char sub[300];
	struct store_config cfg = {
		.dir = sub,
		.origin = "http://api",
		.owner = "acme",
		.slug = "kinds",
		.budget = 1,
	};
	struct item *v[] = { make("k-1", "one.jpg", "completed", true, true),
			     make("k-2", "two.jpg", "completed", true, true) };
	struct store_listing *items, *seqs;
	struct store *st = NULL;
	uint64_t g1, g2;

	snprintf(sub, sizeof(sub), "%s/kinds", dir);
	CHECK(mkdir(sub, 0700) == 0);
	cfg.dir_fd = open(sub, O_RDONLY | O_DIRECTORY);
	CHECK(store_open(&cfg, &st) == 0);
	CHECK(store_listing_begin(st, ITEM_KIND_ITEM, 0, &items) == 0);
	CHECK(store_listing_begin(st, ITEM_KIND_SEQUENCE, 0, &seqs) == 0);
	CHECK(store_listing_add(items, v, 2) == 2); /* past the budget */
	v[0]->kind = v[1]->kind = ITEM_KIND_SEQUENCE;
	CHECK(store_listing_add(seqs, v, 2) == 2);
	g1 = store_listing_commit(items);
	g2 = store_listing_commit(seqs);
	CHECK(g1 != 0 && g2 != 0);
	store_listing_free(items);
	store_listing_free(seqs);
	store_free(st);
	close(cfg.dir_fd);
	free_items(v, 2);
}

/* On a file system with no room left, listings are still written (in
 * memory) and a stored one is still served. As root only: it mounts a
 * tmpfs. */
static void test_full_disk(void)
{
	char sub[300], cmd[700];
	struct item *v[] = { make("f-1", "one.jpg", "completed", true, true) };
	struct store *st;
	struct names ns;
	uint64_t gen;
	int fd;

	if (geteuid() != 0)
		return;
	snprintf(sub, sizeof(sub), "%s/full", dir);
	CHECK(mkdir(sub, 0700) == 0);
	snprintf(cmd, sizeof(cmd), "mount -t tmpfs -o size=256k,mode=0700 t %s",
		 sub);
	if (system(cmd) != 0)
		return;
	fd = open(sub, O_RDONLY | O_DIRECTORY);
	st = open_in(fd, sub, "http://api", "full");
	gen = list(st, v, 1, 1);
	CHECK(gen != 0);
	store_free(st);
	/* nothing left: not a page of the file system */
	snprintf(cmd, sizeof(cmd),
		 "dd if=/dev/zero of=%s/filler bs=4k 2>/dev/null; true", sub);
	CHECK(system(cmd) == 0);
	st = open_in(fd, sub, "http://api", "full");
	CHECK(st != NULL && current(st) == gen);
	ls(st, gen, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 1);
	/* and a new listing is made, beginning to end */
	gen = list(st, v, 1, 1);
	CHECK(gen != 0);
	ls(st, gen, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 1);
	store_free(st);
	close(fd);
	snprintf(cmd, sizeof(cmd), "umount %s", sub);
	CHECK(system(cmd) == 0);
	free_items(v, 1);
}

int main(void)
{
	char cmd[128];

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	dir_fd = open(dir, O_RDONLY | O_DIRECTORY);
	test_views();
	test_collisions();
	test_names_kept();
	test_set_aside();
	test_shared();
	test_budget();
	test_two_kinds_move_together();
	test_full_disk();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return check_report();
}
