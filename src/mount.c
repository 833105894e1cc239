/* Building every part of a mount, and freeing it with one unwind from
 * wherever the build stopped. */
#include "mount.h"
#include "api.h"
#include "cache.h"
#include "catalog.h"
#include "disk.h"
#include "fetch.h"
#include "http.h"
#include "key.h"
#include "log.h"
#include "metrics.h"
#include "session.h"
#include "stream.h"
#include "tree.h"
#include "node.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

/* The bytes the listings take, counted in disk_cache_size. */
static int64_t listings_bytes(void *ctx)
{
	const struct cachedir *cd = ctx;

	return cachedir_bytes(cd->listings_fd);
}

/* A listing needs room: the data cache gives it back. */
static int64_t give_back(void *ctx)
{
	return disk_give_back(ctx);
}

/* The session first: a bad mount point or FUSE option is said before
 * anything is asked of the API. */
static int build_session(struct mount *m)
{
	/* before libfuse resolves the path, which a dead mount fails */
	if (session_check_mountpoint(m->o.mountpoint) ||
	    fuse_parse_cmdline(&m->args, &m->cmd) != 0)
		return -1;
	m->se = session_new(&m->args, m->o.max_read, &m->fs);
	if (!m->se)
		return -1;
	log_set_debug(m->cmd.debug);
	/* bound first: an address in use refuses the mount at once */
	if (m->o.metrics && !(m->metrics = metrics_open(m->o.metrics)))
		return -1;
	return 0;
}

static int build_key(struct mount *m)
{
	m->keys = key_source_new(m->o.api_key_file, getenv("AVALA_API_KEY"));
	if (!m->keys)
		return -1;
	m->key = key_source_get(m->keys);
	if (!m->key) {
		/* an unreadable key file has said so already */
		if (!m->o.api_key_file)
			fprintf(stderr,
				"avalafs: no API key: set AVALA_API_KEY "
				"or -o api_key_file=PATH\n");
		return -1;
	}
	/* no core dump of the mount (nor a debugger of the same user) gets
	 * the key, as with ssh-agent; -d is for debugging */
	if (!m->cmd.debug)
		prctl(PR_SET_DUMPABLE, 0);
	return 0;
}

static int build_client(struct mount *m)
{
	const struct options *o = &m->o;

	m->api_url = options_api_url(o);
	/* a list: the caches first, the API itself last */
	if (strchr(m->api_url, ';')) {
		m->api_via = strdup(m->api_url);
		if (!m->api_via)
			return -1;
		*strrchr(m->api_via, ';') = '\0';
		m->api_url = m->api_via + strlen(m->api_via) + 1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "avalafs: libcurl failed to start\n");
		return -1;
	}
	m->curl = true;
	m->http = http_new(&(struct http_config){
		.api_url = m->api_url,
		.api_via = m->api_via,
		.ca_file = o->ca_file,
		.data_proxy = o->data_proxy,
		.data_proxy_auth = o->data_proxy_auth,
		.data_proxy_reset_s = o->data_proxy_reset,
		.timeout_s = o->timeout,
		.retry_after_max_s = o->retry_after_max,
		.max_conns = o->max_conns,
	});
	if (!m->http)
		return -1;
	http_set_key_source(m->http, m->keys);
	/* NULL is said with the parts built next */
	m->api = api_new(m->http, &(struct api_config){
					  .base_url = m->api_url,
					  .page_size = o->page_size,
					  .ordering = o->ordering,
					  .list_timeout_s = o->list_timeout,
				  });
	return 0;
}

/* The cache folder, the catalog of listings kept in it, and the read
 * path: the data caches in memory and on disk, the fetches and streams. */
static int build_caches(struct mount *m)
{
	const struct options *o = &m->o;
	struct catalog_config cat_cfg;

	if (cachedir_open(&m->cache_dir, o->cache_dir))
		return -1;
	/* a temporary folder (cache_dir=none) keeps no data: it would be
	 * gone before anyone read it again */
	if (!m->cache_dir.temporary && o->disk_cache_size > 0)
		m->disk = disk_open(&(struct disk_config){
			.root_fd = m->cache_dir.root_fd,
			.root = m->cache_dir.root,
			.cap = o->disk_cache_size,
			.others = listings_bytes,
			.ctx = &m->cache_dir,
		});
	cat_cfg = (struct catalog_config){
		.ttl_s = o->ttl,
		.wait_ms = (int64_t)o->timeout * 1000,
		/* dataset= names what the mount shows, and all it asks for */
		.discover = o->n_datasets == 0,
		.origin = m->api_url,
		.store_dir = m->cache_dir.listings,
		.store_dir_fd = m->cache_dir.listings_fd,
		.store_budget = m->cache_dir.temporary ? 0 : o->disk_cache_size,
		.give_back = m->disk ? give_back : NULL,
		.give_back_ctx = m->disk,
		.replaced = fs_listing_replaced,
		.replaced_ctx = &m->fs,
	};
	m->cat = m->api ? catalog_new(m->api, &cat_cfg) : NULL;
	m->cache = cache_new(o->cache_size, m->disk);
	m->fetch = m->cache ? fetch_new(m->http, m->cache, o->max_conns) : NULL;
	m->stream = m->fetch ? stream_new(m->cache, m->fetch,
					  &(struct stream_config){
						  .small_file = DISK_WHOLE_MAX,
						  .readahead_max = o->readahead,
						  .connections = o->max_conns,
						  .prefetch = o->prefetch,
					  },
					  &node_order_ops, &m->fs.env)
			     : NULL;
	if (!m->api || !m->cat || !m->stream) {
		fprintf(stderr, "avalafs: out of memory\n");
		return -1;
	}
	return 0;
}

int mount_build(struct mount *m)
{
	if (build_session(m) || build_key(m) || build_client(m) ||
	    build_caches(m))
		return -1;
	return 0;
}

int mount_build_fs(struct mount *m)
{
	const struct options *o = &m->o;
	struct fs *fs = &m->fs;

	node_init();
	fs->env.cat = m->cat;
	fs->tree = tree_new();
	if (!fs->tree || fs_init(fs))
		return -1;
	fs->env.stream = m->stream;
	fs->env.prefetch = o->prefetch > 0;
	fs->ttl = o->ttl;
	fs->xattr = o->xattr;
	fs->env.wait_ms = (int64_t)o->timeout * 1000;
	fs->env.max_background = o->max_conns;
	fs->env.uid = o->uid != (uid_t)-1 ? o->uid : getuid();
	fs->env.gid = o->gid != (gid_t)-1 ? o->gid : getgid();
	clock_gettime(CLOCK_REALTIME, &fs->env.mounted);
	return 0;
}

void mount_free(struct mount *m)
{
	/* no scrape, listing or fetch may call into what is freed next */
	metrics_stop(m->metrics);
	if (m->http)
		http_cancel_all(m->http);
	if (m->cat)
		catalog_quiesce(m->cat);
	if (m->fs.env.objects)
		fs_destroy(&m->fs);
	tree_free(m->fs.tree);
	fetch_free(m->fetch);
	stream_free(m->stream);
	cache_free(m->cache);
	disk_close(m->disk);
	catalog_free(m->cat);
	cachedir_close(&m->cache_dir);
	api_free(m->api);
	http_free(m->http);
	if (m->curl)
		curl_global_cleanup();
	if (m->key)
		memset(m->key, 0, strlen(m->key));
	free(m->key);
	free(m->api_via);
	key_source_free(m->keys);
	metrics_free(m->metrics);
	/* last, after the tree and stream are gone: safe because fs_ops has
	 * no .destroy that could still reach them */
	if (m->se)
		fuse_session_destroy(m->se);
	free(m->cmd.mountpoint);
	options_free(&m->o);
	fuse_opt_free_args(&m->args);
}
