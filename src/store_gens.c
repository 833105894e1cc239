/* Generations across mounts: the read locks a mount holds on the
 * generations it serves, and removing those no mount reads or builds. */
#include "store_int.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* A generation this process has locked for reading, and how many times:
 * the lock goes with the last. */
struct held {
	uint64_t gen;
	unsigned n;
};

/* Lock generation @gen of the file for reading (F_RDLCK), for removing
 * (F_WRLCK), or let go of it (F_UNLCK); never waits. Returns 0, -EAGAIN
 * when another mount holds a conflicting lock, or another negative errno.
 * Called with write_lock held; nothing to do for a database in memory. */
static int gen_lock(struct store *st, uint64_t gen, short type)
{
	struct flock fl = {
		.l_type = type,
		.l_whence = SEEK_SET,
		.l_start = LOCK_BASE + (off_t)gen,
		.l_len = 1,
	};

	if (st->lock_fd < 0)
		return 0;
	if (fcntl(st->lock_fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	return errno == EACCES || errno == EAGAIN ? -EAGAIN : -errno;
}

static struct held *held_find(struct store *st, uint64_t gen)
{
	size_t i;

	for (i = 0; i < st->n_held; i++) {
		if (st->held[i].gen == gen)
			return &st->held[i];
	}
	return NULL;
}

/* Hold @gen for reading once more: locked the first time. A mount that
 * removes a generation holds its write lock only for one short
 * transaction; a stopped one (Ctrl-Z) is not waited for past HOLD_WAIT_MS.
 * Called with write_lock held. */
#define HOLD_WAIT_MS 2000
int store_hold(struct store *st, uint64_t gen)
{
	struct held *h = held_find(st, gen);
	int err = -EAGAIN, waited;

	store_note_max(&st->max_gen, gen);
	if (h) {
		h->n++;
		return 0;
	}
	if (UTIL_GROW(st->held, st->n_held, st->cap_held, 8))
		return -ENOMEM;
	for (waited = 0; err == -EAGAIN && waited <= HOLD_WAIT_MS;
	     waited += 10) {
		err = gen_lock(st, gen, F_RDLCK);
		if (err == -EAGAIN)
			usleep(10 * 1000);
	}
	if (err)
		return err == -EAGAIN ? -EBUSY : err;
	st->held[st->n_held++] = (struct held){ gen, 1 };
	return 0;
}

/* Let go of @gen once: unlocked with the last. Called with write_lock
 * held. */
void store_release(struct store *st, uint64_t gen)
{
	struct held *h = held_find(st, gen);

	if (!h || --h->n > 0)
		return;
	gen_lock(st, gen, F_UNLCK);
	*h = st->held[--st->n_held];
}

/* Whether this process writes @gen. Called with write_lock held. */
static bool building(struct store *st, uint64_t gen)
{
	size_t i;

	for (i = 0; i < sizeof(st->building) / sizeof(*st->building); i++) {
		if (st->building[i] == gen)
			return true;
	}
	return false;
}

void store_building_set(struct store *st, uint64_t gen, bool on)
{
	size_t i;

	for (i = 0; i < sizeof(st->building) / sizeof(*st->building); i++) {
		if (on ? !st->building[i] : st->building[i] == gen) {
			st->building[i] = on ? gen : 0;
			return;
		}
	}
}

/* The newest complete generation of @kind, from a reader connection: 0
 * with it in @gen and @at, -ENOENT, or another negative errno; the epoch
 * of the connection in @epoch. */
static int latest(struct store *st, enum item_kind kind, uint64_t *gen,
		  int64_t *at, unsigned *epoch)
{
	struct conn *c;
	sqlite3_stmt *q = store_reader_stmt(st, S_LATEST, &c);
	int rc, err;

	*gen = 0;
	if (!q)
		return -EIO;
	sqlite3_bind_int(q, 1, kind);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		*gen = sqlite3_column_int64(q, 0);
		*at = sqlite3_column_int64(q, 1);
	}
	err = rc == SQLITE_ROW	  ? 0
	      : rc == SQLITE_DONE ? -ENOENT
				  : sql_errno(rc);
	sqlite3_reset(q);
	*epoch = c->epoch;
	store_conn_put(st, c);
	return err;
}

int store_latest(struct store *st, enum item_kind kind, uint64_t *gen,
		 int64_t *listed_at)
{
	uint64_t found = 0, again;
	int64_t at = 0, at2;
	unsigned epoch = 0;
	int tries, err = -EIO;

	*gen = 0;
	*listed_at = 0;
	for (tries = 0; tries < 8; tries++) {
		err = latest(st, kind, &found, &at, &epoch);
		/* locked, then looked at again: another mount removes a
		 * generation only while it holds the write lock on it */
		if (!err) {
			pthread_mutex_lock(&st->write_lock);
			err = st->epoch == epoch ? store_hold(st, found)
						 : -EAGAIN;
			pthread_mutex_unlock(&st->write_lock);
		}
		if (!err) {
			err = latest(st, kind, &again, &at2, &epoch);
			if (!err && again != found)
				err = -EAGAIN;
			if (err) {
				pthread_mutex_lock(&st->write_lock);
				store_release(st, found);
				pthread_mutex_unlock(&st->write_lock);
			}
		}
		if (err != -EAGAIN)
			break;
	}
	err = store_damaged(st, epoch, err);
	if (!err) {
		*gen = found;
		*listed_at = at;
	}
	return err;
}

/* Delete generation @gen in the open transaction of @w. Called with
 * write_lock held. */
static int drop_gen(struct conn *w, uint64_t gen)
{
	static const char *const tables[] = { "listed", "entries",
					      "folder_status", "gen_status",
					      "gens" };
	char sql[128];
	size_t i;
	int err = 0;

	for (i = 0; i < sizeof(tables) / sizeof(tables[0]) && !err; i++) {
		snprintf(sql, sizeof(sql),
			 "DELETE FROM %s WHERE gen = %" PRIu64, tables[i], gen);
		err = sql_exec(&w->sql, sql);
	}
	return err;
}

/* Remove generation @arg (a uint64_t). */
static int drop_op(struct store *st, void *arg)
{
	uint64_t gen = *(uint64_t *)arg;
	int err = sql_begin(&st->writer->sql);

	if (!err)
		err = drop_gen(st->writer, gen);
	if (!err)
		err = sql_commit(&st->writer->sql);
	else
		sql_rollback(&st->writer->sql);
	return err;
}

int store_drop(struct store *st, uint64_t gen)
{
	unsigned epoch;
	int err;

	pthread_mutex_lock(&st->write_lock);
	epoch = st->epoch;
	err = store_writing(st, drop_op, &gen);
	if (!err)
		store_release(st, gen);
	pthread_mutex_unlock(&st->write_lock);
	return store_damaged(st, epoch, err);
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

/* What store_collect() removes. */
struct collecting {
	enum item_kind kind;
	const uint64_t *keep;
	size_t n_keep;
	uint64_t *old; /* the generations removed */
	size_t n, cap;
};

/* Remove the generations of a kind that this mount neither keeps nor
 * builds and no other mount reads or builds: each is write-locked first
 * (this mount's own read lock gives way), in one transaction, so that a
 * mount that starts reading one meanwhile waits for it to be gone. */
static int collect_op(struct store *st, void *arg)
{
	struct collecting *c = arg;
	sqlite3_stmt *q;
	size_t i;
	int err = sql_begin(&st->writer->sql);

	c->n = 0;
	q = err ? NULL : store_stmt(st->writer, S_GENS);
	if (q) {
		sqlite3_bind_int(q, 1, c->kind);
		while (sqlite3_step(q) == SQLITE_ROW) {
			uint64_t gen = sqlite3_column_int64(q, 0);

			if (!kept(c->keep, c->n_keep, gen) &&
			    !building(st, gen) &&
			    !UTIL_GROW(c->old, c->n, c->cap, 8)) {
				if (gen_lock(st, gen, F_WRLCK) == 0)
					c->old[c->n++] = gen;
			}
		}
		sqlite3_reset(q);
	}
	for (i = 0; i < c->n && !err; i++)
		err = drop_gen(st->writer, c->old[i]);
	if (!err)
		err = sql_commit(&st->writer->sql);
	else
		sql_rollback(&st->writer->sql);
	/* let go once they are gone (or, failing, were not) */
	for (i = 0; i < c->n; i++) {
		struct held *h = held_find(st, c->old[i]);

		gen_lock(st, c->old[i], F_UNLCK);
		if (h)
			*h = st->held[--st->n_held];
	}
	return err;
}

void store_collect(struct store *st, enum item_kind kind, const uint64_t *keep,
		   size_t n_keep)
{
	struct collecting c = { kind, keep, n_keep, NULL, 0, 0 };
	unsigned epoch;
	int err;

	pthread_mutex_lock(&st->write_lock);
	epoch = st->epoch;
	err = store_writing(st, collect_op, &c);
	pthread_mutex_unlock(&st->write_lock);
	free(c.old);
	store_damaged(st, epoch, err);
}
