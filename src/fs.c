/* FUSE low-level operations. Every operation replies exactly once, with no
 * lock held: the node kinds of node.h return 0 or a negative errno and the
 * op replies. This file knows handles, offsets and lookup counts, and no
 * kind by name; it counts every request and every error it answers. */
#include "fs.h"
#include "log.h"
#include "objects.h"
#include "util.h"
#include "node_xattr.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ---- counters ---- */

static const char *const op_names[FS_OPS] = {
	[FS_OP_LOOKUP] = "lookup",
	[FS_OP_FORGET] = "forget",
	[FS_OP_GETATTR] = "getattr",
	[FS_OP_OPENDIR] = "opendir",
	[FS_OP_READDIR] = "readdir",
	[FS_OP_READDIRPLUS] = "readdirplus",
	[FS_OP_RELEASEDIR] = "releasedir",
	[FS_OP_OPEN] = "open",
	[FS_OP_READ] = "read",
	[FS_OP_RELEASE] = "release",
	[FS_OP_STATFS] = "statfs",
	[FS_OP_GETXATTR] = "getxattr",
	[FS_OP_LISTXATTR] = "listxattr",
	[FS_OP_SETATTR] = "setattr",
	[FS_OP_MKNOD] = "mknod",
	[FS_OP_MKDIR] = "mkdir",
	[FS_OP_UNLINK] = "unlink",
	[FS_OP_RMDIR] = "rmdir",
	[FS_OP_SYMLINK] = "symlink",
	[FS_OP_RENAME] = "rename",
	[FS_OP_LINK] = "link",
	[FS_OP_WRITE] = "write",
	[FS_OP_CREATE] = "create",
	[FS_OP_SETXATTR] = "setxattr",
	[FS_OP_REMOVEXATTR] = "removexattr",
	[FS_OP_FALLOCATE] = "fallocate",
};

const char *fs_op_name(enum fs_op op)
{
	return (unsigned)op < FS_OPS ? op_names[op] : "unknown";
}

void fs_get_stats(struct fs *fs, struct fs_stats *st)
{
	const uint64_t *from = (const uint64_t *)fs->stats;
	uint64_t *to = (uint64_t *)st;
	size_t i;

	_Static_assert(sizeof(*st) % sizeof(uint64_t) == 0,
		       "fs_stats holds counters only");
	for (i = 0; i < sizeof(*st) / sizeof(uint64_t); i++)
		to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
}

/* A request being served: counted when its op begins, and as done when
 * the op returns, whichever way (COUNT_OP's cleanup). */
struct op_count {
	struct fs_stats *st;
};

static struct op_count op_begin(fuse_req_t req, enum fs_op op)
{
	struct fs_stats *st = fs_of(req)->stats;

	__atomic_add_fetch(&st->ops[op], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&st->in_flight, 1, __ATOMIC_RELAXED);
	return (struct op_count){ st };
}

static void op_end(struct op_count *c)
{
	__atomic_sub_fetch(&c->st->in_flight, 1, __ATOMIC_RELAXED);
}

/* The first line of every op: count @op of @req until the op returns. */
#define COUNT_OP(req, op)         \
	struct op_count op_count_ \
		__attribute__((cleanup(op_end), unused)) = op_begin(req, op)

/* fuse_reply_err(), counting an error (@err > 0) of @op. */
static void reply_err(fuse_req_t req, enum fs_op op, int err)
{
	struct fs_stats *st = fs_of(req)->stats;

	if (err > 0)
		__atomic_add_fetch(
			&st->errors[op][err < FS_ERRNO_MAX ? err : 0], 1,
			__ATOMIC_RELAXED);
	fuse_reply_err(req, err);
}

/* ---- handles ---- */

int fs_init(struct fs *fs)
{
	pthread_mutex_init(&fs->handles_lock, NULL);
	pthread_mutex_init(&fs->forgets_lock, NULL);
	pthread_mutex_init(&fs->walks_lock, NULL);
	fs->handles.prev = fs->handles.next = &fs->handles;
	fs->env.objects = objects_new(fs->env.cat);
	fs->env.size_windows = path_view_size_windows_new();
	fs->stats = calloc(1, sizeof(*fs->stats));
	return fs->env.objects && fs->env.size_windows && fs->stats ? 0
								    : -ENOMEM;
}

static void handle_add(struct fs *fs, struct fs_handle *h,
		       void (*release)(struct fs *fs, struct fs_handle *h))
{
	h->release = release;
	pthread_mutex_lock(&fs->handles_lock);
	h->next = fs->handles.next;
	h->prev = &fs->handles;
	fs->handles.next->prev = h;
	fs->handles.next = h;
	pthread_mutex_unlock(&fs->handles_lock);
}

static void handle_remove(struct fs *fs, struct fs_handle *h)
{
	pthread_mutex_lock(&fs->handles_lock);
	h->prev->next = h->next;
	h->next->prev = h->prev;
	pthread_mutex_unlock(&fs->handles_lock);
}

void fs_destroy(struct fs *fs)
{
	for (;;) {
		struct fs_handle *h;

		pthread_mutex_lock(&fs->handles_lock);
		h = fs->handles.next == &fs->handles ? NULL : fs->handles.next;
		pthread_mutex_unlock(&fs->handles_lock);
		if (!h)
			break;
		h->release(fs, h); /* removes it from the list */
	}
	pthread_mutex_destroy(&fs->handles_lock);
	pthread_mutex_destroy(&fs->walks_lock);
	objects_free(fs->env.objects);
	fs->env.objects = NULL;
	path_view_size_windows_free(fs->env.size_windows);
	fs->env.size_windows = NULL;
	free(fs->stats);
	fs->stats = NULL;
	while (fs->n_forgets > 0)
		free(fs->forgets[--fs->n_forgets].name);
	free(fs->forgets);
	pthread_mutex_destroy(&fs->forgets_lock);
}

/* ---- what the kernel must forget when a listing changes ---- */

static void note_forget(void *p, fuse_ino_t ino, const char *name, size_t len)
{
	struct fs *fs = p;
	char *copy = NULL;

	if (name && !(copy = strndup(name, len)))
		return;
	pthread_mutex_lock(&fs->forgets_lock);
	if (UTIL_GROW(fs->forgets, fs->n_forgets, fs->cap_forgets, 64)) {
		free(copy);
	} else {
		fs->forgets[fs->n_forgets].ino = ino;
		fs->forgets[fs->n_forgets].name = copy;
		fs->forgets[fs->n_forgets].len = len;
		fs->n_forgets++;
	}
	pthread_mutex_unlock(&fs->forgets_lock);
}

struct replaced {
	struct fs *fs;
	struct dataset *ds;
	enum item_kind kind;
};

static void on_change(void *p, const struct store_change *c)
{
	struct replaced *r = p;

	node_changes(&r->fs->env, r->ds, r->kind, c, note_forget, r->fs);
}

void fs_listing_replaced(void *fs, struct dataset *ds, enum item_kind kind,
			 uint64_t old, uint64_t new)
{
	struct replaced r = { fs, ds, kind };

	store_changes(dataset_store(ds), old, new, on_change, &r);
}

void fs_send_forgets(struct fs *fs, struct fuse_session *se)
{
	struct fs_forget *v;
	size_t n, i;

	pthread_mutex_lock(&fs->forgets_lock);
	v = fs->forgets;
	n = fs->n_forgets;
	fs->forgets = NULL;
	fs->n_forgets = fs->cap_forgets = 0;
	pthread_mutex_unlock(&fs->forgets_lock);
	for (i = 0; i < n; i++) {
		/* an inode or a name the kernel does not hold is ENOENT:
		 * nothing to forget */
		if (v[i].name)
			fuse_lowlevel_notify_inval_entry(se, v[i].ino,
							 v[i].name, v[i].len);
		else
			fuse_lowlevel_notify_inval_inode(se, v[i].ino, 0, 0);
		free(v[i].name);
	}
	free(v);
}

/* ---- the kernel's session ---- */

/* Let the kernel send as many reads at once as there are connections to
 * serve them: its default of 12 would starve a loader with many workers. */
static void fs_conn_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;

	if (fs->env.max_background > conn->max_background)
		conn->max_background = fs->env.max_background;
	conn->congestion_threshold = conn->max_background * 3 / 4;
	/* every listing may carry attributes: which do is ours to say
	 * (walk_attrs()) */
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
}

/* ---- one operation ---- */

/* What the node kinds see of the mount for one operation: the mount's
 * services, and the listings the operation pinned on first use, held to
 * its end (objects.h), so that it reads every object from one generation
 * and pins a listing once. */
struct op_env {
	struct node_env env;
	struct objects_op pins;
};

static struct node_env *env_begin(struct fs *fs, struct op_env *oe)
{
	oe->env = fs->env;
	oe->pins.n = 0;
	oe->env.op = &oe->pins;
	return &oe->env;
}

static void env_end(struct op_env *oe)
{
	objects_op_end(oe->env.objects, &oe->pins);
}

/* ---- which listings carry attributes ---- */

/* A listing with attributes (READDIRPLUS) costs the kernel an inode and a
 * dentry for every entry: `ls | wc -l` of a million names takes five times as
 * long as without. So the kernel always asks with attributes, and a reply
 * carries them when its reader wants them: the first ATTRS_FIRST entries
 * of every walk (a folder that size is listed as it always was), then the
 * rest of a walk whose names were looked up while it went on (a reader
 * that stats as it lists), and every walk of a folder once WANTS_LOOKUPS
 * of the names a walk gave bare were looked up after it (`ls -l` and
 * `find` list all, then stat each: the first such walk of a big folder
 * costs a look-up per name, the next ones none). The kernel's own rule
 * (FUSE_CAP_READDIRPLUS_AUTO) never learns the second case. */
#define ATTRS_FIRST 4096
#define WANTS_LOOKUPS 64

static struct fs_walk *walk_slot(struct fs *fs, fuse_ino_t ino)
{
	/* Fibonacci hashing: inodes of one folder's children are near */
	return &fs->walks[(ino * 0x9e3779b97f4a7c15ULL) >>
			  (64 - FS_WALKS_SHIFT)];
}

/* A look-up of a name in folder @parent. */
static void walk_lookup(struct fs *fs, fuse_ino_t parent)
{
	struct fs_walk *w = walk_slot(fs, parent);

	pthread_mutex_lock(&fs->walks_lock);
	if (w->ino == parent && ++w->lookups >= WANTS_LOOKUPS)
		w->wants = true;
	pthread_mutex_unlock(&fs->walks_lock);
}

/* Whether the next reply of a walk of folder @ino that gave @given entries
 * with attributes, and that looked its names up already when *@wants,
 * carries attributes. */
static bool walk_attrs(struct fs *fs, fuse_ino_t ino, uint64_t given,
		       bool *wants)
{
	struct fs_walk *w = walk_slot(fs, ino);

	if (given < ATTRS_FIRST || *wants)
		return true;
	pthread_mutex_lock(&fs->walks_lock);
	if (w->ino == ino) {
		*wants = w->wants || w->lookups;
		w->lookups = 0;
	}
	pthread_mutex_unlock(&fs->walks_lock);
	return *wants;
}

/* A reply of a walk of folder @ino gave @n entries without attributes. */
static void walk_bare(struct fs *fs, fuse_ino_t ino, uint64_t n)
{
	struct fs_walk *w = walk_slot(fs, ino);

	pthread_mutex_lock(&fs->walks_lock);
	if (w->ino != ino)
		*w = (struct fs_walk){ .ino = ino };
	w->bare += n;
	pthread_mutex_unlock(&fs->walks_lock);
}

/* ---- names ---- */

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	COUNT_OP(req, FS_OP_LOOKUP);
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct node dir, child;
	int err = node_of(&fs->env, parent, &dir);

	memset(&e, 0, sizeof(e));
	if (!err && !dir.ops->dir)
		err = -ENOTDIR;
	if (!err)
		walk_lookup(fs, parent);
	if (!err) {
		struct op_env oe;

		err = dir.ops->lookup(env_begin(fs, &oe), &dir, name, &child,
				      &e.attr, true);
		env_end(&oe);
	}
	if (err == -ENOENT) {
		/* a negative entry: the kernel need not ask again for ttl */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->ttl;
		fuse_reply_entry(req, &e);
		return;
	}
	if (!err)
		err = tree_ref(fs->tree, child.ino);
	if (err) {
		reply_err(req, FS_OP_LOOKUP, -err);
		return;
	}
	e.ino = child.ino;
	e.attr_timeout = fs->ttl;
	e.entry_timeout = fs->ttl;
	if (fuse_reply_entry(req, &e) == -ENOENT)
		tree_forget(fs->tree, child.ino, 1); /* interrupted */
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	COUNT_OP(req, FS_OP_FORGET);
	tree_forget(fs_of(req)->tree, ino, nlookup);
	fuse_reply_none(req);
}

static void fs_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	COUNT_OP(req, FS_OP_FORGET);
	size_t i;

	for (i = 0; i < count; i++)
		tree_forget(fs_of(req)->tree, forgets[i].ino,
			    forgets[i].nlookup);
	fuse_reply_none(req);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	COUNT_OP(req, FS_OP_GETATTR);
	struct fs *fs = fs_of(req);
	struct node n;
	struct stat st;
	int err = node_of(&fs->env, ino, &n);

	if (!err) {
		struct op_env oe;

		err = n.ops->getattr(env_begin(fs, &oe), &n, &st);
		env_end(&oe);
	}
	if (err)
		reply_err(req, FS_OP_GETATTR, -err);
	else
		fuse_reply_attr(req, &st, fs->ttl);
}

/* ---- directories ---- */

/* An entry sent in the last reply: where a reader may ask to go on. */
struct sent {
	off_t off;
	uint64_t pos; /* its position in the listing */
	fuse_ino_t counted; /* a readdirplus entry's inode, counted; or 0 */
};

/* An open directory. The offset of an entry is its place in this
 * handle's walk; the positions of the last reply's entries say where to
 * go on from each of them, and the kind's own state (a pinned listing)
 * keeps positions meaningful for the life of the handle. */
struct dir_handle {
	struct fs_handle h; /* first: the list sees this */
	struct node node;
	void *state; /* the kind's; NULL until the first listing */
	struct sent *sent; /* the last reply's entries */
	size_t n_sent, cap_sent;
	uint64_t attrs_given; /* entries given with attributes */
	bool wants; /* its names were looked up as it went on */
};

static void dir_free(struct fs *fs, struct dir_handle *d)
{
	handle_remove(fs, &d->h);
	if (d->state && d->node.ops->dir_release)
		d->node.ops->dir_release(&fs->env, &d->node, d->state);
	free(d->sent);
	free(d);
}

static void dir_release(struct fs *fs, struct fs_handle *h)
{
	dir_free(fs, (struct dir_handle *)h);
}

static void fs_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	COUNT_OP(req, FS_OP_OPENDIR);
	struct fs *fs = fs_of(req);
	struct dir_handle *d;
	struct node n;
	int err = node_of(&fs->env, ino, &n);

	if (!err && !n.ops->dir)
		err = -ENOTDIR;
	if (err) {
		reply_err(req, FS_OP_OPENDIR, -err);
		return;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		reply_err(req, FS_OP_OPENDIR, ENOMEM);
		return;
	}
	d->node = n;
	handle_add(fs, &d->h, dir_release);
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT)
		dir_free(fs, d);
}

/* One reply being filled. */
struct dir_fill {
	fuse_req_t req;
	struct fs *fs;
	bool plus;
	bool attrs; /* entries go with their attributes */
	char *buf;
	size_t size, used;
	off_t next_off; /* the offset the next entry gets */
	off_t skip; /* entries still to pass over (a seek back) */
	struct sent *sent; /* this reply's entries */
	size_t n_sent, cap_sent;
	int err;
};

static int add_entry(struct dir_fill *df, const char *name, fuse_ino_t ino,
		     const struct stat *st, bool counted, uint64_t pos)
{
	struct fuse_entry_param e;
	size_t need;

	memset(&e, 0, sizeof(e));
	e.attr = *st;
	if (df->plus) {
		if (counted) {
			e.ino = ino;
			e.attr_timeout = df->fs->ttl;
			e.entry_timeout = df->fs->ttl;
		}
		need = fuse_add_direntry_plus(df->req, df->buf + df->used,
					      df->size - df->used, name, &e,
					      df->next_off + 1);
	} else {
		need = fuse_add_direntry(df->req, df->buf + df->used,
					 df->size - df->used, name, &e.attr,
					 df->next_off + 1);
	}
	if (need > df->size - df->used)
		return 1; /* did not fit: not sent, so not counted */
	if (UTIL_GROW(df->sent, df->n_sent, df->cap_sent, 64)) {
		df->err = -ENOMEM;
		return 1;
	}
	if (counted && df->plus && tree_ref(df->fs->tree, ino)) {
		df->err = -ENOMEM;
		return 1;
	}
	df->sent[df->n_sent].off = df->next_off + 1;
	df->sent[df->n_sent].pos = pos;
	df->sent[df->n_sent].counted = counted && df->plus ? ino : 0;
	df->n_sent++;
	df->used += need;
	df->next_off++;
	return 0;
}

static int fill_entry(void *ctx, const char *name, const struct node *child,
		      const struct stat *st, uint64_t pos)
{
	struct dir_fill *df = ctx;
	struct stat bare;

	if (df->skip > 0) {
		df->skip--;
		df->next_off++;
		return 0;
	}
	if (!st || !df->attrs) {
		/* no attributes wanted, or none without a request: the
		 * entry goes without them, and the kernel asks by lookup
		 * when someone wants */
		node_stat_bare(child, &bare);
		return add_entry(df, name, child->ino, &bare, false, pos);
	}
	return add_entry(df, name, child->ino, st, true, pos);
}

/* Where a reply that begins after offset @off goes on: after position
 * @after, numbering from @next_off; a seek to an offset this handle did
 * not just send walks from the start again. */
static void resume_point(struct dir_handle *d, off_t off, uint64_t *after,
			 off_t *next_off, off_t *skip)
{
	size_t i;

	*after = 0;
	*skip = 0;
	*next_off = off;
	if (off <= 2)
		return;
	for (i = 0; i < d->n_sent; i++) {
		if (d->sent[i].off == off) {
			*after = d->sent[i].pos;
			return;
		}
	}
	*next_off = 2;
	*skip = off - 2;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct fs *fs = fs_of(req);
	enum fs_op op = plus ? FS_OP_READDIRPLUS : FS_OP_READDIR;
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;
	struct dir_fill df = {
		.req = req,
		.fs = fs,
		.plus = plus,
		.size = size,
	};
	fuse_ino_t *counted;
	uint64_t after;
	size_t i, n_counted = 0;
	int err = 0, rc;

	df.buf = malloc(size);
	if (!df.buf) {
		reply_err(req, op, ENOMEM);
		return;
	}
	resume_point(d, off, &after, &df.next_off, &df.skip);
	/* "." and "..": not looked up, so not counted */
	if (df.next_off == 0) {
		struct stat st = { .st_ino = ino, .st_mode = S_IFDIR };

		if (add_entry(&df, ".", ino, &st, false, 0) == 0) {
			st.st_ino = FUSE_ROOT_ID;
			add_entry(&df, "..", FUSE_ROOT_ID, &st, false, 0);
		}
	} else if (df.next_off == 1) {
		struct stat st = { .st_ino = FUSE_ROOT_ID, .st_mode = S_IFDIR };

		add_entry(&df, "..", FUSE_ROOT_ID, &st, false, 0);
	}
	df.attrs = plus && walk_attrs(fs, ino, d->attrs_given, &d->wants);
	if (df.next_off == 2 || df.next_off == off) {
		struct op_env oe;

		err = d->node.ops->readdir(env_begin(fs, &oe), &d->node,
					   &d->state, after, df.attrs,
					   fill_entry, &df);
		env_end(&oe);
	}
	if (!err)
		err = df.err;
	/* an error after some entries: send those, the next call reports it */
	if (err && df.used == 0) {
		free(df.sent);
		reply_err(req, op, -err);
		free(df.buf);
		return;
	}
	/* the handle may be released the moment the reply is out: it is
	 * brought up to date first, and only the counts are kept back */
	counted = calloc(df.n_sent ? df.n_sent : 1, sizeof(*counted));
	if (!counted) {
		/* nothing sent, so nothing counted */
		for (i = 0; i < df.n_sent; i++) {
			if (df.sent[i].counted)
				tree_forget(fs->tree, df.sent[i].counted, 1);
		}
		free(df.sent);
		reply_err(req, op, ENOMEM);
		free(df.buf);
		return;
	}
	for (i = 0; i < df.n_sent; i++) {
		if (df.sent[i].counted)
			counted[n_counted++] = df.sent[i].counted;
	}
	d->attrs_given += n_counted;
	if (plus && !df.attrs && df.n_sent)
		walk_bare(fs, ino, df.n_sent);
	free(d->sent);
	d->sent = df.sent;
	d->n_sent = df.n_sent;
	d->cap_sent = df.cap_sent;
	rc = fuse_reply_buf(req, df.buf, df.used);
	for (i = 0; rc != 0 && i < n_counted; i++) {
		/* interrupted: the kernel never saw them, so no count */
		tree_forget(fs->tree, counted[i], 1);
	}
	free(counted);
	free(df.buf);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	COUNT_OP(req, FS_OP_READDIR);
	do_readdir(req, ino, size, off, fi, false);
}

static void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	COUNT_OP(req, FS_OP_READDIRPLUS);
	do_readdir(req, ino, size, off, fi, true);
}

static void fs_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	COUNT_OP(req, FS_OP_RELEASEDIR);
	dir_free(fs_of(req), (struct dir_handle *)(uintptr_t)fi->fh);
	reply_err(req, FS_OP_RELEASEDIR, 0);
}

/* ---- files ---- */

/* An open file: what its kind opened. */
struct open_file {
	struct fs_handle h; /* first: the list sees this */
	struct node_file *vf;
};

static void file_free(struct fs *fs, struct open_file *fh)
{
	handle_remove(fs, &fh->h);
	fh->vf->ops->release(&fs->env, fh->vf);
	free(fh);
}

static void file_release(struct fs *fs, struct fs_handle *h)
{
	file_free(fs, (struct open_file *)h);
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	COUNT_OP(req, FS_OP_OPEN);
	struct fs *fs = fs_of(req);
	struct open_file *fh;
	struct node_file *vf = NULL;
	struct node n;
	bool keep = false;
	int err = node_of(&fs->env, ino, &n);

	if (!err &&
	    ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)))
		err = -EROFS;
	if (!err && n.ops->dir)
		err = -EISDIR;
	if (!err) {
		struct op_env oe;

		err = n.ops->open(env_begin(fs, &oe), &n, fi->flags, &vf,
				  &keep);
		env_end(&oe);
	}
	fh = err ? NULL : calloc(1, sizeof(*fh));
	if (!err && !fh) {
		vf->ops->release(&fs->env, vf);
		err = -ENOMEM;
	}
	if (err) {
		reply_err(req, FS_OP_OPEN, -err);
		return;
	}
	fh->vf = vf;
	handle_add(fs, &fh->h, file_release);
	fi->fh = (uintptr_t)fh;
	fi->keep_cache = keep;
	if (fuse_reply_open(req, fi) == -ENOENT)
		file_free(fs, fh);
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	COUNT_OP(req, FS_OP_READ);
	struct fs *fs = fs_of(req);
	struct open_file *fh = (struct open_file *)(uintptr_t)fi->fh;
	struct node_read r;
	int err;

	memset(&r, 0, sizeof(r));
	err = fh->vf->ops->read(&fs->env, fh->vf, size, off, &r);
	if (err) {
		reply_err(req, FS_OP_READ, -err);
		return;
	}
	/* one writev to the kernel, straight from where the bytes are */
	err = fuse_reply_iov(req, r.iov, r.n);
	r.release(&r, err == 0);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	COUNT_OP(req, FS_OP_RELEASE);
	file_free(fs_of(req), (struct open_file *)(uintptr_t)fi->fh);
	reply_err(req, FS_OP_RELEASE, 0);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	COUNT_OP(req, FS_OP_STATFS);
	struct statvfs st;

	memset(&st, 0, sizeof(st));
	st.f_bsize = 65536;
	st.f_frsize = 65536;
	st.f_namemax = NAMES_MAX;
	fuse_reply_statfs(req, &st);
}

/* ---- everything that would change the tree: the mount is read-only ---- */

static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	COUNT_OP(req, FS_OP_SETATTR);
	reply_err(req, FS_OP_SETATTR, EROFS);
}

static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	COUNT_OP(req, FS_OP_MKNOD);
	reply_err(req, FS_OP_MKNOD, EROFS);
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	COUNT_OP(req, FS_OP_MKDIR);
	reply_err(req, FS_OP_MKDIR, EROFS);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	COUNT_OP(req, FS_OP_UNLINK);
	reply_err(req, FS_OP_UNLINK, EROFS);
}

static void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	COUNT_OP(req, FS_OP_RMDIR);
	reply_err(req, FS_OP_RMDIR, EROFS);
}

static void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	COUNT_OP(req, FS_OP_SYMLINK);
	reply_err(req, FS_OP_SYMLINK, EROFS);
}

static void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	COUNT_OP(req, FS_OP_RENAME);
	reply_err(req, FS_OP_RENAME, EROFS);
}

static void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	COUNT_OP(req, FS_OP_LINK);
	reply_err(req, FS_OP_LINK, EROFS);
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	COUNT_OP(req, FS_OP_WRITE);
	reply_err(req, FS_OP_WRITE, EROFS);
}

static void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	COUNT_OP(req, FS_OP_CREATE);
	reply_err(req, FS_OP_CREATE, EROFS);
}

static void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	COUNT_OP(req, FS_OP_SETXATTR);
	reply_err(req, FS_OP_SETXATTR, EROFS);
}

static void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	COUNT_OP(req, FS_OP_REMOVEXATTR);
	reply_err(req, FS_OP_REMOVEXATTR, EROFS);
}

/* ---- extended attributes: an object's fields, read only ---- */

static int xattrs_of(struct fs *fs, const struct node *n, struct node_xattrs *x)
{
	struct op_env oe;
	int err = node_xattrs_of(env_begin(fs, &oe), n, x);

	env_end(&oe);
	return err;
}

static void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	COUNT_OP(req, FS_OP_GETXATTR);
	struct fs *fs = fs_of(req);
	struct node_xattrs x = { .n = 0 };
	const struct node_xattr *a = NULL;
	struct node n;
	int err = 0;

	/* without -o xattr, ENOSYS: the kernel stops asking, where
	 * ENODATA would cost `ls -l` a request per file */
	if (!fs->xattr) {
		reply_err(req, FS_OP_GETXATTR, ENOSYS);
		return;
	}
	/* ls -l asks for security.selinux of every file: no lookup for
	 * what is never there */
	if (strncmp(name, "user.avala.", 11) != 0 &&
	    strncmp(name, "user.avalafs.", 13) != 0) {
		reply_err(req, FS_OP_GETXATTR, ENODATA);
		return;
	}
	err = node_of(&fs->env, ino, &n);
	if (!err)
		err = xattrs_of(fs, &n, &x);
	if (!err && !(a = node_xattr_find(&x, name)))
		err = -ENODATA;
	if (err)
		reply_err(req, FS_OP_GETXATTR, -err);
	else if (size == 0)
		fuse_reply_xattr(req, a->len);
	else if (size < a->len)
		reply_err(req, FS_OP_GETXATTR, ERANGE);
	else
		fuse_reply_buf(req, a->value, a->len);
	node_xattrs_clear(&x);
}

static void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	COUNT_OP(req, FS_OP_LISTXATTR);
	struct fs *fs = fs_of(req);
	struct node_xattrs x = { .n = 0 };
	char buf[NODE_XATTR_MAX * NODE_XATTR_NAME];
	struct node n;
	size_t need = 0;
	int err = fs->xattr ? node_of(&fs->env, ino, &n) : -ENOSYS;

	if (!err)
		err = xattrs_of(fs, &n, &x);
	if (!err)
		need = node_xattr_names(&x, buf, sizeof(buf));
	if (!err && need > sizeof(buf))
		err = -EIO; /* names are cut to fit: never */
	if (err)
		reply_err(req, FS_OP_LISTXATTR, -err);
	else if (size == 0)
		fuse_reply_xattr(req, need);
	else if (size < need)
		reply_err(req, FS_OP_LISTXATTR, ERANGE);
	else
		fuse_reply_buf(req, buf, need);
	node_xattrs_clear(&x);
}

static void fs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
			 off_t length, struct fuse_file_info *fi)
{
	COUNT_OP(req, FS_OP_FALLOCATE);
	reply_err(req, FS_OP_FALLOCATE, EROFS);
}

const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_conn_init,
	.lookup = fs_lookup,
	.forget = fs_forget,
	.forget_multi = fs_forget_multi,
	.getattr = fs_getattr,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.readdirplus = fs_readdirplus,
	.releasedir = fs_releasedir,
	.open = fs_open,
	.read = fs_read,
	.release = fs_release,
	.statfs = fs_statfs,
	.setattr = fs_setattr,
	.mknod = fs_mknod,
	.mkdir = fs_mkdir,
	.unlink = fs_unlink,
	.rmdir = fs_rmdir,
	.symlink = fs_symlink,
	.rename = fs_rename,
	.link = fs_link,
	.write = fs_write,
	.create = fs_create,
	.setxattr = fs_setxattr,
	.getxattr = fs_getxattr,
	.listxattr = fs_listxattr,
	.removexattr = fs_removexattr,
	.fallocate = fs_fallocate,
};
