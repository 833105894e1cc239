/* The data cache's index (SQLite): one row per entry, with its size, last
 * use and how often it was asked for; rows of evicted entries stay a while
 * as ghosts that remember their count. The index is told of an entry
 * before its file exists and after it is gone, so it never counts less
 * than the disk holds. Lock order: ix->lock (the connection) before
 * ix->touch_lock; both are leaves for the callers. */
#include "disk_index.h"
#include "log.h"
#include "sql.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TOUCH_MAX 256 /* uses noted before they are written */
#define AGING_EVERY 256 /* admissions between looks at the counts */

enum stmt {
	S_META_GET,
	S_META_ADD,
	S_ROW,
	S_MAX_ID,
	S_RANDOM,
	S_ABSENT,
	S_TOUCH,
	S_COUNTS,
	S_DELETE,
	S_REFRESH,
	S_UPSERT,
	S_PREFIX,
	S_COUNT
};

#define ROW_COLS "id, name, size, used, hits, present"

static const char *const stmt_sql[S_COUNT] = {
	[S_META_GET] = "SELECT v FROM meta WHERE k = ?1",
	[S_META_ADD] = "INSERT INTO meta(k, v) VALUES(?1, ?2)"
		       " ON CONFLICT(k) DO UPDATE SET v = v + excluded.v",
	[S_ROW] = "SELECT " ROW_COLS " FROM entries WHERE name = ?1",
	[S_MAX_ID] = "SELECT max(id) FROM entries",
	[S_RANDOM] = "SELECT " ROW_COLS " FROM entries"
		     " WHERE present = ?1 AND id >= ?2 ORDER BY id LIMIT 1",
	[S_ABSENT] = "UPDATE entries SET present = 0 WHERE id = ?1",
	[S_TOUCH] = "UPDATE entries SET used = ?2, hits = hits + 1"
		    " WHERE name = ?1",
	[S_COUNTS] = "SELECT count(*), sum(present = 0) FROM entries",
	[S_DELETE] = "DELETE FROM entries WHERE id = ?1",
	[S_REFRESH] = "UPDATE entries SET size = ?2, used = ?3,"
		      " hits = hits + 1 WHERE id = ?1",
	[S_UPSERT] = "INSERT INTO entries(name, size, used, hits, present)"
		     " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(name) DO"
		     " UPDATE SET size = excluded.size,"
		     " used = excluded.used, hits = excluded.hits,"
		     " present = excluded.present",
	[S_PREFIX] = "SELECT " ROW_COLS " FROM entries"
		     " WHERE name >= ?1 AND name < ?2 AND present = 1",
};

struct disk_index {
	pthread_mutex_t lock; /* the connection, and what follows */
	struct sql_conn c;
	unsigned seed;
	unsigned admits_since_aging;
	uint64_t evicted; /* protected by lock */
	/* readers never wait for the index: what they found goes here, and
	 * the next admission notes it */
	pthread_mutex_t touch_lock;
	char (*touched)[DISK_NAME_MAX]; /* protected by touch_lock */
	size_t n_touched; /* protected by touch_lock */
};

/* One row of the index. */
struct row {
	int64_t id; /* 0: none */
	int64_t size, used, hits;
	bool present;
	char name[DISK_NAME_MAX];
};

int64_t disk_room_limit(const struct disk_room *room, int64_t used)
{
	int64_t limit = room->cap - room->others;

	if (room->fs_free >= 0 &&
	    used + room->fs_free - room->fs_reserve < limit)
		limit = used + room->fs_free - room->fs_reserve;
	return limit;
}

static int64_t meta_get(struct disk_index *ix, const char *k)
{
	sqlite3_stmt *q = sql_stmt(&ix->c, S_META_GET);
	int64_t v = 0;

	if (q) {
		sqlite3_bind_text(q, 1, k, -1, SQLITE_STATIC);
		if (sql_step_int(q, &v))
			v = 0;
	}
	return v;
}

static void meta_add(struct disk_index *ix, const char *k, int64_t delta)
{
	sqlite3_stmt *q = sql_stmt(&ix->c, S_META_ADD);

	if (!q)
		return;
	sqlite3_bind_text(q, 1, k, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, delta);
	sql_step_done(q);
}

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

/* Step @q for one row into @r: whether there was one. */
static bool row_step(sqlite3_stmt *q, struct row *r)
{
	bool found = false;

	memset(r, 0, sizeof(*r));
	if (q && sqlite3_step(q) == SQLITE_ROW) {
		row_from(q, r);
		found = true;
	}
	if (q)
		sqlite3_reset(q);
	return found;
}

static bool row_find(struct disk_index *ix, const char *name, struct row *r)
{
	sqlite3_stmt *q = sql_stmt(&ix->c, S_ROW);

	if (q)
		sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	return row_step(q, r);
}

/* A row picked at random: a present entry, or a ghost. */
static bool row_random(struct disk_index *ix, bool present, struct row *r)
{
	sqlite3_stmt *q = sql_stmt(&ix->c, S_MAX_ID);
	int64_t max = 0;
	int pass;

	if (!q || sql_step_int(q, &max) || max <= 0)
		return false;
	/* from a random id on, then from the start */
	for (pass = 0; pass < 2; pass++) {
		q = sql_stmt(&ix->c, S_RANDOM);
		if (!q)
			return false;
		sqlite3_bind_int(q, 1, present);
		sqlite3_bind_int64(
			q, 2,
			pass ? 0 : 1 + (int64_t)(rand_r(&ix->seed) % max));
		if (row_step(q, r))
			return true;
	}
	return false;
}

/* Make @r a ghost, its count kept, and have its file removed. */
static void row_evict(struct disk_index *ix, const struct row *r,
		      disk_evict_fn evict, void *ctx)
{
	sqlite3_stmt *q = sql_stmt(&ix->c, S_ABSENT);

	if (evict)
		evict(ctx, r->name);
	if (q) {
		sqlite3_bind_int64(q, 1, r->id);
		sql_step_done(q);
	}
	if (r->present)
		meta_add(ix, "used", -r->size);
}

/* Write the uses readers noted since the last time: each counts as asked
 * for once more. Called with ix->lock held, in a transaction. */
static void flush_touches(struct disk_index *ix, int64_t now)
{
	char(*taken)[DISK_NAME_MAX];
	sqlite3_stmt *q;
	size_t i, n;

	pthread_mutex_lock(&ix->touch_lock);
	n = ix->n_touched;
	taken = n ? malloc(n * DISK_NAME_MAX) : NULL;
	if (taken)
		memcpy(taken, ix->touched, n * DISK_NAME_MAX);
	ix->n_touched = 0;
	pthread_mutex_unlock(&ix->touch_lock);
	if (!taken)
		return;
	for (i = 0; i < n; i++) {
		q = sql_stmt(&ix->c, S_TOUCH);
		if (!q)
			break;
		sqlite3_bind_text(q, 1, taken[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 2, now);
		sql_step_done(q);
	}
	meta_add(ix, "asks", (int64_t)n);
	free(taken);
}

/* Counts fade: once the index was asked as many times as ten times the
 * entries it holds, every count is halved, so what was popular long ago
 * yields to what is asked for now. Also forget ghosts past four per entry.
 * Called with ix->lock held, in a transaction. */
static void age(struct disk_index *ix)
{
	sqlite3_stmt *q = sql_stmt(&ix->c, S_COUNTS);
	int64_t rows = 0, ghosts = 0;
	struct row r;
	int i;

	if (q && sqlite3_step(q) == SQLITE_ROW) {
		rows = sqlite3_column_int64(q, 0);
		ghosts = sqlite3_column_int64(q, 1);
	}
	if (q)
		sqlite3_reset(q);
	if (meta_get(ix, "asks") > 10 * (rows + 100)) {
		sql_exec(&ix->c, "UPDATE entries SET hits = hits / 2;"
				 "UPDATE meta SET v = 0 WHERE k = 'asks'");
	}
	for (i = 0; i < 4 && ghosts > 4 * (rows - ghosts) + 1024; i++) {
		if (!row_random(ix, false, &r))
			break;
		q = sql_stmt(&ix->c, S_DELETE);
		if (q) {
			sqlite3_bind_int64(q, 1, r.id);
			sql_step_done(q);
		}
		ghosts--;
	}
}

/* Decide whether @o comes in, making room: victims are the older of
 * random pairs, and each must have been asked for less often than @o was
 * before. Records the entry (present) when it comes in, or the ask (a
 * ghost) when not. @pending: the bytes this batch admitted that are not
 * written yet (the file system's free space does not show them), grown
 * by @o's when it comes in. Called with ix->lock held, in a
 * transaction. */
static bool admit(struct disk_index *ix, const struct disk_offer *o,
		  const struct disk_room *room, int64_t now, int64_t *pending,
		  disk_evict_fn evict, void *ctx)
{
	struct row self, a, b;
	int64_t used = meta_get(ix, "used"),
		limit = disk_room_limit(room, used - *pending);
	bool known = row_find(ix, o->name, &self), in = !o->block || known;
	sqlite3_stmt *q;

	if (known && self.present) {
		/* written again (another mount, or a new version): it takes
		 * the place it has */
		meta_add(ix, "used", o->size - self.size);
		q = sql_stmt(&ix->c, S_REFRESH);
		if (q) {
			sqlite3_bind_int64(q, 1, self.id);
			sqlite3_bind_int64(q, 2, o->size);
			sqlite3_bind_int64(q, 3, now);
			sql_step_done(q);
		}
		meta_add(ix, "asks", 1);
		/* the old file goes only once it is written */
		*pending += o->size;
		return true;
	}
	if (o->size > limit)
		in = false;
	while (in && used + o->size > limit) {
		if (!row_random(ix, true, &a) || !row_random(ix, true, &b)) {
			in = false;
			break;
		}
		if (b.used < a.used)
			a = b;
		if (strcmp(a.name, o->name) == 0 || a.hits >= self.hits) {
			in = false; /* what it would evict is asked for as much */
			break;
		}
		row_evict(ix, &a, evict, ctx);
		ix->evicted++;
		used -= a.size;
	}
	q = sql_stmt(&ix->c, S_UPSERT);
	if (q) {
		sqlite3_bind_text(q, 1, o->name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 2, o->size);
		sqlite3_bind_int64(q, 3, now);
		sqlite3_bind_int64(q, 4, self.hits + 1);
		sqlite3_bind_int(q, 5, in);
		if (sql_step_done(q))
			in = false;
	}
	if (in) {
		meta_add(ix, "used", o->size);
		*pending += o->size;
	}
	meta_add(ix, "asks", 1);
	return in;
}

/* Evict the older of random pairs, whatever their counts, until what is
 * kept fits the room there is now: the bytes given back. Under the lock, in
 * a transaction. The file system's free space grows by what is evicted:
 * the limit stays what it is now. Bounded: one call gives back what it can
 * in one transaction, the next goes on. */
static int64_t give_back(struct disk_index *ix, const struct disk_room *room,
			 disk_evict_fn evict, void *ctx)
{
	int64_t used = meta_get(ix, "used"), given = 0,
		limit = disk_room_limit(room, used);
	struct row a, b;
	int rounds = 0;

	while (used - given > limit && rounds++ < 4096 &&
	       row_random(ix, true, &a)) {
		if (row_random(ix, true, &b) && b.used < a.used)
			a = b;
		row_evict(ix, &a, evict, ctx);
		ix->evicted++;
		given += a.size;
	}
	return given;
}

int disk_index_admit(struct disk_index *ix, struct disk_offer *v, int n,
		     const struct disk_room *room, int64_t now,
		     disk_evict_fn evict, void *ctx)
{
	int64_t pending = 0;
	int i, err;

	for (i = 0; i < n; i++)
		v[i].in = false;
	pthread_mutex_lock(&ix->lock);
	err = sql_begin(&ix->c);
	if (!err) {
		flush_touches(ix, now);
		/* the listings and the index beside the entries may have grown
		 * since they came in: the cap bounds the folder */
		give_back(ix, room, evict, ctx);
		for (i = 0; i < n; i++) {
			v[i].in = admit(ix, &v[i], room, now, &pending, evict,
					ctx);
			if (++ix->admits_since_aging >= AGING_EVERY) {
				ix->admits_since_aging = 0;
				age(ix);
			}
		}
		err = sql_commit(&ix->c);
	}
	pthread_mutex_unlock(&ix->lock);
	if (err) {
		for (i = 0; i < n; i++)
			v[i].in = false;
	}
	return err;
}

void disk_index_settle(struct disk_index *ix, const struct disk_offer *v,
		       const bool *lost, bool *gone, int n)
{
	struct row r;
	bool present;
	int i;

	for (i = 0; i < n; i++)
		gone[i] = false;
	pthread_mutex_lock(&ix->lock);
	if (sql_begin(&ix->c) == 0) {
		for (i = 0; i < n; i++) {
			if (!v[i].in)
				continue;
			present = row_find(ix, v[i].name, &r) && r.present;
			if (lost[i] && present)
				row_evict(ix, &r, NULL, NULL);
			else if (!lost[i] && !present)
				gone[i] = true;
		}
		sql_commit(&ix->c);
	}
	pthread_mutex_unlock(&ix->lock);
}

void disk_index_hit(struct disk_index *ix, const char *name)
{
	pthread_mutex_lock(&ix->touch_lock);
	/* past TOUCH_MAX uses before the next admission, the rest go
	 * unnoted */
	if (ix->n_touched < TOUCH_MAX)
		snprintf(ix->touched[ix->n_touched++], DISK_NAME_MAX, "%s",
			 name);
	pthread_mutex_unlock(&ix->touch_lock);
}

void disk_index_forget(struct disk_index *ix, const char *name)
{
	struct row r;

	pthread_mutex_lock(&ix->lock);
	if (sql_begin(&ix->c) == 0) {
		if (row_find(ix, name, &r) && r.present)
			row_evict(ix, &r, NULL, NULL);
		sql_commit(&ix->c);
	}
	pthread_mutex_unlock(&ix->lock);
}

void disk_index_drop(struct disk_index *ix, const char *prefix,
		     disk_evict_fn evict, void *ctx)
{
	char high[DISK_NAME_MAX + 1];
	struct row *rows = NULL, r;
	size_t n = 0, cap = 0, i;
	sqlite3_stmt *q;

	/* names that start with @prefix: '/' sorts after '.' and before the
	 * digits and letters that could follow */
	snprintf(high, sizeof(high), "%s/", prefix);
	pthread_mutex_lock(&ix->lock);
	if (sql_begin(&ix->c) == 0) {
		q = sql_stmt(&ix->c, S_PREFIX);
		if (q) {
			sqlite3_bind_text(q, 1, prefix, -1, SQLITE_STATIC);
			sqlite3_bind_text(q, 2, high, -1, SQLITE_STATIC);
			while (sqlite3_step(q) == SQLITE_ROW) {
				if (n == cap) {
					struct row *grown = realloc(
						rows, (cap = cap * 2 + 8) *
							      sizeof(*rows));

					if (!grown)
						break;
					rows = grown;
				}
				row_from(q, &rows[n++]);
			}
			sqlite3_reset(q);
		}
		for (i = 0; i < n; i++) {
			r = rows[i];
			row_evict(ix, &r, evict, ctx);
		}
		sql_commit(&ix->c);
	}
	pthread_mutex_unlock(&ix->lock);
	free(rows);
}

int64_t disk_index_shrink(struct disk_index *ix, const struct disk_room *room,
			  disk_evict_fn evict, void *ctx)
{
	int64_t given = 0;

	pthread_mutex_lock(&ix->lock);
	if (sql_begin(&ix->c) == 0) {
		given = give_back(ix, room, evict, ctx);
		sql_commit(&ix->c);
	}
	pthread_mutex_unlock(&ix->lock);
	return given;
}

int64_t disk_index_used(struct disk_index *ix, uint64_t *evicted)
{
	int64_t used;

	pthread_mutex_lock(&ix->lock);
	used = meta_get(ix, "used");
	if (evicted)
		*evicted = ix->evicted;
	pthread_mutex_unlock(&ix->lock);
	return used;
}

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER);"
	"CREATE TABLE IF NOT EXISTS entries(id INTEGER PRIMARY KEY,"
	" name TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,"
	" used INTEGER NOT NULL, hits INTEGER NOT NULL,"
	" present INTEGER NOT NULL);"
	"INSERT OR IGNORE INTO meta(k, v) VALUES('schema', 1);";

int disk_index_open(const char *path, struct disk_index **out)
{
	struct disk_index *ix = calloc(1, sizeof(*ix));
	int err;

	*out = NULL;
	if (!ix || !(ix->touched = calloc(TOUCH_MAX, DISK_NAME_MAX))) {
		free(ix);
		return -ENOMEM;
	}
	pthread_mutex_init(&ix->lock, NULL);
	pthread_mutex_init(&ix->touch_lock, NULL);
	ix->seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	err = sql_open(&ix->c, path, SQLITE_OPEN_READWRITE, stmt_sql, S_COUNT,
		       "PRAGMA journal_mode = WAL;"
		       "PRAGMA synchronous = OFF;"
		       /* the log checkpointed every 512 KiB and cut back
			* after: it counts in the cap, and would only grow */
		       "PRAGMA wal_autocheckpoint = 128;"
		       "PRAGMA journal_size_limit = 524288;" /* INDEX_LOG_MAX */
		       "PRAGMA cache_size = -1024;"
		       "PRAGMA mmap_size = 0");
	if (!err)
		err = sql_begin(&ix->c);
	if (!err) {
		err = sql_exec(&ix->c, schema);
		if (!err && meta_get(ix, "schema") != 1)
			err = -EPROTO;
		/* the count of bytes kept, made right again from the rows: a
		 * crash between the index and the disk leaves it high, never
		 * low */
		if (!err)
			err = sql_exec(&ix->c,
				       "INSERT INTO meta(k, v) VALUES('used',"
				       " (SELECT coalesce(sum(size), 0) FROM"
				       " entries WHERE present)) ON CONFLICT(k)"
				       " DO UPDATE SET v = excluded.v");
		if (err)
			sql_rollback(&ix->c);
		else
			err = sql_commit(&ix->c);
	}
	if (err) {
		disk_index_close(ix);
		return err;
	}
	*out = ix;
	return 0;
}

void disk_index_close(struct disk_index *ix)
{
	if (!ix)
		return;
	if (ix->c.db) {
		pthread_mutex_lock(&ix->lock);
		if (ix->n_touched && sql_begin(&ix->c) == 0) {
			flush_touches(ix, time(NULL));
			sql_commit(&ix->c);
		}
		sql_close(&ix->c);
		pthread_mutex_unlock(&ix->lock);
	}
	pthread_mutex_destroy(&ix->touch_lock);
	pthread_mutex_destroy(&ix->lock);
	free(ix->touched);
	free(ix);
}
