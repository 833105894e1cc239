/* The command line: one table of every option (its kind, default, range and
 * help), the strict parser over it, and --help made from the same table. */
#ifndef AVALAFS_OPTIONS_H
#define AVALAFS_OPTIONS_H

#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* Every value checked against its row of the table; strings are owned. */
struct options {
	char *mountpoint; /* as given; first: offset 0 is no option's */
	char *api_url; /* NULL: $AVALA_BASE_URL, else the default */
	char *api_key_file; /* absolute; NULL: $AVALA_API_KEY */
	char *ca_file; /* absolute; NULL: the system's */
	char *data_proxy; /* the tiers (tier.h); NULL: none */
	char *data_proxy_auth; /* absolute; NULL: no token */
	int data_proxy_reset; /* seconds */
	char **datasets; /* OWNER/SLUG, each with one '/' between two names */
	size_t n_datasets;
	int page_size;
	char *ordering;
	int ttl; /* seconds, as are the next three */
	int timeout;
	int list_timeout; /* 0: never */
	int retry_after_max;
	int64_t cache_size; /* bytes, as are the next two */
	int64_t readahead;
	int64_t disk_cache_size;
	char *cache_dir; /* absolute, or "none"; NULL: the default */
	int prefetch;
	int max_conns;
	int max_threads; /* 0: max_conns + 16 */
	int64_t max_read; /* FUSE's own, passed on too; 0: not given */
	uid_t uid; /* (uid_t)-1: the mounting user */
	gid_t gid; /* (gid_t)-1: the mounting user's group */
	char *metrics; /* where the metrics are served; NULL: nowhere */
	bool xattr; /* the objects' fields as extended attributes */
	bool show_help, show_version;
};

/* Parse @argc/@argv into @o (defaults first) and put what FUSE is to see
 * in @fuse_args (FUSE's own options, the ones every mount takes, and the
 * mount point), which the caller frees with fuse_opt_free_args() whatever
 * the result. Nothing is mounted or fetched. Returns 0, or -EINVAL after
 * printing one line on stderr that names the option or word and what it
 * takes (and, for a usage error, where to find help). */
int options_parse(int argc, char *argv[], struct options *o,
		  struct fuse_args *fuse_args);

/* Free what @o holds (not @o); accepts one that options_parse() failed. */
void options_free(struct options *o);

/* The API URL (or list of caches and the API, ';' between) given, else
 * $AVALA_BASE_URL, else the default: borrowed from @o or the environment. */
const char *options_api_url(const struct options *o);

/* The threads serving FUSE requests: max_threads, else its default. */
unsigned options_max_threads(const struct options *o);

/* --help: usage, every option of the table with its range and default. */
void options_usage(FILE *f);

#endif
