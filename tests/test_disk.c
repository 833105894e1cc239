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

/* The data cache in folder @root (made), capped at @cap; its entries in
 * @dir (root/data). */
static struct disk *open_disk(const char *root, int64_t cap, char *dir,
			      size_t dir_cap)
{
	struct disk *d;
	int fd;

	mkdir(root, 0700);
	fd = open(root, O_RDONLY | O_DIRECTORY);
	d = disk_open(&(struct disk_config){
		.root_fd = fd, .root = root, .cap = cap });
	close(fd);
	snprintf(dir, dir_cap, "%s/data", root);
	return d;
}

static void test_round_trip(const char *root)
{
	char dir[512];
	struct disk *d = open_disk(root, 1 << 30, dir, sizeof(dir));
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

/* disk_get_iov(): an entry read straight into pieces of the caller's,
 * checked as disk_get() checks it; one of another length is left as it
 * is, a damaged one removed. */
static void test_into_pieces(const char *root)
{
	char dir[512], path[1024];
	struct disk *d = open_disk(root, 1 << 30, dir, sizeof(dir));
	struct disk_version want = { .total = ENTRY }, got;
	static char a[64 * 1024], b[ENTRY - sizeof(a)], small[ENTRY - 1];
	struct iovec two[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
	struct iovec short_by_one = { small, sizeof(small) };
	int fd;

	CHECK(d != NULL);
	snprintf(want.listed, sizeof(want.listed), "t1");
	CHECK(put(d, "x\n7") == 0);
	CHECK(disk_get_iov(d, "x\n7", DISK_WHOLE, &want, &got, two, 2) ==
	      ENTRY);
	CHECK(a[0] == '7' && a[sizeof(a) - 1] == '7' && b[0] == '7' &&
	      b[sizeof(b) - 1] == '7' && got.total == ENTRY);
	CHECK(disk_get_iov(d, "x\n7", DISK_WHOLE, &want, &got, &short_by_one,
			   1) == -EMSGSIZE);
	CHECK(get(d, "x\n7"));
	/* a byte flipped in the second piece's part */
	CHECK(entry_file(dir, path, sizeof(path)));
	fd = open(path, O_RDWR);
	CHECK(fd >= 0 && pwrite(fd, "!", 1, 90000) == 1);
	close(fd);
	CHECK(disk_get_iov(d, "x\n7", DISK_WHOLE, &want, &got, two, 2) ==
	      -ENOENT);
	CHECK(access(path, F_OK) != 0);
	CHECK(!get(d, "x\n7"));
	disk_close(d);
}

/* Pieces of a block: where they start, how long they are, kept the second
 * time offered, and never longer than a piece. */
static void test_block_pieces(const char *root)
{
	char dir[512], path[1024];
	struct disk *d = open_disk(root, 1 << 30, dir, sizeof(dir));
	int64_t total = (10 << 20) + 100, last = total >> DISK_PIECE_SHIFT;
	struct disk_version v = { .total = total }, got;
	static char piece[DISK_PIECE + 1];
	struct iovec iov = { piece, DISK_PIECE };
	void *bytes = NULL;

	CHECK(disk_unit_start(DISK_PIECES + 3) == 3 * DISK_PIECE);
	CHECK(disk_unit_len(DISK_PIECES + 3, total) == DISK_PIECE);
	CHECK(disk_unit_start(2) == 2 * DISK_BLOCK);
	CHECK(disk_unit_len(2, total) == total - 2 * DISK_BLOCK);
	CHECK(disk_unit_len(DISK_PIECES + last, total) == 100);
	CHECK(disk_unit_len(DISK_PIECES + last + 1, total) <= 0);
	CHECK(disk_unit_len(DISK_WHOLE, 5) == 5);

	CHECK(d != NULL);
	memset(piece, 'p', sizeof(piece));
	/* a piece of a large object comes in the second time */
	CHECK(disk_put(d, "big", DISK_PIECES + 3, &v, &iov, 1) == -ENOSPC);
	CHECK(disk_put(d, "big", DISK_PIECES + 3, &v, &iov, 1) == 0);
	CHECK(entry_file(dir, path, sizeof(path)));
	CHECK(strstr(path, ".p3") != NULL);
	CHECK(disk_get(d, "big", DISK_PIECES + 3, &v, &got, &bytes) ==
	      DISK_PIECE);
	CHECK(bytes && ((char *)bytes)[DISK_PIECE - 1] == 'p');
	free(bytes);
	/* neither the block it is part of, nor its neighbour */
	CHECK(disk_get(d, "big", 0, &v, &got, &bytes) == -ENOENT);
	CHECK(disk_get(d, "big", DISK_PIECES + 4, &v, &got, &bytes) == -ENOENT);
	/* an entry of a piece longer than a piece is damaged */
	iov.iov_len = DISK_PIECE + 1;
	CHECK(disk_put(d, "big", DISK_PIECES + 5, &v, &iov, 1) == -ENOSPC);
	CHECK(disk_put(d, "big", DISK_PIECES + 5, &v, &iov, 1) == 0);
	CHECK(disk_get(d, "big", DISK_PIECES + 5, &v, &got, &bytes) == -ENOENT);
	/* block 0 kept whole: its pieces go, those of block 1 stay */
	iov.iov_len = DISK_PIECE;
	CHECK(disk_put(d, "big", DISK_PIECES + 16, &v, &iov, 1) == -ENOSPC);
	CHECK(disk_put(d, "big", DISK_PIECES + 16, &v, &iov, 1) == 0);
	disk_drop_pieces(d, "big", 0);
	CHECK(disk_get(d, "big", DISK_PIECES + 3, &v, &got, &bytes) == -ENOENT);
	CHECK(disk_get(d, "big", DISK_PIECES + 16, &v, &got, &bytes) ==
	      DISK_PIECE);
	free(bytes);
	disk_close(d);
}

static void test_cap_and_admission(const char *root)
{
	char dir[512];
	/* room for about ten beside the index, which counts in the cap */
	struct disk *d =
		open_disk(root, 10 * ENTRY + (1 << 20), dir, sizeof(dir));
	struct disk_stats st;
	char id[32];
	int i, n, pass, hits[6] = { 0 };
	int64_t foot;
	unsigned seed = 3;

	CHECK(d != NULL);
	/* an entry counts as what it takes on disk: its header, and whole
	 * blocks */
	CHECK(put(d, "obj0") == 0);
	disk_get_stats(d, &st);
	foot = st.used;
	CHECK(foot > ENTRY && foot % 512 == 0 && foot < ENTRY + 8192);
	/* as many as fit come in, then one is refused */
	for (n = 1; n < 20; n++) {
		snprintf(id, sizeof(id), "obj%d", n);
		if (put(d, id))
			break;
	}
	disk_get_stats(d, &st);
	CHECK(n >= 8 && n < 20);
	CHECK(st.used == n * foot && st.refused == 1 && st.used <= st.limit);
	/* another, asked for once, as often as what it would evict: not
	 * admitted; asked for more often than them, it is */
	CHECK(put(d, "new0") == -ENOSPC);
	CHECK(put(d, "new0") == -ENOSPC);
	CHECK(put(d, "new0") == 0 && get(d, "new0"));
	disk_get_stats(d, &st);
	CHECK(st.used <= st.limit && st.evicted == 1);

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
	CHECK(st.used <= st.limit);
	/* once asked for more often than the first ones, about half of them
	 * came in, and they stay for the passes after */
	CHECK(hits[4] >= 7 && hits[5] >= 7);
	CHECK(hits[5] >= hits[4] - 1);
	disk_close(d);
}

static void test_tmp_cleanup(const char *root)
{
	char path[1024], kept[1024], other[1024], dir[512];
	struct stat st;
	struct disk *d;
	int fd;

	mkdir(root, 0700);
	snprintf(dir, sizeof(dir), "%s/data", root);
	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/tmp", dir);
	mkdir(path, 0700);
	/* a writer that died: pid 2^22 + 1 is past the kernel's pid_max */
	snprintf(path, sizeof(path), "%s/tmp/4194305.7", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0);
	close(fd);
	/* names no writer gives stay, whatever digits they start with */
	snprintf(kept, sizeof(kept), "%s/tmp/2024-report.pdf", dir);
	fd = open(kept, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0);
	close(fd);
	/* a link under a writer's name is not a writer's file: it stays,
	 * and so does what it points to */
	snprintf(other, sizeof(other), "%s/outside", root);
	fd = open(other, O_CREAT | O_WRONLY, 0600);
	close(fd);
	snprintf(path, sizeof(path), "%s/tmp/4194305.8", dir);
	CHECK(symlink(other, path) == 0);
	d = open_disk(root, 1 << 20, dir, sizeof(dir));
	CHECK(d != NULL);
	snprintf(path, sizeof(path), "%s/tmp/4194305.7", dir);
	CHECK(access(path, F_OK) != 0);
	CHECK(access(kept, F_OK) == 0);
	snprintf(path, sizeof(path), "%s/tmp/4194305.8", dir);
	CHECK(lstat(path, &st) == 0 && S_ISLNK(st.st_mode));
	CHECK(stat(other, &st) == 0 && st.st_size == 0);
	disk_close(d);
}

/* What others may plant where entries go is never read nor followed, and
 * no reader waits on it. */
static void test_planted(const char *root)
{
	char dir[512], path[1024], outside[1024], sub[1100];
	struct disk *d = open_disk(root, 1 << 30, dir, sizeof(dir));
	struct stat st;
	int fd;

	CHECK(d != NULL);
	snprintf(outside, sizeof(outside), "%s/outside", root);
	fd = open(outside, O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0 && write(fd, "keep", 4) == 4);
	close(fd);

	/* a link at an entry's path: a miss, removed, never followed */
	CHECK(put(d, "p\n1") == 0);
	CHECK(entry_file(dir, path, sizeof(path)));
	unlink(path);
	CHECK(symlink(outside, path) == 0);
	CHECK(!get(d, "p\n1"));
	CHECK(lstat(path, &st) != 0);
	CHECK(stat(outside, &st) == 0 && st.st_size == 4 &&
	      (st.st_mode & 0777) == 0644);
	/* written again: a file of its own, the link's target unchanged */
	CHECK(put(d, "p\n1") == 0 && get(d, "p\n1"));
	CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
	CHECK(stat(outside, &st) == 0 && st.st_size == 4);

	/* a FIFO: a miss at once, not a reader waiting for ever */
	unlink(path);
	CHECK(mkfifo(path, 0600) == 0);
	CHECK(!get(d, "p\n1"));
	CHECK(lstat(path, &st) != 0);

	/* a second link to the entry (someone's hard link): not trusted */
	CHECK(put(d, "p\n1") == 0);
	snprintf(sub, sizeof(sub), "%s/hard", root);
	CHECK(link(path, sub) == 0);
	CHECK(!get(d, "p\n1"));
	unlink(sub);

	/* a file of another user, when the test can make one */
	if (geteuid() == 0) {
		CHECK(put(d, "p\n1") == 0 && get(d, "p\n1"));
		CHECK(chown(path, 65534, 65534) == 0);
		CHECK(!get(d, "p\n1"));
		CHECK(lstat(path, &st) != 0);
	}
	disk_close(d);

	/* data/tmp a file, data/xx a link: set aside, the cache works */
	snprintf(path, sizeof(path), "%s/tmp", dir);
	snprintf(sub, sizeof(sub), "rm -rf %s", path);
	CHECK(system(sub) == 0);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	d = open_disk(root, 1 << 30, dir, sizeof(dir));
	CHECK(d != NULL);
	CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
	CHECK(put(d, "p\n2") == 0 && get(d, "p\n2"));
	CHECK(entry_file(dir, path, sizeof(path)));
	*strrchr(path, '/') = '\0';
	snprintf(sub, sizeof(sub), "rm -rf %s", path);
	CHECK(system(sub) == 0);
	CHECK(symlink(root, path) == 0);
	disk_close(d);
	d = open_disk(root, 1 << 30, dir, sizeof(dir));
	CHECK(!get(d, "p\n2"));
	CHECK(put(d, "p\n2") == 0 && get(d, "p\n2"));
	CHECK(lstat(path, &st) == 0 && S_ISDIR(st.st_mode));
	disk_close(d);
	CHECK(stat(outside, &st) == 0 && st.st_size == 4);
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
	snprintf(dir, sizeof(dir), "%s/e", tmpl);
	test_into_pieces(dir);
	snprintf(dir, sizeof(dir), "%s/c", tmpl);
	test_tmp_cleanup(dir);
	snprintf(dir, sizeof(dir), "%s/e", tmpl);
	test_block_pieces(dir);
	snprintf(dir, sizeof(dir), "%s/d", tmpl);
	test_planted(dir);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpl);
	if (system(cmd) != 0)
		return 1;
	return check_report();
}
