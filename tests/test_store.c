/* Unit tests of the listing store: the views a listing makes, filters,
 * generations across mounts, and databases that must be set aside or kept
 * in memory. The names a listing gives are tested in test_store_listing.c. */
#include <errno.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "store_fixture.h"

static int collect_entry(void *ctx, const struct store_entry *e)
{
	struct store_entry *v = ctx;
	size_t i;

	for (i = 0; i < 16 && v[i].pos; i++)
		;
	if (i == 16)
		return 1;
	v[i] = *e;
	v[i].name = NULL;
	return 0;
}

/* store_readdir() of @d with @f as it is and asking for names only: the
 * same names, objects, folders and positions, and no attributes in the
 * second (but with a status to match, which takes them). */
static void names_only_agrees(struct store *st, uint64_t gen, uint64_t d,
			      const struct store_filter *f)
{
	struct store_filter names = { .names = true };
	struct store_entry full[16] = { 0 }, bare[16] = { 0 };
	struct names a, b;
	size_t i;

	if (f) {
		names = *f;
		names.names = true;
	}
	ls(st, gen, d, f, &a);
	ls(st, gen, d, &names, &b);
	CHECK(a.n > 0 && a.n == b.n);
	for (i = 0; i < a.n && i < b.n; i++) {
		CHECK_STR(a.v[i], b.v[i]);
		CHECK(a.oid[i] == b.oid[i] && a.child[i] == b.child[i]);
	}
	CHECK(store_readdir(st, gen, d, 0, f, 16, collect_entry, full) == 0);
	CHECK(store_readdir(st, gen, d, 0, &names, 16, collect_entry, bare) ==
	      0);
	for (i = 0; i < 16 && full[i].pos; i++) {
		CHECK(bare[i].pos == full[i].pos && bare[i].has == full[i].has);
		CHECK(f && f->status
			      ? bare[i].has_mtime == full[i].has_mtime
			      : !bare[i].has_mtime && bare[i].size == -1);
	}
	CHECK(i == a.n);
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
	struct store_filter data = { .has = STORE_HAS_DATA };
	struct store_filter thumbs = { .has = STORE_HAS_THUMB };
	struct store_filter done = { .has = STORE_HAS_DATA };
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

	/* a walk that only names gives the same entries, in the same order */
	names_only_agrees(st, gen, STORE_DIR_ITEMS, NULL);
	names_only_agrees(st, gen, STORE_DIR_PATHS, &data);
	names_only_agrees(st, gen, STORE_DIR_PATHS, &thumbs);
	names_only_agrees(st, gen, cars, &done);

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
	snprintf(cmd, sizeof(cmd), "mount -t tmpfs -o size=1m,mode=0700 t %s",
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
	if (fixture_begin())
		return 1;
	test_views();
	test_set_aside();
	test_shared();
	test_budget();
	test_two_kinds_move_together();
	test_full_disk();
	fixture_end();
	return check_report();
}
