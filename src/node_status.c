/* by-status/<status>/: the data files of the items in each status, at
 * their key's paths. The seven item statuses of DESIGN section 1 are
 * always there (empty when no item has them), and any other an item has;
 * by-status/ itself only when some item has a status. */
#include "node.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

extern struct node_ops node_by_status_ops, node_status_dir_ops;

#define N_ITEM_STATUSES ITEM_N_STATUSES

static const struct path_view status_view = {
	.dir = &node_status_dir_ops,
	.file = &node_data_ops,
	.has = STORE_HAS_DATA,
};

/* The status ids of the current listing, in a new array; the count or a
 * negative errno. */
static long listed_statuses(struct node_env *env, struct dataset *ds, int **ids)
{
	struct catalog_pin pin;
	long n;
	int err = catalog_pin(env->cat, ds, ITEM_KIND_ITEM, &pin);

	if (err)
		return err;
	n = store_statuses(dataset_store(ds), pin.gen, ids);
	catalog_unpin(env->cat, ds, ITEM_KIND_ITEM, &pin);
	return n;
}

/* by-status/ is there when an item has a status; when the listing cannot
 * tell now, it is there (its lookups then say why), never hidden for the
 * kernel's negative-entry time. */
static bool by_status_present(struct node_env *env, struct dataset *ds)
{
	int *ids;
	long n = listed_statuses(env, ds, &ids);

	if (n > 0)
		free(ids);
	return n != 0;
}

static bool is_item_status(const char *name)
{
	size_t i;

	for (i = 0; i < N_ITEM_STATUSES; i++) {
		if (strcmp(item_statuses[i], name) == 0)
			return true;
	}
	return false;
}

static int status_child(struct node_env *env, const struct node *dir,
			const char *name, struct node *c, struct stat *st,
			bool fetch)
{
	struct store *store;
	int id, *ids;
	long n, i;
	bool listed = false;

	n = listed_statuses(env, dir->ds, &ids);
	if (n < 0)
		return (int)n;
	store = dataset_store(dir->ds);
	id = store_status_id(store, name);
	for (i = 0; i < n && id; i++)
		listed |= ids[i] == id;
	free(ids);
	if (!listed && is_item_status(name))
		id = store_status_ensure(store, name);
	else if (!listed)
		return -ENOENT;
	if (id <= 0)
		return id < 0 ? id : -ENOENT;
	if (id >= 1 << (NODE_DS_SHIFT - PATH_VIEW_STATUS_SHIFT))
		return -ENOENT; /* more statuses than a node id can name */
	node_make(c, &node_status_dir_ops, dir->ds,
		  (uint64_t)id << PATH_VIEW_STATUS_SHIFT);
	if (st)
		node_stat(env, c, NULL, st);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int by_status_readdir(struct node_env *env, const struct node *dir,
			     void **state, uint64_t after, bool plus,
			     node_fill_fn fill, void *ctx)
{
	size_t n = 0, i, j;
	char **names;
	int *ids, err = 0;
	long listed = listed_statuses(env, dir->ds, &ids);

	if (listed < 0)
		return (int)listed;
	names = calloc(N_ITEM_STATUSES + listed + 1, sizeof(*names));
	for (i = 0; names && i < N_ITEM_STATUSES; i++)
		names[n++] = strdup(item_statuses[i]);
	for (i = 0; names && i < (size_t)listed; i++) {
		char *name = store_status_name(dataset_store(dir->ds), ids[i]);

		if (name && is_item_status(name))
			free(name);
		else if (name)
			names[n++] = name;
	}
	free(ids);
	for (i = 0; names && i < n; i++) {
		if (!names[i])
			err = -ENOMEM;
	}
	if (names && !err) {
		qsort(names, n, sizeof(*names), cmp_str);
		err = node_fill_sorted(env, dir, (const char *const *)names, n,
				       after, plus, status_child, fill, ctx);
	}
	for (j = 0; names && j < n; j++)
		free(names[j]);
	free(names);
	return names ? err : -ENOMEM;
}

struct node_ops node_by_status_ops = {
	.name = "by-status",
	.dataset_dir = "by-status",
	.present = by_status_present,
	.dir = true,
	.lookup = status_child,
	.readdir = by_status_readdir,
	.getattr = path_view_getattr,
};

static int status_dir_lookup(struct node_env *env, const struct node *dir,
			     const char *name, struct node *child,
			     struct stat *st, bool fetch)
{
	return path_view_lookup(env, &status_view, dir, name, child, st, fetch);
}

static int status_dir_readdir(struct node_env *env, const struct node *dir,
			      void **state, uint64_t after, bool plus,
			      node_fill_fn fill, void *ctx)
{
	return path_view_readdir(env, &status_view, dir, state, after, plus,
				 fill, ctx);
}

/* A store directory shows in the folder of every status. */
static void status_dir_shows(struct node_env *env, struct dataset *ds,
			     enum item_kind kind, uint64_t sdir,
			     void (*fn)(void *ctx, uint64_t id), void *ctx)
{
	uint64_t id;

	if (kind != ITEM_KIND_ITEM || sdir < STORE_DIR_PATHS)
		return;
	for (id = 1; id < 1 << (NODE_DS_SHIFT - PATH_VIEW_STATUS_SHIFT); id++) {
		char *name = store_status_name(dataset_store(ds), id);

		if (!name)
			break;
		free(name);
		fn(ctx, id << PATH_VIEW_STATUS_SHIFT |
				(sdir == STORE_DIR_PATHS ? 0 : sdir));
	}
}

struct node_ops node_status_dir_ops = {
	.name = "by-status folder",
	.dir = true,
	.lookup = status_dir_lookup,
	.readdir = status_dir_readdir,
	.dir_release = node_dir_unpin,
	.shows = status_dir_shows,
	.getattr = path_view_getattr,
};
