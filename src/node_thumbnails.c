/* thumbnails/: each item's thumbnail at its key's path, under the name its
 * data file has in files/, so that the two views map one to one. */
#include "node.h"

extern struct node_ops node_thumbnails_ops;

static const struct path_view thumbnails_view = {
	.dir = &node_thumbnails_ops,
	.file = &node_thumb_ops,
	.has = STORE_HAS_THUMB,
};

static int thumbnails_lookup(struct node_env *env, const struct node *dir,
			     const char *name, struct node *child,
			     struct stat *st, bool fetch)
{
	return path_view_lookup(env, &thumbnails_view, dir, name, child, st,
				fetch);
}

static int thumbnails_readdir(struct node_env *env, const struct node *dir,
			      void **state, uint64_t after, bool plus,
			      node_fill_fn fill, void *ctx)
{
	return path_view_readdir(env, &thumbnails_view, dir, state, after, plus,
				 fill, ctx);
}

struct node_ops node_thumbnails_ops = {
	.name = "thumbnails",
	.dataset_dir = "thumbnails",
	.dir = true,
	.lookup = thumbnails_lookup,
	.readdir = thumbnails_readdir,
	.dir_release = node_dir_unpin,
	.getattr = path_view_getattr,
	.shows = path_view_shows,
};
