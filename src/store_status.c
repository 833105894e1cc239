/* The status names of the listing store: the statuses table, and the map
 * of it by name and by id that this process keeps in memory. */
#include "store_int.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

struct status_name {
	int id;
	char *name;
	UT_hash_handle hh;
};

/* Room in the map by id for @id. Called with st->lock held. */
static int by_id_room(struct store *st, int id)
{
	size_t n = id + 16;
	struct status_name **v;

	if ((size_t)id < st->n_status_ids)
		return 0;
	v = realloc(st->status_by_id, n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	memset(v + st->n_status_ids, 0, (n - st->n_status_ids) * sizeof(*v));
	st->status_by_id = v;
	st->n_status_ids = n;
	return 0;
}

void store_statuses_clear(struct store *st)
{
	struct status_name *s, *tmp;

	HASH_ITER(hh, st->statuses, s, tmp) {
		HASH_DEL(st->statuses, s);
		free(s->name);
		free(s);
	}
	free(st->status_by_id);
	st->status_by_id = NULL;
	st->n_status_ids = 0;
}

/* Read the status names of the writer's database. Called with write_lock
 * held. */
int store_statuses_load(struct store *st)
{
	struct conn *c = st->writer;
	sqlite3_stmt *q;
	int rc, err = 0;

	rc = sqlite3_prepare_v2(c->sql.db, "SELECT id, name FROM statuses", -1,
				&q, NULL);
	if (rc != SQLITE_OK)
		return sql_errno(rc);
	pthread_mutex_lock(&st->lock);
	store_statuses_clear(st);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW && !err) {
		struct status_name *s = calloc(1, sizeof(*s));
		int id = sqlite3_column_int(q, 0);

		if (!s || id <= 0 ||
		    !(s->name = strdup(
			      (const char *)sqlite3_column_text(q, 1)))) {
			free(s);
			err = id <= 0 ? -EBADMSG : -ENOMEM;
			break;
		}
		s->id = id;
		HASH_ADD_KEYPTR(hh, st->statuses, s->name, strlen(s->name), s);
		if (by_id_room(st, id)) {
			err = -ENOMEM;
			break;
		}
		st->status_by_id[id] = s;
	}
	pthread_mutex_unlock(&st->lock);
	sqlite3_finalize(q);
	if (!err && rc != SQLITE_DONE)
		err = sql_errno(rc);
	return err;
}

/* The id of status @name, made on first use; STORE_NO_STATUS for NULL. */
int store_status_make(struct store *st, struct conn *w, const char *name,
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
	q = store_stmt(w, S_STATUS_ADD);
	if (!q)
		return -EIO;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	err = sql_step_int(q, &v);
	if (err)
		return err;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->name = strdup(name))) {
		free(s);
		return -ENOMEM;
	}
	s->id = (int)v;
	pthread_mutex_lock(&st->lock);
	if (by_id_room(st, s->id)) {
		pthread_mutex_unlock(&st->lock);
		free(s->name);
		free(s);
		return -ENOMEM;
	}
	st->status_by_id[s->id] = s;
	HASH_ADD_KEYPTR(hh, st->statuses, s->name, strlen(s->name), s);
	pthread_mutex_unlock(&st->lock);
	*id = s->id;
	return 0;
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
	int id, err = -EIO;

	pthread_mutex_lock(&st->write_lock);
	if (st->writer)
		err = store_status_make(st, st->writer, name, &id);
	pthread_mutex_unlock(&st->write_lock);
	return err ? err : id;
}
