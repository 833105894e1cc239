/* What the files of the listing store share: the store itself, its
 * connections and statements, and the steps one file takes for another.
 * Every listing is written, page by page, under a generation of its own;
 * readers name the generation they read, so a listing in the making is
 * never seen and the one it replaces stays whole until collected.
 * Lock order: st->write_lock, then st->lock (the connection pool and the
 * status table); neither is held across a callback. */
#ifndef AVALAFS_STORE_INT_H
#define AVALAFS_STORE_INT_H

#include "sql.h"
#include "store.h"

#include <pthread.h>
#include <sys/types.h>

/* A mount that reads a generation holds a read lock on byte LOCK_BASE +
 * gen of the database file (an open file description lock: its own, not
 * SQLite's, and far from the bytes SQLite locks); one that removes a
 * generation first takes the write lock on it. So serving a stored
 * listing writes nothing, and a mount that dies lets go by itself. */
#define LOCK_BASE ((off_t)1 << 48)

/* The statements of one connection, prepared on first use. */
enum stmt {
	S_META_GET,
	S_META_SET,
	S_OBJECTS_OF,
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
	S_READDIR_NAMES,
	S_LOOKUP,
	S_OBJECT,
	S_OBJECT_ENTRY,
	S_DIR_PARENT,
	S_PLACE_NAMES,
	S_PLACE,
	S_STATUSES,
	S_LEARN,
	S_LATEST,
	S_GENS,
	S_OBJECTS,
	S_VERSIONS,
	S_NAME_RANK,
	S_BY_NAME,
	S_COUNT
};

struct conn {
	struct sql_conn sql;
	unsigned epoch; /* the database it is of (store->epoch) */
	struct conn *next; /* protected by store->lock: the idle list */
};

struct store {
	char *name; /* the database's file name in the listings folder */
	char *file; /* its path */
	int dir_fd; /* the listings folder: borrowed */
	struct store_config cfg; /* its strings borrowed */
	pthread_mutex_t lock;
	pthread_cond_t conn_free; /* a connection went back to the idle list */
	char *path; /* protected by lock: where connections go, the file or
		     * a database in memory */
	unsigned epoch; /* protected by lock and write_lock (both to change):
			 * bumped when path changes */
	bool memory; /* protected by lock and write_lock */
	struct conn *idle; /* protected by lock */
	int n_conns; /* protected by lock: reader connections open */
	struct status_name *statuses; /* protected by lock: by name */
	struct status_name **status_by_id; /* protected by lock */
	size_t n_status_ids; /* protected by lock */
	pthread_mutex_t write_lock; /* one writer at a time */
	struct conn *writer; /* protected by write_lock */
	int lock_fd; /* protected by write_lock: the database file, whose
		      * bytes past LOCK_BASE readers lock; -1 in memory */
	struct held *held; /* protected by write_lock */
	size_t n_held, cap_held; /* protected by write_lock */
	uint64_t building[4]; /* protected by write_lock: generations this
			       * process writes (one per kind, and spares) */
	struct old_fd *old_fds; /* protected by write_lock */
	int64_t room_at; /* protected by write_lock: the file's size when
			  * the data cache last gave room back */
	bool full_said; /* protected by write_lock */
	uint64_t max_oid, max_dir, max_gen; /* atomic: the highest numbers
					     * shown */
	uint64_t resets; /* atomic: databases set aside at run time */
	pthread_mutex_t ranks_lock;
	struct rank_memo *ranks; /* protected by ranks_lock: RANK_MEMOS */
};

#define RANK_MEMOS 64 /* folders whose last rank is remembered */

/* The last name of a folder given a rank, to count the next from. */
struct rank_memo {
	uint64_t gen, dir, rank;
	size_t len;
	unsigned char name[256];
};

/* Numbers a new database must give above: those of the database it
 * replaces, which the kernel and open folders may still hold. */
struct floors {
	uint64_t oid, dir, gen;
};

/* ---- store_sql.c ---- */

/* A connection to @path, opened with @flags (sql_open()), or NULL with the
 * reason in @err; store_conn_close() accepts NULL. */
struct conn *store_conn_open(const char *path, int flags, int *err);
void store_conn_close(struct conn *c);

/* The statement @s of @c, reset and unbound; NULL when it cannot be
 * prepared. */
sqlite3_stmt *store_stmt(struct conn *c, enum stmt s);

/* A reader connection from the pool (opened when none is idle, waiting
 * while MAX_READERS are out), or NULL (logged); given back with
 * store_conn_put(). */
struct conn *store_conn_get(struct store *st);
void store_conn_put(struct store *st, struct conn *c);

/* A reader connection, in *@c, and its statement @which; NULL (and no
 * connection) when either cannot be had. */
sqlite3_stmt *store_reader_stmt(struct store *st, enum stmt which,
				struct conn **c);

/* Reset @q of store_reader_stmt(), give its connection back, and return
 * @err as the store's repair passes it on (a damaged database is set
 * aside: -EIO). */
int store_reader_end(struct store *st, struct conn *c, sqlite3_stmt *q,
		     int err);

/* Whether the database at @c is ours: schema, API origin and dataset. A
 * new (empty) one is made ours, seeded above @f. 0, -EPROTO, or another
 * negative errno. */
int store_claim(struct conn *c, const struct store_config *cfg,
		const struct floors *f);

/* The time of @it as listed.mtime and learned.mtime hold it: nanoseconds
 * since the epoch. */
int64_t store_time_ns(const struct item *it);

/* ---- store_status.c ---- */

/* Read the status names of the writer's database into memory, or forget
 * them. Called with write_lock held, or before the store is shared. */
int store_statuses_load(struct store *st);
void store_statuses_clear(struct store *st);

/* The id of status @name in *@id, made (with @w, the writer) on first
 * use; STORE_NO_STATUS for NULL. 0 or a negative errno. Called with
 * write_lock held. */
int store_status_make(struct store *st, struct conn *w, const char *name,
		      int *id);

/* ---- store_gens.c ---- */

/* Hold generation @gen for reading once more (locked against removal by
 * another mount the first time), or let go of it once (unlocked with the
 * last). 0, -EBUSY, or another negative errno. Called with write_lock
 * held. */
int store_hold(struct store *st, uint64_t gen);
void store_release(struct store *st, uint64_t gen);

/* Note that this process writes @gen (@on), or no longer does: no
 * collection removes it meanwhile. Called with write_lock held. */
void store_building_set(struct store *st, uint64_t gen, bool on);

/* ---- store_uids.c ---- */

/* The object numbers of one kind by a hash of their uid: open addressing,
 * an oid of 0 marking a free slot. Eight bytes a slot, as a listing of
 * millions holds one each: the numbers a database gives stay below 2^32
 * (store_uids_add() refuses one that does not). */
struct uid_slot {
	uint32_t hash, oid;
};

struct store_uids {
	struct uid_slot *slots;
	size_t cap; /* a power of two, or 0 */
	size_t n; /* objects held */
	size_t used; /* slots taken: objects held and dropped */
};

/* The hash of @uid that store_uids_add() and store_uids_next() take. */
uint32_t store_uids_hash(const char *uid);

/* Hold object @oid under @hash. 0, -ENOMEM, or -EOVERFLOW for an oid of 0
 * or past 2^32 - 2. */
int store_uids_add(struct store_uids *m, uint32_t hash, uint64_t oid);

/* The objects held under @hash, one a call: *@pos starts at 0; 0 after the
 * last. Another uid may share the hash: the caller compares. */
uint64_t store_uids_next(const struct store_uids *m, uint32_t hash,
			 size_t *pos);

/* Forget the objects numbered @from and above (a page rolled back). */
void store_uids_drop_from(struct store_uids *m, uint64_t from);

/* Forget everything; @m is empty after, and may be used again. */
void store_uids_clear(struct store_uids *m);

/* ---- store.c ---- */

/* The database of @epoch failed at run time: damaged (@damaged), or set
 * aside or removed by another mount. Called with no lock of the store
 * held. */
void store_reset(struct store *st, unsigned epoch, bool damaged);

/* @err of an operation on the database of @epoch: a damaged one is reset
 * (the caller gets -EIO, the next one a new listing). Called with no lock
 * of the store held. */
int store_damaged(struct store *st, unsigned epoch, int err);

/* Raise *@max (a number shown: st->max_oid, max_dir, max_gen) to @v. */
void store_note_max(uint64_t *max, uint64_t v);

/* Run @op (a write of the writer's, rolled back whole when it fails) with
 * write_lock held; on a full disk the data cache gives room back and it
 * runs again, then the listings move to memory and it runs once more.
 * Returns what @op returned. */
int store_writing(struct store *st, int (*op)(struct store *st, void *arg),
		  void *arg);

/* After a page of a listing: one grown past the cache's budget goes to
 * memory, else the data cache gives back room. Called with write_lock
 * held. */
void store_room_check(struct store *st);

#endif
