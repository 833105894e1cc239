/* Unit tests of src/disk.c: entries come back as written, stale and damaged
 * ones are misses and are removed, the cap holds, and a pass over more than
 * fits keeps what it has instead of churning. */
#include "disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "check.h"

#define ENTRY (100 * 1024)

static char buf[ENTRY];

static struct disk_version version(const char *listed)
{
	struct disk_version v = { .total = ENTRY };

	snprintf(v.listed, sizeof(v.listed), "%s", listed);
	snprintf(v.etag, sizeof(v.etag), "\"e1\"");
	return v;
}

static int put(struct disk *d, const char *id)
{
	struct disk_version v = version("t1");
	struct iovec iov = { buf, ENTRY };

	memset(buf, id[strlen(id) - 1], sizeof(buf));
	return disk_put(d, id, DISK_WHOLE, &v, &iov, 1);
}

/* Whether @id is there, with the bytes put() wrote. */
static bool get(struct disk *d, const char *id)
{
	struct disk_version want = { .total = -1 }, got;
	void *bytes = NULL;
	ssize_t n;
	bool ok;

	snprintf(want.listed, sizeof(want.listed), "t1");
	n = disk_get(d, id, DISK_WHOLE, &want, &got, &bytes);
	ok = n == ENTRY && ((char *)bytes)[ENTRY - 1] == id[strlen(id) - 1] &&
	     got.total == ENTRY && strcmp(got.etag, "\"e1\"") == 0;
	free(bytes);
	return ok;
}

/* The one entry file of the folder (the test keeps one). */
static bool entry_file(const char *dir, char *path, size_t cap)
{
	char sub[512];
	struct dirent *e, *f;
	DIR *top = opendir(dir), *d;
	bool found = false;

	while (top && !found && (e = readdir(top))) {
		if (strlen(e->d_name) != 2)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
		d = opendir(sub);
		while (d && !found && (f = readdir(d))) {
			if (f->d_name[0] == '.')
				continue;
			snprintf(path, cap, "%s/%s", sub, f->d_name);
			found = true;
		}
		if (d)
			closedir(d);
	}
	if (top)
		closedir(top);
	return found;
}

static void test_round_trip(const char *dir)
{
	struct disk *d = disk_open(dir, 1 << 30);
	struct disk_version stale = { .total = -1 }, got;
	struct stat st;
	char path[1024];
	void *bytes = NULL;
	int fd;

	CHECK(d != NULL);
	CHECK(put(d, "origin\nacme/cars\nitem\nu1\ndata\n/f/1") == 0);
	CHECK(get(d, "origin\nacme/cars\nitem\nu1\ndata\n/f/1"));
	CHECK(!get(d, "origin\nacme/cars\nitem\nu2\ndata\n/f/1"));
	/* files 0600 in folders 0700 */
	CHECK(entry_file(dir, path, sizeof(path)));
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	*strrchr(path, '/') = '\0';
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700);

	/* another listing time: stale, removed */
	snprintf(stale.listed, sizeof(stale.listed), "t2");
	CHECK(disk_get(d, "origin\nacme/cars\nitem\nu1\ndata\n/f/1", DISK_WHOLE,
		       &stale, &got, &bytes) == -ENOENT);
	CHECK(!get(d, "origin\nacme/cars\nitem\nu1\ndata\n/f/1"));

	/* a flipped byte: damaged, removed */
	CHECK(put(d, "x\n3") == 0);
	CHECK(entry_file(dir, path, sizeof(path)));
	fd = open(path, O_RDWR);
	CHECK(fd >= 0 && pwrite(fd, "!", 1, 5000) == 1);
	close(fd);
	CHECK(!get(d, "x\n3"));
	CHECK(access(path, F_OK) != 0);

	/* a block of a large object: kept the second time it is offered */
	{
		struct disk_version v = version("t1"), want = { .total = -1 };
		struct iovec iov = { buf, ENTRY };
		void *bytes = NULL;

		snprintf(want.listed, sizeof(want.listed), "t1");
		CHECK(disk_put(d, "big", 0, &v, &iov, 1) == -ENOSPC);
		CHECK(disk_get(d, "big", 0, &want, &got, &bytes) == -ENOENT);
		CHECK(disk_put(d, "big", 0, &v, &iov, 1) == 0);
		CHECK(disk_get(d, "big", 0, &want, &got, &bytes) == ENTRY);
		free(bytes);
		disk_drop(d, "big");
	}

	/* dropped: gone */
	CHECK(put(d, "x\n4") == 0 && get(d, "x\n4"));
	disk_drop(d, "x\n4");
	CHECK(!get(d, "x\n4"));
	disk_close(d);
}

static void test_cap_and_admission(const char *dir)
{
	struct disk *d = disk_open(dir, 10 * ENTRY + 4096);
	struct disk_stats st;
	char id[32];
	int i, pass, hits[6] = { 0 };
	unsigned seed = 3;

	CHECK(d != NULL);
	/* ten fit */
	for (i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "obj%d", i);
		CHECK(put(d, id) == 0);
	}
	disk_get_stats(d, &st);
	CHECK(st.used == 10 * ENTRY && st.refused == 0);
	/* an eleventh, asked for once, as often as what it would evict: not
	 * admitted; asked for more often than them, it is */
	CHECK(put(d, "new0") == -ENOSPC);
	CHECK(put(d, "new0") == -ENOSPC);
	CHECK(put(d, "new0") == 0 && get(d, "new0"));
	disk_get_stats(d, &st);
	CHECK(st.used <= 10 * ENTRY + 4096 && st.evicted == 1);

	/* passes in random order over twenty objects: the cache keeps
	 * about half of them instead of churning */
	for (pass = 0; pass < 6; pass++) {
		int order[20];

		for (i = 0; i < 20; i++)
			order[i] = i;
		for (i = 19; i > 0; i--) {
			int j = rand_r(&seed) % (i + 1), t = order[i];

			order[i] = order[j];
			order[j] = t;
		}
		for (i = 0; i < 20; i++) {
			snprintf(id, sizeof(id), "pass%d", order[i]);
			if (get(d, id))
				hits[pass]++;
			else
				put(d, id);
		}
	}
	disk_get_stats(d, &st);
	CHECK(st.used <= 10 * ENTRY + 4096);
	/* once asked for more often than the first ten, half of them came in,
	 * and they stay for the passes after */
	CHECK(hits[4] >= 7 && hits[5] >= 7);
	CHECK(hits[5] >= hits[4] - 1);
	disk_close(d);
}

static void test_tmp_cleanup(const char *dir)
{
	char path[1024];
	struct disk *d;
	int fd;

	snprintf(path, sizeof(path), "%s/tmp", dir);
	mkdir(path, 0700);
	/* a writer that died: pid 2^22 + 1 is past the kernel's pid_max */
	snprintf(path, sizeof(path), "%s/tmp/4194305.7", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0);
	close(fd);
	d = disk_open(dir, 1 << 20);
	CHECK(d != NULL);
	CHECK(access(path, F_OK) != 0);
	disk_close(d);
}

int main(void)
{
	char tmpl[] = "/tmp/avalafs-disk-XXXXXX", dir[64];
	char cmd[128];

	if (!mkdtemp(tmpl))
		return 1;
	snprintf(dir, sizeof(dir), "%s/a", tmpl);
	test_round_trip(dir);
	snprintf(dir, sizeof(dir), "%s/b", tmpl);
	test_cap_and_admission(dir);
	snprintf(dir, sizeof(dir), "%s/c", tmpl);
	mkdir(dir, 0700);
	test_tmp_cleanup(dir);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpl);
	if (system(cmd) != 0)
		return 1;
	return check_report();
}
