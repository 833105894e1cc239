/* Unit tests of src/store_listing.c: the names a listing gives in every
 * view (DESIGN section 3), as objects arrive page by page and from one
 * listing to the next, and the attributes written with them. */
#include <errno.h>
#include <sys/stat.h>

#include "store_fixture.h"
#include "store_int.h"

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

/* A decorated name the last listing gave keeps its plain name held back:
 * a newcomer that took it plain in this listing is decorated too, and
 * keeps its place in the order. */
static void test_plain_held_back(void)
{
	struct store *st = open_store("held");
	struct item *first[] = {
		make("aaaaaaaa-1", "dup.jpg", NULL, true, true),
		make("bbbbbbbb-2", "dup.jpg", NULL, true, true),
	};
	struct item *second[] = {
		make("cccccccc-3", "dup.jpg", NULL, true, true),
		make("aaaaaaaa-1", "dup.jpg", NULL, true, true),
		make("bbbbbbbb-2", "dup.jpg", NULL, true, true),
	};
	struct names ns;
	uint64_t gen;

	if (!st)
		return;
	gen = list(st, first, 2, 2);
	ls(st, gen, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 2 && has_name(&ns, "dup~aaaaaaaa.jpg") &&
	      has_name(&ns, "dup~bbbbbbbb.jpg"));
	gen = list(st, second, 3, 1);
	ls(st, gen, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 3);
	CHECK_STR(ns.v[0], "dup~cccccccc.jpg");
	CHECK(has_name(&ns, "dup~aaaaaaaa.jpg") &&
	      has_name(&ns, "dup~bbbbbbbb.jpg") && !has_name(&ns, "dup.jpg"));
	ls(st, gen, STORE_DIR_PATHS, NULL, &ns);
	CHECK(ns.n == 3);
	CHECK_STR(ns.v[0], "dup~cccccccc.jpg");
	CHECK(!has_name(&ns, "dup.jpg"));
	CHECK(store_lookup(st, gen, STORE_DIR_PATHS, "dup.jpg", NULL,
			   &(struct store_entry){ 0 }) == -ENOENT);
	free_items(first, 2);
	free_items(second, 3);
	store_free(st);
}

/* A file's kept name that a folder wants now goes to the folder, whether
 * the folder or the file comes first; the names then stay as they are
 * whatever the order. */
static void test_kept_yields_to_folder(void)
{
	struct store *st = open_store("yield");
	struct item *files[] = {
		make("aaaaaaaa-1", "x.jpg", NULL, true, true),
		make("cccccccc-3", "z.jpg", NULL, true, true),
	};
	struct item *both[] = {
		/* the folder before the file that had its name */
		make("bbbbbbbb-2", "x.jpg/y.jpg", NULL, true, true),
		make("aaaaaaaa-1", "x.jpg", NULL, true, true),
		/* the file that had it before the folder */
		make("cccccccc-3", "z.jpg", NULL, true, true),
		make("dddddddd-4", "z.jpg/w.jpg", NULL, true, true),
	};
	struct item *reversed[4] = { both[3], both[2], both[1], both[0] };
	struct names ns;
	uint64_t gen;
	int i;

	if (!st)
		return;
	gen = list(st, files, 2, 2);
	ls(st, gen, STORE_DIR_PATHS, NULL, &ns);
	CHECK(ns.n == 2 && has_name(&ns, "x.jpg") && has_name(&ns, "z.jpg"));
	for (i = 0; i < 2; i++) {
		gen = list(st, i ? reversed : both, 4, 1);
		ls(st, gen, STORE_DIR_PATHS, NULL, &ns);
		CHECK(ns.n == 4);
		CHECK(has_name(&ns, "x~aaaaaaaa.jpg") &&
		      has_name(&ns, "z~cccccccc.jpg"));
		CHECK(folder_id(st, gen, STORE_DIR_PATHS, "x.jpg") != 0);
		CHECK(folder_id(st, gen, STORE_DIR_PATHS, "z.jpg") != 0);
		/* items/ has no folders: the files keep their names there */
		ls(st, gen, STORE_DIR_ITEMS, NULL, &ns);
		CHECK(ns.n == 4 && has_name(&ns, "x.jpg") &&
		      has_name(&ns, "z.jpg") && has_name(&ns, "x.jpg%2Fy.jpg"));
	}
	free_items(files, 2);
	free_items(both, 4);
	store_free(st);
}

/* Uids alike in their first 8 bytes: the whole uid tells them apart. */
static void test_uid_prefix(void)
{
	struct store *st = open_store("prefix");
	struct item *v[] = {
		make("aaaaaaaa-1", "dup.jpg", NULL, true, true),
		make("aaaaaaaa-2", "dup.jpg", NULL, true, true),
	};
	struct names ns;
	uint64_t gen;

	if (!st)
		return;
	gen = list(st, v, 2, 2);
	ls(st, gen, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 2);
	CHECK_STR(ns.v[0], "dup~aaaaaaaa.jpg");
	CHECK_STR(ns.v[1], "dup~aaaaaaaa-2.jpg");
	free_items(v, 2);
	store_free(st);
}

/* An object whose key changed is named by its new key, and its old name
 * is free for another. */
static void test_key_changed(void)
{
	struct store *st = open_store("rekey");
	struct item *first[] = { make("aaaaaaaa-1", "old.jpg", NULL, true,
				      true) };
	struct item *second[] = {
		make("bbbbbbbb-2", "old.jpg", NULL, true, true),
		make("aaaaaaaa-1", "new.jpg", NULL, true, true),
	};
	struct store_entry e;
	struct names ns;
	uint64_t gen, oid = 0;

	if (!st)
		return;
	gen = list(st, first, 1, 1);
	if (store_lookup(st, gen, STORE_DIR_ITEMS, "old.jpg", NULL, &e) == 0)
		oid = e.oid;
	CHECK(oid != 0);
	gen = list(st, second, 2, 2);
	ls(st, gen, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 2 && has_name(&ns, "old.jpg") &&
	      has_name(&ns, "new.jpg"));
	CHECK(store_lookup(st, gen, STORE_DIR_ITEMS, "new.jpg", NULL, &e) ==
		      0 &&
	      e.oid == oid);
	CHECK(store_lookup(st, gen, STORE_DIR_PATHS, "old.jpg", NULL, &e) ==
		      0 &&
	      e.oid != oid);
	free_items(first, 1);
	free_items(second, 2);
	store_free(st);
}

/* Keys named by rules 1-3 in every view; an object with no file to show
 * is in items/ only. */
static void test_key_rules(void)
{
	struct store *st = open_store("rules");
	char long_key[301];
	struct item *v[4];
	struct store_place p;
	struct store_entry e;
	struct names ns;
	uint64_t gen, a, dot;
	size_t len;

	if (!st)
		return;
	memset(long_key, 'k', 296);
	strcpy(long_key + 296, ".png");
	v[0] = make("u-dots", "..", NULL, true, true);
	v[1] = make("u-dot", "a/./b", NULL, true, true);
	v[2] = make("abcdef12-long", long_key, NULL, true, true);
	v[3] = make("u-none", "none.jpg", NULL, false, false);
	gen = list(st, v, 4, 4);
	ls(st, gen, STORE_DIR_ITEMS, NULL, &ns);
	CHECK(ns.n == 4);
	CHECK_STR(ns.v[0], "%2E%2E");
	CHECK_STR(ns.v[1], "a%2F.%2Fb");
	len = strlen(ns.v[2]);
	CHECK(len <= NAMES_MAX && len > 13 &&
	      strcmp(ns.v[2] + len - 13, "~abcdef12.png") == 0);
	CHECK_STR(ns.v[3], "none.jpg");
	/* the key-path tree: "." a folder of its own, the extension added */
	a = folder_id(st, gen, STORE_DIR_PATHS, "a");
	dot = a ? folder_id(st, gen, a, "%2E") : 0;
	CHECK(dot != 0);
	ls(st, gen, dot, NULL, &ns);
	CHECK(ns.n == 1 && strcmp(ns.v[0], "b.jpg") == 0);
	ls(st, gen, STORE_DIR_PATHS, NULL, &ns);
	CHECK(ns.n == 3 && has_name(&ns, "%2E%2E.jpg") &&
	      !has_name(&ns, "none.jpg"));
	CHECK(store_lookup(st, gen, STORE_DIR_ITEMS, "none.jpg", NULL, &e) ==
	      0);
	CHECK(store_object_place(st, gen, ITEM_KIND_ITEM, e.oid, &p) == 0);
	CHECK(p.list == STORE_DIR_ITEMS && p.list_pos == 4 && p.folder == 0);
	free_items(v, 4);
	store_free(st);
}

/* What getattr needs is written with the names: the listed size and time,
 * and a learned size for the version it was learned of only. */
static void test_attributes(void)
{
	struct store *st = open_store("attrs");
	struct item *v[] = {
		make("u-sized", "sized.jpg", NULL, true, true),
		make("u-learned", "learned.jpg", NULL, true, true),
	};
	struct item *later;
	struct store_entry e;
	uint64_t gen;

	if (!st)
		return;
	v[0]->size = 42;
	v[0]->mtime = (struct timespec){ 1700000000, 5 };
	v[0]->has_mtime = true;
	v[1]->mtime = (struct timespec){ 1700000001, 0 };
	v[1]->has_mtime = true;
	gen = list(st, v, 2, 2);
	CHECK(store_lookup(st, gen, STORE_DIR_PATHS, "sized.jpg", NULL, &e) ==
	      0);
	CHECK(e.size == 42 && e.has_mtime && e.mtime.tv_sec == 1700000000 &&
	      e.mtime.tv_nsec == 5);
	/* a listed size is not overridden by one learned */
	v[0]->oid = e.oid;
	store_learn_size(st, v[0], 0, 99, "");
	CHECK(store_lookup(st, gen, STORE_DIR_PATHS, "sized.jpg", NULL, &e) ==
		      0 &&
	      e.size == 42);
	CHECK(store_lookup(st, gen, STORE_DIR_PATHS, "learned.jpg", NULL, &e) ==
		      0 &&
	      e.size == -1 && e.thumb_size == -1);
	v[1]->oid = e.oid;
	store_learn_size(st, v[1], 0, 1234, "\"etag\"");
	store_learn_size(st, v[1], 1, 56, "");
	CHECK(store_lookup(st, gen, STORE_DIR_PATHS, "learned.jpg", NULL, &e) ==
		      0 &&
	      e.size == 1234 && e.thumb_size == 56);
	/* a new version of it: what was learned is of the old one */
	later = make("u-learned", "learned.jpg", NULL, true, true);
	later->mtime = (struct timespec){ 1700000002, 0 };
	later->has_mtime = true;
	gen = list(st, &later, 1, 1);
	CHECK(store_lookup(st, gen, STORE_DIR_PATHS, "learned.jpg", NULL, &e) ==
		      0 &&
	      e.size == -1 && e.thumb_size == -1 &&
	      e.mtime.tv_sec == 1700000002);
	item_unref(later);
	free_items(v, 2);
	store_free(st);
}

/* A page the disk cannot take is rolled back whole and added again in
 * memory: its objects, names and folders are written once, as if nothing
 * had failed. */
static void test_page_again(void)
{
	char sub[300], cmd[700], key[32], uid[32], name[64];
	struct item *v[400];
	struct store_entry e;
	struct store *st;
	uint64_t gen, d;
	size_t i, bad = 0;
	int fd;

	if (geteuid() != 0)
		return;
	snprintf(sub, sizeof(sub), "%s/full", dir);
	CHECK(mkdir(sub, 0700) == 0);
	snprintf(cmd, sizeof(cmd), "mount -t tmpfs -o size=256k,mode=0700 t %s",
		 sub);
	if (system(cmd) != 0)
		return;
	/* two objects a key, a folder a key; big enough to fill the disk
	 * some pages in */
	for (i = 0; i < 400; i++) {
		snprintf(key, sizeof(key), "d%zu/k.jpg", i / 2);
		snprintf(uid, sizeof(uid), "%08zu-u", i);
		v[i] = make(uid, key, "completed", true, true);
		free(v[i]->json);
		v[i]->json = calloc(1, 2048);
		memset(v[i]->json, ' ', 2047);
		v[i]->json_len = 2047;
	}
	fd = open(sub, O_RDONLY | O_DIRECTORY);
	st = open_in(fd, sub, "http://api", "full");
	gen = list(st, v, 400, 50);
	CHECK(gen != 0 && store_objects(st, gen) == 400);
	for (i = 0; i < 400 && gen; i++) {
		snprintf(key, sizeof(key), "d%zu", i / 2);
		snprintf(name, sizeof(name), "k~%08zu.jpg", i);
		d = folder_id(st, gen, STORE_DIR_PATHS, key);
		if (!d || store_lookup(st, gen, d, name, NULL, &e) ||
		    store_lookup(st, gen, d, "k.jpg", NULL, &e) != -ENOENT)
			bad++;
	}
	CHECK(bad == 0);
	store_free(st);
	close(fd);
	snprintf(cmd, sizeof(cmd), "umount %s", sub);
	CHECK(system(cmd) == 0);
	free_items(v, 400);
}

/* The numbers by uid in memory: every object under a shared hash is
 * offered, the table grows, and a page rolled back takes its own away. */
static void test_uids_table(void)
{
	struct store_uids m = { 0 };
	uint64_t oid, seen = 0;
	size_t pos = 0, i, missing = 0;

	CHECK(store_uids_hash("a") != store_uids_hash("b"));
	CHECK(store_uids_add(&m, 1, (uint64_t)1 << 32) == -EOVERFLOW);
	for (i = 1; i <= 5000; i++)
		CHECK(store_uids_add(&m, i % 7 ? i * 0x9e3779b1u : 42, i) == 0);
	CHECK(m.n == 5000 && m.cap >= 5000 * 4 / 3);
	while ((oid = store_uids_next(&m, 42, &pos)))
		seen++;
	CHECK(seen == 5000 / 7);
	store_uids_drop_from(&m, 4001);
	CHECK(m.n == 4000);
	for (i = 1; i <= 5000; i++) {
		pos = 0;
		if (i % 7 == 0)
			continue;
		oid = store_uids_next(&m, i * 0x9e3779b1u, &pos);
		if (i <= 4000 ? oid != i : oid != 0)
			missing++;
	}
	CHECK(missing == 0);
	/* a number given again after the drop */
	CHECK(store_uids_add(&m, 7, 4001) == 0);
	pos = 0;
	CHECK(store_uids_next(&m, 7, &pos) == 4001);
	CHECK(store_uids_next(&m, 7, &pos) == 0);
	store_uids_clear(&m);
	pos = 0;
	CHECK(m.n == 0 && store_uids_next(&m, 7, &pos) == 0);
}

/* The number of the entry @name in items/ of @gen, 0 when none. */
static uint64_t oid_of(struct store *st, uint64_t gen, const char *name)
{
	struct store_entry e;

	if (store_lookup(st, gen, STORE_DIR_ITEMS, name, NULL, &e))
		return 0;
	return e.oid;
}

/* An object keeps its number from one listing to the next, and after the
 * store is opened again; one listed twice in a listing is written once. */
static void test_numbers_kept(void)
{
	struct store *st = open_store("numbers");
	struct item *v[] = { make("n-1", "one.jpg", NULL, true, true),
			     make("n-2", "two.jpg", NULL, true, true),
			     make("n-1", "one.jpg", NULL, true, true),
			     make("n-3", "three.jpg", NULL, true, true) };
	uint64_t g1, g2, g3, one, two;

	g1 = list(st, v, 2, 1);
	one = oid_of(st, g1, "one.jpg");
	two = oid_of(st, g1, "two.jpg");
	CHECK(one && two && one != two);
	g2 = list(st, v, 3, 2);
	CHECK(store_objects(st, g2) == 2);
	CHECK(oid_of(st, g2, "one.jpg") == one);
	CHECK(oid_of(st, g2, "two.jpg") == two);
	store_free(st);
	st = open_store("numbers");
	g3 = list(st, v, 4, 4);
	CHECK(store_objects(st, g3) == 3);
	CHECK(oid_of(st, g3, "one.jpg") == one);
	CHECK(oid_of(st, g3, "two.jpg") == two);
	CHECK(oid_of(st, g3, "three.jpg") > two);
	free_items(v, 4);
	store_free(st);
}

/* Two mounts list a new object at once, each numbering it: each keeps its
 * own number in its next listing, so its inodes stay. */
static void test_numbered_twice(void)
{
	struct store *a = open_store("twice"), *b = open_store("twice");
	struct item *v[] = { make("t-1", "one.jpg", NULL, true, true) };
	struct store_listing *la, *lb;
	uint64_t ga, gb, ga2, gb2, in_a, in_b;

	CHECK(store_listing_begin(a, ITEM_KIND_ITEM, 0, &la) == 0);
	CHECK(store_listing_begin(b, ITEM_KIND_ITEM, 0, &lb) == 0);
	CHECK(store_listing_add(la, v, 1) == 1);
	CHECK(store_listing_add(lb, v, 1) == 1);
	ga = store_listing_commit(la);
	gb = store_listing_commit(lb);
	store_listing_free(la);
	store_listing_free(lb);
	in_a = oid_of(a, ga, "one.jpg");
	in_b = oid_of(b, gb, "one.jpg");
	CHECK(in_a && in_b && in_a != in_b);
	CHECK(store_listing_begin(b, ITEM_KIND_ITEM, gb, &lb) == 0);
	CHECK(store_listing_add(lb, v, 1) == 1);
	gb2 = store_listing_commit(lb);
	store_listing_free(lb);
	CHECK(store_listing_begin(a, ITEM_KIND_ITEM, ga, &la) == 0);
	CHECK(store_listing_add(la, v, 1) == 1);
	ga2 = store_listing_commit(la);
	store_listing_free(la);
	CHECK(oid_of(a, ga2, "one.jpg") == in_a);
	CHECK(oid_of(b, gb2, "one.jpg") == in_b);
	free_items(v, 1);
	store_free(a);
	store_free(b);
}

int main(void)
{
	if (fixture_begin())
		return 1;
	test_collisions();
	test_names_kept();
	test_plain_held_back();
	test_kept_yields_to_folder();
	test_uid_prefix();
	test_key_changed();
	test_key_rules();
	test_attributes();
	test_page_again();
	test_uids_table();
	test_numbers_kept();
	test_numbered_twice();
	fixture_end();
	return check_report();
}
