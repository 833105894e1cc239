/* SQLite helpers: connections, statements prepared once, transactions and
 * errno values, for the listing store and the data cache's index. */
#include "sql.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int sql_errno(int rc)
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
		/* an I/O error writing is most often a full disk: SQLite
		 * says SQLITE_IOERR_WRITE (or _SHMSIZE) for ENOSPC */
		if (rc == SQLITE_IOERR_WRITE || rc == SQLITE_IOERR_SHMSIZE ||
		    rc == SQLITE_IOERR_TRUNCATE || rc == SQLITE_IOERR_FSYNC)
			return -ENOSPC;
		return -EIO;
	}
}

/* Whether a failure is one the callers handle and say in their words: a
 * full disk, a lock held too long, a damaged file. */
static bool handled(int err)
{
	return err == -ENOSPC || err == -EBUSY || err == -EBADMSG;
}

int sql_open(struct sql_conn *c, const char *name, int flags,
	     const char *const *text, size_t n, const char *pragmas)
{
	int rc, err;

	memset(c, 0, sizeof(*c));
	c->stmt = calloc(n ? n : 1, sizeof(*c->stmt));
	if (!c->stmt)
		return -ENOMEM;
	c->text = text;
	c->n = n;
	rc = sqlite3_open_v2(name, &c->db,
			     flags | SQLITE_OPEN_NOMUTEX |
				     SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_URI,
			     NULL);
	if (rc == SQLITE_OK) {
		/* SQLITE_IOERR_WRITE and its kin tell a full disk */
		sqlite3_extended_result_codes(c->db, 1);
		sqlite3_busy_timeout(c->db, 10000);
		rc = sqlite3_exec(c->db, pragmas ? pragmas : "", NULL, NULL,
				  NULL);
	}
	err = sql_errno(rc);
	if (err) {
		sql_close(c);
		return err;
	}
	return 0;
}

void sql_close(struct sql_conn *c)
{
	size_t i;

	for (i = 0; c->stmt && i < c->n; i++)
		sqlite3_finalize(c->stmt[i]);
	free(c->stmt);
	sqlite3_close(c->db);
	memset(c, 0, sizeof(*c));
}

sqlite3_stmt *sql_stmt(struct sql_conn *c, size_t i)
{
	if (!c->stmt[i]) {
		int rc = sqlite3_prepare_v3(c->db, c->text[i], -1,
					    SQLITE_PREPARE_PERSISTENT,
					    &c->stmt[i], NULL);

		if (rc != SQLITE_OK) {
			if (!handled(sql_errno(rc)))
				log_err("sqlite: cannot prepare \"%s\": %s",
					c->text[i], sqlite3_errmsg(c->db));
			c->stmt[i] = NULL;
			return NULL;
		}
	}
	sqlite3_reset(c->stmt[i]);
	sqlite3_clear_bindings(c->stmt[i]);
	return c->stmt[i];
}

int sql_exec(struct sql_conn *c, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
	int err = sql_errno(rc);

	if (err && !handled(err))
		log_err("sqlite: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
	else if (err)
		log_debug("sqlite: %s: %s", sql,
			  msg ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
	return err;
}

int sql_begin(struct sql_conn *c)
{
	return sql_exec(c, "BEGIN IMMEDIATE");
}

int sql_commit(struct sql_conn *c)
{
	int err = sql_exec(c, "COMMIT");

	if (err)
		sql_rollback(c);
	return err;
}

void sql_rollback(struct sql_conn *c)
{
	if (!sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

static int step_failed(sqlite3_stmt *q, int rc)
{
	int err = sql_errno(rc);

	if (!handled(err))
		log_err("sqlite: %s: %s", sqlite3_sql(q),
			sqlite3_errmsg(sqlite3_db_handle(q)));
	sqlite3_reset(q);
	return err;
}

int sql_step_done(sqlite3_stmt *q)
{
	int rc = sqlite3_step(q);

	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return step_failed(q, rc);
	sqlite3_reset(q);
	return 0;
}

int sql_step_int(sqlite3_stmt *q, int64_t *v)
{
	int rc = sqlite3_step(q);

	if (rc == SQLITE_ROW) {
		*v = sqlite3_column_int64(q, 0);
		sqlite3_reset(q);
		return 0;
	}
	if (rc == SQLITE_DONE) {
		sqlite3_reset(q);
		return -ENOENT;
	}
	return step_failed(q, rc);
}
