/* The listing store in SQLite. Every listing is written, page by page, under
 * a generation of its own; readers name the generation they read, so a
 * listing in the making is never seen and the one it replaces stays whole
 * until collected. Names are given as objects arrive: a name is taken from
 * the previous generation when the object's key is the same, else made by
 * the rules of names.c, and a collision renames the newcomer (and the
 * holder, unless the holder's name is an older one).
 * Lock order: st->write_lock, then st->lock (the connection pool and the
 * status table); neither is held across a callback. */
#include "store.h"
#include "api.h"
#include "log.h"
#include "names.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uthash.h>

#define SCHEMA_VERSION 3
#define MAX_READERS 16 /* connections open for readers at most */

/* Entry flags: how an entry's name came about. */
#define NAME_KEPT 1 /* from the previous generation */
#define NAME_DECORATED 2 /* carries ~uid: a collision was resolved */

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS objects(oid INTEGER PRIMARY KEY,"
	" kind INTEGER NOT NULL, uid TEXT NOT NULL);"
	"CREATE UNIQUE INDEX IF NOT EXISTS objects_uid ON objects(kind, uid);"
	/* generations: who builds one (a process), and when it was complete;
	 * which one each mount on the machine reads */
	"CREATE TABLE IF NOT EXISTS gens(gen INTEGER PRIMARY KEY,"
	" kind INTEGER NOT NULL, pid INTEGER NOT NULL,"
	" complete INTEGER NOT NULL DEFAULT 0, listed_at INTEGER);"
	"CREATE TABLE IF NOT EXISTS readers(pid INTEGER NOT NULL,"
	" gen INTEGER NOT NULL, PRIMARY KEY(pid, gen)) WITHOUT ROWID;"
	/* one row per object and generation: what getattr needs, and the
	 * JSON for everything else */
	"CREATE TABLE IF NOT EXISTS listed(gen INTEGER NOT NULL,"
	" oid INTEGER NOT NULL, key BLOB, iname BLOB NOT NULL,"
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
	"CREATE INDEX IF NOT EXISTS entries_seq ON entries(gen, dir, seq);"
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

/* The statements of one connection, prepared on first use. */
enum stmt {
	S_META_GET,
	S_META_SET,
	S_OBJECT_ID,
	S_OBJECT_ADD,
	S_GEN_NEW,
	S_GEN_DONE,
	S_PREV,
	S_LISTED_ADD,
	S_LISTED_INAME,
	S_LISTED_PNAME,
	S_ENTRY_ADD,
	S_ENTRY_GET,
	S_ENTRY_DROP,
	S_ENTRY_CLAIM,
	S_ENTRY_HAS,
	S_DIR_ID,
	S_FOLDER_STATUS,
	S_GEN_STATUS,
	S_STATUS_ADD,
	S_UID,
	S_READDIR,
	S_READDIR_LIST,
	S_LOOKUP,
	S_OBJECT,
	S_OBJECT_ENTRY,
	S_DIR_PARENT,
	S_PLACE_NAMES,
	S_PLACE,
	S_STATUSES,
	S_LEARN,
	S_LATEST,
	S_READER,
	S_COUNT
};

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
	[S_OBJECT_ID] = "SELECT oid FROM objects WHERE kind = ?1 AND uid = ?2",
	[S_OBJECT_ADD] = "INSERT INTO objects(kind, uid) VALUES(?1, ?2)",
	[S_GEN_NEW] = "INSERT INTO gens(kind, pid) VALUES(?1, ?2)"
		      " RETURNING gen",
	[S_GEN_DONE] = "UPDATE gens SET complete = 1, listed_at = ?2"
		       " WHERE gen = ?1",
	[S_PREV] = "SELECT key, iname, pdir, pname FROM listed"
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
	[S_LOOKUP] =
		"SELECT e.name, " ENTRY_COLUMNS ENTRY_FROM
		"WHERE e.gen = ?1 AND e.dir = ?2 AND e.name = ?3" ENTRY_FILTER,
	[S_OBJECT] = "SELECT json FROM listed WHERE gen = ?1 AND oid = ?2",
	[S_OBJECT_ENTRY] = "SELECT l.iname, l.oid, 0, l.has, l.status,"
			   " COALESCE(l.size, ld.size), lt.size, l.mtime, 0"
			   " FROM listed l"
			   " LEFT JOIN learned ld ON ld.oid = l.oid"
			   " AND ld.which = 0 AND ld.mtime IS l.mtime"
			   " LEFT JOIN learned lt ON lt.oid = l.oid"
			   " AND lt.which = 1 AND lt.mtime IS l.mtime"
			   " WHERE l.gen = ?1 AND l.oid = ?2",
	[S_DIR_PARENT] = "SELECT parent FROM dirs WHERE id = ?1",
	[S_PLACE_NAMES] = "SELECT iname, pdir, pname FROM listed"
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
	[S_READER] = "INSERT OR IGNORE INTO readers(pid, gen) VALUES(?1, ?2)",
};

struct conn {
	sqlite3 *db;
	sqlite3_stmt *stmt[S_COUNT];
	struct conn *next; /* protected by store->lock: the idle list */
};

struct status_name {
	int id;
	char *name;
	UT_hash_handle hh;
};

struct store {
	char *path;
	pthread_mutex_t lock;
	pthread_cond_t conn_free; /* a connection went back to the idle list */
	struct conn *idle; /* protected by lock */
	int n_conns; /* protected by lock: reader connections open */
	struct status_name *statuses; /* protected by lock: by name */
	struct status_name **status_by_id; /* protected by lock */
	size_t n_status_ids; /* protected by lock */
	pthread_mutex_t write_lock; /* one writer at a time */
	struct conn *writer; /* protected by write_lock */
};

static void conn_close(struct conn *c)
{
	int i;

	if (!c)
		return;
	for (i = 0; i < S_COUNT; i++)
		sqlite3_finalize(c->stmt[i]);
	sqlite3_close(c->db);
	free(c);
}

static int sql_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_CANTOPEN:
		return -EACCES;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EBADMSG; /* not a database that can be trusted */
	default:
		return -EIO;
	}
}

static int conn_exec(struct conn *c, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK)
		log_err("store: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
	return sql_errno(rc);
}

/* A connection to @path, or NULL with the reason in @err. */
static struct conn *conn_open(const char *path, int *err)
{
	struct conn *c = calloc(1, sizeof(*c));
	int rc;

	*err = -ENOMEM;
	if (!c)
		return NULL;
	rc = sqlite3_open_v2(path, &c->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		*err = sql_errno(rc);
		conn_close(c);
		return NULL;
	}
	sqlite3_busy_timeout(c->db, 10000);
	/* the first read of the file: a bad one is said once, by the caller */
	rc = sqlite3_exec(c->db,
			  "PRAGMA journal_mode = WAL;"
			  "PRAGMA synchronous = NORMAL;"
			  "PRAGMA temp_store = MEMORY;"
			  "PRAGMA cache_size = -2048;"
			  "PRAGMA mmap_size = 0",
			  NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		*err = sql_errno(rc);
		conn_close(c);
		return NULL;
	}
	*err = 0;
	return c;
}

/* The statement @s of @c, reset and unbound. */
static sqlite3_stmt *stmt(struct conn *c, enum stmt s)
{
	if (!c->stmt[s]) {
		int rc = sqlite3_prepare_v3(c->db, stmt_sql[s], -1,
					    SQLITE_PREPARE_PERSISTENT,
					    &c->stmt[s], NULL);

		if (rc != SQLITE_OK) {
			log_err("store: cannot prepare \"%s\": %s", stmt_sql[s],
				sqlite3_errmsg(c->db));
			return NULL;
		}
	}
	sqlite3_reset(c->stmt[s]);
	sqlite3_clear_bindings(c->stmt[s]);
	return c->stmt[s];
}

/* Step a statement that returns no row (or one ignored): 0 or -errno. */
static int step_done(sqlite3_stmt *q)
{
	int rc = sqlite3_step(q);

	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		log_err("store: %s: %s", sqlite3_sql(q),
			sqlite3_errmsg(sqlite3_db_handle(q)));
		sqlite3_reset(q);
		return sql_errno(rc);
	}
	sqlite3_reset(q);
	return 0;
}

/* Step a statement that returns one integer: 0 with it in @v, -ENOENT
 * when there is no row, or another negative errno. */
static int step_int(sqlite3_stmt *q, int64_t *v)
{
	int rc = sqlite3_step(q);

	if (rc == SQLITE_ROW) {
		*v = sqlite3_column_int64(q, 0);
		sqlite3_reset(q);
		return 0;
	}
	sqlite3_reset(q);
	if (rc == SQLITE_DONE)
		return -ENOENT;
	log_err("store: %s: %s", sqlite3_sql(q),
		sqlite3_errmsg(sqlite3_db_handle(q)));
	return sql_errno(rc);
}

static struct conn *conn_get(struct store *st)
{
	struct conn *c;
	int err;

	pthread_mutex_lock(&st->lock);
	while (!st->idle && st->n_conns >= MAX_READERS)
		pthread_cond_wait(&st->conn_free, &st->lock);
	c = st->idle;
	if (c) {
		st->idle = c->next;
		pthread_mutex_unlock(&st->lock);
		return c;
	}
	st->n_conns++;
	pthread_mutex_unlock(&st->lock);
	c = conn_open(st->path, &err);
	if (!c) {
		log_err("store: cannot open %s: %s", st->path, strerror(-err));
		pthread_mutex_lock(&st->lock);
		st->n_conns--;
		pthread_cond_signal(&st->conn_free);
		pthread_mutex_unlock(&st->lock);
	}
	return c;
}

static void conn_put(struct store *st, struct conn *c)
{
	pthread_mutex_lock(&st->lock);
	c->next = st->idle;
	st->idle = c;
	pthread_cond_signal(&st->conn_free);
	pthread_mutex_unlock(&st->lock);
}

/* A reader connection, in *@c, and its statement @which; NULL (and no
 * connection) when either cannot be had. */
static sqlite3_stmt *reader_stmt(struct store *st, enum stmt which,
				 struct conn **c)
{
	sqlite3_stmt *q;

	*c = conn_get(st);
	q = *c ? stmt(*c, which) : NULL;
	if (!q && *c) {
		conn_put(st, *c);
		*c = NULL;
	}
	return q;
}

static int meta_text(struct conn *c, const char *k, char *buf, size_t cap)
{
	sqlite3_stmt *q = stmt(c, S_META_GET);
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
	sqlite3_stmt *q = stmt(c, S_META_SET);

	if (!q)
		return -EIO;
	sqlite3_bind_text(q, 1, k, -1, SQLITE_STATIC);
	if (text)
		sqlite3_bind_text(q, 2, text, -1, SQLITE_STATIC);
	else
		sqlite3_bind_int64(q, 2, num);
	return step_done(q);
}

/* Whether the database at the writer's connection is ours: schema, API
 * origin and dataset. A new database is made ours. */
static int claim(struct conn *c, const char *origin, const char *owner,
		 const char *slug)
{
	const char *want[3][2] = { { "origin", origin },
				   { "owner", owner },
				   { "slug", slug } };
	char buf[1024];
	int i, err;

	err = conn_exec(c, "BEGIN IMMEDIATE");
	if (err)
		return err;
	err = conn_exec(c, schema);
	if (!err && meta_text(c, "schema", buf, sizeof(buf)) == -ENOENT) {
		err = meta_set(c, "schema", NULL, SCHEMA_VERSION);
		for (i = 0; i < 3 && !err; i++)
			err = meta_set(c, want[i][0], want[i][1], 0);
	}
	if (!err && (meta_text(c, "schema", buf, sizeof(buf)) ||
		     strtol(buf, NULL, 10) != SCHEMA_VERSION))
		err = -EPROTO;
	for (i = 0; i < 3 && !err; i++) {
		if (meta_text(c, want[i][0], buf, sizeof(buf)) ||
		    strcmp(buf, want[i][1]) != 0)
			err = -EPROTO;
	}
	if (!err)
		err = conn_exec(c, "COMMIT");
	if (err)
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	return err;
}

static int load_statuses(struct store *st, struct conn *c)
{
	sqlite3_stmt *q;
	int rc, err = 0;

	rc = sqlite3_prepare_v2(c->db, "SELECT id, name FROM statuses", -1, &q,
				NULL);
	if (rc != SQLITE_OK)
		return sql_errno(rc);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW && !err) {
		struct status_name *s = calloc(1, sizeof(*s));
		int id = sqlite3_column_int(q, 0);

		if (!s || !(s->name = strdup(
				    (const char *)sqlite3_column_text(q, 1)))) {
			free(s);
			err = -ENOMEM;
			break;
		}
		s->id = id;
		HASH_ADD_KEYPTR(hh, st->statuses, s->name, strlen(s->name), s);
		if ((size_t)id >= st->n_status_ids) {
			size_t n = id + 16;
			struct status_name **v =
				realloc(st->status_by_id, n * sizeof(*v));

			if (!v) {
				err = -ENOMEM;
				break;
			}
			memset(v + st->n_status_ids, 0,
			       (n - st->n_status_ids) * sizeof(*v));
			st->status_by_id = v;
			st->n_status_ids = n;
		}
		st->status_by_id[id] = s;
	}
	sqlite3_finalize(q);
	return err;
}

static bool wal_has_frames(const char *path)
{
	char wal[4096];
	struct stat st;

	snprintf(wal, sizeof(wal), "%s-wal", path);
	return stat(wal, &st) == 0 && st.st_size > 32;
}

/* Whether the file is as long as the database says: a truncated one would
 * fail later, at some page, with rows missing. */
static int check_whole(struct conn *c, const char *path)
{
	int64_t pages = 0, page_size = 0;
	sqlite3_stmt *q;
	struct stat st;

	if (sqlite3_prepare_v2(c->db, "PRAGMA page_count", -1, &q, NULL) ==
	    SQLITE_OK) {
		if (sqlite3_step(q) == SQLITE_ROW)
			pages = sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
	}
	if (sqlite3_prepare_v2(c->db, "PRAGMA page_size", -1, &q, NULL) ==
	    SQLITE_OK) {
		if (sqlite3_step(q) == SQLITE_ROW)
			page_size = sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
	}
	if (stat(path, &st) != 0)
		return -errno;
	/* pages still in the write-ahead log are not in the file yet */
	if (pages * page_size > st.st_size && !wal_has_frames(path))
		return -EBADMSG;
	return 0;
}

/* Move a database that cannot be used out of the way, with one log line. */
static void set_aside(const char *path, const char *why)
{
	char aside[4096];
	const char *suffix[] = { "-wal", "-shm" };
	int i;

	snprintf(aside, sizeof(aside), "%s.bad", path);
	if (rename(path, aside) == 0)
		log_err("store: %s %s: set aside as %s, making a new one", path,
			why, aside);
	else
		unlink(path);
	for (i = 0; i < 2; i++) {
		snprintf(aside, sizeof(aside), "%s%s", path, suffix[i]);
		unlink(aside);
	}
}

int store_open(const char *path, const char *origin, const char *owner,
	       const char *slug, struct store **out)
{
	struct store *st = calloc(1, sizeof(*st));
	int err = -ENOMEM, tries;

	*out = NULL;
	if (!st || !(st->path = strdup(path))) {
		free(st);
		return -ENOMEM;
	}
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->conn_free, NULL);
	pthread_mutex_init(&st->write_lock, NULL);
	for (tries = 0; tries < 2; tries++) {
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

		/* made 0600 before SQLite makes its companions like it: the
		 * listing holds presigned URLs */
		if (fd < 0) {
			err = -errno;
			break;
		}
		close(fd);
		st->writer = conn_open(path, &err);
		/* the writer walks the indexes of a whole listing: its pages
		 * stay in memory rather than being read back from the file */
		if (st->writer)
			err = conn_exec(st->writer,
					"PRAGMA cache_size = -32768");
		if (!err)
			err = claim(st->writer, origin, owner, slug);
		if (!err)
			err = check_whole(st->writer, path);
		if (!err)
			break;
		conn_close(st->writer);
		st->writer = NULL;
		/* only a file that is not what it must be is set aside; an
		 * error of the system (no memory, no room, a lock) is not
		 * the file's */
		if (err != -EPROTO && err != -EBADMSG)
			break;
		set_aside(path, err == -EPROTO
					? "is of another schema or dataset"
					: "is damaged or not a database");
	}
	if (err)
		log_err("store: cannot use %s: %s", path, strerror(-err));
	if (!err)
		err = load_statuses(st, st->writer);
	if (err) {
		store_free(st);
		return err;
	}
	*out = st;
	return 0;
}

void store_free(struct store *st)
{
	struct status_name *s, *tmp;
	struct conn *c;

	if (!st)
		return;
	while ((c = st->idle)) {
		st->idle = c->next;
		conn_close(c);
	}
	conn_close(st->writer);
	HASH_ITER(hh, st->statuses, s, tmp) {
		HASH_DEL(st->statuses, s);
		free(s->name);
		free(s);
	}
	free(st->status_by_id);
	pthread_mutex_destroy(&st->write_lock);
	pthread_cond_destroy(&st->conn_free);
	pthread_mutex_destroy(&st->lock);
	free(st->path);
	free(st);
}

/* Note in the open transaction of @w that this process reads @gen. */
static int add_reader(struct conn *w, uint64_t gen)
{
	sqlite3_stmt *q = stmt(w, S_READER);

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, getpid());
	sqlite3_bind_int64(q, 2, gen);
	return step_done(q);
}

int store_latest(struct store *st, enum item_kind kind, uint64_t *gen,
		 int64_t *listed_at)
{
	struct conn *w = st->writer;
	sqlite3_stmt *q;
	int rc, err;

	*gen = 0;
	*listed_at = 0;
	pthread_mutex_lock(&st->write_lock);
	/* found and claimed at once: no other mount collects it in between */
	err = conn_exec(w, "BEGIN IMMEDIATE");
	q = err ? NULL : stmt(w, S_LATEST);
	if (q) {
		sqlite3_bind_int(q, 1, kind);
		rc = sqlite3_step(q);
		if (rc == SQLITE_ROW) {
			*gen = sqlite3_column_int64(q, 0);
			*listed_at = sqlite3_column_int64(q, 1);
		}
		err = rc == SQLITE_ROW	  ? 0
		      : rc == SQLITE_DONE ? -ENOENT
					  : sql_errno(rc);
		sqlite3_reset(q);
	} else if (!err) {
		err = -EIO;
	}
	if (!err)
		err = add_reader(w, *gen);
	if (!err)
		err = conn_exec(w, "COMMIT");
	if (err) {
		sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
		*gen = 0;
	}
	pthread_mutex_unlock(&st->write_lock);
	return err;
}

/* ---- writing a listing ---- */

/* A folder of the key-path tree seen in this listing: what was written for
 * it already, so a page of a thousand items in one folder writes it once. */
struct folder_memo {
	struct {
		uint64_t parent;
		char name[NAMES_MAX + 1];
	} key;
	uint64_t id;
	unsigned has; /* bits written to its entry */
	uint64_t statuses; /* status ids < 64 written to folder_status */
	UT_hash_handle hh;
};

/* The next place in a directory's order, for this listing. */
struct dir_seq {
	uint64_t dir;
	uint64_t next;
	UT_hash_handle hh;
};

struct store_listing {
	struct store *st;
	enum item_kind kind;
	uint64_t gen, prev;
	struct folder_memo *folders;
	struct dir_seq *seqs;
	uint8_t *seen; /* a bit per object number listed already */
	size_t seen_bytes;
	uint64_t statuses; /* ids < 64 written to gen_status */
	bool failed;
};

/* Whether @oid was listed before in @l (1), noting it when not (0); or
 * -ENOMEM. Object numbers are dense: a bit each is enough. */
static int seen_before(struct store_listing *l, uint64_t oid)
{
	size_t byte = oid / 8;
	uint8_t bit = 1u << (oid % 8);

	if (byte >= l->seen_bytes) {
		size_t n = (byte + 1) * 2;
		uint8_t *grown = realloc(l->seen, n);

		if (!grown)
			return -ENOMEM;
		memset(grown + l->seen_bytes, 0, n - l->seen_bytes);
		l->seen = grown;
		l->seen_bytes = n;
	}
	if (l->seen[byte] & bit)
		return 1;
	l->seen[byte] |= bit;
	return 0;
}

static void memo_free(struct store_listing *l)
{
	struct folder_memo *f, *tmp;
	struct dir_seq *d, *dtmp;

	HASH_ITER(hh, l->folders, f, tmp) {
		HASH_DEL(l->folders, f);
		free(f);
	}
	HASH_ITER(hh, l->seqs, d, dtmp) {
		HASH_DEL(l->seqs, d);
		free(d);
	}
	free(l->seen);
	l->seen = NULL;
}

/* The next place in @dir's order (from 1), or 0 on ENOMEM. */
static uint64_t next_seq(struct store_listing *l, uint64_t dir)
{
	struct dir_seq *d;

	HASH_FIND(hh, l->seqs, &dir, sizeof(dir), d);
	if (!d) {
		d = calloc(1, sizeof(*d));
		if (!d)
			return 0;
		d->dir = dir;
		d->next = 1;
		HASH_ADD(hh, l->seqs, dir, sizeof(d->dir), d);
	}
	return d->next++;
}

int store_listing_begin(struct store *st, enum item_kind kind, uint64_t prev,
			struct store_listing **out)
{
	struct store_listing *l = calloc(1, sizeof(*l));
	sqlite3_stmt *q;
	int64_t gen = 0;
	int err;

	*out = NULL;
	if (!l)
		return -ENOMEM;
	l->st = st;
	l->kind = kind;
	l->prev = prev;
	pthread_mutex_lock(&st->write_lock);
	q = stmt(st->writer, S_GEN_NEW);
	err = q ? 0 : -EIO;
	if (!err) {
		sqlite3_bind_int(q, 1, kind);
		sqlite3_bind_int64(q, 2, getpid());
		err = step_int(q, &gen);
	}
	pthread_mutex_unlock(&st->write_lock);
	if (err) {
		free(l);
		return err;
	}
	l->gen = gen;
	*out = l;
	return 0;
}

/* The uid of @oid, as a new string; NULL when unknown or on ENOMEM. */
static char *uid_of(struct conn *c, uint64_t oid)
{
	sqlite3_stmt *q = stmt(c, S_UID);
	char *uid = NULL;

	if (!q)
		return NULL;
	sqlite3_bind_int64(q, 1, oid);
	if (sqlite3_step(q) == SQLITE_ROW)
		uid = strdup((const char *)sqlite3_column_text(q, 0));
	sqlite3_reset(q);
	return uid;
}

/* Candidate @attempt for a name: the base, then with ~uid8, with the whole
 * uid, and with the whole uid and a counter. A new string, NULL on ENOMEM. */
static char *candidate(const char *base, const char *uid, unsigned attempt)
{
	if (attempt == 0)
		return strdup(base);
	return names_decorate(base, uid, attempt > 1,
			      attempt > 2 ? attempt - 2 : 0);
}

/* Who holds a name: an object, a folder, or nobody (a name held back). */
struct holder {
	uint64_t oid, child;
	unsigned flags, has;
	uint64_t seq;
};

static int entry_get(struct store_listing *l, uint64_t dir, const char *name,
		     struct holder *h)
{
	sqlite3_stmt *q = stmt(l->st->writer, S_ENTRY_GET);
	int rc;

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, l->gen);
	sqlite3_bind_int64(q, 2, dir);
	sqlite3_bind_blob(q, 3, name, strlen(name), SQLITE_STATIC);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		h->oid = sqlite3_column_int64(q, 0);
		h->child = sqlite3_column_int64(q, 1);
		h->flags = sqlite3_column_int(q, 2);
		h->has = sqlite3_column_int(q, 3);
		h->seq = sqlite3_column_int64(q, 4);
	}
	sqlite3_reset(q);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
}

/* Insert an entry; 1 when the name was free, 0 when it was taken. */
static int entry_add(struct store_listing *l, uint64_t dir, const char *name,
		     uint64_t oid, uint64_t child, unsigned has, unsigned flags,
		     uint64_t seq)
{
	sqlite3_stmt *q = stmt(l->st->writer, S_ENTRY_ADD);
	int err;

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, l->gen);
	sqlite3_bind_int64(q, 2, dir);
	sqlite3_bind_blob(q, 3, name, strlen(name), SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, oid);
	sqlite3_bind_int64(q, 5, child);
	sqlite3_bind_int(q, 6, has);
	sqlite3_bind_int(q, 7, flags);
	sqlite3_bind_int64(q, 8, seq);
	err = step_done(q);
	if (err)
		return err;
	return sqlite3_changes(l->st->writer->db) > 0;
}

/* Turn the entry @name of @dir into a name held back (no object). */
static int entry_drop(struct store_listing *l, uint64_t dir, const char *name)
{
	sqlite3_stmt *q = stmt(l->st->writer, S_ENTRY_DROP);

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, l->gen);
	sqlite3_bind_int64(q, 2, dir);
	sqlite3_bind_blob(q, 3, name, strlen(name), SQLITE_STATIC);
	return step_done(q);
}

static int listed_rename(struct store_listing *l, uint64_t oid, bool path,
			 const char *name)
{
	sqlite3_stmt *q =
		stmt(l->st->writer, path ? S_LISTED_PNAME : S_LISTED_INAME);

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, l->gen);
	sqlite3_bind_int64(q, 2, oid);
	sqlite3_bind_blob(q, 3, name, strlen(name), SQLITE_TRANSIENT);
	return step_done(q);
}

/* Take the name @name of @dir, held back, for object @oid. 1 when taken. */
static int entry_claim(struct store_listing *l, uint64_t dir, const char *name,
		       uint64_t oid, unsigned has, unsigned flags, uint64_t seq)
{
	sqlite3_stmt *q = stmt(l->st->writer, S_ENTRY_CLAIM);
	int err;

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, l->gen);
	sqlite3_bind_int64(q, 2, dir);
	sqlite3_bind_blob(q, 3, name, strlen(name), SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, oid);
	sqlite3_bind_int(q, 5, has);
	sqlite3_bind_int(q, 6, flags);
	sqlite3_bind_int64(q, 7, seq);
	err = step_done(q);
	if (err)
		return err;
	return sqlite3_changes(l->st->writer->db) > 0;
}

static int place(struct store_listing *l, uint64_t dir, const char *base,
		 const char *kept, const char *uid, uint64_t oid, unsigned has,
		 bool path, unsigned first, uint64_t seq, char **placed);

/* Move the object entry @name of @dir (held by @h, under its plain name)
 * to a decorated name, and leave @name held back, so that no later object
 * takes it plain: a collision it was part of. */
static int rename_holder(struct store_listing *l, uint64_t dir,
			 const char *name, const struct holder *h, bool path)
{
	char *uid = uid_of(l->st->writer, h->oid), *moved = NULL;
	int err;

	if (!uid)
		return -ENOMEM;
	/* it keeps its place in the folder's order */
	err = entry_drop(l, dir, name);
	if (!err)
		err = place(l, dir, name, NULL, uid, h->oid, h->has, path, 1,
			    h->seq, &moved);
	if (!err)
		err = listed_rename(l, h->oid, path, moved);
	free(moved);
	free(uid);
	return err;
}

/* Whether @h holds its name plain: made in this listing from its base. */
static bool plain(const struct holder *h)
{
	return h->oid && !(h->flags & (NAME_KEPT | NAME_DECORATED));
}

/* Give object @oid a free name in @dir and write its entry: @kept, the name
 * the last listing gave it, when there is one; else candidate @first on of
 * @base. A plain name of this listing it collides with is renamed too (both
 * get ~uid, and the name is held back for later ones); a kept name, a
 * folder or a name held back is left to its holder, except that a kept
 * name takes back its own. The name goes to @placed (a new string). */
static int place(struct store_listing *l, uint64_t dir, const char *base,
		 const char *kept, const char *uid, uint64_t oid, unsigned has,
		 bool path, unsigned first, uint64_t seq, char **placed)
{
	struct holder h;
	unsigned attempt;
	int err;

	*placed = NULL;
	if (!seq)
		seq = next_seq(l, dir);
	if (!seq)
		return -ENOMEM;
	if (kept && strcmp(kept, base) != 0) {
		/* a name that a collision decorated: the plain one stays
		 * held back, so that a newcomer with that key is decorated
		 * too */
		err = entry_add(l, dir, base, 0, 0, 0, 0, 0);
		if (err == 0 && !(err = entry_get(l, dir, base, &h)) &&
		    plain(&h))
			err = rename_holder(l, dir, base, &h, path);
		if (err < 0)
			return err;
	}
	if (kept) {
		err = entry_add(l, dir, kept, oid, 0, has, NAME_KEPT, seq);
		if (err == 0 && !(err = entry_get(l, dir, kept, &h)) &&
		    plain(&h))
			err = rename_holder(l, dir, kept, &h, path);
		if (err == 0)
			err = entry_claim(l, dir, kept, oid, has, NAME_KEPT,
					  seq);
		if (err == 1) {
			*placed = strdup(kept);
			return *placed ? 0 : -ENOMEM;
		}
		if (err < 0)
			return err;
		/* a folder or another kept name has it now */
	}
	for (attempt = first; attempt < 1000; attempt++) {
		char *name = candidate(base, uid, attempt);

		if (!name)
			return -ENOMEM;
		err = entry_add(l, dir, name, oid, 0, has,
				attempt ? NAME_DECORATED : 0, seq);
		if (err == 1) {
			*placed = name;
			return 0;
		}
		if (err == 0 && attempt == 0 &&
		    !(err = entry_get(l, dir, name, &h)) && plain(&h))
			err = rename_holder(l, dir, name, &h, path);
		free(name);
		if (err < 0)
			return err;
	}
	return -EEXIST;
}

static void bind_name(sqlite3_stmt *q, int i, const char *name)
{
	sqlite3_bind_blob(q, i, name, strlen(name), SQLITE_STATIC);
}

/* The id of folder @name under @parent (made on first use), and its entry
 * in this generation with @has bits and @status beneath it. */
static int folder(struct store_listing *l, uint64_t parent, const char *name,
		  unsigned has, int status, uint64_t *id)
{
	struct conn *w = l->st->writer;
	struct folder_memo key, *f;
	sqlite3_stmt *q;
	int err = 0;

	memset(&key.key, 0, sizeof(key.key));
	key.key.parent = parent;
	snprintf(key.key.name, sizeof(key.key.name), "%s", name);
	HASH_FIND(hh, l->folders, &key.key, sizeof(key.key), f);
	if (!f) {
		struct holder h;
		int64_t v;

		f = calloc(1, sizeof(*f));
		if (!f)
			return -ENOMEM;
		f->key = key.key;
		q = stmt(w, S_DIR_ID);
		err = q ? 0 : -EIO;
		if (!err) {
			sqlite3_bind_int64(q, 1, parent);
			bind_name(q, 2, name);
			err = step_int(q, &v);
			f->id = v;
		}
		if (!err) {
			uint64_t seq = next_seq(l, parent);

			err = seq ? entry_add(l, parent, name, 0, f->id, has, 0,
					      seq)
				  : -ENOMEM;
		}
		if (err == 0 && !entry_get(l, parent, name, &h) && h.oid) {
			/* a file of that name, kept or not: it yields to the
			 * folder */
			err = rename_holder(l, parent, name, &h, true);
		}
		if (err < 0) {
			free(f);
			return err;
		}
		err = 0;
		HASH_ADD(hh, l->folders, key, sizeof(f->key), f);
	}
	if ((f->has & has) != has) {
		q = stmt(w, S_ENTRY_HAS);
		err = q ? 0 : -EIO;
		if (!err) {
			sqlite3_bind_int64(q, 1, l->gen);
			sqlite3_bind_int64(q, 2, parent);
			bind_name(q, 3, name);
			sqlite3_bind_int(q, 4, has);
			sqlite3_bind_int64(q, 5, f->id);
			/* a name held back becomes the folder: its place is
			 * new */
			sqlite3_bind_int64(q, 6, next_seq(l, parent));
			err = step_done(q);
		}
		if (!err)
			f->has |= has;
	}
	if (!err && status != STORE_NO_STATUS &&
	    (status >= 64 || !(f->statuses & (1ull << status)))) {
		q = stmt(w, S_FOLDER_STATUS);
		err = q ? 0 : -EIO;
		if (!err) {
			sqlite3_bind_int64(q, 1, l->gen);
			sqlite3_bind_int64(q, 2, f->id);
			sqlite3_bind_int(q, 3, status);
			err = step_done(q);
		}
		if (!err && status < 64)
			f->statuses |= 1ull << status;
	}
	*id = f->id;
	return err;
}

/* The id of status @name, made on first use; STORE_NO_STATUS for NULL. */
static int status_id_make(struct store *st, struct conn *w, const char *name,
			  int *id)
{
	struct status_name *s;
	sqlite3_stmt *q;
	int64_t v;
	int err;

	*id = STORE_NO_STATUS;
	if (!name)
		return 0;
	*id = store_status_id(st, name);
	if (*id != STORE_NO_STATUS)
		return 0;
	q = stmt(w, S_STATUS_ADD);
	if (!q)
		return -EIO;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	err = step_int(q, &v);
	if (err)
		return err;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->name = strdup(name))) {
		free(s);
		return -ENOMEM;
	}
	s->id = (int)v;
	pthread_mutex_lock(&st->lock);
	if ((size_t)s->id >= st->n_status_ids) {
		size_t n = s->id + 16;
		struct status_name **vv =
			realloc(st->status_by_id, n * sizeof(*vv));

		if (!vv) {
			pthread_mutex_unlock(&st->lock);
			free(s->name);
			free(s);
			return -ENOMEM;
		}
		memset(vv + st->n_status_ids, 0,
		       (n - st->n_status_ids) * sizeof(*vv));
		st->status_by_id = vv;
		st->n_status_ids = n;
	}
	st->status_by_id[s->id] = s;
	HASH_ADD_KEYPTR(hh, st->statuses, s->name, strlen(s->name), s);
	pthread_mutex_unlock(&st->lock);
	*id = s->id;
	return 0;
}

/* What the previous generation had for @oid. */
struct prev_row {
	bool found;
	bool same_key;
	char *iname, *pname;
	uint64_t pdir;
};

static int prev_row(struct store_listing *l, uint64_t oid,
		    const struct item *it, struct prev_row *p)
{
	sqlite3_stmt *q;
	int rc;

	memset(p, 0, sizeof(*p));
	if (!l->prev)
		return 0;
	q = stmt(l->st->writer, S_PREV);
	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, l->prev);
	sqlite3_bind_int64(q, 2, oid);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		const void *key = sqlite3_column_blob(q, 0);
		size_t key_len = sqlite3_column_bytes(q, 0);
		bool null_key = sqlite3_column_type(q, 0) == SQLITE_NULL;

		p->found = true;
		p->same_key = (null_key && !it->key) ||
			      (!null_key && it->key && key_len == it->key_len &&
			       memcmp(key, it->key, key_len) == 0);
		p->iname = strndup(sqlite3_column_blob(q, 1),
				   sqlite3_column_bytes(q, 1));
		p->pdir = sqlite3_column_int64(q, 2);
		if (sqlite3_column_type(q, 3) != SQLITE_NULL)
			p->pname = strndup(sqlite3_column_blob(q, 3),
					   sqlite3_column_bytes(q, 3));
		if (!p->iname ||
		    (sqlite3_column_type(q, 3) != SQLITE_NULL && !p->pname))
			rc = SQLITE_NOMEM;
	}
	sqlite3_reset(q);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_errno(rc);
}

static void prev_clear(struct prev_row *p)
{
	free(p->iname);
	free(p->pname);
}

/* The object's place in the key-path tree: its folders made, and the base
 * of its own name in @base. */
static int key_path(struct store_listing *l, const struct item *it,
		    unsigned has, int status, uint64_t *dir, char **base)
{
	char **parts = NULL;
	size_t n = 0, i;
	int err;

	*dir = STORE_DIR_PATHS;
	*base = NULL;
	err = names_key_path(it->key, it->key ? it->key_len : 0, it->uid,
			     it->data_ext, &parts, &n);
	for (i = 0; !err && i + 1 < n; i++)
		err = folder(l, *dir, parts[i], has,
			     has & STORE_HAS_DATA ? status : STORE_NO_STATUS,
			     dir);
	if (!err) {
		*base = parts[n - 1];
		parts[n - 1] = NULL;
	}
	for (i = 0; i < n; i++)
		free(parts[i]);
	free(parts);
	return err;
}

static int64_t time_ns(const struct item *it)
{
	return (int64_t)it->mtime.tv_sec * 1000000000 + it->mtime.tv_nsec;
}

/* Add one object to the listing: 1, 0 when its uid came earlier in this
 * listing, or a negative errno. */
static int add_object(struct store_listing *l, const struct item *it)
{
	struct conn *w = l->st->writer;
	struct prev_row prev = { 0 };
	char *base = NULL, *iname = NULL, *pname = NULL, *pbase = NULL;
	unsigned has = (it->data_url ? STORE_HAS_DATA : 0) |
		       (it->thumb_url ? STORE_HAS_THUMB : 0);
	uint64_t oid, pdir = 0;
	sqlite3_stmt *q;
	int64_t v;
	int status, err;

	/* its number: found, else made (an upsert that returns it costs
	 * several times more) */
	q = stmt(w, S_OBJECT_ID);
	if (!q)
		return -EIO;
	sqlite3_bind_int(q, 1, it->kind);
	sqlite3_bind_text(q, 2, it->uid, -1, SQLITE_STATIC);
	err = step_int(q, &v);
	if (err == -ENOENT) {
		q = stmt(w, S_OBJECT_ADD);
		if (!q)
			return -EIO;
		sqlite3_bind_int(q, 1, it->kind);
		sqlite3_bind_text(q, 2, it->uid, -1, SQLITE_STATIC);
		err = step_done(q);
		v = sqlite3_last_insert_rowid(w->db);
	}
	oid = v;
	if (err)
		return err;
	err = seen_before(l, oid);
	if (err)
		return err > 0 ? 0
			       : err; /* listed twice: the first one stays */
	status = it->status ? store_status_id(l->st, it->status)
			    : STORE_NO_STATUS;
	err = prev_row(l, oid, it, &prev);
	if (err)
		goto out;
	base = names_base(it->key, it->key ? it->key_len : 0, it->uid);
	if (!base) {
		err = -ENOMEM;
		goto out;
	}
	/* items/ or sequences/ */
	err = place(l,
		    l->kind == ITEM_KIND_ITEM ? STORE_DIR_ITEMS
					      : STORE_DIR_SEQUENCES,
		    base, prev.found && prev.same_key ? prev.iname : NULL,
		    it->uid, oid, has, false, 0, 0, &iname);
	/* the key-path tree: items with a file to show */
	if (!err && l->kind == ITEM_KIND_ITEM && has) {
		err = key_path(l, it, has, status, &pdir, &pbase);
		if (!err)
			err = place(l, pdir, pbase,
				    prev.found && prev.same_key &&
						    prev.pdir == pdir
					    ? prev.pname
					    : NULL,
				    it->uid, oid, has, true, 0, 0, &pname);
	}
	if (err)
		goto out;
	q = stmt(w, S_LISTED_ADD);
	if (!q) {
		err = -EIO;
		goto out;
	}
	sqlite3_bind_int64(q, 1, l->gen);
	sqlite3_bind_int64(q, 2, oid);
	if (it->key)
		sqlite3_bind_blob(q, 3, it->key, it->key_len, SQLITE_STATIC);
	bind_name(q, 4, iname);
	sqlite3_bind_int64(q, 5, pdir);
	if (pname)
		bind_name(q, 6, pname);
	sqlite3_bind_int(q, 7, has);
	sqlite3_bind_int(q, 8, status);
	if (it->size >= 0)
		sqlite3_bind_int64(q, 9, it->size);
	if (it->has_mtime)
		sqlite3_bind_int64(q, 10, time_ns(it));
	sqlite3_bind_blob(q, 11, it->json, it->json_len, SQLITE_STATIC);
	err = step_done(q);
	if (!err && status != STORE_NO_STATUS &&
	    (status >= 64 || !(l->statuses & (1ull << status)))) {
		q = stmt(w, S_GEN_STATUS);
		err = q ? 0 : -EIO;
		if (!err) {
			sqlite3_bind_int64(q, 1, l->gen);
			sqlite3_bind_int(q, 2, status);
			err = step_done(q);
		}
		if (!err && status < 64)
			l->statuses |= 1ull << status;
	}
out:
	prev_clear(&prev);
	free(base);
	free(pbase);
	free(iname);
	free(pname);
	return err ? err : 1;
}

int store_listing_add(struct store_listing *l, struct item *const *v, size_t n)
{
	struct store *st = l->st;
	int err, added = 0;
	size_t i;
	if (l->failed)
		return -EIO;
	pthread_mutex_lock(&st->write_lock);
	/* status ids are for ever, not for one page: made first, on their
	 * own, so that a page rolled back leaves none behind in memory */
	for (i = 0, err = 0; i < n && !err; i++) {
		int id;

		err = status_id_make(st, st->writer, v[i]->status, &id);
	}
	if (!err)
		err = conn_exec(st->writer, "BEGIN IMMEDIATE");
	for (i = 0; i < n && !err; i++) {
		err = add_object(l, v[i]);
		if (err > 0)
			added += err;
		err = err > 0 ? 0 : err;
	}
	if (!err)
		err = conn_exec(st->writer, "COMMIT");
	if (err) {
		sqlite3_exec(st->writer->db, "ROLLBACK", NULL, NULL, NULL);
		l->failed = true;
	}
	pthread_mutex_unlock(&st->write_lock);
	return err ? err : added;
}

/* Remove every row of generation @gen. Called with write_lock held. */
/* Delete generation @gen in the open transaction of @w. */
static int drop_gen(struct conn *w, uint64_t gen)
{
	static const char *const tables[] = { "listed",	       "entries",
					      "folder_status", "gen_status",
					      "readers",       "gens" };
	char sql[128];
	size_t i;
	int err = 0;

	for (i = 0; i < sizeof(tables) / sizeof(tables[0]) && !err; i++) {
		snprintf(sql, sizeof(sql),
			 "DELETE FROM %s WHERE gen = %" PRIu64, tables[i], gen);
		err = conn_exec(w, sql);
	}
	return err;
}

uint64_t store_listing_commit(struct store_listing *l)
{
	struct store *st = l->st;
	uint64_t gen = 0;
	sqlite3_stmt *q;
	int err = l->failed ? -EIO : 0;

	pthread_mutex_lock(&st->write_lock);
	/* complete and read by this process at once: no other mount
	 * sharing the database collects it in between */
	if (!err)
		err = conn_exec(st->writer, "BEGIN IMMEDIATE");
	q = err ? NULL : stmt(st->writer, S_GEN_DONE);
	if (q) {
		sqlite3_bind_int64(q, 1, l->gen);
		sqlite3_bind_int64(q, 2, time(NULL));
		err = step_done(q);
	} else if (!err) {
		err = -EIO;
	}
	if (!err)
		err = add_reader(st->writer, l->gen);
	if (!err)
		err = conn_exec(st->writer, "COMMIT");
	if (err)
		sqlite3_exec(st->writer->db, "ROLLBACK", NULL, NULL, NULL);
	else
		gen = l->gen;
	pthread_mutex_unlock(&st->write_lock);
	return gen;
}

void store_listing_free(struct store_listing *l)
{
	if (!l)
		return;
	memo_free(l);
	/* the pages the writer kept for the listing are not needed until
	 * the next one */
	pthread_mutex_lock(&l->st->write_lock);
	sqlite3_db_release_memory(l->st->writer->db);
	pthread_mutex_unlock(&l->st->write_lock);
	free(l);
}

uint64_t store_listing_gen(const struct store_listing *l)
{
	return l->gen;
}

int store_drop(struct store *st, uint64_t gen)
{
	int err;

	pthread_mutex_lock(&st->write_lock);
	err = conn_exec(st->writer, "BEGIN IMMEDIATE");
	if (!err)
		err = drop_gen(st->writer, gen);
	if (!err)
		err = conn_exec(st->writer, "COMMIT");
	if (err)
		sqlite3_exec(st->writer->db, "ROLLBACK", NULL, NULL, NULL);
	pthread_mutex_unlock(&st->write_lock);
	return err;
}

/* Whether process @pid is running. */
static bool alive(int64_t pid)
{
	return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

static bool kept(const uint64_t *keep, size_t n_keep, uint64_t gen)
{
	size_t k;

	for (k = 0; k < n_keep; k++) {
		if (keep[k] == gen)
			return true;
	}
	return false;
}

void store_collect(struct store *st, enum item_kind kind, const uint64_t *keep,
		   size_t n_keep)
{
	struct conn *w = st->writer;
	uint64_t *old = NULL;
	size_t n = 0, cap = 0, i;
	int64_t self = getpid();
	sqlite3_stmt *q = NULL;
	int err;

	pthread_mutex_lock(&st->write_lock);
	/* one transaction: a generation another mount adopts or completes
	 * meanwhile is claimed by it before, or after, never in between */
	err = conn_exec(w, "BEGIN IMMEDIATE");
	/* this mount no longer reads what it does not keep */
	if (!err && sqlite3_prepare_v2(w->db,
				       "SELECT r.gen FROM readers r"
				       " JOIN gens g ON g.gen = r.gen"
				       " WHERE r.pid = ?1 AND g.kind = ?2",
				       -1, &q, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(q, 1, self);
		sqlite3_bind_int(q, 2, kind);
		while (sqlite3_step(q) == SQLITE_ROW) {
			uint64_t gen = sqlite3_column_int64(q, 0);

			if (!kept(keep, n_keep, gen) &&
			    !UTIL_GROW(old, n, cap, 8))
				old[n++] = gen;
		}
		sqlite3_finalize(q);
		q = NULL;
	}
	for (i = 0; i < n && !err; i++) {
		char sql[128];

		snprintf(sql, sizeof(sql),
			 "DELETE FROM readers WHERE pid = %" PRId64
			 " AND gen = %" PRIu64,
			 self, old[i]);
		err = conn_exec(w, sql);
	}
	n = 0;
	/* what other running mounts read, or build, stays */
	if (!err &&
	    sqlite3_prepare_v2(w->db,
			       "SELECT g.gen, g.pid, g.complete,"
			       " (SELECT group_concat(r.pid) FROM readers r"
			       "  WHERE r.gen = g.gen AND r.pid != ?2)"
			       " FROM gens g WHERE g.kind = ?1",
			       -1, &q, NULL) != SQLITE_OK)
		err = -EIO;
	if (!err) {
		sqlite3_bind_int(q, 1, kind);
		sqlite3_bind_int64(q, 2, self);
		while (sqlite3_step(q) == SQLITE_ROW) {
			uint64_t gen = sqlite3_column_int64(q, 0);
			int64_t pid = sqlite3_column_int64(q, 1);
			bool complete = sqlite3_column_int(q, 2);
			const char *readers =
				(const char *)sqlite3_column_text(q, 3);
			bool used = kept(keep, n_keep, gen);

			if (!complete && pid != self && alive(pid))
				used = true; /* another mount builds it */
			while (readers && *readers && !used) {
				used = alive(strtoll(readers, NULL, 10));
				readers = strchr(readers, ',');
				readers = readers ? readers + 1 : NULL;
			}
			if (!used && !UTIL_GROW(old, n, cap, 8))
				old[n++] = gen;
		}
		sqlite3_finalize(q);
	}
	for (i = 0; i < n && !err; i++)
		err = drop_gen(w, old[i]);
	if (!err)
		err = conn_exec(w, "COMMIT");
	if (err)
		sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
	pthread_mutex_unlock(&st->write_lock);
	free(old);
}

/* ---- reading ---- */

static void entry_from_row(sqlite3_stmt *q, struct store_entry *e)
{
	int64_t ns;

	e->name = sqlite3_column_blob(q, 0);
	e->name_len = sqlite3_column_bytes(q, 0);
	e->oid = sqlite3_column_int64(q, 1);
	e->child = sqlite3_column_int64(q, 2);
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
	sqlite3_stmt *q = reader_stmt(st, S_LOOKUP, &c);
	int rc, err;

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, gen);
	sqlite3_bind_int64(q, 2, dir);
	sqlite3_bind_blob(q, 3, name, strlen(name), SQLITE_STATIC);
	bind_filter(q, filter);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		entry_from_row(q, e);
		e->name = name;
		err = 0;
	} else {
		err = rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
	}
	sqlite3_reset(q);
	conn_put(st, c);
	return err;
}

int store_readdir(struct store *st, uint64_t gen, uint64_t dir, uint64_t after,
		  const struct store_filter *filter, size_t max,
		  int (*fn)(void *ctx, const struct store_entry *e), void *ctx)
{
	bool list = (dir == STORE_DIR_ITEMS || dir == STORE_DIR_SEQUENCES) &&
		    (!filter || (!filter->has && !filter->status));
	struct conn *c;
	sqlite3_stmt *q =
		reader_stmt(st, list ? S_READDIR_LIST : S_READDIR, &c);
	int rc, ret = 0;

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, gen);
	sqlite3_bind_int64(q, 2, dir);
	sqlite3_bind_int64(q, 3, after);
	if (!list)
		bind_filter(q, filter);
	sqlite3_bind_int64(q, 6, max);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct store_entry e;

		entry_from_row(q, &e);
		ret = fn(ctx, &e);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = sql_errno(rc);
	sqlite3_reset(q);
	conn_put(st, c);
	return ret;
}

int store_object(struct store *st, uint64_t gen, enum item_kind kind,
		 uint64_t oid, struct item **out)
{
	struct conn *c;
	sqlite3_stmt *q = reader_stmt(st, S_OBJECT, &c);
	int rc, err = 0;

	*out = NULL;
	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, gen);
	sqlite3_bind_int64(q, 2, oid);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		*out = api_parse_object(sqlite3_column_blob(q, 0),
					sqlite3_column_bytes(q, 0), kind);
		if (*out)
			(*out)->oid = oid;
		else
			err = -EIO;
	} else {
		err = rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
	}
	sqlite3_reset(q);
	conn_put(st, c);
	return err;
}

int store_object_entry(struct store *st, uint64_t gen, uint64_t oid,
		       struct store_entry *e)
{
	struct conn *c;
	sqlite3_stmt *q = reader_stmt(st, S_OBJECT_ENTRY, &c);
	int rc, err = 0;

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, gen);
	sqlite3_bind_int64(q, 2, oid);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		entry_from_row(q, e);
		e->name = NULL;
		e->name_len = 0;
	} else {
		err = rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
	}
	sqlite3_reset(q);
	conn_put(st, c);
	return err;
}

/* The position of entry @name (@len bytes) of @dir in @gen, and of the
 * object entry after it, in @pos and @next (0: none). */
static void place_in(struct conn *c, uint64_t gen, uint64_t dir,
		     const void *name, int len, uint64_t *pos, uint64_t *next)
{
	sqlite3_stmt *q = stmt(c, S_PLACE);

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

int store_object_place(struct store *st, uint64_t gen, enum item_kind kind,
		       uint64_t oid, struct store_place *p)
{
	struct conn *c;
	sqlite3_stmt *q = reader_stmt(st, S_PLACE_NAMES, &c);
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
		if (p->folder && sqlite3_column_type(q, 2) != SQLITE_NULL)
			place_in(c, gen, p->folder, sqlite3_column_blob(q, 2),
				 sqlite3_column_bytes(q, 2), &p->folder_pos,
				 &p->folder_next);
		else
			p->folder = 0;
	} else {
		err = rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
	}
	sqlite3_reset(q);
	conn_put(st, c);
	return err;
}

uint64_t store_dir_parent(struct store *st, uint64_t dir)
{
	struct conn *c = conn_get(st);
	sqlite3_stmt *q = c ? stmt(c, S_DIR_PARENT) : NULL;
	int64_t parent = 0;

	if (q) {
		sqlite3_bind_int64(q, 1, dir);
		if (step_int(q, &parent))
			parent = 0;
	}
	if (c)
		conn_put(st, c);
	return parent;
}

char *store_status_name(struct store *st, int status)
{
	char *name = NULL;

	pthread_mutex_lock(&st->lock);
	if (status > 0 && (size_t)status < st->n_status_ids &&
	    st->status_by_id[status])
		name = strdup(st->status_by_id[status]->name);
	pthread_mutex_unlock(&st->lock);
	return name;
}

int store_status_id(struct store *st, const char *name)
{
	struct status_name *s;
	int id;

	pthread_mutex_lock(&st->lock);
	HASH_FIND_STR(st->statuses, name, s);
	id = s ? s->id : STORE_NO_STATUS;
	pthread_mutex_unlock(&st->lock);
	return id;
}

int store_status_ensure(struct store *st, const char *name)
{
	int id, err;

	pthread_mutex_lock(&st->write_lock);
	err = status_id_make(st, st->writer, name, &id);
	pthread_mutex_unlock(&st->write_lock);
	return err ? err : id;
}

long store_statuses(struct store *st, uint64_t gen, int **out)
{
	struct conn *c;
	sqlite3_stmt *q = reader_stmt(st, S_STATUSES, &c);
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
	conn_put(st, c);
	if (rc != SQLITE_DONE) {
		free(v);
		return sql_errno(rc);
	}
	*out = v;
	return (long)n;
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
	struct conn *c = conn_get(st);
	size_t i;
	int rc = SQLITE_DONE;

	if (!c)
		return -EIO;
	for (i = 0; i < sizeof(sql) / sizeof(sql[0]) && rc == SQLITE_DONE;
	     i++) {
		sqlite3_stmt *q;

		rc = sqlite3_prepare_v2(c->db, sql[i], -1, &q, NULL);
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
	conn_put(st, c);
	return rc == SQLITE_DONE ? 0 : sql_errno(rc);
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
	q = stmt(c, S_LEARN);
	if (q) {
		sqlite3_bind_int64(q, 1, it->oid);
		sqlite3_bind_int(q, 2, which);
		sqlite3_bind_int64(q, 3, size);
		sqlite3_bind_text(q, 4, etag ? etag : "", -1, SQLITE_STATIC);
		if (it->has_mtime)
			sqlite3_bind_int64(q, 5, time_ns(it));
		step_done(q);
	}
	pthread_mutex_unlock(&st->write_lock);
}
