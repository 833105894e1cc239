/* SQLite helpers shared by the listing store and the data cache's index:
 * connections to files that were checked before (cachedir.h), statements
 * prepared once per connection, transactions, and one mapping of SQLite's
 * results to errno values. */
#ifndef AVALAFS_SQL_H
#define AVALAFS_SQL_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One connection and its statements, prepared on first use. */
struct sql_conn {
	sqlite3 *db;
	const char *const *text; /* the statements' SQL, by number */
	sqlite3_stmt **stmt; /* as many as text has */
	size_t n;
};

/* 0 for SQLite's OK, ROW and DONE, else a negative errno: -ENOSPC for a
 * full disk or database, -EBADMSG for a file that is damaged or not a
 * database, -EBUSY for a lock held too long, -EACCES, -ENOMEM, -EIO. */
int sql_errno(int rc);

/* Open @name (a path with no link in it, checked and made by the caller,
 * or a "file:" URI) with SQLite's open @flags (SQLITE_OPEN_READWRITE, or
 * READONLY, and CREATE for a database in memory) and its @n statements in
 * @text, running @pragmas first; a link anywhere in the path is refused. A first read of
 * the file happens here: a damaged one fails now (-EBADMSG). Returns 0 or
 * a negative errno; @c is then empty. */
int sql_open(struct sql_conn *c, const char *name, int flags,
	     const char *const *text, size_t n, const char *pragmas);

/* Finalize the statements and close. Accepts an empty @c. */
void sql_close(struct sql_conn *c);

/* Statement @i of @c, reset and unbound; NULL when it cannot be prepared
 * (logged). */
sqlite3_stmt *sql_stmt(struct sql_conn *c, size_t i);

/* Run @sql (no result rows). Returns 0 or a negative errno; failures other
 * than a full disk, a lock or a damaged file (which callers handle) are
 * logged. */
int sql_exec(struct sql_conn *c, const char *sql);

/* BEGIN IMMEDIATE; COMMIT, rolled back when it fails so that the next
 * transaction can begin; ROLLBACK. 0 or a negative errno. */
int sql_begin(struct sql_conn *c);
int sql_commit(struct sql_conn *c);
void sql_rollback(struct sql_conn *c);

/* Step @q, which returns no row (or one that is ignored), and reset it:
 * 0 or a negative errno. */
int sql_step_done(sqlite3_stmt *q);

/* Step @q, which returns one integer, and reset it: 0 with it in @v,
 * -ENOENT when there is no row, or another negative errno. */
int sql_step_int(sqlite3_stmt *q, int64_t *v);

#endif
