/* FUSE low-level operations. Every operation replies exactly once, with no
 * lock held: helpers return 0 or a negative errno and the op replies. */
#include "fs.h"
#include "log.h"
#include "render.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define OBJECT_FILES 5 /* most files an item or sequence directory holds */

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static bool is_dir(enum node_type type)
{
	return type <= NODE_VIEWS;
}

/* The file name of a node under an object directory. @buf holds it when it
 * is built. Returns NULL when @it has no such file. */
static const char *file_name(const struct item *it, enum node_type type,
			     const char *ident, char *buf, size_t cap)
{
	switch (type) {
	case NODE_METADATA:
		return "metadata.json";
	case NODE_STATUS:
		return it->status ? "status" : NULL;
	case NODE_DATA:
		if (!it->data_url)
			return NULL;
		snprintf(buf, cap, "%s%s",
			 it->kind == ITEM_KIND_ITEM ? "data" : "featured_image",
			 it->data_ext);
		return buf;
	case NODE_THUMB:
		if (!it->thumb_url)
			return NULL;
		snprintf(buf, cap, "thumbnail%s", it->thumb_ext);
		return buf;
	case NODE_VIEWS:
		return it->n_views ? "views" : NULL;
	case NODE_VIEW:
		return render_find_view(it, ident) ? ident : NULL;
	default:
		return NULL;
	}
}

static const enum node_type object_files[OBJECT_FILES] = {
	NODE_METADATA, NODE_STATUS, NODE_DATA, NODE_THUMB, NODE_VIEWS,
};

static const char *object_file_ident(enum node_type type)
{
	switch (type) {
	case NODE_METADATA:
		return "metadata.json";
	case NODE_STATUS:
		return "status";
	case NODE_DATA:
		return "data";
	case NODE_THUMB:
		return "thumbnail";
	default:
		return "views";
	}
}

/* The object (item or sequence) @n belongs to, found in the current
 * listing: @snap holds it until snapshot_put(). */
static int node_item(struct fs *fs, struct node *n, struct snapshot **snap,
		     struct item **it)
{
	int err = catalog_snapshot(fs->cat, n->ds, n->kind, snap);

	if (err)
		return err;
	*it = snapshot_find_uid(*snap, n->uid);
	if (!*it) {
		snapshot_put(*snap);
		*snap = NULL;
		return -ENOENT;
	}
	return 0;
}

static enum render_file render_of(enum node_type type)
{
	return type == NODE_METADATA ? RENDER_METADATA
	       : type == NODE_STATUS ? RENDER_STATUS
				     : RENDER_VIEW;
}

static bool has_object_time(enum node_type type)
{
	return type == NODE_OBJECT || type == NODE_VIEWS || type == NODE_DATA ||
	       type == NODE_THUMB;
}

/* Fill @st for node @n; @it is its object when it has one. */
static int fill_attr(struct fs *fs, struct node *n, struct item *it,
		     struct stat *st)
{
	int64_t size = 0;
	int err;

	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	/* an object's directories and streamed files carry its time, stable
	 * across mounts, so that rsync, make and tar see what changed; the
	 * generated files, whose text changes without it (fresh URLs, a new
	 * status), and the other directories carry the mount's */
	st->st_atim = st->st_mtim = st->st_ctim =
		it && it->has_mtime && has_object_time(n->type) ? it->mtime
								: fs->mounted;
	st->st_blksize = 65536;
	if (is_dir(n->type)) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return 0;
	}
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	if (n->type == NODE_DATA || n->type == NODE_THUMB) {
		err = stream_size(fs->stream, n->ds, it,
				  n->type == NODE_DATA ? STREAM_DATA
						       : STREAM_THUMB,
				  &size);
		if (err)
			return err;
	} else {
		off_t r = render_size(it, render_of(n->type), n->ident);

		if (r < 0)
			return (int)r;
		size = r;
	}
	st->st_size = size;
	st->st_blocks = (size + 511) / 512;
	return 0;
}

/* Attributes of @n, resolving its object when it has one. */
static int node_attr(struct fs *fs, struct node *n, struct stat *st)
{
	struct snapshot *snap = NULL;
	struct item *it = NULL;
	char buf[64];
	int err;

	if (n->type < NODE_OBJECT)
		return fill_attr(fs, n, NULL, st);
	err = node_item(fs, n, &snap, &it);
	if (!err && n->type > NODE_OBJECT &&
	    !file_name(it, n->type, n->ident, buf, sizeof(buf)))
		err = -ENOENT;
	if (!err)
		err = fill_attr(fs, n, it, st);
	snapshot_put(snap);
	return err;
}

/* Find the child @name of @parent: @out gets its node, or NULL with 0 when
 * there is none (a negative entry). Asks the API only inside a dataset. */
static int find_child(struct fs *fs, struct node *parent, const char *name,
		      struct node **out)
{
	struct snapshot *snap = NULL;
	struct dataset *ds;
	struct item *it;
	char buf[64];
	int err = 0, i;

	*out = NULL;
	switch (parent->type) {
	case NODE_ROOT:
		if (catalog_find(fs->cat, name, NULL))
			*out = tree_child(fs->tree, parent, NODE_OWNER, name,
					  NULL);
		break;
	case NODE_OWNER:
		ds = catalog_find(fs->cat, parent->ident, name);
		if (ds)
			*out = tree_child(fs->tree, parent, NODE_DATASET, name,
					  ds);
		break;
	case NODE_DATASET:
		if (strcmp(name, "items") == 0 ||
		    strcmp(name, "sequences") == 0)
			*out = tree_child(fs->tree, parent, NODE_LIST, name,
					  NULL);
		break;
	case NODE_LIST:
		err = catalog_snapshot(fs->cat, parent->ds, parent->kind,
				       &snap);
		if (err)
			return err;
		it = snapshot_find_name(snap, name);
		if (it)
			*out = tree_child(fs->tree, parent, NODE_OBJECT,
					  it->uid, NULL);
		break;
	case NODE_OBJECT:
	case NODE_VIEWS:
		err = node_item(fs, parent, &snap, &it);
		if (err)
			return err;
		if (parent->type == NODE_VIEWS) {
			if (render_find_view(it, name))
				*out = tree_child(fs->tree, parent, NODE_VIEW,
						  name, NULL);
			break;
		}
		for (i = 0; i < OBJECT_FILES; i++) {
			enum node_type t = object_files[i];
			const char *fname =
				file_name(it, t, NULL, buf, sizeof(buf));

			if (fname && strcmp(fname, name) == 0) {
				*out = tree_child(fs->tree, parent, t,
						  object_file_ident(t), NULL);
				break;
			}
		}
		break;
	default:
		return -ENOTDIR;
	}
	snapshot_put(snap);
	return err;
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct node *p = tree_get(fs->tree, parent), *n;
	int err;

	if (!p) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	err = find_child(fs, p, name, &n);
	if (!err && n)
		err = node_attr(fs, n, &e.attr);
	if (err == -ENOENT || (!err && !n)) {
		/* a negative entry: the kernel need not ask again for ttl */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->ttl;
		fuse_reply_entry(req, &e);
		return;
	}
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	e.ino = n->ino;
	e.attr_timeout = fs->ttl;
	e.entry_timeout = fs->ttl;
	tree_ref(fs->tree, n);
	if (fuse_reply_entry(req, &e) == -ENOENT)
		tree_forget(fs->tree, n->ino,
			    1); /* the request was interrupted */
}

/* Let the kernel send as many reads at once as there are connections to
 * serve them: its default of 12 would starve a loader with many workers. */
static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;

	if (fs->max_background > conn->max_background)
		conn->max_background = fs->max_background;
	conn->congestion_threshold = conn->max_background * 3 / 4;
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	tree_forget(fs_of(req)->tree, ino, nlookup);
	fuse_reply_none(req);
}

static void fs_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	size_t i;

	for (i = 0; i < count; i++)
		tree_forget(fs_of(req)->tree, forgets[i].ino,
			    forgets[i].nlookup);
	fuse_reply_none(req);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct node *n = tree_get(fs->tree, ino);
	struct stat st;
	int err = n ? node_attr(fs, n, &st) : -ENOENT;

	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_attr(req, &st, fs->ttl);
}

/* A directory listing, taken whole at opendir so offsets stay valid. */
struct dir_entry {
	char *name;
	struct node *node; /* NULL for "." and ".." */
};

struct dir_handle {
	struct fs_handle h; /* first: the list sees this */
	struct fs *fs;
	struct dir_entry *v;
	size_t n, cap;
	struct snapshot *snap; /* the listing the entries come from */
	struct item *it; /* the object, for an object or views directory */
};

void fs_handles_init(struct fs *fs)
{
	pthread_mutex_init(&fs->handles_lock, NULL);
	fs->handles.prev = fs->handles.next = &fs->handles;
}

static void handle_add(struct fs *fs, struct fs_handle *h,
		       void (*release)(struct fs_handle *h))
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
	if (!fs)
		return; /* never added */
	pthread_mutex_lock(&fs->handles_lock);
	h->prev->next = h->next;
	h->next->prev = h->prev;
	pthread_mutex_unlock(&fs->handles_lock);
}

void fs_handles_release(struct fs *fs)
{
	for (;;) {
		struct fs_handle *h;

		pthread_mutex_lock(&fs->handles_lock);
		h = fs->handles.next == &fs->handles ? NULL : fs->handles.next;
		pthread_mutex_unlock(&fs->handles_lock);
		if (!h)
			break;
		h->release(h); /* removes it from the list */
	}
	pthread_mutex_destroy(&fs->handles_lock);
}

static int dir_add(struct dir_handle *d, const char *name, struct node *node)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		struct dir_entry *v = realloc(d->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	d->v[d->n].name = strdup(name);
	if (!d->v[d->n].name)
		return -ENOMEM;
	d->v[d->n++].node = node;
	return 0;
}

static void dir_free(struct dir_handle *d)
{
	size_t i;

	if (!d)
		return;
	handle_remove(d->fs, &d->h);
	for (i = 0; i < d->n; i++)
		free(d->v[i].name);
	free(d->v);
	snapshot_put(d->snap);
	free(d);
}

/* Add a child to @d, creating its node; -ENOMEM when that fails. */
static int dir_add_child(struct fs *fs, struct dir_handle *d,
			 struct node *parent, enum node_type type,
			 const char *name, const char *ident,
			 struct dataset *ds)
{
	struct node *n = tree_child(fs->tree, parent, type, ident, ds);

	return n ? dir_add(d, name, n) : -ENOMEM;
}

static int fill_dir(struct fs *fs, struct node *n, struct dir_handle *d)
{
	struct dataset **sets;
	char **owners, buf[64];
	long count, i;
	int err = 0;

	switch (n->type) {
	case NODE_ROOT:
		catalog_discover(fs->cat, false);
		count = catalog_owners(fs->cat, &owners);
		if (count < 0)
			return (int)count;
		for (i = 0; i < count; i++) {
			if (!err)
				err = dir_add_child(fs, d, n, NODE_OWNER,
						    owners[i], owners[i], NULL);
			free(owners[i]);
		}
		free(owners);
		return err;
	case NODE_OWNER:
		catalog_discover(fs->cat, false);
		count = catalog_datasets(fs->cat, n->ident, &sets);
		if (count < 0)
			return (int)count;
		for (i = 0; i < count && !err; i++)
			err = dir_add_child(fs, d, n, NODE_DATASET,
					    dataset_slug_name(sets[i]),
					    dataset_slug_name(sets[i]),
					    sets[i]);
		free(sets);
		return err;
	case NODE_DATASET:
		err = dir_add_child(fs, d, n, NODE_LIST, "items", "items",
				    NULL);
		if (!err)
			err = dir_add_child(fs, d, n, NODE_LIST, "sequences",
					    "sequences", NULL);
		return err;
	case NODE_LIST:
		err = catalog_snapshot(fs->cat, n->ds, n->kind, &d->snap);
		for (i = 0; !err && i < (long)d->snap->n; i++) {
			struct item *it = d->snap->v[i];

			if (__atomic_load_n(&it->gone, __ATOMIC_RELAXED))
				continue;
			err = dir_add_child(fs, d, n, NODE_OBJECT, it->name,
					    it->uid, NULL);
		}
		return err;
	case NODE_OBJECT:
	case NODE_VIEWS:
		err = node_item(fs, n, &d->snap, &d->it);
		if (err)
			return err;
		if (n->type == NODE_VIEWS) {
			for (i = 0; !err && i < (long)d->it->n_views; i++)
				err = dir_add_child(fs, d, n, NODE_VIEW,
						    d->it->views[i].name,
						    d->it->views[i].name, NULL);
			return err;
		}
		for (i = 0; !err && i < OBJECT_FILES; i++) {
			enum node_type t = object_files[i];
			const char *name =
				file_name(d->it, t, NULL, buf, sizeof(buf));

			if (name)
				err = dir_add_child(fs, d, n, t, name,
						    object_file_ident(t), NULL);
		}
		return err;
	default:
		return -ENOTDIR;
	}
}

static void dir_release(struct fs_handle *h)
{
	dir_free((struct dir_handle *)h);
}

static void fs_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct node *n = tree_get(fs->tree, ino);
	struct dir_handle *d;
	int err;

	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	d = calloc(1, sizeof(*d));
	err = d ? dir_add(d, ".", NULL) : -ENOMEM;
	if (!err)
		err = dir_add(d, "..", NULL);
	if (!err)
		err = fill_dir(fs, n, d);
	if (err) {
		dir_free(d);
		fuse_reply_err(req, -err);
		return;
	}
	d->fs = fs;
	handle_add(fs, &d->h, dir_release);
	fi->fh = (uintptr_t)d;
	fi->cache_readdir = 0;
	if (fuse_reply_open(req, fi) == -ENOENT)
		dir_free(d);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct fs *fs = fs_of(req);
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;
	struct node *self = tree_get(fs->tree, ino);
	struct snapshot *snap = d->snap, *cur = NULL;
	struct item *self_it = d->it;
	char *buf = malloc(size);
	size_t used = 0;
	int err = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* the entries are those of opendir, their attributes those of the
	 * listing now: a refresh since must not send older times or sizes */
	if (plus && snap) {
		cur = catalog_peek(fs->cat, self->ds, self->kind);
		if (cur && cur != snap) {
			struct item *now =
				self_it ? snapshot_find_uid(cur, self_it->uid)
					: NULL;

			snap = cur;
			if (now)
				self_it = now;
		}
	}
	for (; off >= 0 && (size_t)off < d->n; off++) {
		struct dir_entry *de = &d->v[off];
		struct fuse_entry_param e;
		size_t need;

		memset(&e, 0, sizeof(e));
		if (!de->node) {
			/* "." and "..": not looked up, so not counted */
			struct node *dot =
				off == 0 || !self->parent ? self : self->parent;

			e.attr.st_ino = dot->ino;
			e.attr.st_mode = S_IFDIR;
		} else if (plus) {
			struct item *it =
				de->node->type > NODE_OBJECT ? self_it
				: de->node->type == NODE_OBJECT
					? snapshot_find_uid(snap, de->node->uid)
					: NULL;

			if (de->node->type >= NODE_OBJECT && !it)
				continue; /* gone since opendir */
			err = fill_attr(fs, de->node, it, &e.attr);
			if (err == -ENOENT) {
				err = 0;
				continue;
			}
			if (err)
				break;
			e.ino = de->node->ino;
			e.attr_timeout = fs->ttl;
			e.entry_timeout = fs->ttl;
		} else {
			e.attr.st_ino = de->node->ino;
			e.attr.st_mode = is_dir(de->node->type) ? S_IFDIR
								: S_IFREG;
		}
		if (plus)
			need = fuse_add_direntry_plus(req, buf + used,
						      size - used, de->name, &e,
						      off + 1);
		else
			need = fuse_add_direntry(req, buf + used, size - used,
						 de->name, &e.attr, off + 1);
		if (need > size - used)
			break; /* did not fit: not sent, so not counted */
		used += need;
		if (plus && de->node)
			tree_ref(fs->tree, de->node);
	}
	/* an error after some entries: send those, the next call reports it */
	if (err && used == 0)
		fuse_reply_err(req, -err);
	else
		fuse_reply_buf(req, buf, used);
	snapshot_put(cur);
	free(buf);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void fs_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	dir_free((struct dir_handle *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* An open file: the object as it was at open, so one open reads one
 * version of a generated file. */
struct open_file {
	struct fs_handle h; /* first: the list sees this */
	struct fs *fs;
	struct snapshot *snap;
	struct item *it;
	struct node *node;
	struct stream_reader *reader; /* data files: readahead state */
};

static void open_file_free(struct open_file *of)
{
	handle_remove(of->fs, &of->h);
	snapshot_put(of->snap);
	stream_reader_free(of->reader);
	free(of);
}

static void open_file_release(struct fs_handle *h)
{
	open_file_free((struct open_file *)h);
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct node *n = tree_get(fs->tree, ino);
	struct open_file *of;
	char buf[64];
	int err;

	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (is_dir(n->type)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	of = calloc(1, sizeof(*of));
	if (!of) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	of->node = n;
	err = node_item(fs, n, &of->snap, &of->it);
	if (!err && !file_name(of->it, n->type, n->ident, buf, sizeof(buf)))
		err = -ENOENT;
	if (!err && (n->type == NODE_DATA || n->type == NODE_THUMB)) {
		bool keep;

		of->reader = stream_open(fs->stream, n->ds, of->it,
					 n->type == NODE_DATA ? STREAM_DATA
							      : STREAM_THUMB,
					 n->ino, fi->flags & O_DIRECT, &keep);
		if (!of->reader)
			err = -ENOMEM;
		fi->keep_cache = keep;
	}
	if (err) {
		open_file_free(of);
		fuse_reply_err(req, -err);
		return;
	}
	of->fs = fs;
	handle_add(fs, &of->h, open_file_release);
	fi->fh = (uintptr_t)of;
	if (fuse_reply_open(req, fi) == -ENOENT)
		open_file_free(of);
}

/* Reply with the bytes of a data file straight from the cache's blocks:
 * one writev to the kernel, no copy on our side. */
static void read_data(fuse_req_t req, struct fs *fs, struct open_file *of,
		      size_t size, off_t off)
{
	struct node *n = of->node;
	struct stream_view v;
	int err, count;

	err = stream_read_view(fs->stream, of->reader, n->ds, of->it,
			       n->type == NODE_DATA ? STREAM_DATA
						    : STREAM_THUMB,
			       size, off, &v);
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	for (count = 0; count < v.n && v.iov[count].iov_len; count++)
		;
	/* bytes the kernel did not take are not in its page cache */
	if (fuse_reply_iov(req, v.iov, count) != 0)
		v.drop_behind = false;
	stream_view_release(fs->stream, &v);
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct open_file *of = (struct open_file *)(uintptr_t)fi->fh;
	struct node *n = of->node;
	char *buf;
	ssize_t got;

	if (n->type == NODE_DATA || n->type == NODE_THUMB) {
		read_data(req, fs, of, size, off);
		return;
	}
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	got = render_read(of->it, render_of(n->type), n->ident, buf, size, off);
	if (got < 0)
		fuse_reply_err(req, (int)-got);
	else
		fuse_reply_buf(req, buf, got);
	free(buf);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	open_file_free((struct open_file *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;

	memset(&st, 0, sizeof(st));
	st.f_bsize = 65536;
	st.f_frsize = 65536;
	st.f_namemax = NAMES_MAX;
	fuse_reply_statfs(req, &st);
}

/* Everything that would change the tree: the mount is read-only. */
static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	fuse_reply_err(req, EROFS);
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	fuse_reply_err(req, EROFS);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	fuse_reply_err(req, EROFS);
}

static void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	fuse_reply_err(req, EROFS);
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	fuse_reply_err(req, EROFS);
}

static void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void fs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
			 off_t length, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

/* No getxattr or listxattr: libfuse answers ENOSYS, and the kernel stops
 * asking, where ENODATA would cost `ls -l` three requests per file. */
const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_init,
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
	.rmdir = fs_unlink,
	.symlink = fs_symlink,
	.rename = fs_rename,
	.link = fs_link,
	.write = fs_write,
	.create = fs_create,
	.setxattr = fs_setxattr,
	.removexattr = fs_removexattr,
	.fallocate = fs_fallocate,
};
