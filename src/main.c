/* avalafs: the start-up order and its checks: every part of a mount built
 * in order and freed in reverse by one function, the session run between.
 * Every failure of a start reaches the shell that ran it, also without -f. */
#include "api.h"
#include "cachedir.h"
#include "catalog.h"
#include "config.h"
#include "fs.h"
#include "http.h"
#include "key.h"
#include "log.h"
#include "metrics.h"
#include "mount.h"
#include "options.h"
#include "session.h"
#include "stream.h"
#include "tree.h"
#include "view.h"

#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

static void version(void)
{
	curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);

	printf("avalafs %s\n"
	       "FUSE library %s, libcurl %s\n"
	       "Copyright (C) 2026 The avalafs authors.\n"
	       "License MIT: <https://opensource.org/licenses/MIT>.\n"
	       "This is free software: you are free to change and redistribute it.\n"
	       "There is NO WARRANTY, to the extent permitted by law.\n",
	       PACKAGE_VERSION, fuse_pkgversion(), cv->version);
}

/* Split OWNER/SLUG, which options.c checked has one '/'; 0 or -ENOMEM. */
static int split_dataset(const char *spec, char **owner, char **slug)
{
	const char *slash = strchr(spec, '/');

	*owner = strndup(spec, slash - spec);
	*slug = strdup(slash + 1);
	return *owner && *slug ? 0 : -ENOMEM;
}

/* Say, in one line, why the API at @api_url did not answer as it must. */
static void say_unreachable(const char *api_url, const struct api_answer *ans)
{
	if (ans->err == -EPROTO)
		fprintf(stderr, "avalafs: the API at %s is not trusted: %s\n",
			api_url, ans->why);
	else if (ans->status == 429 && ans->retry_after >= 0)
		fprintf(stderr,
			"avalafs: the API at %s answered HTTP 429, asked to "
			"retry after %ld s\n",
			api_url, ans->retry_after);
	else if (ans->status)
		fprintf(stderr, "avalafs: the API at %s answered HTTP %ld\n",
			api_url, ans->status);
	else
		fprintf(stderr, "avalafs: cannot reach the API at %s: %s\n",
			api_url, ans->why);
}

/* Say why the start-up request for @dataset was refused. */
static void say_refused(const char *dataset, const struct options *o,
			const char *api_url, const struct api_answer *ans)
{
	/* the server's words go through the log, which escapes them */
	if (ans->status == 400 && o->ordering)
		log_err("ordering=%s: refused by the API (HTTP 400)%s%s",
			o->ordering, *ans->why ? ": " : "", ans->why);
	else if (ans->status == 400)
		log_err("dataset %s: the API answered HTTP 400%s%s", dataset,
			*ans->why ? ": " : "", ans->why);
	else if (ans->status == 401)
		fprintf(stderr,
			"avalafs: the API key was rejected (HTTP 401 from "
			"%s)\n",
			api_url);
	else if (ans->status == 403)
		fprintf(stderr,
			"avalafs: dataset %s: permission denied (HTTP 403)\n",
			dataset);
	else if (ans->status == 404)
		fprintf(stderr,
			"avalafs: dataset %s: not found at %s (HTTP 404)\n",
			dataset, api_url);
	else
		say_unreachable(api_url, ans);
}

/* Whether @ans is the API not there (no connection, no answer in time, or
 * a server error), where a listing kept on disk can be served: not a
 * refusal, a URL refused, nor TLS that does not verify. */
static bool unreachable(const struct api_answer *ans)
{
	return (ans->status == 0 &&
		(ans->err == -EHOSTUNREACH || ans->err == -EIO)) ||
	       ans->status >= 500;
}

/* With the API not there, mount @dataset from the listing kept in
 * cache_dir, if there is one: 0 (said in the log), else -1. */
static int check_offline(struct catalog *cat, const char *owner,
			 const char *slug, const struct api_answer *ans)
{
	int64_t listed_at;
	char when[32];
	time_t t;

	if (!unreachable(ans) || catalog_kept(cat, owner, slug, &listed_at))
		return -1;
	t = (time_t)listed_at;
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
	log_warn("%s/%s: %s; offline: serving the listing of %s kept in "
		 "cache_dir, and asking again",
		 owner, slug, ans->why[0] ? ans->why : "the API is not there",
		 when);
	return 0;
}

/* The start-up check of DESIGN section 4 for one dataset: one small
 * request, with the ordering the listings will ask for. 0, or -1 after one
 * line naming the cause. */
static int check_dataset(struct api *api, struct catalog *cat,
			 const char *dataset, const struct options *o,
			 const char *api_url, bool *offline)
{
	char *owner = NULL, *slug = NULL;
	struct api_answer ans;
	int err = split_dataset(dataset, &owner, &slug);

	if (!err)
		err = api_check_dataset(api, owner, slug, &ans);
	else
		ans = (struct api_answer){ .err = err, .retry_after = -1 };
	if (err && err != -ENOMEM && owner &&
	    check_offline(cat, owner, slug, &ans) == 0) {
		*offline = true;
		err = 0;
	}
	if (!err)
		err = catalog_add(cat, owner, slug);
	free(owner);
	free(slug);
	if (err == -ENOMEM)
		fprintf(stderr, "avalafs: out of memory\n");
	else if (err)
		say_refused(dataset, o, api_url, &ans);
	return err ? -1 : 0;
}

/* With no dataset= given and the API not there, mount the datasets last
 * listed that keep a complete listing in cache_dir: 0 (said in the log),
 * else -1. */
static int check_offline_discovery(struct catalog *cat,
				   const struct api_answer *ans)
{
	long kept;

	if (!unreachable(ans) || (kept = catalog_add_kept(cat)) <= 0)
		return -1;
	log_warn("%s; offline: serving the %ld dataset%s last listed from "
		 "the listings kept in cache_dir, and asking again",
		 ans->why[0] ? ans->why : "the API is not there", kept,
		 kept == 1 ? "" : "s");
	return 0;
}

/* With no dataset= given, the dataset list must answer: it checks the key
 * and says what to show (noted in cache_dir, for a start without the API).
 * An ordering is checked on the first dataset. */
static int check_discovery(struct api *api, struct catalog *cat,
			   const struct options *o, const char *api_url,
			   bool *offline)
{
	struct dataset_ref *refs;
	struct api_answer ans = { .retry_after = -1 };
	char *first = NULL;
	size_t n, i;
	int err = api_list_datasets(api, &refs, &n, &ans);

	if (err == -EACCES) {
		fprintf(stderr, "avalafs: the API key was rejected by %s\n",
			api_url);
		return -1;
	}
	if (err == -ENOENT) {
		fprintf(stderr,
			"avalafs: no dataset list at %s (HTTP 404): check "
			"api_url, or name datasets with -o "
			"dataset=OWNER/SLUG\n",
			api_url);
		return -1;
	}
	if (err && check_offline_discovery(cat, &ans) == 0) {
		*offline = true;
		return 0;
	}
	if (err) {
		say_unreachable(api_url, &ans);
		return -1;
	}
	for (i = 0; i < n; i++)
		catalog_add(cat, refs[i].owner, refs[i].slug);
	catalog_note_datasets(cat);
	/* the ordering's check: a 400 for the first dataset, nothing else */
	if (n && o->ordering &&
	    api_check_dataset(api, refs[0].owner, refs[0].slug, &ans) &&
	    ans.status == 400 &&
	    asprintf(&first, "%s/%s", refs[0].owner, refs[0].slug) >= 0) {
		say_refused(first, o, api_url, &ans);
		err = -1;
	}
	free(first);
	api_free_datasets(refs, n);
	return err;
}

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
					  &view_order_ops, &m->fs)
			     : NULL;
	if (!m->api || !m->cat || !m->stream) {
		fprintf(stderr, "avalafs: out of memory\n");
		return -1;
	}
	return 0;
}

/* Ask the API what the mount is to show, or mount offline from cache_dir
 * when it is not there. */
static int check_api(struct mount *m)
{
	char why[HTTP_WHY_MAX];
	bool offline = false;
	size_t i;

	/* a server not there is said at once, not after the deadline */
	http_set_starting(m->http, true);
	sd_notifyf(0, "STATUS=Asking %s", m->api_url);
	for (i = 0; i < m->o.n_datasets; i++)
		if (check_dataset(m->api, m->cat, m->o.datasets[i], &m->o,
				  m->api_url, &offline))
			return -1;
	if (!m->o.n_datasets &&
	    check_discovery(m->api, m->cat, &m->o, m->api_url, &offline))
		return -1;
	if (http_tier_check(m->http, why, sizeof(why))) {
		fprintf(stderr, "avalafs: %s\n", why);
		return -1;
	}
	http_set_starting(m->http, false);
	if (offline)
		http_set_offline(m->http);
	return 0;
}

static int build_fs(struct mount *m)
{
	const struct options *o = &m->o;
	struct fs *fs = &m->fs;

	view_init();
	fs->tree = tree_new();
	if (!fs->tree || fs_init(fs))
		return -1;
	fs->cat = m->cat;
	fs->stream = m->stream;
	fs->prefetch = o->prefetch > 0;
	fs->ttl = o->ttl;
	fs->xattr = o->xattr;
	fs->wait_ms = (int64_t)o->timeout * 1000;
	fs->max_background = o->max_conns;
	fs->uid = o->uid != (uid_t)-1 ? o->uid : getuid();
	fs->gid = o->gid != (gid_t)-1 ? o->gid : getgid();
	clock_gettime(CLOCK_REALTIME, &fs->mounted);
	return 0;
}

/* Every part of @m after its options, each from those before: 0, or -1
 * once the cause is said on stderr (a failed allocation may go unsaid).
 * mount_free() frees what was built either way. */
static int mount_build(struct mount *m)
{
	if (build_session(m) || build_key(m) || build_client(m) ||
	    build_caches(m) || check_api(m) || build_fs(m))
		return -1;
	return 0;
}

/* Free what mount_build() built of @m, in reverse, however far it got. */
static void mount_free(struct mount *m)
{
	/* no scrape, listing or fetch may call into what is freed next */
	metrics_stop(m->metrics);
	if (m->http)
		http_cancel_all(m->http);
	if (m->cat)
		catalog_quiesce(m->cat);
	if (m->fs.objects)
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

int main(int argc, char *argv[])
{
	/* a cache folder never opened has no descriptor to close */
	struct mount m = { .cache_dir = { .root_fd = -1, .listings_fd = -1 } };
	int ret;

	/* cache blocks are 128 KiB: keep them on the heap, where freed ones are
	 * reused, instead of an mmap and its page faults for each */
	mallopt(M_MMAP_THRESHOLD, 8 << 20);
	if (options_parse(argc, argv, &m.o, &m.args)) {
		ret = 1;
	} else if (m.o.show_help) {
		options_usage(stdout);
		ret = 0;
	} else if (m.o.show_version) {
		version();
		ret = 0;
	} else {
		ret = mount_build(&m) ? 1 : session_run(&m);
	}
	mount_free(&m);
	return ret;
}
