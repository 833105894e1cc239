/* Kinds of node, as data: each kind (the root, a dataset, items/, an item's
 * data file, a folder of files/, ...) is a table of operations, and an
 * inode number names a kind, a dataset and an identity within them, the
 * way /proc/<pid>/ entries are rows of a table. The FUSE adapter (fs.c)
 * calls these and knows no kind by name; adding a kind adds a table. */
#ifndef AVALAFS_NODE_H
#define AVALAFS_NODE_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 35
#endif
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "catalog.h"
#include "stream.h"

struct objects;
struct size_windows;

/* What every node op sees: what the kinds reach of the mount, set before
 * it and read-only after. */
struct node_env {
	struct catalog *cat; /* the listings of the datasets */
	struct objects *objects; /* recently used objects, parsed */
	struct objects_op *op; /* the listings the operation holds, or NULL */
	struct stream *stream; /* the bytes of streamed files */
	struct size_windows *size_windows; /* sizes asked for ahead */
	int64_t wait_ms; /* longest a request waits for a listing's pages */
	unsigned max_background; /* requests the kernel may have in flight */
	bool prefetch; /* opens tell the stream where their files stand */
	uid_t uid; /* the owner of every node */
	gid_t gid; /* the group of every node */
	struct timespec mounted; /* times of nodes without an object's */
};

/* An inode number is kind << NODE_KIND_SHIFT | dataset << NODE_DS_SHIFT |
 * id: 6 bits of kind, 18 of dataset, 40 of identity. */
#define NODE_KIND_SHIFT 58
#define NODE_DS_SHIFT 40
#define NODE_ID_MASK ((UINT64_C(1) << NODE_DS_SHIFT) - 1)
#define NODE_DS_MAX ((UINT64_C(1) << (NODE_KIND_SHIFT - NODE_DS_SHIFT)) - 1)

/* An object's identity: its number in the store, with a bit for
 * sequences. */
#define NODE_SEQUENCE_BIT (UINT64_C(1) << 39)

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
 * one: `find` and os.walk must not fetch). @pos is the entry's position:
 * a listing may go on after it. Returns non-zero when no more fit. */
typedef int (*node_fill_fn)(void *ctx, const char *name,
			    const struct node *child, const struct stat *st,
			    uint64_t pos);

/* The bytes of one read, in place: pieces to send, then release(). */
struct node_read {
	struct iovec *iov;
	int n;
	/* @sent: the kernel took them (they are in its page cache now) */
	void (*release)(struct node_read *r, bool sent);
	struct stream *stream; /* a streamed file's: its blocks in cv */
	struct cache_view cv;
	struct iovec one; /* a generated file's text */
};

/* An open file. */
struct node_file {
	const struct node_file_ops *ops;
};

struct node_file_ops {
	/* Up to @size bytes at @off into @r: 0 (then release @r after the
	 * reply) or a negative errno. */
	int (*read)(struct node_env *env, struct node_file *f, size_t size,
		    off_t off, struct node_read *r);
	void (*release)(struct node_env *env, struct node_file *f);
};

struct node_ops {
	const char *name; /* for log lines */
	/* every dataset shows this kind under this name, or NULL; then
	 * present() says whether it does now (NULL: always) */
	const char *dataset_dir;
	bool (*present)(struct node_env *env, struct dataset *ds);
	bool dir;
	unsigned kind; /* its row in the table, set by node_init() */
	/* directories: the child @name (its node and attributes in @child
	 * and @st), a node_child_fn; -ENOENT when there is none */
	int (*lookup)(struct node_env *env, const struct node *dir,
		      const char *name, struct node *child, struct stat *st,
		      bool fetch);
	/* directories: the entries after position @after (0: from the
	 * first), with attributes when @plus, until @fill is full; 0 or a
	 * negative errno. *@state (NULL at first) is the open directory's,
	 * for dir_release() to free: a listing pins the generation it reads
	 * there, so that positions keep their meaning */
	int (*readdir)(struct node_env *env, const struct node *dir,
		       void **state, uint64_t after, bool plus,
		       node_fill_fn fill, void *ctx);
	void (*dir_release)(struct node_env *env, const struct node *dir,
			    void *state);
	int (*getattr)(struct node_env *env, const struct node *n,
		       struct stat *st);
	/* files whose size may take a request: their attributes without
	 * one, else -EAGAIN; NULL when getattr() never makes one */
	int (*peek)(struct node_env *env, const struct node *n,
		    struct stat *st);
	/* files: open for reading; @keep_cache says whether the kernel may
	 * keep the pages it has */
	int (*open)(struct node_env *env, const struct node *n, int flags,
		    struct node_file **out, bool *keep_cache);
	/* the ids of this kind's nodes (in @ds) that show directory @sdir
	 * of the store's listing of @kind, each to @fn: for telling the
	 * kernel what a new listing changed; NULL when none does */
	void (*shows)(struct node_env *env, struct dataset *ds,
		      enum item_kind kind, uint64_t sdir,
		      void (*fn)(void *ctx, uint64_t id), void *ctx);
	bool object_id; /* its node ids are object ids (node_object_id()) */
};

/* Number the kinds. Call once before the mount. */
void node_init(void);

/* Where the kernel must forget something: a name in a directory, or (with
 * @name NULL) what it holds of an inode's attributes and pages. */
typedef void (*node_forget_fn)(void *ctx, fuse_ino_t ino, const char *name,
			       size_t len);

/* What change @c of a listing of @kind in @ds means for the nodes the
 * kernel may hold: each name and inode to forget, to @fn. */
void node_changes(struct node_env *env, struct dataset *ds, enum item_kind kind,
		  const struct store_change *c, node_forget_fn fn, void *ctx);

/* The kind numbered @kind, or NULL past the last. */
const struct node_ops *node_kind(unsigned kind);

/* The node @ino names, in @n: 0, or -ENOENT for a number no kind has. */
int node_of(struct node_env *env, fuse_ino_t ino, struct node *n);

/* Make @n the node of kind @ops in @ds with identity @id. */
void node_make(struct node *n, const struct node_ops *ops, struct dataset *ds,
	       uint64_t id);

/* The kinds other kinds make children of; the table of all is in node.c. */
extern struct node_ops node_root_ops, node_owner_ops, node_dataset_ops;
extern struct node_ops node_object_ops, node_data_ops, node_thumb_ops;

/* Helpers the kinds share (node.c). */

/* Attributes every node has: inode, owner, times (the object's @mtime when
 * given, else the mount's), and a directory's or a file's mode. */
void node_stat(struct node_env *env, const struct node *n,
	       const struct timespec *mtime, struct stat *st);

/* Only what a listing without attributes tells of @n: its inode and
 * whether it is a folder. */
void node_stat_bare(const struct node *n, struct stat *st);

/* A file of @size bytes. */
void node_stat_size(struct stat *st, int64_t size);

/* Finds the child @name of @dir: its node, and its attributes when @st is
 * not NULL. 0 or a negative errno (-ENOENT: none; -EAGAIN: the attributes
 * would need a request, and @fetch is false). */
typedef int (*node_child_fn)(struct node_env *env, const struct node *dir,
			     const char *name, struct node *c, struct stat *st,
			     bool fetch);

/* Give @fill the entries of @names (made into children by @child) after
 * position @after; the position of names[i] is i + 1. */
int node_fill_sorted(struct node_env *env, const struct node *dir,
		     const char *const *names, size_t n, uint64_t after,
		     bool plus, node_child_fn child, node_fill_fn fill,
		     void *ctx);

/* The key-path views and the lists keep a pinned generation as their open
 * directory's state. */
struct node_dir_pin {
	enum item_kind kind;
	struct catalog_pin pin;
};

/* Pin the listing of @kind for an open directory (once: *@state). */
int node_dir_pin(struct node_env *env, const struct node *dir,
		 enum item_kind kind, void **state);
void node_dir_unpin(struct node_env *env, const struct node *dir, void *state);

/* Read entries of store directory @sdir through the pin in @state with
 * @filter, after @after, handing each to @entry (which returns non-zero
 * when full), but for objects gone since the listing (objects_gone());
 * waits for the pages of a first listing as they come. */
int node_dir_entries(struct node_env *env, const struct node *dir, void *state,
		     uint64_t sdir, const struct store_filter *filter,
		     uint64_t after,
		     int (*entry)(void *ctx, const struct store_entry *e),
		     void *ctx);

/* Find @name in store directory @sdir of the listing of @kind: waits for
 * the pages of a first listing until it is there or the listing is
 * complete. 0 with @e, -ENOENT (also for an object gone since the
 * listing), or another negative errno. The pin is in @pin until
 * catalog_unpin(). */
int node_dir_lookup(struct node_env *env, const struct node *dir,
		    enum item_kind kind, uint64_t sdir, const char *name,
		    const struct store_filter *filter, struct store_entry *e,
		    struct catalog_pin *pin);

/* The key-path views (node_paths.c): a folder of the tree under a view
 * root, whose files are @file's nodes of the objects that have @has (and
 * status @status, unless STORE_NO_STATUS). */
struct path_view {
	const struct node_ops *dir; /* its folders */
	const struct node_ops *file; /* its files */
	unsigned has;
};

/* A folder's id: its status (by-status) and the store's dir id. */
#define PATH_VIEW_STATUS_SHIFT 32
#define PATH_VIEW_DIR_MASK ((UINT64_C(1) << PATH_VIEW_STATUS_SHIFT) - 1)

int path_view_lookup(struct node_env *env, const struct path_view *pv,
		     const struct node *dir, const char *name,
		     struct node *child, struct stat *st, bool fetch);
int path_view_readdir(struct node_env *env, const struct path_view *pv,
		      const struct node *dir, void **state, uint64_t after,
		      bool plus, node_fill_fn fill, void *ctx);
int path_view_getattr(struct node_env *env, const struct node *n,
		      struct stat *st);

/* The folder of a key-path view that shows store directory @sdir. */
void path_view_shows(struct node_env *env, struct dataset *ds,
		     enum item_kind kind, uint64_t sdir,
		     void (*fn)(void *ctx, uint64_t id), void *ctx);

/* The folders whose files' sizes were last asked for ahead. */
struct size_windows *path_view_size_windows_new(void);
void path_view_size_windows_free(struct size_windows *w);

/* Object identities. */

/* The kind and store number of an object identity. */
static inline enum item_kind node_id_kind(uint64_t id)
{
	return id & NODE_SEQUENCE_BIT ? ITEM_KIND_SEQUENCE : ITEM_KIND_ITEM;
}

static inline uint64_t node_id_oid(uint64_t id)
{
	return id & ~NODE_SEQUENCE_BIT;
}

static inline uint64_t node_object_id(enum item_kind kind, uint64_t oid)
{
	return oid | (kind == ITEM_KIND_SEQUENCE ? NODE_SEQUENCE_BIT : 0);
}

/* Streamed files (node_data.c). */

/* Which file of an object a streamed file is. */
enum node_which { NODE_DATA, NODE_THUMB };

/* Attributes of the data or thumbnail file node @n, with what the store
 * entry @e (may be NULL) knows of its size and time; a size no one knows
 * yet is asked for when @fetch, else -EAGAIN. */
int node_object_file_stat(struct node_env *env, const struct node *n,
			  const struct store_entry *e, struct stat *st,
			  bool fetch);

/* Where file @which of @it (of @ds) comes from: a new source in @out. 0,
 * -ENOENT when it has no such file, or -ENOMEM. */
int node_data_src(struct node_env *env, struct dataset *ds, struct item *it,
		  enum node_which which, struct fetch_src **out);

/* The orders of the listing and its folders, for stream.c (ctx: the
 * struct node_env). */
extern const struct stream_order_ops node_order_ops;

#endif
