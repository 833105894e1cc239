/* avalafs: the start-up order and its checks: every part of a mount built
 * in order and freed in reverse by one function, the session run between.
 * Every failure of a start reaches the shell that ran it, also without -f. */
#include "api.h"
#include "catalog.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "mount.h"
#include "options.h"
#include "session.h"

#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

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
		ret = mount_build(&m) || check_api(&m) || mount_build_fs(&m)
			      ? 1
			      : session_run(&m);
	}
	mount_free(&m);
	return ret;
}
