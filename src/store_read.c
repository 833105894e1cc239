/* Reading the listing store: the entries of a generation's directories,
 * its objects and their places, what changed between two generations, and
 * the sizes readers learn. */
#include "store_int.h"
#include "item_json.h"
#include "util.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

static void entry_from_row(struct store *st, sqlite3_stmt *q,
			   struct store_entry *e)
{
	int64_t ns;

	e->name = sqlite3_column_blob(q, 0);
	e->name_len = sqlite3_column_bytes(q, 0);
	e->oid = sqlite3_column_int64(q, 1);
	e->child = sqlite3_column_int64(q, 2);
	store_note_max(&st->max_oid, e->oid);
	store_note_max(&st->max_dir, e->child);
	e->has = sqlite3_column_int(q, 3);
	e->status = sqlite3_column_int(q, 4);
	e->size = sqlite3_column_type(q, 5) == SQLITE_NULL
			  ? -1
			  : sqlite3_column_int64(q, 5);
	e->thumb_size = sqlite3_column_type(q, 6) == SQLITE_NULL
				? -1
				: sqlite3_column_int64(q, 6);
	e->pos = sqlite3_column_int64(q, 8);
	e->has_mtime = sqlite3_column_type(q, 7) != SQLITE_NULL;
	ns = e->has_mtime ? sqlite3_column_int64(q, 7) : 0;
	e->mtime.tv_sec = ns / 1000000000;
	e->mtime.tv_nsec = ns % 1000000000;
	if (e->mtime.tv_nsec < 0) {
		e->mtime.tv_sec--;
		e->mtime.tv_nsec += 1000000000;
	}
}

static void bind_filter(sqlite3_stmt *q, const struct store_filter *filter)
{
	sqlite3_bind_int(q, 4, filter ? filter->has : 0);
	sqlite3_bind_int(q, 5, filter ? filter->status : 0);
}

int store_lookup(struct store *st, uint64_t gen, uint64_t dir, const char *name,
		 const struct store_filter *filter, struct store_entry *e)
{
	struct conn *c;
	sqlite3_stmt *q = store_reader_stmt(st, S_LOOKUP, &c);
	int rc, err;

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, gen);
	sqlite3_bind_int64(q, 2, dir);
	sqlite3_bind_blob(q, 3, name, strlen(name), SQLITE_STATIC);
	bind_filter(q, filter);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		entry_from_row(st, q, e);
		e->name = name;
		err = 0;
	} else {
		err = rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
	}
	return store_reader_end(st, c, q, err);
}

int store_readdir(struct store *st, uint64_t gen, uint64_t dir, uint64_t after,
		  const struct store_filter *filter, size_t max,
		  int (*fn)(void *ctx, const struct store_entry *e), void *ctx)
{
	bool names = filter && filter->names && !filter->status;
	bool list = !names &&
		    (dir == STORE_DIR_ITEMS || dir == STORE_DIR_SEQUENCES) &&
		    (!filter || (!filter->has && !filter->status));
	enum stmt s = names  ? S_READDIR_NAMES
		      : list ? S_READDIR_LIST
			     : S_READDIR;
	struct conn *c;
	sqlite3_stmt *q = store_reader_stmt(st, s, &c);
	int rc, ret = 0;

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, gen);
	sqlite3_bind_int64(q, 2, dir);
	sqlite3_bind_int64(q, 3, after);
	if (names)
		sqlite3_bind_int(q, 4, filter->has);
	else if (!list)
		bind_filter(q, filter);
	sqlite3_bind_int64(q, 6, max);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct store_entry e;

		entry_from_row(st, q, &e);
		ret = fn(ctx, &e);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = sql_errno(rc);
	return store_reader_end(st, c, q, ret);
}

int store_object(struct store *st, uint64_t gen, enum item_kind kind,
		 uint64_t oid, struct item **out)
{
	struct conn *c;
	sqlite3_stmt *q = store_reader_stmt(st, S_OBJECT, &c);
	int rc, err = 0;

	*out = NULL;
	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, gen);
	sqlite3_bind_int64(q, 2, oid);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		*out = item_json_decode(sqlite3_column_blob(q, 0),
					sqlite3_column_bytes(q, 0), kind);
		if (*out)
			(*out)->oid = oid;
		else
			err = -EIO;
	} else {
		err = rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
	}
	return store_reader_end(st, c, q, err);
}

int store_object_entry(struct store *st, uint64_t gen, uint64_t oid,
		       struct store_entry *e)
{
	struct conn *c;
	sqlite3_stmt *q = store_reader_stmt(st, S_OBJECT_ENTRY, &c);
	int rc, err = 0;

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, gen);
	sqlite3_bind_int64(q, 2, oid);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		entry_from_row(st, q, e);
		e->name = NULL;
		e->name_len = 0;
	} else {
		err = rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
	}
	return store_reader_end(st, c, q, err);
}

/* The position of entry @name (@len bytes) of @dir in @gen, and of the
 * object entry after it, in @pos and @next (0: none). */
static void place_in(struct conn *c, uint64_t gen, uint64_t dir,
		     const void *name, int len, uint64_t *pos, uint64_t *next)
{
	sqlite3_stmt *q = store_stmt(c, S_PLACE);

	*pos = *next = 0;
	if (!q)
		return;
	sqlite3_bind_int64(q, 1, gen);
	sqlite3_bind_int64(q, 2, dir);
	sqlite3_bind_blob(q, 3, name, len, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		*pos = sqlite3_column_int64(q, 0);
		*next = sqlite3_column_int64(q, 1);
	}
	sqlite3_reset(q);
}

#define RANK_STEP 64 /* names counted for a rank at most */

/* How many names of @dir in @gen are at or after @lo and before @name
 * (blobs compare as SQLite compares them), when fewer than RANK_STEP;
 * else -1. */
static int64_t names_between(struct conn *c, uint64_t gen, uint64_t dir,
			     const void *lo, size_t lo_len, const void *name,
			     int len)
{
	sqlite3_stmt *q = store_stmt(c, S_NAME_RANK);
	int64_t n = -1;

	if (!q)
		return -1;
	sqlite3_bind_int64(q, 1, gen);
	sqlite3_bind_int64(q, 2, dir);
	sqlite3_bind_blob(q, 3, lo, (int)lo_len, SQLITE_STATIC);
	sqlite3_bind_blob(q, 4, name, len, SQLITE_STATIC);
	sqlite3_bind_int64(q, 5, RANK_STEP);
	if (sql_step_int(q, &n) || n < 0 || n >= RANK_STEP)
		return -1;
	return n;
}

static int blob_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
	int d = memcmp(a, b, alen < blen ? alen : blen);

	return d ? d : (alen > blen) - (alen < blen);
}

/* The rank of @name among the names of @dir (from 1), or 0 when it is not
 * worth its cost: counted from the last name of the folder given a rank
 * (a walk in name order asks for the next few) or from the folder's
 * first name, never over more than RANK_STEP names. */
static uint64_t name_rank(struct store *st, struct conn *c, uint64_t gen,
			  uint64_t dir, const void *name, int len)
{
	struct rank_memo last = { .gen = 0 }, *m;
	uint64_t rank = 0;
	int64_t n;

	if (len < 0 || (size_t)len >= sizeof(last.name))
		return 0;
	pthread_mutex_lock(&st->ranks_lock);
	if (!st->ranks)
		st->ranks = calloc(RANK_MEMOS, sizeof(*st->ranks));
	m = st->ranks ? &st->ranks[dir % RANK_MEMOS] : NULL;
	if (m && m->gen == gen && m->dir == dir)
		last = *m;
	pthread_mutex_unlock(&st->ranks_lock);
	if (last.gen && blob_cmp(last.name, last.len, name, (size_t)len) <= 0 &&
	    (n = names_between(c, gen, dir, last.name, last.len, name, len)) >=
		    0)
		rank = last.rank + (uint64_t)n;
	if (!rank && (n = names_between(c, gen, dir, "", 0, name, len)) >= 0)
		rank = (uint64_t)n + 1;
	if (!rank || !m)
		return rank;
	pthread_mutex_lock(&st->ranks_lock);
	m->gen = gen;
	m->dir = dir;
	m->rank = rank;
	m->len = (size_t)len;
	memcpy(m->name, name, (size_t)len);
	pthread_mutex_unlock(&st->ranks_lock);
	return rank;
}

int store_object_place(struct store *st, uint64_t gen, enum item_kind kind,
		       uint64_t oid, struct store_place *p)
{
	struct conn *c;
	sqlite3_stmt *q = store_reader_stmt(st, S_PLACE_NAMES, &c);
	int rc, err = 0;

	memset(p, 0, sizeof(*p));
	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, gen);
	sqlite3_bind_int64(q, 2, oid);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		/* the statement's columns stay valid while it is not reset */
		p->list = kind == ITEM_KIND_ITEM ? STORE_DIR_ITEMS
						 : STORE_DIR_SEQUENCES;
		p->folder = sqlite3_column_int64(q, 1);
		place_in(c, gen, p->list, sqlite3_column_blob(q, 0),
			 sqlite3_column_bytes(q, 0), &p->list_pos,
			 &p->list_next);
		if (p->folder && sqlite3_column_type(q, 2) != SQLITE_NULL) {
			place_in(c, gen, p->folder, sqlite3_column_blob(q, 2),
				 sqlite3_column_bytes(q, 2), &p->folder_pos,
				 &p->folder_next);
			p->folder_rank = name_rank(st, c, gen, p->folder,
						   sqlite3_column_blob(q, 2),
						   sqlite3_column_bytes(q, 2));
		} else {
			p->folder = 0;
		}
	} else {
		err = rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
	}
	return store_reader_end(st, c, q, err);
}

int store_by_name(struct store *st, uint64_t gen, uint64_t dir, uint64_t after,
		  size_t n, int (*fn)(void *ctx, uint64_t oid, uint64_t rank),
		  void *ctx)
{
	struct conn *c;
	sqlite3_stmt *q = store_reader_stmt(st, S_BY_NAME, &c);
	uint64_t rank = after;
	int rc, err = 0;

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, gen);
	sqlite3_bind_int64(q, 2, dir);
	sqlite3_bind_int64(q, 3, (int64_t)n);
	sqlite3_bind_int64(q, 4, (int64_t)after);
	while (!err && (rc = sqlite3_step(q)) == SQLITE_ROW)
		err = fn(ctx, (uint64_t)sqlite3_column_int64(q, 0), ++rank);
	if (!err && rc != SQLITE_DONE)
		err = sql_errno(rc);
	return store_reader_end(st, c, q, err);
}

uint64_t store_dir_parent(struct store *st, uint64_t dir)
{
	struct conn *c = store_conn_get(st);
	sqlite3_stmt *q = c ? store_stmt(c, S_DIR_PARENT) : NULL;
	int64_t parent = 0;

	if (q) {
		sqlite3_bind_int64(q, 1, dir);
		if (sql_step_int(q, &parent))
			parent = 0;
	}
	if (c)
		store_conn_put(st, c);
	return parent;
}

int64_t store_objects(struct store *st, uint64_t gen)
{
	struct conn *c = store_conn_get(st);
	sqlite3_stmt *q = c ? store_stmt(c, S_OBJECTS) : NULL;
	int64_t n = -1;

	if (q) {
		sqlite3_bind_int64(q, 1, gen);
		if (sql_step_int(q, &n))
			n = -1;
	}
	if (c)
		store_conn_put(st, c);
	return n;
}

long store_statuses(struct store *st, uint64_t gen, int **out)
{
	unsigned epoch;
	struct conn *c;
	sqlite3_stmt *q = store_reader_stmt(st, S_STATUSES, &c);
	size_t n = 0, cap = 0;
	int *v = NULL, rc;

	*out = NULL;
	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, gen);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (UTIL_GROW(v, n, cap, 16)) {
			rc = SQLITE_NOMEM;
			break;
		}
		v[n++] = sqlite3_column_int(q, 0);
	}
	sqlite3_reset(q);
	epoch = c->epoch;
	store_conn_put(st, c);
	if (rc != SQLITE_DONE) {
		free(v);
		return store_damaged(st, epoch, sql_errno(rc));
	}
	*out = v;
	return (long)n;
}

int store_versions(struct store *st, uint64_t gen,
		   int (*fn)(void *ctx, const char *uid, size_t len,
			     int64_t mtime),
		   void *ctx)
{
	struct conn *c;
	sqlite3_stmt *q = store_reader_stmt(st, S_VERSIONS, &c);
	int rc, err = 0;

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, gen);
	while (!err && (rc = sqlite3_step(q)) == SQLITE_ROW)
		err = fn(ctx, (const char *)sqlite3_column_text(q, 0),
			 (size_t)sqlite3_column_bytes(q, 0),
			 sqlite3_column_int64(q, 1));
	if (!err && rc != SQLITE_DONE)
		err = sql_errno(rc);
	return store_reader_end(st, c, q, err);
}

int store_changes(struct store *st, uint64_t old, uint64_t new,
		  void (*fn)(void *ctx, const struct store_change *c),
		  void *ctx)
{
	static const char *const sql[] = {
		/* names that went away or name something else now */
		"SELECT o.dir, o.name, o.oid, COALESCE(l.status, 0), 0"
		" FROM entries o"
		" LEFT JOIN entries n ON n.gen = ?2 AND n.dir = o.dir"
		" AND n.name = o.name"
		" LEFT JOIN listed l ON l.gen = ?1 AND l.oid = o.oid"
		" WHERE o.gen = ?1 AND (o.oid != 0 OR o.child != 0)"
		" AND (n.name IS NULL OR n.oid != o.oid OR n.child != o.child)",
		/* names that are new: the kernel may hold them as absent */
		"SELECT n.dir, n.name, n.oid, 0, 0 FROM entries n"
		" LEFT JOIN entries o ON o.gen = ?1 AND o.dir = n.dir"
		" AND o.name = n.name"
		" WHERE n.gen = ?2 AND (n.oid != 0 OR n.child != 0)"
		" AND o.name IS NULL",
		/* objects whose status, time or size changed */
		"SELECT o.pdir, o.pname, o.oid, o.status, 1 FROM listed o"
		" JOIN listed n ON n.gen = ?2 AND n.oid = o.oid"
		" WHERE o.gen = ?1 AND (o.status != n.status"
		" OR o.mtime IS NOT n.mtime OR o.size IS NOT n.size)",
	};
	struct conn *c = store_conn_get(st);
	unsigned epoch;
	size_t i;
	int rc = SQLITE_DONE;

	if (!c)
		return -EIO;
	for (i = 0; i < sizeof(sql) / sizeof(sql[0]) && rc == SQLITE_DONE;
	     i++) {
		sqlite3_stmt *q;

		rc = sqlite3_prepare_v2(c->sql.db, sql[i], -1, &q, NULL);
		if (rc != SQLITE_OK)
			break;
		sqlite3_bind_int64(q, 1, old);
		sqlite3_bind_int64(q, 2, new);
		while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
			struct store_change ch = {
				.dir = sqlite3_column_int64(q, 0),
				.name = sqlite3_column_blob(q, 1),
				.name_len = sqlite3_column_bytes(q, 1),
				.oid = sqlite3_column_int64(q, 2),
				.status = sqlite3_column_int(q, 3),
				.object = sqlite3_column_int(q, 4),
			};

			fn(ctx, &ch);
		}
		sqlite3_finalize(q);
	}
	epoch = c->epoch;
	store_conn_put(st, c);
	return store_damaged(st, epoch, rc == SQLITE_DONE ? 0 : sql_errno(rc));
}

void store_learn_size(struct store *st, const struct item *it, int which,
		      int64_t size, const char *etag)
{
	struct conn *c;
	sqlite3_stmt *q;

	/* best effort: a reader never waits for a listing's writes; the size
	 * is known in memory anyway, and learned again next time */
	if (pthread_mutex_trylock(&st->write_lock))
		return;
	c = st->writer;
	q = c ? store_stmt(c, S_LEARN) : NULL;
	if (q) {
		sqlite3_bind_int64(q, 1, it->oid);
		sqlite3_bind_int(q, 2, which);
		sqlite3_bind_int64(q, 3, size);
		sqlite3_bind_text(q, 4, etag ? etag : "", -1, SQLITE_STATIC);
		if (it->has_mtime)
			sqlite3_bind_int64(q, 5, store_time_ns(it));
		sql_step_done(q);
	}
	pthread_mutex_unlock(&st->write_lock);
}
