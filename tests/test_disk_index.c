/* Unit tests of src/disk_index.c, the data cache's policy, with no entry
 * file at all: what is admitted within the room, what is evicted (handed
 * to the callback), blocks on their second ask, a pass over more than fits
 * that keeps what it has, giving room back to the listings, and a batch
 * that cannot overcommit the disk. */
#include "disk_index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#define E 1000 /* bytes of every entry */

struct evicted {
	char names[256][DISK_NAME_MAX];
	int n;
};

static void note(void *ctx, const char *name)
{
	struct evicted *ev = ctx;

	if (ev->n < 256)
		snprintf(ev->names[ev->n++], DISK_NAME_MAX, "%s", name);
}

static bool was_evicted(const struct evicted *ev, const char *name)
{
	int i;

	for (i = 0; i < ev->n; i++) {
		if (!strcmp(ev->names[i], name))
			return true;
	}
	return false;
}

/* Offer @name (a whole object, or a block): whether it came in. */
static bool offer(struct disk_index *ix, const char *name, bool block,
		  const struct disk_room *room, struct evicted *ev)
{
	struct disk_offer o = { name, E, block, false };
	bool lost = false, gone;

	CHECK(disk_index_admit(ix, &o, 1, room, 1000, note, ev) == 0);
	if (o.in)
		disk_index_settle(ix, &o, &lost, &gone, 1);
	return o.in;
}

static void test_cap(struct disk_index *ix)
{
	struct disk_room room = { .cap = 10 * E, .fs_free = -1 };
	struct evicted ev = { .n = 0 };
	char name[32];
	int i;

	for (i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "a%d", i);
		CHECK(offer(ix, name, false, &room, &ev));
	}
	CHECK(disk_index_used(ix, NULL) == 10 * E && ev.n == 0);
	/* asked for as often as what it would evict: not in, twice */
	CHECK(!offer(ix, "new", false, &room, &ev));
	CHECK(!offer(ix, "new", false, &room, &ev));
	/* asked for more often: in, one evicted through the callback */
	CHECK(offer(ix, "new", false, &room, &ev));
	CHECK(ev.n == 1 && disk_index_used(ix, NULL) == 10 * E);
	/* what readers found counts at the next admission */
	disk_index_hit(ix, "new");
	/* a block comes in the second time it is asked for */
	room.cap = 100 * E;
	CHECK(!offer(ix, "big.0", true, &room, &ev));
	CHECK(offer(ix, "big.0", true, &room, &ev));
	CHECK(offer(ix, "big.1", true, &room, &ev) == false);
	/* dropped: the object and every block, each through the callback */
	ev.n = 0;
	CHECK(offer(ix, "big", false, &room, &ev));
	disk_index_drop(ix, "big", note, &ev);
	CHECK(was_evicted(&ev, "big") && was_evicted(&ev, "big.0"));
	CHECK(ev.n == 2); /* big.1 was only asked for: nothing to remove */
}

static void test_room(struct disk_index *ix)
{
	struct disk_room room = { .cap = 100 * E, .fs_free = -1 };
	struct evicted ev = { .n = 0 };
	int64_t used = disk_index_used(ix, NULL), given;

	/* the listings grew: their bytes come out of the data's share */
	room.others = 100 * E - used + 3 * E;
	given = disk_index_shrink(ix, &room, note, &ev);
	CHECK(given >= 3 * E && ev.n == (int)(given / E));
	CHECK(disk_index_used(ix, NULL) + room.others <= room.cap);
	/* the file system's free share counts as well: 2 E short */
	room.others = 0;
	room.fs_free = 1 * E;
	room.fs_reserve = 3 * E;
	ev.n = 0;
	given = disk_index_shrink(ix, &room, note, &ev);
	CHECK(given >= 2 * E);
	CHECK(disk_room_limit(&room, used) == used - 2 * E);
}

static void test_batch_within_free_space(struct disk_index *ix)
{
	struct disk_room room = { .cap = 1000 * E,
				  .fs_free = 5 * E,
				  .fs_reserve = 1 * E };
	struct disk_offer v[8];
	char names[8][16];
	int i, in = 0;

	for (i = 0; i < 8; i++) {
		snprintf(names[i], sizeof(names[i]), "b%d", i);
		v[i] = (struct disk_offer){ names[i], E, false, false };
	}
	/* the free space does not show what the batch admitted before: four
	 * fit in the four E above the reserve, not eight */
	CHECK(disk_index_admit(ix, v, 8, &room, 2000, note,
			       &(struct evicted){ .n = 0 }) == 0);
	for (i = 0; i < 8; i++)
		in += v[i].in;
	CHECK(in <= 4);
}

/* Make the empty file the cache folder's owner makes for the index. */
static bool touch(const char *path)
{
	FILE *f = fopen(path, "w");

	return f && fclose(f) == 0;
}

int main(void)
{
	char dir[] = "/tmp/avalafs-test-index-XXXXXX", path[128];
	struct disk_index *ix = NULL;

	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/index.db", dir);
	CHECK(touch(path));
	CHECK(disk_index_open(path, &ix) == 0);
	test_cap(ix);
	test_room(ix);
	disk_index_close(ix);
	/* kept across opens: the count is made again from the rows */
	CHECK(disk_index_open(path, &ix) == 0);
	CHECK(disk_index_used(ix, NULL) > 0);
	disk_index_close(ix);
	snprintf(path, sizeof(path), "%s/batch.db", dir);
	CHECK(touch(path));
	CHECK(disk_index_open(path, &ix) == 0);
	test_batch_within_free_space(ix);
	disk_index_close(ix);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	if (system(path) != 0)
		return 1;
	return check_report();
}
