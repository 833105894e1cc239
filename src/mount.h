/* Every part of one mount, in the order they are built; one function
 * frees them in reverse, from wherever the build stopped. */
#ifndef AVALAFS_MOUNT_H
#define AVALAFS_MOUNT_H

#include "cachedir.h"
#include "fs.h"
#include "options.h"

#include <stdbool.h>

struct mount {
	struct options o;
	struct fuse_args args; /* what FUSE is to see */
	struct fuse_cmdline_opts cmd; /* what libfuse read of it: -f, -d, ... */
	struct fuse_session *se;
	struct metrics *metrics; /* NULL: not asked for */
	struct key_source *keys;
	char *key; /* the key read at start, wiped when freed */
	const char *api_url; /* the API itself, in o, the environment or
			      * api_via */
	char *api_via; /* caches of the API before it, or NULL */
	bool curl; /* libcurl's global state made */
	struct http *http;
	struct api *api;
	struct cachedir cache_dir; /* descriptors -1 until opened */
	struct disk *disk; /* NULL: no data kept on disk */
	struct catalog *cat;
	struct cache *cache;
	struct fetch *fetch;
	struct stream *stream;
	struct fs fs; /* its tree and counters; fs_ops' userdata */
};

/* The parts of @m that come before the API is asked, after its options:
 * the session (a bad mount point or FUSE option is said before anything
 * is asked), the key, the HTTP and API client, the cache folder, the
 * catalog and the read path. 0, or -1 once the cause is said on stderr (a
 * failed allocation may go unsaid). mount_free() frees what was built
 * either way. */
int mount_build(struct mount *m);

/* The file system's part, once the API said what to show: 0 or -1. */
int mount_build_fs(struct mount *m);

/* Free what was built of @m, in reverse, however far it got. */
void mount_free(struct mount *m);

#endif
