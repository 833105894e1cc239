/* Writing a listing into the store under a new generation, and the names
 * it gives (DESIGN section 3). Objects are named as they arrive, in items/
 * or sequences/ and in the key-path tree: a name is taken from the previous
 * generation when the object's key is the same, else made by the rules of
 * names.c, and a collision renames the newcomer (and the holder, unless the
 * holder's name is an older one); a folder keeps a name a file wants too. */
#include "store_int.h"
#include "names.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>

/* Entry flags: how an entry's name came about. */
#define NAME_KEPT 1 /* from the previous generation */
#define NAME_DECORATED 2 /* carries ~uid: a collision was resolved */

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
	struct store_uids uids; /* the numbers of its kind, by uid */
	uint64_t *page_oids; /* the objects the page being added marked */
	uint64_t page_made; /* the first object it numbered, 0: none */
	size_t n_page_oids, cap_page_oids;
	uint64_t statuses; /* ids < 64 written to gen_status */
	uint64_t resets; /* store->resets when it began: the database it is
			  * in (a copy to memory takes it along) */
	bool failed;
};

/* ---- what a listing remembers ---- */

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
	if (UTIL_GROW(l->page_oids, l->n_page_oids, l->cap_page_oids, 64))
		return -ENOMEM;
	l->page_oids[l->n_page_oids++] = oid;
	l->seen[byte] |= bit;
	return 0;
}

/* A page was rolled back: what @l remembers of it goes too (the objects it
 * marked, the folders and statuses it wrote), so that it can be added
 * again. */
static void page_undo(struct store_listing *l)
{
	struct folder_memo *f, *tmp;
	size_t i;

	for (i = 0; i < l->n_page_oids; i++)
		l->seen[l->page_oids[i] / 8] &= ~(1u << (l->page_oids[i] % 8));
	l->n_page_oids = 0;
	/* the numbers it made go back, to be given again */
	if (l->page_made)
		store_uids_drop_from(&l->uids, l->page_made);
	l->page_made = 0;
	HASH_ITER(hh, l->folders, f, tmp) {
		HASH_DEL(l->folders, f);
		free(f);
	}
	l->statuses = 0;
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
	free(l->page_oids);
	l->page_oids = NULL;
	store_uids_clear(&l->uids);
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

/* ---- entries of the generation written ---- */

/* Who holds a name: an object, a folder, or nobody (a name held back). */
struct holder {
	uint64_t oid, child;
	unsigned flags, has;
	uint64_t seq;
};

static void bind_name(sqlite3_stmt *q, int i, const char *name)
{
	sqlite3_bind_blob(q, i, name, strlen(name), SQLITE_STATIC);
}

static int entry_get(struct store_listing *l, uint64_t dir, const char *name,
		     struct holder *h)
{
	sqlite3_stmt *q = store_stmt(l->st->writer, S_ENTRY_GET);
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
	sqlite3_stmt *q = store_stmt(l->st->writer, S_ENTRY_ADD);
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
	err = sql_step_done(q);
	if (err)
		return err;
	return sqlite3_changes(l->st->writer->sql.db) > 0;
}

/* Turn the entry @name of @dir into a name held back (no object). */
static int entry_drop(struct store_listing *l, uint64_t dir, const char *name)
{
	sqlite3_stmt *q = store_stmt(l->st->writer, S_ENTRY_DROP);

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, l->gen);
	sqlite3_bind_int64(q, 2, dir);
	sqlite3_bind_blob(q, 3, name, strlen(name), SQLITE_STATIC);
	return sql_step_done(q);
}

/* Take the name @name of @dir, held back, for object @oid. 1 when taken. */
static int entry_claim(struct store_listing *l, uint64_t dir, const char *name,
		       uint64_t oid, unsigned has, unsigned flags, uint64_t seq)
{
	sqlite3_stmt *q = store_stmt(l->st->writer, S_ENTRY_CLAIM);
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
	err = sql_step_done(q);
	if (err)
		return err;
	return sqlite3_changes(l->st->writer->sql.db) > 0;
}

static int listed_rename(struct store_listing *l, uint64_t oid, bool path,
			 const char *name)
{
	sqlite3_stmt *q = store_stmt(l->st->writer,
				     path ? S_LISTED_PNAME : S_LISTED_INAME);

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, l->gen);
	sqlite3_bind_int64(q, 2, oid);
	sqlite3_bind_blob(q, 3, name, strlen(name), SQLITE_TRANSIENT);
	return sql_step_done(q);
}

/* The uid of @oid, as a new string; NULL when unknown or on ENOMEM. */
static char *uid_of(struct conn *c, uint64_t oid)
{
	sqlite3_stmt *q = store_stmt(c, S_UID);
	char *uid = NULL;

	if (!q)
		return NULL;
	sqlite3_bind_int64(q, 1, oid);
	if (sqlite3_step(q) == SQLITE_ROW)
		uid = strdup((const char *)sqlite3_column_text(q, 0));
	sqlite3_reset(q);
	return uid;
}

/* ---- names (DESIGN section 3) ---- */

/* Candidate @attempt for a name: the base, then with ~uid8, with the whole
 * uid, and with the whole uid and a counter. A new string, NULL on ENOMEM. */
static char *candidate(const char *base, const char *uid, unsigned attempt)
{
	if (attempt == 0)
		return strdup(base);
	return names_decorate(base, uid, attempt > 1,
			      attempt > 2 ? attempt - 2 : 0);
}

/* An object to give a name in one directory, for place(). */
struct naming {
	uint64_t dir;
	const char *base; /* its name before collisions (names_base()) */
	const char *kept; /* the name the last listing gave it, or NULL */
	const char *uid;
	uint64_t oid;
	unsigned has; /* STORE_HAS_* of the object */
	bool path; /* in the key-path tree, else in items/ or sequences/ */
	unsigned first; /* the first candidate() to try */
	uint64_t seq; /* its place in the directory's order; 0: the next */
};

static int place(struct store_listing *l, const struct naming *n,
		 char **placed);

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
	if (!err) {
		struct naming n = {
			.dir = dir,
			.base = name,
			.uid = uid,
			.oid = h->oid,
			.has = h->has,
			.path = path,
			.first = 1,
			.seq = h->seq,
		};

		err = place(l, &n, &moved);
	}
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

/* Give the object of @n a free name in its directory and write its entry:
 * the name the last listing gave it, when there is one; else candidate
 * @n->first on of its base. A plain name of this listing it collides with is renamed too (both
 * get ~uid, and the name is held back for later ones); a kept name, a
 * folder or a name held back is left to its holder, except that a kept
 * name takes back its own. The name goes to @placed (a new string). */
static int place(struct store_listing *l, const struct naming *n, char **placed)
{
	uint64_t dir = n->dir, seq = n->seq ? n->seq : next_seq(l, dir);
	const char *base = n->base, *kept = n->kept;
	struct holder h;
	unsigned attempt;
	int err;

	*placed = NULL;
	if (!seq)
		return -ENOMEM;
	if (kept && strcmp(kept, base) != 0) {
		/* a name that a collision decorated: the plain one stays
		 * held back, so that a newcomer with that key is decorated
		 * too */
		err = entry_add(l, dir, base, 0, 0, 0, 0, 0);
		if (err == 0 && !(err = entry_get(l, dir, base, &h)) &&
		    plain(&h))
			err = rename_holder(l, dir, base, &h, n->path);
		if (err < 0)
			return err;
	}
	if (kept) {
		err = entry_add(l, dir, kept, n->oid, 0, n->has, NAME_KEPT,
				seq);
		if (err == 0 && !(err = entry_get(l, dir, kept, &h)) &&
		    plain(&h))
			err = rename_holder(l, dir, kept, &h, n->path);
		if (err == 0)
			err = entry_claim(l, dir, kept, n->oid, n->has,
					  NAME_KEPT, seq);
		if (err == 1) {
			*placed = strdup(kept);
			return *placed ? 0 : -ENOMEM;
		}
		if (err < 0)
			return err;
		/* a folder or another kept name has it now */
	}
	for (attempt = n->first; attempt < 1000; attempt++) {
		char *name = candidate(base, n->uid, attempt);

		if (!name)
			return -ENOMEM;
		err = entry_add(l, dir, name, n->oid, 0, n->has,
				attempt ? NAME_DECORATED : 0, seq);
		if (err == 1) {
			*placed = name;
			return 0;
		}
		if (err == 0 && attempt == 0 &&
		    !(err = entry_get(l, dir, name, &h)) && plain(&h))
			err = rename_holder(l, dir, name, &h, n->path);
		free(name);
		if (err < 0)
			return err;
	}
	return -EEXIST;
}

/* Folder @name under @parent, seen first in this listing: its id in @f
 * (made on first use ever), and its entry, to which a file of that name
 * yields. */
static int folder_new(struct store_listing *l, uint64_t parent,
		      const char *name, unsigned has, struct folder_memo *f)
{
	sqlite3_stmt *q = store_stmt(l->st->writer, S_DIR_ID);
	struct holder h;
	uint64_t seq;
	int64_t v;
	int err;

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, parent);
	bind_name(q, 2, name);
	err = sql_step_int(q, &v);
	if (err)
		return err;
	f->id = v;
	store_note_max(&l->st->max_dir, f->id);
	seq = next_seq(l, parent);
	err = seq ? entry_add(l, parent, name, 0, f->id, has, 0, seq) : -ENOMEM;
	if (err == 0 && !entry_get(l, parent, name, &h) && h.oid) {
		/* a file of that name, kept or not: it yields to the
		 * folder */
		err = rename_holder(l, parent, name, &h, true);
	}
	return err < 0 ? err : 0;
}

/* The entry of folder @f, @name under @parent, with @has bits too. */
static int folder_has(struct store_listing *l, struct folder_memo *f,
		      uint64_t parent, const char *name, unsigned has)
{
	sqlite3_stmt *q;
	int err;

	if ((f->has & has) == has)
		return 0;
	q = store_stmt(l->st->writer, S_ENTRY_HAS);
	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, l->gen);
	sqlite3_bind_int64(q, 2, parent);
	bind_name(q, 3, name);
	sqlite3_bind_int(q, 4, has);
	sqlite3_bind_int64(q, 5, f->id);
	/* a name held back becomes the folder: its place is new */
	sqlite3_bind_int64(q, 6, next_seq(l, parent));
	err = sql_step_done(q);
	if (!err)
		f->has |= has;
	return err;
}

/* Status @status beneath folder @f (STORE_NO_STATUS: none). */
static int folder_status(struct store_listing *l, struct folder_memo *f,
			 int status)
{
	sqlite3_stmt *q;
	int err;

	if (status == STORE_NO_STATUS ||
	    (status < 64 && (f->statuses & (1ull << status))))
		return 0;
	q = store_stmt(l->st->writer, S_FOLDER_STATUS);
	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, l->gen);
	sqlite3_bind_int64(q, 2, f->id);
	sqlite3_bind_int(q, 3, status);
	err = sql_step_done(q);
	if (!err && status < 64)
		f->statuses |= 1ull << status;
	return err;
}

/* The id of folder @name under @parent (made on first use), and its entry
 * in this generation with @has bits and @status beneath it. */
static int folder(struct store_listing *l, uint64_t parent, const char *name,
		  unsigned has, int status, uint64_t *id)
{
	struct folder_memo key, *f;
	int err;

	memset(&key.key, 0, sizeof(key.key));
	key.key.parent = parent;
	snprintf(key.key.name, sizeof(key.key.name), "%s", name);
	HASH_FIND(hh, l->folders, &key.key, sizeof(key.key), f);
	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f)
			return -ENOMEM;
		f->key = key.key;
		err = folder_new(l, parent, name, has, f);
		if (err) {
			free(f);
			return err;
		}
		HASH_ADD(hh, l->folders, key, sizeof(f->key), f);
	}
	err = folder_has(l, f, parent, name, has);
	if (!err)
		err = folder_status(l, f, status);
	*id = f->id;
	return err;
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

/* ---- one object ---- */

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
	q = store_stmt(l->st->writer, S_PREV);
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

/* Whether object @oid is listed in generation @gen. */
static int listed_in(struct store_listing *l, uint64_t gen, uint64_t oid,
		     bool *yes)
{
	sqlite3_stmt *q = store_stmt(l->st->writer, S_PREV);
	int rc;

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, gen);
	sqlite3_bind_int64(q, 2, oid);
	rc = sqlite3_step(q);
	sqlite3_reset(q);
	*yes = rc == SQLITE_ROW;
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_errno(rc);
}

/* Whether object @oid has uid @uid: 1, 0, or a negative errno. */
static int has_uid(struct store_listing *l, uint64_t oid, const char *uid)
{
	sqlite3_stmt *q = store_stmt(l->st->writer, S_UID);
	int rc, same = 0;

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, oid);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		same = strcmp((const char *)sqlite3_column_text(q, 0), uid) ==
		       0;
	sqlite3_reset(q);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? same : sql_errno(rc);
}

/* The number @l knows @it by, 0 when none. Two mounts listing at once may
 * each have given it one: the one the previous generation lists wins, so
 * that a mount's inode numbers stay; else the lowest. */
static int object_find(struct store_listing *l, const struct item *it,
		       uint32_t hash, uint64_t *oid)
{
	bool listed = false, checked = false, yes;
	uint64_t other;
	size_t pos = 0;
	int err;

	*oid = 0;
	while ((other = store_uids_next(&l->uids, hash, &pos))) {
		err = has_uid(l, other, it->uid);
		if (err <= 0) {
			if (err < 0)
				return err;
			continue;
		}
		if (!*oid) {
			*oid = other;
			continue;
		}
		if (l->prev && !checked) {
			err = listed_in(l, l->prev, *oid, &listed);
			if (err)
				return err;
			checked = true;
		}
		if (listed)
			continue;
		if (l->prev) {
			err = listed_in(l, l->prev, other, &yes);
			if (err)
				return err;
			if (yes) {
				*oid = other;
				listed = true;
				continue;
			}
		}
		if (other < *oid)
			*oid = other;
	}
	return 0;
}

/* The number of @it: found, else made. */
static int object_id(struct store_listing *l, const struct item *it,
		     uint64_t *oid)
{
	struct conn *w = l->st->writer;
	uint32_t hash = store_uids_hash(it->uid);
	sqlite3_stmt *q;
	int err = object_find(l, it, hash, oid);

	if (err || *oid)
		return err;
	q = store_stmt(w, S_OBJECT_ADD);
	if (!q)
		return -EIO;
	sqlite3_bind_int(q, 1, it->kind);
	sqlite3_bind_text(q, 2, it->uid, -1, SQLITE_STATIC);
	err = sql_step_done(q);
	if (err)
		return err;
	*oid = sqlite3_last_insert_rowid(w->sql.db);
	if (!l->page_made)
		l->page_made = *oid;
	err = store_uids_add(&l->uids, hash, *oid);
	if (!err)
		store_note_max(&l->st->max_oid, *oid);
	return err;
}

/* The objects of @l's kind the store has numbered, into @l->uids. Read
 * apart from the writer: it holds no lock meanwhile. */
static int uids_load(struct store_listing *l)
{
	struct conn *c;
	sqlite3_stmt *q = store_reader_stmt(l->st, S_OBJECTS_OF, &c);
	int rc = SQLITE_DONE, err = 0;

	if (!q)
		return -EIO;
	sqlite3_bind_int(q, 1, l->kind);
	while (!err && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *uid = (const char *)sqlite3_column_text(q, 1);

		err = uid ? store_uids_add(&l->uids, store_uids_hash(uid),
					   sqlite3_column_int64(q, 0))
			  : -ENOMEM;
	}
	if (!err && rc != SQLITE_DONE)
		err = sql_errno(rc);
	return store_reader_end(l->st, c, q, err);
}

/* The names an object has in a generation. */
struct object_names {
	char *iname; /* in items/ or sequences/ */
	uint64_t pdir; /* its folder in the key-path tree, 0: none */
	char *pname; /* its name there, or NULL */
};

/* Name object @oid in every view of @l: new strings in @on. */
static int name_object(struct store_listing *l, const struct item *it,
		       uint64_t oid, unsigned has, int status,
		       struct object_names *on)
{
	struct naming n = { .uid = it->uid, .oid = oid, .has = has };
	char *base = NULL, *pbase = NULL;
	struct prev_row prev;
	int err;

	err = prev_row(l, oid, it, &prev);
	if (!err) {
		base = names_base(it->key, it->key ? it->key_len : 0, it->uid);
		err = base ? 0 : -ENOMEM;
	}
	/* items/ or sequences/ */
	if (!err) {
		n.dir = l->kind == ITEM_KIND_ITEM ? STORE_DIR_ITEMS
						  : STORE_DIR_SEQUENCES;
		n.base = base;
		n.kept = prev.found && prev.same_key ? prev.iname : NULL;
		err = place(l, &n, &on->iname);
	}
	/* the key-path tree: items with a file to show */
	if (!err && l->kind == ITEM_KIND_ITEM && has) {
		err = key_path(l, it, has, status, &on->pdir, &pbase);
		n.dir = on->pdir;
		n.base = pbase;
		n.kept = prev.found && prev.same_key && prev.pdir == on->pdir
				 ? prev.pname
				 : NULL;
		n.path = true;
		if (!err)
			err = place(l, &n, &on->pname);
	}
	prev_clear(&prev);
	free(base);
	free(pbase);
	return err;
}

/* The row of object @oid in @l's generation: what getattr needs, and its
 * JSON. */
static int listed_add(struct store_listing *l, const struct item *it,
		      uint64_t oid, unsigned has, int status,
		      const struct object_names *on)
{
	sqlite3_stmt *q = store_stmt(l->st->writer, S_LISTED_ADD);

	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, l->gen);
	sqlite3_bind_int64(q, 2, oid);
	if (it->key)
		sqlite3_bind_blob(q, 3, it->key, it->key_len, SQLITE_STATIC);
	/* NULL: the same as its key */
	if (!it->key || strlen(on->iname) != it->key_len ||
	    memcmp(on->iname, it->key, it->key_len) != 0)
		bind_name(q, 4, on->iname);
	sqlite3_bind_int64(q, 5, on->pdir);
	if (on->pname)
		bind_name(q, 6, on->pname);
	sqlite3_bind_int(q, 7, has);
	sqlite3_bind_int(q, 8, status);
	if (it->size >= 0)
		sqlite3_bind_int64(q, 9, it->size);
	if (it->has_mtime)
		sqlite3_bind_int64(q, 10, store_time_ns(it));
	sqlite3_bind_blob(q, 11, it->json, it->json_len, SQLITE_STATIC);
	return sql_step_done(q);
}

/* Status @status in @l's generation (STORE_NO_STATUS: none). */
static int gen_status(struct store_listing *l, int status)
{
	sqlite3_stmt *q;
	int err;

	if (status == STORE_NO_STATUS ||
	    (status < 64 && (l->statuses & (1ull << status))))
		return 0;
	q = store_stmt(l->st->writer, S_GEN_STATUS);
	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, l->gen);
	sqlite3_bind_int(q, 2, status);
	err = sql_step_done(q);
	if (!err && status < 64)
		l->statuses |= 1ull << status;
	return err;
}

/* Add one object to the listing: 1, 0 when its uid came earlier in this
 * listing, or a negative errno. */
static int add_object(struct store_listing *l, const struct item *it)
{
	struct object_names on = { NULL, 0, NULL };
	unsigned has = (it->data_url ? STORE_HAS_DATA : 0) |
		       (it->thumb_url ? STORE_HAS_THUMB : 0);
	uint64_t oid;
	int status, err;

	err = object_id(l, it, &oid);
	if (err)
		return err;
	err = seen_before(l, oid);
	if (err)
		return err > 0 ? 0
			       : err; /* listed twice: the first one stays */
	status = it->status ? store_status_id(l->st, it->status)
			    : STORE_NO_STATUS;
	err = name_object(l, it, oid, has, status, &on);
	if (!err)
		err = listed_add(l, it, oid, has, status, &on);
	if (!err)
		err = gen_status(l, status);
	free(on.iname);
	free(on.pname);
	return err ? err : 1;
}

/* ---- a listing ---- */

/* A new generation of the listing @arg, locked before it is seen: no other
 * mount removes it while this one builds it. */
static int begin_op(struct store *st, void *arg)
{
	struct store_listing *l = arg;
	sqlite3_stmt *q;
	int64_t gen = 0;
	int err = sql_begin(&st->writer->sql);

	q = err ? NULL : store_stmt(st->writer, S_GEN_NEW);
	if (!err && !q)
		err = -EIO;
	if (!err) {
		sqlite3_bind_int(q, 1, l->kind);
		sqlite3_bind_int64(q, 2, getpid());
		err = sql_step_int(q, &gen);
	}
	if (!err)
		err = store_hold(st, gen);
	if (!err) {
		err = sql_commit(&st->writer->sql);
		if (err)
			store_release(st, gen);
	} else {
		sql_rollback(&st->writer->sql);
	}
	if (!err) {
		l->gen = gen;
		store_building_set(st, gen, true);
	}
	return err;
}

int store_listing_begin(struct store *st, enum item_kind kind, uint64_t prev,
			struct store_listing **out)
{
	struct store_listing *l = calloc(1, sizeof(*l));
	unsigned epoch;
	int err;

	*out = NULL;
	if (!l)
		return -ENOMEM;
	l->st = st;
	l->kind = kind;
	l->prev = prev;
	err = uids_load(l);
	if (!err) {
		pthread_mutex_lock(&st->write_lock);
		l->resets = store_resets(st);
		epoch = st->epoch;
		err = store_writing(st, begin_op, l);
		pthread_mutex_unlock(&st->write_lock);
		err = store_damaged(st, epoch, err);
	}
	if (err) {
		store_uids_clear(&l->uids);
		free(l);
		return err;
	}
	*out = l;
	return 0;
}

uint64_t store_listing_gen(const struct store_listing *l)
{
	return l->gen;
}

/* One page for add_op(). */
struct page_add {
	struct store_listing *l;
	struct item *const *v;
	size_t n;
	int added;
};

/* Add one page in one transaction: rolled back whole, with what the
 * listing remembers of it, when it fails. */
static int add_op(struct store *st, void *arg)
{
	struct page_add *pa = arg;
	struct store_listing *l = pa->l;
	int err = 0;
	size_t i;

	if (store_resets(st) != l->resets)
		return -ESTALE; /* its database was set aside */
	/* status ids are for ever, not for one page: made first, on their
	 * own, so that a page rolled back leaves none behind in memory */
	for (i = 0; i < pa->n && !err; i++) {
		int id;

		err = store_status_make(st, st->writer, pa->v[i]->status, &id);
	}
	l->n_page_oids = 0;
	l->page_made = 0;
	pa->added = 0;
	if (!err)
		err = sql_begin(&st->writer->sql);
	for (i = 0; i < pa->n && !err; i++) {
		err = add_object(l, pa->v[i]);
		if (err > 0)
			pa->added += err;
		err = err > 0 ? 0 : err;
	}
	if (!err)
		err = sql_commit(&st->writer->sql);
	if (err) {
		sql_rollback(&st->writer->sql);
		page_undo(l);
	}
	return err;
}

int store_listing_add(struct store_listing *l, struct item *const *v, size_t n)
{
	struct store *st = l->st;
	struct page_add pa = { l, v, n, 0 };
	unsigned epoch;
	int err;

	if (l->failed)
		return -EIO;
	pthread_mutex_lock(&st->write_lock);
	epoch = st->epoch;
	err = store_writing(st, add_op, &pa);
	if (!err)
		store_room_check(st);
	pthread_mutex_unlock(&st->write_lock);
	if (err) {
		l->failed = true;
		return store_damaged(st, epoch, err);
	}
	return pa.added;
}

/* Mark the listing @arg complete. */
static int commit_op(struct store *st, void *arg)
{
	struct store_listing *l = arg;
	sqlite3_stmt *q;
	int err;

	if (store_resets(st) != l->resets)
		return -ESTALE;
	q = store_stmt(st->writer, S_GEN_DONE);
	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, l->gen);
	sqlite3_bind_int64(q, 2, time(NULL));
	err = sql_step_done(q);
	/* its row gone (collected, or the database made anew): not a
	 * listing to serve */
	if (!err && sqlite3_changes(st->writer->sql.db) != 1)
		err = -ESTALE;
	return err;
}

uint64_t store_listing_commit(struct store_listing *l)
{
	struct store *st = l->st;
	char bad[NAME_MAX + 1];
	uint64_t gen = 0;
	unsigned epoch;
	int err = l->failed ? -EIO : 0;

	pthread_mutex_lock(&st->write_lock);
	epoch = st->epoch;
	if (!err)
		err = store_writing(st, commit_op, l);
	if (!err) {
		gen = l->gen;
		/* a good listing replaces the one set aside, which holds
		 * presigned URLs */
		snprintf(bad, sizeof(bad), "%s.bad", st->name);
		unlinkat(st->dir_fd, bad, 0);
	}
	pthread_mutex_unlock(&st->write_lock);
	store_damaged(st, epoch, err);
	return gen;
}

void store_listing_free(struct store_listing *l)
{
	struct store *st;

	if (!l)
		return;
	st = l->st;
	memo_free(l);
	pthread_mutex_lock(&st->write_lock);
	if (l->gen && store_resets(st) == l->resets) {
		store_building_set(st, l->gen, false);
		/* a listing that failed is nobody's to read */
		if (l->failed)
			store_release(st, l->gen);
	}
	/* the pages the writer kept for the listing are not needed until
	 * the next one */
	if (st->writer)
		sqlite3_db_release_memory(st->writer->sql.db);
	pthread_mutex_unlock(&st->write_lock);
	free(l);
}
