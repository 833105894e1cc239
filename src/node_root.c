/* The top of the tree: the root lists owners, an owner its datasets, a
 * dataset the folders every dataset has (each kind with a dataset_dir). */
#include "node.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int plain_getattr(struct node_env *env, const struct node *n,
			 struct stat *st)
{
	node_stat(env, n, NULL, st);
	return 0;
}

/* ---- the root: one folder per owner ---- */

static int owner_child(struct node_env *env, const struct node *dir,
		       const char *name, struct node *c, struct stat *st,
		       bool fetch)
{
	long index = catalog_owner_index(env->cat, name);

	if (index < 0)
		return -ENOENT;
	node_make(c, &node_owner_ops, NULL, index);
	if (st)
		node_stat(env, c, NULL, st);
	return 0;
}

static int root_readdir(struct node_env *env, const struct node *dir,
			void **state, uint64_t after, bool plus,
			node_fill_fn fill, void *ctx)
{
	char **owners;
	long n, i;
	int err;

	catalog_discover(env->cat, false);
	n = catalog_owners(env->cat, &owners);
	if (n < 0)
		return (int)n;
	err = node_fill_sorted(env, dir, (const char *const *)owners, n, after,
			       plus, owner_child, fill, ctx);
	for (i = 0; i < n; i++)
		free(owners[i]);
	free(owners);
	return err;
}

struct node_ops node_root_ops = {
	.name = "root",
	.dir = true,
	.lookup = owner_child,
	.readdir = root_readdir,
	.getattr = plain_getattr,
};

/* ---- an owner: one folder per dataset ---- */

static int dataset_child(struct node_env *env, const struct node *dir,
			 const char *name, struct node *c, struct stat *st,
			 bool fetch)
{
	char *owner = catalog_owner_name(env->cat, dir->id);
	struct dataset *ds = owner ? catalog_find(env->cat, owner, name) : NULL;

	free(owner);
	if (!ds)
		return -ENOENT;
	node_make(c, &node_dataset_ops, ds, 0);
	if (st)
		node_stat(env, c, NULL, st);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int owner_readdir(struct node_env *env, const struct node *dir,
			 void **state, uint64_t after, bool plus,
			 node_fill_fn fill, void *ctx)
{
	char *owner = catalog_owner_name(env->cat, dir->id);
	struct dataset **sets = NULL;
	const char **names;
	long n, i;
	int err;

	if (!owner)
		return -ENOENT;
	catalog_discover(env->cat, false);
	n = catalog_datasets(env->cat, owner, &sets);
	free(owner);
	if (n < 0)
		return (int)n;
	names = calloc(n ? n : 1, sizeof(*names));
	if (!names) {
		free(sets);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++)
		names[i] = dataset_slug_name(sets[i]);
	qsort(names, n, sizeof(*names), cmp_str);
	err = node_fill_sorted(env, dir, names, n, after, plus, dataset_child,
			       fill, ctx);
	free(names);
	free(sets);
	return err;
}

static int owner_getattr(struct node_env *env, const struct node *n,
			 struct stat *st)
{
	char *owner = catalog_owner_name(env->cat, n->id);

	if (!owner)
		return -ENOENT;
	free(owner);
	node_stat(env, n, NULL, st);
	return 0;
}

struct node_ops node_owner_ops = {
	.name = "owner",
	.dir = true,
	.lookup = dataset_child,
	.readdir = owner_readdir,
	.getattr = owner_getattr,
};

/* ---- a dataset: items/, sequences/ and the views ---- */

/* The kind every dataset shows as @name now, or NULL. */
static const struct node_ops *
dataset_dir_kind(struct node_env *env, struct dataset *ds, const char *name)
{
	const struct node_ops *ops;
	unsigned k;

	for (k = 0; (ops = node_kind(k)); k++) {
		if (ops->dataset_dir && strcmp(ops->dataset_dir, name) == 0 &&
		    (!ops->present || ops->present(env, ds)))
			return ops;
	}
	return NULL;
}

static int dataset_dir_child(struct node_env *env, const struct node *dir,
			     const char *name, struct node *c, struct stat *st,
			     bool fetch)
{
	const struct node_ops *ops = dataset_dir_kind(env, dir->ds, name);

	if (!ops)
		return -ENOENT;
	node_make(c, ops, dir->ds, 0);
	if (st)
		node_stat(env, c, NULL, st);
	return 0;
}

static int dataset_readdir(struct node_env *env, const struct node *dir,
			   void **state, uint64_t after, bool plus,
			   node_fill_fn fill, void *ctx)
{
	const struct node_ops *ops;
	const char *names[64];
	size_t n = 0;
	unsigned k;

	for (k = 0; (ops = node_kind(k)) && n < 64; k++) {
		if (ops->dataset_dir)
			names[n++] = ops->dataset_dir;
	}
	qsort(names, n, sizeof(*names), cmp_str);
	return node_fill_sorted(env, dir, names, n, after, plus,
				dataset_dir_child, fill, ctx);
}

struct node_ops node_dataset_ops = {
	.name = "dataset",
	.dir = true,
	.lookup = dataset_dir_child,
	.readdir = dataset_readdir,
	.getattr = plain_getattr,
};
