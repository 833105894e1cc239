/* The listing store's SQL: its schema, the statements every connection
 * prepares, and the pool of connections readers take and give back. */
#include "store_int.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEMA_VERSION 6
#define MAX_READERS 16 /* connections open for readers at most */

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID;"
	/* numbers for ever; a listing finds them by uid in memory
	 * (store_uids.c), as an index on uids, random, would be written
	 * all over at every page */
	"CREATE TABLE IF NOT EXISTS objects(oid INTEGER PRIMARY KEY,"
	" kind INTEGER NOT NULL, uid TEXT NOT NULL);"
	/* generations: who builds one (a process), and when it was complete;
	 * which mounts read one is in the file's locks (LOCK_BASE) */
	"CREATE TABLE IF NOT EXISTS gens(gen INTEGER PRIMARY KEY,"
	" kind INTEGER NOT NULL, pid INTEGER NOT NULL,"
	" complete INTEGER NOT NULL DEFAULT 0, listed_at INTEGER);"
	/* one row per object and generation: what getattr needs, and the
	 * JSON for everything else; its name in items/ (iname) is NULL when
	 * it is its key, as most are */
	"CREATE TABLE IF NOT EXISTS listed(gen INTEGER NOT NULL,"
	" oid INTEGER NOT NULL, key BLOB, iname BLOB,"
	" pdir INTEGER NOT NULL DEFAULT 0, pname BLOB,"
	" has INTEGER NOT NULL, status INTEGER NOT NULL, size INTEGER,"
	" mtime INTEGER, json BLOB NOT NULL,"
	" PRIMARY KEY(gen, oid)) WITHOUT ROWID;"
	/* folders of the key-path tree, for ever */
	"CREATE TABLE IF NOT EXISTS dirs(id INTEGER PRIMARY KEY,"
	" parent INTEGER NOT NULL, name BLOB NOT NULL);"
	"CREATE UNIQUE INDEX IF NOT EXISTS dirs_name ON dirs(parent, name);"
	/* the ids of the fixed directories are taken */
	"INSERT OR IGNORE INTO dirs(id, parent, name) VALUES"
	" (1, 0, 'items'), (2, 0, 'sequences'), (3, 0, 'paths');"
	/* directory entries: an object (oid), a folder (child), or a name
	 * held back after a collision (neither), listed in the order they
	 * first came (seq) */
	"CREATE TABLE IF NOT EXISTS entries(gen INTEGER NOT NULL,"
	" dir INTEGER NOT NULL, name BLOB NOT NULL, oid INTEGER NOT NULL,"
	" child INTEGER NOT NULL, has INTEGER NOT NULL,"
	" flags INTEGER NOT NULL, seq INTEGER NOT NULL,"
	" PRIMARY KEY(gen, dir, name)) WITHOUT ROWID;"
	/* a folder in listing order; it holds what a walk that only names
	 * needs, so that such a walk reads it alone */
	"CREATE INDEX IF NOT EXISTS entries_seq ON entries(gen, dir, seq,"
	" oid, child, has);"
	"CREATE TABLE IF NOT EXISTS folder_status(gen INTEGER NOT NULL,"
	" dir INTEGER NOT NULL, status INTEGER NOT NULL,"
	" PRIMARY KEY(gen, dir, status)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS gen_status(gen INTEGER NOT NULL,"
	" status INTEGER NOT NULL, PRIMARY KEY(gen, status)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS statuses(id INTEGER PRIMARY KEY,"
	" name TEXT NOT NULL UNIQUE);"
	/* sizes the API does not give, for the version (time) they were
	 * learned of */
	"CREATE TABLE IF NOT EXISTS learned(oid INTEGER NOT NULL,"
	" which INTEGER NOT NULL, size INTEGER NOT NULL, etag TEXT,"
	" mtime INTEGER, PRIMARY KEY(oid, which)) WITHOUT ROWID;";

/* The attribute columns that follow the name in S_READDIR and S_LOOKUP. */
#define ENTRY_COLUMNS                                                 \
	"e.oid, e.child, e.has, l.status, COALESCE(l.size, ld.size)," \
	" lt.size, l.mtime, e.seq "
#define ENTRY_FROM                                                             \
	"FROM entries e LEFT JOIN listed l ON l.gen = e.gen AND l.oid = e.oid" \
	" LEFT JOIN learned ld ON ld.oid = e.oid AND ld.which = 0"             \
	" AND ld.mtime IS l.mtime"                                             \
	" LEFT JOIN learned lt ON lt.oid = e.oid AND lt.which = 1"             \
	" AND lt.mtime IS l.mtime "
#define ENTRY_FILTER                                                          \
	" AND (e.oid != 0 OR e.child != 0) AND (e.has & ?4) = ?4"             \
	" AND (?5 = 0 OR (e.oid != 0 AND l.status = ?5) OR (e.child != 0 AND" \
	" EXISTS (SELECT 1 FROM folder_status f WHERE f.gen = e.gen"          \
	" AND f.dir = e.child AND f.status = ?5)))"

static const char *const stmt_sql[S_COUNT] = {
	[S_META_GET] = "SELECT v FROM meta WHERE k = ?1",
	[S_META_SET] = "INSERT OR REPLACE INTO meta(k, v) VALUES(?1, ?2)",
	[S_OBJECTS_OF] = "SELECT oid, uid FROM objects WHERE kind = ?1",
	[S_OBJECT_ADD] = "INSERT INTO objects(kind, uid) VALUES(?1, ?2)",
	[S_GEN_NEW] = "INSERT INTO gens(kind, pid) VALUES(?1, ?2)"
		      " RETURNING gen",
	[S_GEN_DONE] = "UPDATE gens SET complete = 1, listed_at = ?2"
		       " WHERE gen = ?1",
	[S_PREV] = "SELECT key, COALESCE(iname, key), pdir, pname FROM listed"
		   " WHERE gen = ?1 AND oid = ?2",
	[S_LISTED_ADD] =
		"INSERT INTO listed(gen, oid, key, iname, pdir, pname,"
		" has, status, size, mtime, json)"
		" VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
	[S_LISTED_INAME] = "UPDATE listed SET iname = ?3"
			   " WHERE gen = ?1 AND oid = ?2",
	[S_LISTED_PNAME] = "UPDATE listed SET pname = ?3"
			   " WHERE gen = ?1 AND oid = ?2",
	[S_ENTRY_ADD] = "INSERT INTO entries(gen, dir, name, oid, child, has,"
			" flags, seq) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
			" ON CONFLICT DO NOTHING",
	[S_ENTRY_GET] = "SELECT oid, child, flags, has, seq FROM entries"
			" WHERE gen = ?1 AND dir = ?2 AND name = ?3",
	[S_ENTRY_DROP] = "UPDATE entries SET oid = 0, child = 0, has = 0,"
			 " seq = 0 WHERE gen = ?1 AND dir = ?2 AND name = ?3",
	[S_ENTRY_CLAIM] = "UPDATE entries SET oid = ?4, has = ?5, flags = ?6,"
			  " seq = ?7 WHERE gen = ?1 AND dir = ?2 AND name = ?3"
			  " AND oid = 0 AND child = 0",
	/* a folder: made of a name held back, or gaining has bits */
	[S_ENTRY_HAS] = "UPDATE entries SET has = has | ?4, child = ?5,"
			" oid = 0, seq = CASE WHEN seq = 0 THEN ?6 ELSE seq END"
			" WHERE gen = ?1 AND dir = ?2 AND name = ?3",
	[S_DIR_ID] = "INSERT INTO dirs(parent, name) VALUES(?1, ?2)"
		     " ON CONFLICT(parent, name) DO UPDATE SET parent = parent"
		     " RETURNING id",
	[S_FOLDER_STATUS] = "INSERT OR IGNORE INTO folder_status(gen, dir,"
			    " status) VALUES(?1, ?2, ?3)",
	[S_GEN_STATUS] = "INSERT OR IGNORE INTO gen_status(gen, status)"
			 " VALUES(?1, ?2)",
	[S_STATUS_ADD] = "INSERT INTO statuses(name) VALUES(?1)"
			 " ON CONFLICT(name) DO UPDATE SET name = name"
			 " RETURNING id",
	[S_UID] = "SELECT uid FROM objects WHERE oid = ?1",
	[S_READDIR] =
		"SELECT e.name, " ENTRY_COLUMNS ENTRY_FROM
		"WHERE e.gen = ?1 AND e.dir = ?2 AND e.seq > ?3" ENTRY_FILTER
		" ORDER BY e.seq LIMIT ?6",
	/* items/ and sequences/: objects, no filter, no file sizes */
	[S_READDIR_LIST] =
		"SELECT e.name, e.oid, e.child, e.has, l.status, l.size, NULL,"
		" l.mtime, e.seq FROM entries e"
		" JOIN listed l ON l.gen = e.gen AND l.oid = e.oid"
		" WHERE e.gen = ?1 AND e.dir = ?2 AND e.seq > ?3 AND e.oid != 0"
		" ORDER BY e.seq LIMIT ?6",
	/* names, objects and folders, without their attributes */
	[S_READDIR_NAMES] =
		"SELECT e.name, e.oid, e.child, e.has, 0, NULL, NULL, NULL,"
		" e.seq FROM entries e"
		" WHERE e.gen = ?1 AND e.dir = ?2 AND e.seq > ?3"
		" AND (e.oid != 0 OR e.child != 0) AND (e.has & ?4) = ?4"
		" ORDER BY e.seq LIMIT ?6",
	[S_LOOKUP] =
		"SELECT e.name, " ENTRY_COLUMNS ENTRY_FROM
		"WHERE e.gen = ?1 AND e.dir = ?2 AND e.name = ?3" ENTRY_FILTER,
	[S_OBJECT] = "SELECT json FROM listed WHERE gen = ?1 AND oid = ?2",
	[S_OBJECT_ENTRY] = "SELECT COALESCE(l.iname, l.key), l.oid, 0,"
			   " l.has, l.status,"
			   " COALESCE(l.size, ld.size), lt.size, l.mtime, 0"
			   " FROM listed l"
			   " LEFT JOIN learned ld ON ld.oid = l.oid"
			   " AND ld.which = 0 AND ld.mtime IS l.mtime"
			   " LEFT JOIN learned lt ON lt.oid = l.oid"
			   " AND lt.which = 1 AND lt.mtime IS l.mtime"
			   " WHERE l.gen = ?1 AND l.oid = ?2",
	[S_DIR_PARENT] = "SELECT parent FROM dirs WHERE id = ?1",
	[S_PLACE_NAMES] = "SELECT COALESCE(iname, key), pdir, pname"
			  " FROM listed"
			  " WHERE gen = ?1 AND oid = ?2",
	[S_PLACE] = "SELECT e.seq, (SELECT n.seq FROM entries n"
		    " WHERE n.gen = e.gen AND n.dir = e.dir AND n.seq > e.seq"
		    " AND n.oid != 0 ORDER BY n.seq LIMIT 1)"
		    " FROM entries e WHERE e.gen = ?1 AND e.dir = ?2"
		    " AND e.name = ?3",
	[S_STATUSES] = "SELECT status FROM gen_status WHERE gen = ?1"
		       " ORDER BY status",
	[S_LEARN] = "INSERT OR REPLACE INTO learned(oid, which, size, etag,"
		    " mtime) VALUES(?1, ?2, ?3, ?4, ?5)",
	[S_LATEST] = "SELECT gen, listed_at FROM gens WHERE kind = ?1"
		     " AND complete = 1 ORDER BY gen DESC LIMIT 1",
	[S_GENS] = "SELECT gen FROM gens WHERE kind = ?1",
	[S_OBJECTS] = "SELECT count(*) FROM listed WHERE gen = ?1",
	[S_VERSIONS] = "SELECT o.uid, l.mtime FROM listed l"
		       " JOIN objects o ON o.oid = l.oid WHERE l.gen = ?1",
	[S_NAME_RANK] = "SELECT count(*) FROM (SELECT 1 FROM entries"
			" WHERE gen = ?1 AND dir = ?2 AND name >= ?3"
			" AND name < ?4 LIMIT ?5)",
	[S_BY_NAME] = "SELECT oid FROM entries WHERE gen = ?1 AND dir = ?2"
		      " ORDER BY name LIMIT ?3 OFFSET ?4",
};

void store_conn_close(struct conn *c)
{
	if (!c)
		return;
	sql_close(&c->sql);
	free(c);
}

/* The statement @s of @c, reset and unbound. */
sqlite3_stmt *store_stmt(struct conn *c, enum stmt s)
{
	return sql_stmt(&c->sql, s);
}

/* A connection to @path, opened with @flags (sql_open()), or NULL with the
 * reason in @err. */
struct conn *store_conn_open(const char *path, int flags, int *err)
{
	struct conn *c = calloc(1, sizeof(*c));

	*err = -ENOMEM;
	if (!c)
		return NULL;
	/* the first read of the file: a bad one is said once, by the caller */
	*err = sql_open(&c->sql, path, flags, stmt_sql, S_COUNT,
			/* for a new database: rows of most of a KiB (an
			 * object's JSON) split a page of 4 KiB every few
			 * inserts, and the splits are most of what writing a
			 * listing costs */
			"PRAGMA page_size = 16384;"
			"PRAGMA journal_mode = WAL;"
			"PRAGMA synchronous = NORMAL;"
			/* the log is cut back after each checkpoint: what a
			 * listing takes on disk is the database, counted in
			 * disk_cache_size, not a log that only grows; it is
			 * checkpointed every 4 MiB (256 pages of 16 KiB), as
			 * SQLite's default did with pages of 4 KiB */
			"PRAGMA journal_size_limit = 4194304;"
			"PRAGMA wal_autocheckpoint = 256;"
			"PRAGMA temp_store = MEMORY;"
			"PRAGMA cache_size = -2048;"
			"PRAGMA mmap_size = 0");
	if (*err) {
		free(c);
		return NULL;
	}
	return c;
}

struct conn *store_conn_get(struct store *st)
{
	struct conn *c, *stale = NULL;
	char *path;
	unsigned epoch;
	bool memory;
	int err = -ENOMEM;

	pthread_mutex_lock(&st->lock);
	for (;;) {
		while (!st->idle && st->n_conns >= MAX_READERS)
			pthread_cond_wait(&st->conn_free, &st->lock);
		c = st->idle;
		if (!c || c->epoch == st->epoch)
			break;
		/* of a database left behind */
		st->idle = c->next;
		st->n_conns--;
		c->next = stale;
		stale = c;
	}
	if (c) {
		st->idle = c->next;
		pthread_mutex_unlock(&st->lock);
		goto out;
	}
	st->n_conns++;
	path = strdup(st->path);
	epoch = st->epoch;
	memory = st->memory;
	pthread_mutex_unlock(&st->lock);
	c = path ? store_conn_open(path,
				   SQLITE_OPEN_READWRITE |
					   (memory ? SQLITE_OPEN_CREATE : 0),
				   &err)
		 : NULL;
	if (c)
		c->epoch = epoch;
	else
		log_err("store: cannot open %s: %s", path ? path : st->name,
			strerror(path ? -err : ENOMEM));
	free(path);
	if (!c) {
		pthread_mutex_lock(&st->lock);
		st->n_conns--;
		pthread_cond_signal(&st->conn_free);
		pthread_mutex_unlock(&st->lock);
		/* damaged, or set aside or removed by another mount */
		if (err == -EBADMSG || err == -EACCES)
			store_reset(st, epoch, err == -EBADMSG);
	}
out:
	while (stale) {
		struct conn *next = stale->next;

		store_conn_close(stale);
		stale = next;
	}
	return c;
}

void store_conn_put(struct store *st, struct conn *c)
{
	pthread_mutex_lock(&st->lock);
	if (c->epoch != st->epoch) {
		st->n_conns--;
		pthread_cond_signal(&st->conn_free);
		pthread_mutex_unlock(&st->lock);
		store_conn_close(c);
		return;
	}
	c->next = st->idle;
	st->idle = c;
	pthread_cond_signal(&st->conn_free);
	pthread_mutex_unlock(&st->lock);
}

/* A reader connection, in *@c, and its statement @which; NULL (and no
 * connection) when either cannot be had. */
int store_reader_end(struct store *st, struct conn *c, sqlite3_stmt *q, int err)
{
	unsigned epoch = c->epoch;

	sqlite3_reset(q);
	store_conn_put(st, c);
	return store_damaged(st, epoch, err);
}

sqlite3_stmt *store_reader_stmt(struct store *st, enum stmt which,
				struct conn **c)
{
	sqlite3_stmt *q;
	unsigned epoch;
	int err;

	*c = store_conn_get(st);
	q = *c ? store_stmt(*c, which) : NULL;
	if (!q && *c) {
		/* a statement that cannot be prepared: a damaged schema */
		err = sql_errno(sqlite3_errcode((*c)->sql.db));
		epoch = (*c)->epoch;
		store_conn_put(st, *c);
		*c = NULL;
		if (err == -EBADMSG)
			store_reset(st, epoch, true);
	}
	return q;
}

static int meta_text(struct conn *c, const char *k, char *buf, size_t cap)
{
	sqlite3_stmt *q = store_stmt(c, S_META_GET);
	int rc;

	if (!q)
		return -EIO;
	sqlite3_bind_text(q, 1, k, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		const unsigned char *v = sqlite3_column_text(q, 0);

		snprintf(buf, cap, "%s", v ? (const char *)v : "");
		sqlite3_reset(q);
		return 0;
	}
	sqlite3_reset(q);
	return rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
}

static int meta_set(struct conn *c, const char *k, const char *text,
		    int64_t num)
{
	sqlite3_stmt *q = store_stmt(c, S_META_SET);

	if (!q)
		return -EIO;
	sqlite3_bind_text(q, 1, k, -1, SQLITE_STATIC);
	if (text)
		sqlite3_bind_text(q, 2, text, -1, SQLITE_STATIC);
	else
		sqlite3_bind_int64(q, 2, num);
	return sql_step_done(q);
}

/* Fill a new database in the open transaction of @c: the statuses every
 * dataset shows (so that looking one up never writes), and a row at each
 * floor, never shown, that later numbers go above. */
static int seed(struct conn *c, const struct floors *f)
{
	char sql[512];
	size_t i, o = 0;
	int err = 0;

	for (i = 0; i < ITEM_N_STATUSES && !err; i++) {
		sqlite3_stmt *q = store_stmt(c, S_STATUS_ADD);

		err = q ? 0 : -EIO;
		if (!err) {
			sqlite3_bind_text(q, 1, item_statuses[i], -1,
					  SQLITE_STATIC);
			err = sql_step_done(q);
		}
	}
	if (f->oid)
		o += snprintf(sql + o, sizeof(sql) - o,
			      "INSERT INTO objects(oid, kind, uid)"
			      " VALUES(%" PRIu64 ", -1, '');",
			      f->oid);
	if (f->dir > STORE_DIR_PATHS)
		o += snprintf(sql + o, sizeof(sql) - o,
			      "INSERT INTO dirs(id, parent, name)"
			      " VALUES(%" PRIu64 ", -1, '');",
			      f->dir);
	if (f->gen)
		o += snprintf(sql + o, sizeof(sql) - o,
			      "INSERT INTO gens(gen, kind, pid)"
			      " VALUES(%" PRIu64 ", -1, 0);",
			      f->gen);
	if (!err && o)
		err = sql_exec(&c->sql, sql);
	return err;
}

/* Whether the database at the writer's connection is ours: schema, API
 * origin and dataset. A new (empty) database is made ours, seeded above
 * @f; one that is there already is only read. */
int store_claim(struct conn *c, const struct store_config *cfg,
		const struct floors *f)
{
	const char *want[3][2] = { { "origin", cfg->origin },
				   { "owner", cfg->owner },
				   { "slug", cfg->slug } };
	char buf[1024];
	sqlite3_stmt *q;
	int64_t tables = 0, metas = 0;
	int i, rc, err;

	rc = sqlite3_prepare_v2(c->sql.db,
				"SELECT count(*), count(*) FILTER (WHERE"
				" name = 'meta') FROM sqlite_master",
				-1, &q, NULL);
	if (rc != SQLITE_OK)
		return sql_errno(rc);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		tables = sqlite3_column_int64(q, 0);
		metas = sqlite3_column_int64(q, 1);
	}
	err = sql_errno(rc);
	sqlite3_finalize(q);
	if (!err && tables && !metas)
		return -EPROTO; /* a database of something else */
	if (!err && !tables) {
		err = sql_begin(&c->sql);
		if (!err)
			err = sql_exec(&c->sql, schema);
		if (!err)
			err = meta_set(c, "schema", NULL, SCHEMA_VERSION);
		for (i = 0; i < 3 && !err; i++)
			err = meta_set(c, want[i][0], want[i][1], 0);
		if (!err)
			err = seed(c, f);
		if (err)
			sql_rollback(&c->sql);
		else
			err = sql_commit(&c->sql);
	}
	if (!err && (meta_text(c, "schema", buf, sizeof(buf)) ||
		     strtol(buf, NULL, 10) != SCHEMA_VERSION))
		err = -EPROTO;
	for (i = 0; i < 3 && !err; i++) {
		if (meta_text(c, want[i][0], buf, sizeof(buf)) ||
		    strcmp(buf, want[i][1]) != 0)
			err = -EPROTO;
	}
	return err;
}

int64_t store_time_ns(const struct item *it)
{
	return (int64_t)it->mtime.tv_sec * 1000000000 + it->mtime.tv_nsec;
}
