/* Kinds of node, as data: each kind (the root, a dataset, items/, an item's
 * data file, a folder of files/, ...) is a table of operations, and an
 * inode number names a kind, a dataset and an identity within them, the
 * way /proc/<pid>/ entries are rows of a table. The FUSE adapter (fs.c)
 * calls these and knows no kind by name; adding a view adds a table. */
#ifndef AVALAFS_VIEW_H
#define AVALAFS_VIEW_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 35
#endif
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "catalog.h"
#include "stream.h"

/* What every node op sees: the mount. */
struct fs;

/* An inode number is kind << VIEW_KIND_SHIFT | dataset << VIEW_DS_SHIFT |
 * id: 6 bits of kind, 18 of dataset, 40 of identity. */
#define VIEW_KIND_SHIFT 58
#define VIEW_DS_SHIFT 40
#define VIEW_ID_MASK ((UINT64_C(1) << VIEW_DS_SHIFT) - 1)
#define VIEW_DS_MAX ((UINT64_C(1) << (VIEW_KIND_SHIFT - VIEW_DS_SHIFT)) - 1)

/* An object's identity: its number in the store, with a bit for
 * sequences. */
#define VIEW_SEQUENCE_BIT (UINT64_C(1) << 39)

struct node_ops;

/* What an inode number names. */
struct node {
	fuse_ino_t ino;
	const struct node_ops *ops;
	struct dataset *ds; /* NULL above the datasets */
	uint64_t id;
};

/* Hands one directory entry to the FUSE adapter: @st is whole when the
 * listing was asked for with attributes, else only its type and inode; it
 * is NULL when its attributes would cost a request (a listing never makes
 * one: `find` and os.walk must not fetch). Returns non-zero when no more
 * fit. */
typedef int (*view_fill_fn)(void *ctx, const char *name,
			    const struct node *child, const struct stat *st);

/* The bytes of one read, in place: pieces to send, then release(). */
struct view_read {
	struct iovec *iov;
	int n;
	/* @sent: the kernel took them (they are in its page cache now) */
	void (*release)(struct view_read *r, bool sent);
	struct stream *stream; /* a streamed file's: its blocks in sv */
	struct stream_view sv;
	struct iovec one; /* a generated file's text */
};

/* An open file. */
struct view_file {
	const struct view_file_ops *ops;
};

struct view_file_ops {
	/* Up to @size bytes at @off into @r: 0 (then release @r after the
	 * reply) or a negative errno. */
	int (*read)(struct fs *fs, struct view_file *f, size_t size, off_t off,
		    struct view_read *r);
	void (*release)(struct fs *fs, struct view_file *f);
};

struct node_ops {
	const char *name; /* for log lines */
	/* every dataset shows this kind under this name, or NULL; then
	 * present() says whether it does now (NULL: always) */
	const char *dataset_dir;
	bool (*present)(struct fs *fs, struct dataset *ds);
	bool dir;
	unsigned kind; /* its row in the table, set by view_init() */
	/* directories: the child @name (its node and attributes in @child
	 * and @st), a view_child_fn; -ENOENT when there is none */
	int (*lookup)(struct fs *fs, const struct node *dir, const char *name,
		      struct node *child, struct stat *st, bool fetch);
	/* directories: the entries after @after ("" first) in byte order of
	 * their names, with attributes when @plus, until @fill is full;
	 * 0 or a negative errno */
	int (*readdir)(struct fs *fs, const struct node *dir, const char *after,
		       bool plus, view_fill_fn fill, void *ctx);
	int (*getattr)(struct fs *fs, const struct node *n, struct stat *st);
	/* files: open for reading; @keep_cache says whether the kernel may
	 * keep the pages it has */
	int (*open)(struct fs *fs, const struct node *n, int flags,
		    struct view_file **out, bool *keep_cache);
};

/* Number the kinds. Call once before the mount. */
void view_init(void);

/* The kind numbered @kind, or NULL past the last. */
const struct node_ops *view_kind(unsigned kind);

/* The node @ino names, in @n: 0, or -ENOENT for a number no kind has. */
int view_node(struct fs *fs, fuse_ino_t ino, struct node *n);

/* Make @n the node of kind @ops in @ds with identity @id. */
void view_make(struct node *n, const struct node_ops *ops, struct dataset *ds,
	       uint64_t id);

/* The kinds other kinds make children of; the table of all is in view.c. */
extern struct node_ops view_root_ops, view_owner_ops, view_dataset_ops;
extern struct node_ops view_object_ops, view_data_ops, view_thumb_ops;

/* Helpers the kinds share (view.c). */

/* Attributes every node has: inode, owner, times (the object's @mtime when
 * given, else the mount's), and a directory's or a file's mode. */
void view_stat(struct fs *fs, const struct node *n,
	       const struct timespec *mtime, struct stat *st);

/* A file of @size bytes. */
void view_stat_size(struct stat *st, int64_t size);

/* Finds the child @name of @dir: its node, and its attributes when @st is
 * not NULL. 0 or a negative errno (-ENOENT: none; -EAGAIN: the attributes
 * would need a request, and @fetch is false). */
typedef int (*view_child_fn)(struct fs *fs, const struct node *dir,
			     const char *name, struct node *c, struct stat *st,
			     bool fetch);

/* Give @fill the entries of @names (sorted, made into children by @child)
 * after @after. */
int view_fill_sorted(struct fs *fs, const struct node *dir,
		     const char *const *names, size_t n, const char *after,
		     bool plus, view_child_fn child, view_fill_fn fill,
		     void *ctx);

/* The key-path views (view_paths.c): a folder of the tree under a view
 * root, whose files are @file's nodes of the objects that have @has (and
 * status @status, unless STORE_NO_STATUS). */
struct path_view {
	const struct node_ops *dir; /* its folders */
	const struct node_ops *file; /* its files */
	unsigned has;
};

/* A folder's id: its status (by-status) and the store's dir id. */
#define VIEW_PATH_STATUS_SHIFT 32
#define VIEW_PATH_DIR_MASK ((UINT64_C(1) << VIEW_PATH_STATUS_SHIFT) - 1)

int view_path_lookup(struct fs *fs, const struct path_view *pv,
		     const struct node *dir, const char *name,
		     struct node *child, struct stat *st, bool fetch);
int view_path_readdir(struct fs *fs, const struct path_view *pv,
		      const struct node *dir, const char *after, bool plus,
		      view_fill_fn fill, void *ctx);
int view_path_getattr(struct fs *fs, const struct node *n, struct stat *st);

/* The folders whose files' sizes were last asked for ahead. */
struct size_windows *view_size_windows_new(void);
void view_size_windows_free(struct size_windows *w);

/* Objects (view_object.c). */

/* A cache of parsed objects for view_object(); NULL on ENOMEM. */
struct object_cache *view_object_cache_new(void);
void view_object_cache_free(struct object_cache *c);

/* The object of @kind @oid in @ds as the current listing has it: a new
 * reference in @out (cached). 0, -ENOENT, or another negative errno. */
int view_object(struct fs *fs, struct dataset *ds, enum item_kind kind,
		uint64_t oid, struct item **out);

/* The kind and store number of an object identity. */
static inline enum item_kind view_id_kind(uint64_t id)
{
	return id & VIEW_SEQUENCE_BIT ? ITEM_KIND_SEQUENCE : ITEM_KIND_ITEM;
}

static inline uint64_t view_id_oid(uint64_t id)
{
	return id & ~VIEW_SEQUENCE_BIT;
}

static inline uint64_t view_object_id(enum item_kind kind, uint64_t oid)
{
	return oid | (kind == ITEM_KIND_SEQUENCE ? VIEW_SEQUENCE_BIT : 0);
}

/* Attributes of the data or thumbnail file node @n, with what the store
 * entry @e (may be NULL) knows of its size and time; a size no one knows
 * yet is asked for when @fetch, else -EAGAIN. */
int view_object_file_stat(struct fs *fs, const struct node *n,
			  const struct store_entry *e, struct stat *st,
			  bool fetch);

#endif
