/* The data cache on disk. An entry is one file, DIR/xx/<hash>[.<block>],
 * where <hash> is the XXH3-128 of the object's identity in hex and xx its
 * first two digits: a header (what the bytes are, and checksums of itself
 * and of them) then the bytes. It is written under a temporary name in
 * DIR/tmp and renamed in, so a reader sees a whole entry or none.
 *
 * DIR/index.db counts the entries: one row each, with its size, last use
 * and how often it was asked for; rows of evicted entries stay a while as
 * ghosts that remember their count. The index is told of an entry before
 * its file exists and after it is gone, so it never counts less than the
 * disk holds. Lock order: d->lock (the index connection) is a leaf. */
#include "disk.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <xxhash.h>

#define MAGIC "avalafs\x01"
#define HEAD_MAX 4096 /* header and its strings */
#define NAME_MAX_LEN 64 /* "<32 hex>.<block>" */
#define TOUCH_MAX 256 /* uses noted before they are written to the index */
#define FREE_SHARE 20 /* keep 1/20 of the file system free */
#define STMTS_MAX 24
#define AGING_EVERY 256 /* puts between looks at the counts */

/* The fixed part of an entry's header; the identity, ETag and listing time
 * follow it, then the bytes. Native byte order: the cache is this
 * machine's. */
struct head {
	char magic[8];
	uint32_t head_len; /* this struct and its strings */
	uint16_t id_len, etag_len, listed_len;
	uint16_t pad;
	int64_t unit;
	int64_t total;
	int64_t len; /* bytes after the header */
	uint64_t sum; /* XXH3-64 of the bytes */
	uint64_t head_sum; /* XXH3-64 of the header with this field 0 */
};

struct disk {
	pthread_mutex_t lock; /* the index connection, touches, stats */
	sqlite3 *db;
	char *dir;
	int64_t cap;
	unsigned seed; /* protected by lock */
	uint64_t tmp_seq; /* protected by lock */
	struct {
		const char *sql;
		sqlite3_stmt *q;
	} stmts[STMTS_MAX]; /* protected by lock: prepared statements */
	int n_stmts;
	unsigned puts_since_aging; /* protected by lock */
	struct disk_stats stats; /* protected by lock, but what readers count */
	/* readers never wait for the index: what they saw goes here, and the
	 * writer notes it in the index with its next puts */
	pthread_mutex_t touch_lock;
	char (*touched)[NAME_MAX_LEN]; /* protected by touch_lock: hits */
	size_t n_touched; /* protected by touch_lock */
	uint64_t hits, misses, damaged; /* protected by touch_lock */
};

/* ---- names ---- */

static void entry_name(const char *id, int64_t unit, char *name, size_t cap)
{
	XXH128_hash_t h = XXH3_128bits(id, strlen(id));

	if (unit == DISK_WHOLE)
		snprintf(name, cap, "%016" PRIx64 "%016" PRIx64, h.high64,
			 h.low64);
	else
		snprintf(name, cap, "%016" PRIx64 "%016" PRIx64 ".%" PRId64,
			 h.high64, h.low64, unit);
}

static void entry_path(const struct disk *d, const char *name, char *path,
		       size_t cap)
{
	snprintf(path, cap, "%s/%.2s/%s", d->dir, name, name);
}

/* ---- the index ---- */

/* 0, or what went wrong: -EBADMSG for a damaged file, -EBUSY when another
 * mount held it too long, else -EIO. */
static int db_exec(struct disk *d, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(d->db, sql, NULL, NULL, &msg);

	if (rc == SQLITE_OK)
		return 0;
	log_debug("data cache index: %s", msg ? msg : "error");
	sqlite3_free(msg);
	switch (rc & 0xff) {
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EBADMSG;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	default:
		return -EIO;
	}
}

/* End the transaction: committed, or rolled back when that fails, so that
 * the next one can begin. */
static int db_commit(struct disk *d)
{
	int err = db_exec(d, "COMMIT");

	if (err)
		sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
	return err;
}

/* The statement of @sql (a string literal: known by its address),
 * prepared on first use. Give it back with db_done(). */
static sqlite3_stmt *db_prepare(struct disk *d, const char *sql)
{
	sqlite3_stmt *q = NULL;
	int i;

	for (i = 0; i < d->n_stmts; i++) {
		if (d->stmts[i].sql == sql)
			return d->stmts[i].q;
	}
	if (sqlite3_prepare_v3(d->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &q,
			       NULL) != SQLITE_OK) {
		log_debug("data cache index: %s", sqlite3_errmsg(d->db));
		return NULL;
	}
	if (d->n_stmts < STMTS_MAX) {
		d->stmts[d->n_stmts].sql = sql;
		d->stmts[d->n_stmts++].q = q;
	}
	return q;
}

static void db_close(struct disk *d)
{
	int i;

	for (i = 0; i < d->n_stmts; i++)
		sqlite3_finalize(d->stmts[i].q);
	d->n_stmts = 0;
	sqlite3_close(d->db);
	d->db = NULL;
}

static void db_done(struct disk *d, sqlite3_stmt *q)
{
	int i;

	if (!q)
		return;
	for (i = 0; i < d->n_stmts; i++) {
		if (d->stmts[i].q == q) {
			sqlite3_reset(q);
			sqlite3_clear_bindings(q);
			return;
		}
	}
	sqlite3_finalize(q);
}

static int64_t meta_get(struct disk *d, const char *k)
{
	sqlite3_stmt *q = db_prepare(d, "SELECT v FROM meta WHERE k = ?1");
	int64_t v = 0;

	if (!q)
		return 0;
	sqlite3_bind_text(q, 1, k, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW)
		v = sqlite3_column_int64(q, 0);
	db_done(d, q);
	return v;
}

static void meta_add(struct disk *d, const char *k, int64_t delta)
{
	sqlite3_stmt *q = db_prepare(
		d, "INSERT INTO meta(k, v) VALUES(?1, ?2)"
		   " ON CONFLICT(k) DO UPDATE SET v = v + excluded.v");

	if (!q)
		return;
	sqlite3_bind_text(q, 1, k, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, delta);
	sqlite3_step(q);
	db_done(d, q);
}

/* One row of the index. */
struct row {
	int64_t id; /* 0: none */
	int64_t size, used, hits;
	bool present;
	char name[NAME_MAX_LEN];
};

static void row_from(sqlite3_stmt *q, struct row *r)
{
	r->id = sqlite3_column_int64(q, 0);
	snprintf(r->name, sizeof(r->name), "%s",
		 (const char *)sqlite3_column_text(q, 1));
	r->size = sqlite3_column_int64(q, 2);
	r->used = sqlite3_column_int64(q, 3);
	r->hits = sqlite3_column_int64(q, 4);
	r->present = sqlite3_column_int(q, 5);
}

#define ROW_COLS "id, name, size, used, hits, present"

static bool row_find(struct disk *d, const char *name, struct row *r)
{
	sqlite3_stmt *q = db_prepare(d, "SELECT " ROW_COLS
					" FROM entries WHERE name = ?1");
	bool found = false;

	memset(r, 0, sizeof(*r));
	if (!q)
		return false;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		row_from(q, r);
		found = true;
	}
	db_done(d, q);
	return found;
}

/* A row picked at random: a present entry, or a ghost. */
static bool row_random(struct disk *d, bool present, struct row *r)
{
	sqlite3_stmt *q = db_prepare(
		d, "SELECT " ROW_COLS " FROM entries"
		   " WHERE present = ?1 AND id >= ?2 ORDER BY id LIMIT 1");
	int64_t max = 0;
	bool found = false;
	int pass;

	memset(r, 0, sizeof(*r));
	if (!q)
		return false;
	{
		sqlite3_stmt *m = db_prepare(d, "SELECT max(id) FROM entries");

		if (m && sqlite3_step(m) == SQLITE_ROW)
			max = sqlite3_column_int64(m, 0);
		db_done(d, m);
	}
	/* from a random id on, then from the start */
	for (pass = 0; pass < 2 && !found && max > 0; pass++) {
		sqlite3_reset(q);
		sqlite3_bind_int(q, 1, present);
		sqlite3_bind_int64(
			q, 2, pass ? 0 : 1 + (int64_t)(rand_r(&d->seed) % max));
		if (sqlite3_step(q) == SQLITE_ROW) {
			row_from(q, r);
			found = true;
		}
	}
	db_done(d, q);
	return found;
}

/* Make @r a ghost and remove its file; its count stays. */
static void row_evict(struct disk *d, const struct row *r)
{
	char path[PATH_MAX];
	sqlite3_stmt *q;

	entry_path(d, r->name, path, sizeof(path));
	if (unlink(path) && errno != ENOENT)
		log_debug("data cache: cannot remove %s: %s", path,
			  strerror(errno));
	q = db_prepare(d, "UPDATE entries SET present = 0 WHERE id = ?1");
	if (q) {
		sqlite3_bind_int64(q, 1, r->id);
		sqlite3_step(q);
		db_done(d, q);
	}
	if (r->present)
		meta_add(d, "used", -r->size);
}

/* Write the uses readers noted since the last time: each counts as asked
 * for once more. Called with d->lock held, in a transaction. */
static void flush_touches(struct disk *d, int64_t now)
{
	char(*taken)[NAME_MAX_LEN];
	sqlite3_stmt *q;
	size_t i, n;

	pthread_mutex_lock(&d->touch_lock);
	n = d->n_touched;
	taken = n ? malloc(n * NAME_MAX_LEN) : NULL;
	if (taken)
		memcpy(taken, d->touched, n * NAME_MAX_LEN);
	d->n_touched = 0;
	pthread_mutex_unlock(&d->touch_lock);
	if (!taken)
		return;
	q = db_prepare(d, "UPDATE entries SET used = ?2, hits = hits + 1"
			  " WHERE name = ?1");
	for (i = 0; q && i < n; i++) {
		sqlite3_reset(q);
		sqlite3_bind_text(q, 1, taken[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 2, now);
		sqlite3_step(q);
	}
	db_done(d, q);
	meta_add(d, "asks", (int64_t)n);
	free(taken);
}

/* Counts fade: once the index was asked as many times as ten times the
 * entries it holds, every count is halved, so what was popular long ago
 * yields to what is asked for now. Also forget ghosts past four per entry.
 * Called with d->lock held, in a transaction. */
static void age(struct disk *d)
{
	int64_t rows = 0, ghosts = 0;
	sqlite3_stmt *q =
		db_prepare(d, "SELECT count(*), sum(present = 0) FROM entries");
	struct row r;
	int i;

	if (q && sqlite3_step(q) == SQLITE_ROW) {
		rows = sqlite3_column_int64(q, 0);
		ghosts = sqlite3_column_int64(q, 1);
	}
	db_done(d, q);
	if (meta_get(d, "asks") > 10 * (rows + 100)) {
		db_exec(d, "UPDATE entries SET hits = hits / 2;"
			   "UPDATE meta SET v = 0 WHERE k = 'asks'");
	}
	for (i = 0; i < 4 && ghosts > 4 * (rows - ghosts) + 1024; i++) {
		if (!row_random(d, false, &r))
			break;
		q = db_prepare(d, "DELETE FROM entries WHERE id = ?1");
		if (q) {
			sqlite3_bind_int64(q, 1, r.id);
			sqlite3_step(q);
			db_done(d, q);
		}
		ghosts--;
	}
}

/* The bytes the cache may hold now: its cap, and what leaves 1/20 of the
 * file system free counting what the cache holds already. */
static int64_t limit_now(struct disk *d, int64_t used)
{
	struct statvfs sv;
	int64_t limit = d->cap, fs_limit;

	if (statvfs(d->dir, &sv) == 0) {
		fs_limit = used + (int64_t)sv.f_bavail * (int64_t)sv.f_frsize -
			   (int64_t)sv.f_blocks * (int64_t)sv.f_frsize /
				   FREE_SHARE;
		if (fs_limit < limit)
			limit = fs_limit;
	}
	return limit;
}

/* Decide whether entry @name of @size bytes comes in, making room: victims
 * are the older of random pairs, and each must have been asked for less
 * often than @name was before. A block of a large object comes in the
 * second time it is asked for: a file streamed once does not fill the
 * disk. Records the entry (present) when it comes in, or the ask (a
 * ghost) when not. @pending: the bytes of entries this batch admitted
 * that are not written yet (the file system's free space does not show
 * them), grown by those of @name when it comes in. Called with d->lock
 * held, in a transaction. */
static bool admit(struct disk *d, const char *name, int64_t size, bool block,
		  int64_t now, int64_t *pending)
{
	struct row self, a, b;
	int64_t used = meta_get(d, "used"),
		limit = limit_now(d, used - *pending);
	bool known = row_find(d, name, &self), in = !block || known;
	sqlite3_stmt *q;

	if (known && self.present) {
		/* written again (another mount, or a new version): it takes
		 * the place it has */
		meta_add(d, "used", size - self.size);
		q = db_prepare(d, "UPDATE entries SET size = ?2, used = ?3,"
				  " hits = hits + 1 WHERE id = ?1");
		if (q) {
			sqlite3_bind_int64(q, 1, self.id);
			sqlite3_bind_int64(q, 2, size);
			sqlite3_bind_int64(q, 3, now);
			sqlite3_step(q);
		}
		db_done(d, q);
		meta_add(d, "asks", 1);
		*pending +=
			size; /* the old file goes only once it is written */
		return true;
	}
	if (size > limit)
		in = false;
	while (in && used + size > limit) {
		if (!row_random(d, true, &a) || !row_random(d, true, &b)) {
			in = false;
			break;
		}
		if (b.used < a.used)
			a = b;
		if (strcmp(a.name, name) == 0 || a.hits >= self.hits) {
			in = false; /* what it would evict is asked for as much */
			break;
		}
		row_evict(d, &a);
		d->stats.evicted++;
		used -= a.size;
	}
	q = db_prepare(d, "INSERT INTO entries(name, size, used, hits, present)"
			  " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(name) DO"
			  " UPDATE SET size = excluded.size,"
			  " used = excluded.used, hits = excluded.hits,"
			  " present = excluded.present");
	if (q) {
		sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 2, size);
		sqlite3_bind_int64(q, 3, now);
		sqlite3_bind_int64(q, 4, self.hits + 1);
		sqlite3_bind_int(q, 5, in);
		if (sqlite3_step(q) != SQLITE_DONE)
			in = false;
		db_done(d, q);
	}
	if (in) {
		meta_add(d, "used", size);
		*pending += size;
	}
	meta_add(d, "asks", 1);
	return in;
}

/* Forget entry @name in the index: its file is gone or is not coming. */
static void row_remove(struct disk *d, const char *name)
{
	struct row r;

	if (db_exec(d, "BEGIN IMMEDIATE"))
		return;
	if (row_find(d, name, &r) && r.present)
		row_evict(d, &r);
	db_commit(d);
}

/* ---- entries ---- */

static uint64_t head_sum(struct head *h, const char *strings)
{
	uint64_t saved = h->head_sum, sum;
	XXH3_state_t *st = XXH3_createState();

	h->head_sum = 0;
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, h, sizeof(*h));
	XXH3_64bits_update(st, strings,
			   (size_t)h->id_len + h->etag_len + h->listed_len);
	sum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	h->head_sum = saved;
	return sum;
}

/* Whether the version an entry has (@got) may serve a reader who expects
 * @want. */
static bool version_fits(const struct disk_version *want,
			 const struct disk_version *got)
{
	if (strcmp(want->listed, got->listed) != 0)
		return false;
	if (want->total >= 0 && want->total != got->total)
		return false;
	return !want->etag[0] || strcmp(want->etag, got->etag) == 0;
}

/* Read and check the entry open at @fd into a new buffer (*@bytes).
 * Returns its length, -ESTALE for another version, -EBADMSG for a damaged
 * entry. */
static ssize_t entry_read(int fd, const char *id, int64_t unit,
			  const struct disk_version *want,
			  struct disk_version *got, void **bytes)
{
	char raw[HEAD_MAX];
	struct head h;
	struct stat st;
	const char *s;
	void *buf;
	ssize_t n;
	size_t id_len = strlen(id);

	*bytes = NULL;
	if (fstat(fd, &st))
		return -errno;
	n = pread(fd, raw, sizeof(raw), 0);
	if (n < (ssize_t)sizeof(h))
		return -EBADMSG;
	memcpy(&h, raw, sizeof(h));
	s = raw + sizeof(h);
	if (memcmp(h.magic, MAGIC, sizeof(h.magic)) != 0 ||
	    h.head_len > (size_t)n ||
	    h.head_len !=
		    sizeof(h) + (size_t)h.id_len + h.etag_len + h.listed_len ||
	    h.head_sum != head_sum(&h, s) || h.len < 0 ||
	    h.len > (unit == DISK_WHOLE ? DISK_WHOLE_MAX : DISK_BLOCK) ||
	    st.st_size != (off_t)h.head_len + h.len)
		return -EBADMSG;
	/* another identity with the same hash, or another block */
	if (h.id_len != id_len || memcmp(s, id, id_len) != 0 || h.unit != unit)
		return -ESTALE;
	if (h.etag_len >= sizeof(got->etag) ||
	    h.listed_len >= sizeof(got->listed))
		return -EBADMSG;
	got->total = h.total;
	memcpy(got->etag, s + h.id_len, h.etag_len);
	got->etag[h.etag_len] = '\0';
	memcpy(got->listed, s + h.id_len + h.etag_len, h.listed_len);
	got->listed[h.listed_len] = '\0';
	if (!version_fits(want, got))
		return -ESTALE;
	if (h.len > (unit == DISK_WHOLE ? DISK_WHOLE_MAX : DISK_BLOCK))
		return -EBADMSG;
	buf = malloc(h.len ? h.len : 1);
	if (!buf)
		return -ENOMEM;
	n = pread(fd, buf, h.len, h.head_len);
	if (n != h.len || XXH3_64bits(buf, h.len) != h.sum) {
		free(buf);
		return n < 0 ? -EIO : -EBADMSG;
	}
	*bytes = buf;
	return n;
}

ssize_t disk_get(struct disk *d, const char *id, int64_t unit,
		 const struct disk_version *want, struct disk_version *got,
		 void **bytes)
{
	char name[NAME_MAX_LEN], path[PATH_MAX];
	ssize_t n;
	int fd;

	entry_name(id, unit, name, sizeof(name));
	entry_path(d, name, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOATIME);
	if (fd < 0 && errno == EPERM)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		pthread_mutex_lock(&d->touch_lock);
		d->misses++;
		pthread_mutex_unlock(&d->touch_lock);
		return -ENOENT;
	}
	n = entry_read(fd, id, unit, want, got, bytes);
	close(fd);
	if (n == -ENOMEM || n == -EIO)
		return n; /* the machine's trouble, not the entry's */
	if (n < 0) {
		if (n == -EBADMSG)
			log_err("data cache: %s is damaged, removed", path);
		else
			log_debug("data cache: %s is stale, removed", path);
		unlink(path);
		pthread_mutex_lock(&d->touch_lock);
		d->misses++;
		d->damaged += n == -EBADMSG;
		pthread_mutex_unlock(&d->touch_lock);
		/* rare: the index forgets it at once */
		pthread_mutex_lock(&d->lock);
		row_remove(d, name);
		pthread_mutex_unlock(&d->lock);
		return -ENOENT;
	}
	pthread_mutex_lock(&d->touch_lock);
	d->hits++;
	/* past TOUCH_MAX uses before the next put, the rest go unnoted */
	if (d->n_touched < TOUCH_MAX)
		memcpy(d->touched[d->n_touched++], name, NAME_MAX_LEN);
	pthread_mutex_unlock(&d->touch_lock);
	return n;
}

/* Write an entry to a new file in DIR/tmp; its name in @tmp. */
static int entry_write(struct disk *d, const char *id, int64_t unit,
		       const struct disk_version *v, const struct iovec *iov,
		       int n, char *tmp, size_t tmp_cap)
{
	struct iovec all[1 + 64];
	char raw[HEAD_MAX];
	struct head h = { 0 };
	XXH3_state_t *st;
	size_t len = 0, strings;
	ssize_t done;
	uint64_t seq;
	int i, fd, err = 0;

	if (n > 64)
		return -EINVAL;
	memcpy(h.magic, MAGIC, sizeof(h.magic));
	h.id_len = strlen(id);
	h.etag_len = strlen(v->etag);
	h.listed_len = strlen(v->listed);
	strings = (size_t)h.id_len + h.etag_len + h.listed_len;
	if (sizeof(h) + strings > sizeof(raw))
		return -ENAMETOOLONG;
	h.head_len = sizeof(h) + strings;
	h.unit = unit;
	h.total = v->total;
	st = XXH3_createState();
	if (!st)
		return -ENOMEM;
	XXH3_64bits_reset(st);
	for (i = 0; i < n; i++) {
		XXH3_64bits_update(st, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	h.sum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	h.len = len;
	memcpy(raw + sizeof(h), id, h.id_len);
	memcpy(raw + sizeof(h) + h.id_len, v->etag, h.etag_len);
	memcpy(raw + sizeof(h) + h.id_len + h.etag_len, v->listed,
	       h.listed_len);
	h.head_sum = head_sum(&h, raw + sizeof(h));
	memcpy(raw, &h, sizeof(h));

	pthread_mutex_lock(&d->lock);
	seq = d->tmp_seq++;
	pthread_mutex_unlock(&d->lock);
	snprintf(tmp, tmp_cap, "%s/tmp/%ld.%" PRIu64, d->dir, (long)getpid(),
		 seq);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	all[0].iov_base = raw;
	all[0].iov_len = h.head_len;
	memcpy(all + 1, iov, n * sizeof(*iov));
	done = pwritev(fd, all, n + 1, 0);
	if (done < 0)
		err = -errno;
	else if ((size_t)done != h.head_len + len)
		err = -ENOSPC;
	if (close(fd) && !err)
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}

/* Rename the entry written at @tmp to @path, making its folder when
 * missing. */
static int entry_rename(struct disk *d, const char *name, const char *tmp,
			const char *path)
{
	char sub[PATH_MAX];
	int err = 0;

	if (rename(tmp, path)) {
		err = -errno;
		if (err == -ENOENT) {
			snprintf(sub, sizeof(sub), "%s/%.2s", d->dir, name);
			if (mkdir(sub, 0700) == 0 || errno == EEXIST)
				err = rename(tmp, path) ? -errno : 0;
		}
		if (err)
			unlink(tmp);
	}
	return err;
}

void disk_put_many(struct disk *d, struct disk_put *puts, int n)
{
	char name[NAME_MAX_LEN], path[PATH_MAX], tmp[PATH_MAX];
	int64_t now = time(NULL), pending = 0;
	bool *lost = calloc(n, sizeof(*lost));
	int i, k;

	if (!lost) {
		for (i = 0; i < n; i++)
			puts[i].err = -ENOMEM;
		return;
	}
	/* what comes in, decided in one transaction */
	pthread_mutex_lock(&d->lock);
	if (db_exec(d, "BEGIN IMMEDIATE") == 0) {
		flush_touches(d, now);
		for (i = 0; i < n; i++) {
			int64_t size = 0;

			for (k = 0; k < puts[i].n; k++)
				size += puts[i].iov[k].iov_len;
			entry_name(puts[i].id, puts[i].unit, name,
				   sizeof(name));
			puts[i].err = admit(d, name, size,
					    puts[i].unit != DISK_WHOLE, now,
					    &pending)
					      ? 0
					      : -ENOSPC;
			if (++d->puts_since_aging >= AGING_EVERY) {
				d->puts_since_aging = 0;
				age(d);
			}
		}
		if (db_commit(d))
			for (i = 0; i < n; i++)
				puts[i].err = -EIO;
	} else {
		for (i = 0; i < n; i++)
			puts[i].err = -EIO;
	}
	for (i = 0; i < n; i++)
		d->stats.refused += puts[i].err != 0;
	pthread_mutex_unlock(&d->lock);

	/* then written, each under a temporary name renamed in */
	for (i = 0; i < n; i++) {
		if (puts[i].err)
			continue;
		entry_name(puts[i].id, puts[i].unit, name, sizeof(name));
		entry_path(d, name, path, sizeof(path));
		puts[i].err = entry_write(d, puts[i].id, puts[i].unit,
					  puts[i].v, puts[i].iov, puts[i].n,
					  tmp, sizeof(tmp));
		if (!puts[i].err)
			puts[i].err = entry_rename(d, name, tmp, path);
		if (puts[i].err) {
			log_debug("data cache: cannot keep %s: %s", name,
				  strerror(-puts[i].err));
			lost[i] = true;
		}
	}

	/* what could not be written is not counted, and what was evicted
	 * while it was written (by a later entry of the batch, or another
	 * mount) goes: the index never counts less than the disk holds */
	pthread_mutex_lock(&d->lock);
	if (db_exec(d, "BEGIN IMMEDIATE") == 0) {
		for (i = 0; i < n; i++) {
			struct row r;
			bool present;

			if (puts[i].err && !lost[i])
				continue;
			entry_name(puts[i].id, puts[i].unit, name,
				   sizeof(name));
			present = row_find(d, name, &r) && r.present;
			if (lost[i] && present) {
				row_evict(d, &r);
			} else if (!lost[i] && !present) {
				entry_path(d, name, path, sizeof(path));
				unlink(path);
				puts[i].err = -ENOSPC;
			}
		}
		db_commit(d);
	}
	for (i = 0; i < n; i++)
		d->stats.puts += puts[i].err == 0;
	pthread_mutex_unlock(&d->lock);
	free(lost);
}

int disk_put(struct disk *d, const char *id, int64_t unit,
	     const struct disk_version *v, const struct iovec *iov, int n)
{
	struct disk_put p = { id, unit, v, iov, n, 0 };

	disk_put_many(d, &p, 1);
	return p.err;
}

void disk_drop(struct disk *d, const char *id)
{
	char name[NAME_MAX_LEN], high[NAME_MAX_LEN];
	sqlite3_stmt *q;
	struct row r;

	entry_name(id, DISK_WHOLE, name, sizeof(name));
	/* the whole entry and every block: names that start with the hash */
	strcpy(high, name);
	strcat(high, "/"); /* after '.', before anything else */
	pthread_mutex_lock(&d->lock);
	if (db_exec(d, "BEGIN IMMEDIATE") == 0) {
		q = db_prepare(d, "SELECT " ROW_COLS " FROM entries"
				  " WHERE name >= ?1 AND name < ?2"
				  " AND present = 1");
		if (q) {
			sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
			sqlite3_bind_text(q, 2, high, -1, SQLITE_STATIC);
			while (sqlite3_step(q) == SQLITE_ROW) {
				row_from(q, &r);
				row_evict(d, &r);
			}
			db_done(d, q);
		}
		db_commit(d);
	}
	pthread_mutex_unlock(&d->lock);
	/* an entry the index did not know of (its row was lost) */
	{
		char path[PATH_MAX];

		entry_path(d, name, path, sizeof(path));
		unlink(path);
	}
}

void disk_get_stats(struct disk *d, struct disk_stats *st)
{
	pthread_mutex_lock(&d->lock);
	d->stats.used = meta_get(d, "used");
	d->stats.limit = limit_now(d, d->stats.used);
	*st = d->stats;
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_lock(&d->touch_lock);
	st->hits = d->hits;
	st->misses = d->misses;
	st->damaged = d->damaged;
	pthread_mutex_unlock(&d->touch_lock);
}

/* ---- opening ---- */

/* Remove what writers that are gone left in DIR/tmp: only that folder is
 * read, never the entries. */
static void clean_tmp(struct disk *d)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *dir;

	snprintf(path, sizeof(path), "%s/tmp", d->dir);
	if (mkdir(path, 0700) && errno != EEXIST)
		return;
	dir = opendir(path);
	if (!dir)
		return;
	while ((e = readdir(dir))) {
		long pid = strtol(e->d_name, NULL, 10);

		if (e->d_name[0] == '.' || pid <= 0 ||
		    (pid != getpid() && kill((pid_t)pid, 0) == 0) ||
		    (pid != getpid() && errno == EPERM))
			continue;
		unlinkat(dirfd(dir), e->d_name, 0);
	}
	closedir(dir);
}

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER);"
	"CREATE TABLE IF NOT EXISTS entries(id INTEGER PRIMARY KEY,"
	" name TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,"
	" used INTEGER NOT NULL, hits INTEGER NOT NULL,"
	" present INTEGER NOT NULL);"
	"INSERT OR IGNORE INTO meta(k, v) VALUES('schema', 1);";

/* Open DIR/index.db: 0, -EBADMSG or -EPROTO for a damaged or foreign one,
 * or another negative errno (-EBUSY: another mount holds it). */
static int index_open(struct disk *d)
{
	char path[PATH_MAX];
	int fd, err;

	snprintf(path, sizeof(path), "%s/index.db", d->dir);
	/* 0600 before SQLite makes its companions like it */
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	close(fd);
	if (sqlite3_open_v2(path, &d->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_busy_timeout(d->db, 10000);
	err = db_exec(d, "PRAGMA journal_mode = WAL;"
			 "PRAGMA synchronous = OFF;"
			 "PRAGMA cache_size = -1024;"
			 "PRAGMA mmap_size = 0");
	if (!err)
		err = db_exec(d, "BEGIN IMMEDIATE");
	if (err)
		return err;
	err = db_exec(d, schema);
	if (!err && meta_get(d, "schema") != 1)
		err = -EPROTO;
	/* the count of bytes kept, made right again from the rows: a crash
	 * between the index and the disk leaves it high, never low */
	if (!err)
		err = db_exec(d, "INSERT INTO meta(k, v) VALUES('used', (SELECT"
				 " coalesce(sum(size), 0) FROM entries WHERE"
				 " present)) ON CONFLICT(k) DO UPDATE SET"
				 " v = excluded.v");
	if (err) {
		sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
		return err;
	}
	return db_commit(d);
}

struct disk *disk_open(const char *dir, int64_t cap)
{
	struct disk *d = calloc(1, sizeof(*d));
	int err = -ENOMEM;

	if (!d || !(d->dir = strdup(dir)) ||
	    !(d->touched = calloc(TOUCH_MAX, NAME_MAX_LEN)))
		goto fail;
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->touch_lock, NULL);
	d->cap = cap;
	d->seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	if (mkdir(dir, 0700) && errno != EEXIST) {
		err = -errno;
		goto fail;
	}
	clean_tmp(d);
	err = index_open(d);
	if (err == -EPROTO || err == -EBADMSG) {
		/* a damaged or foreign index: start a new one; entries it
		 * counted are found again when read */
		char path[PATH_MAX], aside[PATH_MAX];

		log_err("data cache: %s/index.db is unreadable, starting a "
			"new one",
			dir);
		db_close(d);
		snprintf(path, sizeof(path), "%s/index.db", dir);
		snprintf(aside, sizeof(aside), "%s/index.db.bad", dir);
		rename(path, aside);
		err = index_open(d);
	}
	if (err)
		goto fail;
	return d;
fail:
	if (d && d->dir)
		log_err("data cache in %s cannot be used (%s): reading without "
			"it",
			dir, strerror(-err));
	disk_close(d);
	return NULL;
}

void disk_close(struct disk *d)
{
	if (!d)
		return;
	if (d->db) {
		pthread_mutex_lock(&d->lock);
		if (d->n_touched && db_exec(d, "BEGIN IMMEDIATE") == 0) {
			flush_touches(d, time(NULL));
			db_commit(d);
		}
		db_close(d);
		pthread_mutex_unlock(&d->lock);
	}
	pthread_mutex_destroy(&d->touch_lock);
	pthread_mutex_destroy(&d->lock);
	free(d->touched);
	free(d->dir);
	free(d);
}
