/* Every part of one mount, in the order main.c builds them; one function
 * there frees them in reverse, from wherever the build stopped. */
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

#endif
