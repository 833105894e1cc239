/* Opening the listing store's database file, and repairing it: a file of
 * another schema or dataset, or damaged, is set aside and made anew; on a
 * full disk, or past the cache's budget, the listings are kept in memory. */
#include "store_int.h"
#include "cachedir.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A file descriptor left, kept open until the end: closing one drops the
 * locks SQLite holds on that file for connections still reading it. */
struct old_fd {
	int fd;
	struct old_fd *next;
};

/* The floors of a database that replaces the one this store served. */
static struct floors floors_now(struct store *st)
{
	struct floors f = {
		__atomic_load_n(&st->max_oid, __ATOMIC_RELAXED),
		__atomic_load_n(&st->max_dir, __ATOMIC_RELAXED),
		__atomic_load_n(&st->max_gen, __ATOMIC_RELAXED),
	};

	return f;
}

/* Whether the file is as long as the database says: a truncated one would
 * fail later, at some page, with rows missing. */
static int check_whole(struct store *st)
{
	int64_t pages = 0, page_size = 0;
	char wal[NAME_MAX + 1];
	struct stat fs, ws;
	sqlite3_stmt *q;

	if (sqlite3_prepare_v2(st->writer->sql.db, "PRAGMA page_count", -1, &q,
			       NULL) == SQLITE_OK) {
		if (sqlite3_step(q) == SQLITE_ROW)
			pages = sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
	}
	if (sqlite3_prepare_v2(st->writer->sql.db, "PRAGMA page_size", -1, &q,
			       NULL) == SQLITE_OK) {
		if (sqlite3_step(q) == SQLITE_ROW)
			page_size = sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
	}
	if (fstat(st->lock_fd, &fs) != 0)
		return -errno;
	/* pages still in the write-ahead log are not in the file yet */
	snprintf(wal, sizeof(wal), "%s-wal", st->name);
	if (pages * page_size > fs.st_size &&
	    !(fstatat(st->dir_fd, wal, &ws, AT_SYMLINK_NOFOLLOW) == 0 &&
	      ws.st_size > 32))
		return -EBADMSG;
	return 0;
}

/* Whether @a and @b are one file. */
static bool same_inode(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev;
}

/* Whether the file named st->name is not the one lock_fd holds: another
 * mount set it aside, made it anew or removed it. Called with write_lock
 * held. */
static bool replaced(struct store *st)
{
	struct stat mine, named;

	if (st->lock_fd < 0 || fstat(st->lock_fd, &mine))
		return false;
	return fstatat(st->dir_fd, st->name, &named, AT_SYMLINK_NOFOLLOW) ||
	       !same_inode(&mine, &named);
}

/* Move the database this store holds out of the way, when the name is
 * still its file (another mount may have done it already, and made a new
 * one under the name): NAME.bad (one at most: it holds presigned URLs),
 * its companions removed; one log line. Called with write_lock held, or
 * before the store is shared. */
static void set_aside(struct store *st, const char *why)
{
	static const char *const companions[] = { "-wal", "-shm", "-journal" };
	char other[NAME_MAX + 1];
	size_t i;

	if (replaced(st))
		return;
	snprintf(other, sizeof(other), "%s.bad", st->name);
	if (renameat(st->dir_fd, st->name, st->dir_fd, other) == 0)
		log_err("store: %s/%s %s: set aside as %s, listing again",
			st->cfg.dir, st->name, why, other);
	else
		unlinkat(st->dir_fd, st->name, 0);
	for (i = 0; i < sizeof(companions) / sizeof(*companions); i++) {
		snprintf(other, sizeof(other), "%s%s", st->name, companions[i]);
		unlinkat(st->dir_fd, other, 0);
	}
}

/* Whether another mount reads or writes a generation of the file
 * lock_fd holds. Called with write_lock held. */
static bool shared(struct store *st)
{
	struct flock fl = {
		.l_type = F_WRLCK,
		.l_whence = SEEK_SET,
		.l_start = LOCK_BASE,
		.l_len = 0,
	};

	return st->lock_fd >= 0 && fcntl(st->lock_fd, F_OFD_GETLK, &fl) == 0 &&
	       fl.l_type != F_UNLCK;
}

/* Remove the database and its companions, not to be kept: only when the
 * name is still its file and no other mount uses it. Called with
 * write_lock held. */
static void remove_files(struct store *st)
{
	static const char *const suffix[] = { "", "-wal", "-shm", "-journal" };
	char name[NAME_MAX + 1];
	size_t i;

	if (replaced(st) || shared(st))
		return;
	for (i = 0; i < sizeof(suffix) / sizeof(*suffix); i++) {
		snprintf(name, sizeof(name), "%s%s", st->name, suffix[i]);
		unlinkat(st->dir_fd, name, 0);
	}
}

/* Let go of the file lock_fd holds: the generation locks this process
 * holds on it are released (other mounts may then collect them), the
 * descriptor kept open until the end (closing it would drop the locks
 * SQLite holds on that file for connections still reading it). Called
 * with write_lock held. */
static void leave_file(struct store *st)
{
	struct flock fl = {
		.l_type = F_UNLCK,
		.l_whence = SEEK_SET,
		.l_start = LOCK_BASE,
		.l_len = 0,
	};
	struct old_fd *o;

	st->n_held = 0;
	if (st->lock_fd < 0)
		return;
	fcntl(st->lock_fd, F_OFD_SETLK, &fl);
	o = malloc(sizeof(*o));
	if (o) {
		o->fd = st->lock_fd;
		o->next = st->old_fds;
		st->old_fds = o;
	} else {
		close(st->lock_fd);
	}
	st->lock_fd = -1;
}

/* Open the database file, made and checked as cachedir_prepare_db() does,
 * as the writer's: one that is of another schema, origin or dataset, or
 * damaged, is set aside and made anew (seeded above @f). Called with
 * write_lock held, or before the store is shared. */
#define BUSY_TRIES 50 /* 5 s: another mount making the same file */

static int open_file(struct store *st, const struct floors *f)
{
	int err = 0, tries, busy = 0;

	for (tries = 0; tries < 2; tries++) {
		st->lock_fd = cachedir_prepare_db(st->dir_fd, st->name);
		if (st->lock_fd < 0) {
			err = st->lock_fd;
			st->lock_fd = -1;
			break;
		}
		st->writer =
			store_conn_open(st->file, SQLITE_OPEN_READWRITE, &err);
		/* the writer walks the indexes of a whole listing: its pages
		 * stay in memory rather than being read back from the file */
		if (st->writer)
			err = sql_exec(&st->writer->sql,
				       "PRAGMA cache_size = -32768");
		if (!err)
			err = store_claim(st->writer, &st->cfg, f);
		if (!err)
			err = check_whole(st);
		if (!err)
			err = store_statuses_load(st);
		if (!err) {
			st->writer->epoch = st->epoch;
			return 0;
		}
		store_conn_close(st->writer);
		st->writer = NULL;
		/* only a file that is not what it must be is set aside; an
		 * error of the system (no memory, no room, a lock) is not
		 * the file's */
		if (err == -EPROTO || err == -EBADMSG)
			set_aside(st,
				  err == -EPROTO
					  ? "is of another schema or dataset"
					  : "is damaged or not a database");
		close(st->lock_fd);
		st->lock_fd = -1;
		/* a mount that makes it (its schema, WAL mode) holds it a
		 * moment: tried again, not counted as the file's fault */
		if (err == -EBUSY && ++busy < BUSY_TRIES) {
			usleep(100 * 1000);
			tries--;
			continue;
		}
		if (err != -EPROTO && err != -EBADMSG)
			break;
	}
	return err;
}

/* The file name of the store of @cfg's dataset: one per API origin and
 * dataset. */
static char *file_name(const struct store_config *cfg)
{
	const char *parts[3] = { cfg->origin, cfg->owner, cfg->slug };
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	char *name;
	size_t i;

	for (i = 0; i < 3; i++) {
		const unsigned char *p = (const unsigned char *)parts[i];

		do {
			h ^= *p;
			h *= 0x100000001b3ull;
		} while (*p++);
	}
	if (asprintf(&name, "%016" PRIx64 ".db", h) < 0)
		return NULL;
	return name;
}

static int to_memory(struct store *st, const char *why, bool copy, bool drop);

int store_open(const struct store_config *cfg, struct store **out)
{
	struct store *st = calloc(1, sizeof(*st));
	struct floors none = { 0, 0, 0 };
	int err = -ENOMEM;

	*out = NULL;
	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->conn_free, NULL);
	pthread_mutex_init(&st->write_lock, NULL);
	pthread_mutex_init(&st->ranks_lock, NULL);
	st->cfg = *cfg;
	st->dir_fd = cfg->dir_fd;
	st->lock_fd = -1;
	st->name = file_name(cfg);
	if (!st->name || asprintf(&st->file, "%s/%s", cfg->dir, st->name) < 0 ||
	    !(st->path = strdup(st->file)))
		goto fail;
	err = open_file(st, &none);
	/* a full disk: what was stored is served from memory */
	if (err == -ENOSPC)
		err = to_memory(st, "the disk is full", true, false);
	if (err)
		goto fail;
	*out = st;
	return 0;
fail:
	log_err("store: cannot use %s/%s: %s", cfg->dir,
		st->name ? st->name : "", strerror(-err));
	store_free(st);
	return err;
}

void store_free(struct store *st)
{
	struct old_fd *o;
	struct conn *c;

	if (!st)
		return;
	while ((c = st->idle)) {
		st->idle = c->next;
		store_conn_close(c);
	}
	store_conn_close(st->writer);
	store_statuses_clear(st);
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	while ((o = st->old_fds)) {
		st->old_fds = o->next;
		close(o->fd);
		free(o);
	}
	free(st->held);
	pthread_mutex_destroy(&st->write_lock);
	pthread_mutex_destroy(&st->ranks_lock);
	free(st->ranks);
	pthread_cond_destroy(&st->conn_free);
	pthread_mutex_destroy(&st->lock);
	free(st->path);
	free(st->file);
	free(st->name);
	free(st);
}

/* ---- when the database fails ---- */

/* Raise *@max to @v: the numbers of objects and folders the kernel may
 * hold, which a database made anew must not give to others. */
void store_note_max(uint64_t *max, uint64_t v)
{
	uint64_t cur = __atomic_load_n(max, __ATOMIC_RELAXED);

	while (v > cur &&
	       !__atomic_compare_exchange_n(max, &cur, v, true,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* Send connections to @path (a new string, taken) from now on: readers
 * move as they come back. Called with write_lock held. */
static void switch_to(struct store *st, char *path, bool memory)
{
	struct conn *idle, *c;

	pthread_mutex_lock(&st->lock);
	free(st->path);
	st->path = path;
	st->memory = memory;
	st->epoch++;
	idle = st->idle;
	st->idle = NULL;
	for (c = idle; c; c = c->next)
		st->n_conns--;
	pthread_cond_broadcast(&st->conn_free);
	pthread_mutex_unlock(&st->lock);
	while (idle) {
		c = idle->next;
		store_conn_close(idle);
		idle = c;
	}
}

/* @path as a URI path: '%', '?' and '#' escaped. A new string. */
static char *uri_path(const char *path)
{
	char *out = malloc(strlen(path) * 3 + 1), *o = out;

	for (; out && *path; path++) {
		if (*path == '%' || *path == '?' || *path == '#')
			o += sprintf(o, "%%%02X", (unsigned char)*path);
		else
			*o++ = *path;
	}
	if (out)
		*o = '\0';
	return out;
}

/* Serve the listings from a database in memory for the rest of the mount:
 * with @copy, a copy of the writer's (or, when the file could not be
 * opened, of the file as it is on disk), else an empty one numbered above
 * what was shown. With @drop, the file is removed (the listing is larger
 * than the cache may hold), unless another mount uses it. Generations keep
 * their numbers: listings being written go on in the copy. Called with
 * write_lock held, or before the store is shared. */
static int to_memory(struct store *st, const char *why, bool copy, bool drop)
{
	static unsigned seq;
	struct conn *mem, *src = copy ? st->writer : NULL;
	struct floors f = floors_now(st);
	char *uri = NULL, *ro = NULL, *esc, sql[128];
	int err, copy_err = -ENOENT;

	if (st->memory)
		return -ENOSPC;
	if (asprintf(&uri, "file:/avalafs-%ld-%u?vfs=memdb", (long)getpid(),
		     __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED)) < 0)
		return -ENOMEM;
	mem = store_conn_open(uri, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
			      &err);
	if (!mem) {
		free(uri);
		return err;
	}
	if (copy && !src && (esc = uri_path(st->file))) {
		/* immutable: read as it is, no lock and no -shm to make on a
		 * full disk (what only the -wal holds is left out) */
		if (asprintf(&ro, "file:%s?immutable=1", esc) < 0)
			ro = NULL;
		free(esc);
		src = ro ? store_conn_open(ro, SQLITE_OPEN_READONLY, &copy_err)
			 : NULL;
	}
	if (src) {
		snprintf(sql, sizeof(sql), "VACUUM INTO '%s'", uri);
		copy_err = sql_exec(&src->sql, sql);
		if (src != st->writer)
			store_conn_close(src);
	}
	err = store_claim(mem, &st->cfg, &f);
	if (err) {
		store_conn_close(mem);
		free(uri);
		free(ro);
		return err;
	}
	if (drop)
		remove_files(st);
	store_conn_close(st->writer);
	st->writer = mem;
	leave_file(st);
	switch_to(st, uri, true);
	mem->epoch = st->epoch;
	err = store_statuses_load(st);
	log_warn("%s/%s: %s: listings kept in memory for this mount%s",
		 st->cfg.owner, st->cfg.slug, why,
		 copy && copy_err ? " (the stored one could not be read)" : "");
	free(ro);
	return err;
}

/* The database failed at run time (what @epoch names): damaged (@damaged),
 * or set aside or removed by another mount. A damaged one still under its
 * name is set aside, and a new one made, numbered above what this mount
 * showed; the catalog is told, and lists the dataset again. Only the first
 * caller of an epoch does it. Called with no lock of the store held. */
void store_reset(struct store *st, unsigned epoch, bool damaged)
{
	struct floors f = floors_now(st);
	char *path = NULL;
	int err = 0;

	pthread_mutex_lock(&st->write_lock);
	if (st->epoch != epoch || (!damaged && (st->memory || !replaced(st)))) {
		pthread_mutex_unlock(&st->write_lock);
		return;
	}
	store_conn_close(st->writer);
	st->writer = NULL;
	if (damaged && !st->memory)
		set_aside(st, "is damaged");
	leave_file(st);
	/* what was being written went with the database */
	memset(st->building, 0, sizeof(st->building));
	if (!st->memory) {
		path = strdup(st->file);
		err = path ? 0 : -ENOMEM;
	}
	if (path) {
		switch_to(st, path, false);
		err = open_file(st, &f);
	}
	if (err == -ENOSPC || st->memory) {
		pthread_mutex_lock(&st->lock);
		st->memory = false; /* a new database in memory */
		pthread_mutex_unlock(&st->lock);
		err = to_memory(st,
				damaged ? "the listing store was damaged"
					: "the disk is full",
				false, false);
	}
	if (err)
		log_err("%s/%s: cannot make a new listing store: %s",
			st->cfg.owner, st->cfg.slug, strerror(-err));
	__atomic_add_fetch(&st->resets, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&st->write_lock);
	if (st->cfg.lost)
		st->cfg.lost(st->cfg.lost_ctx);
}

/* @err of an operation on the database of @epoch: a damaged one is reset
 * (the caller gets -EIO, the next one a new listing). Called with no lock
 * of the store held. */
int store_damaged(struct store *st, unsigned epoch, int err)
{
	if (err != -EBADMSG)
		return err;
	store_reset(st, epoch, true);
	return -EIO;
}

uint64_t store_resets(struct store *st)
{
	return __atomic_load_n(&st->resets, __ATOMIC_ACQUIRE);
}

#define ROOM_EVERY ((int64_t)4 << 20) /* growth between asks for room */

/* After a page: a listing that grew past the cache's whole budget goes to
 * memory; below it, the data cache gives back what the listings took
 * (asked again once the file grew by ROOM_EVERY). Called with write_lock
 * held. */
void store_room_check(struct store *st)
{
	char wal[NAME_MAX + 1];
	struct stat fs, ws;
	int64_t size;

	if (st->lock_fd < 0 || fstat(st->lock_fd, &fs))
		return;
	size = (int64_t)fs.st_blocks * 512;
	snprintf(wal, sizeof(wal), "%s-wal", st->name);
	if (fstatat(st->dir_fd, wal, &ws, AT_SYMLINK_NOFOLLOW) == 0)
		size += (int64_t)ws.st_blocks * 512;
	if (st->cfg.budget > 0 && size > st->cfg.budget) {
		to_memory(st, "the listing is larger than disk_cache_size",
			  true, true);
	} else if (st->cfg.give_back &&
		   (size > st->room_at + ROOM_EVERY || size < st->room_at)) {
		st->room_at = size;
		st->cfg.give_back(st->cfg.give_back_ctx);
	}
}

/* Say once that the disk is full and listings cannot be kept. Called with
 * write_lock held. */
static void say_full(struct store *st)
{
	if (st->full_said)
		return;
	st->full_said = true;
	if (st->memory)
		log_err("%s/%s: the listing is larger than memory allows for "
			"it: the last one is served",
			st->cfg.owner, st->cfg.slug);
	else
		log_err("%s/%s: the disk is full: listings cannot be kept, "
			"the last one is served",
			st->cfg.owner, st->cfg.slug);
}

/* Run @op (a write of the writer's, rolled back whole when it fails) with
 * write_lock held; on a full disk the data cache gives room back and it
 * runs again, then the listings move to memory and it runs once more.
 * Returns what @op returned. */
int store_writing(struct store *st, int (*op)(struct store *st, void *arg),
		  void *arg)
{
	int err, tries;

	for (tries = 0;; tries++) {
		err = st->writer ? op(st, arg) : -EIO;
		if (err != -ENOSPC || tries == 2)
			break;
		if (tries == 0 && st->cfg.give_back)
			st->cfg.give_back(st->cfg.give_back_ctx);
		else if (to_memory(st, "the disk is full", true, false))
			break;
	}
	if (err == -ENOSPC)
		say_full(st);
	return err;
}
