/* The platform's fields of an object where tools look for them: extended
 * attributes of its folder and of its files in every view (user.avala.*),
 * read from the listing, never from the network. A dataset's folder tells
 * which listing it shows, and the mount's root its counters
 * (user.avalafs.*), as CernVM-FS's user.hitrate and its kin do. */
#include "node_xattr.h"

#include "cache.h"
#include "catalog.h"
#include "config.h"
#include "fetch.h"
#include "item.h"
#include "item_json.h"
#include "objects.h"
#include "stream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The object's fields shown, by their names in its JSON. */
static const char *const fields[] = {
	"uid", "key", "status", "created_at", "updated_at", "annotations_count",
};

static int add(struct node_xattrs *x, const char *name, char *value)
{
	if (!value)
		return -ENOMEM;
	if (x->n == NODE_XATTR_MAX) {
		free(value);
		return 0;
	}
	snprintf(x->a[x->n].name, sizeof(x->a[x->n].name), "%s", name);
	x->a[x->n].value = value;
	x->a[x->n].len = strlen(value);
	x->n++;
	return 0;
}

static int addf(struct node_xattrs *x, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int addf(struct node_xattrs *x, const char *name, const char *fmt, ...)
{
	char *value = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&value, fmt, ap) < 0)
		value = NULL;
	va_end(ap);
	return add(x, name, value);
}

/* The root: what a user asks of a mount first. */
static int root_xattrs(struct node_env *env, struct node_xattrs *x)
{
	struct cache_stats cs;
	struct fetch_stats fst;
	struct timespec now;
	uint64_t cached, all;
	int err;

	cache_get_stats(stream_cache(env->stream), &cs);
	fetch_get_stats(stream_fetch(env->stream), &fst);
	clock_gettime(CLOCK_REALTIME, &now);
	cached = cs.disk_read + cs.memory_read;
	all = cached + cs.filled;
	err = addf(x, "user.avalafs.version", "%s", PACKAGE_VERSION);
	if (!err)
		err = addf(x, "user.avalafs.pid", "%ld", (long)getpid());
	if (!err)
		err = addf(x, "user.avalafs.uptime", "%lld",
			   (long long)(now.tv_sec - env->mounted.tv_sec));
	/* bytes found in the disk cache or ready in memory (what
	 * readahead and prefetch brought included) against those and the
	 * bytes fetched: CernVM-FS's user.hitrate, by bytes */
	if (!err)
		err = addf(x, "user.avalafs.hitrate", "%.1f",
			   all ? 100.0 * (double)cached / (double)all : 0.0);
	if (!err)
		err = addf(x, "user.avalafs.bytes_origin", "%" PRIu64,
			   cs.filled);
	if (!err)
		err = addf(x, "user.avalafs.bytes_disk", "%" PRIu64,
			   cs.disk_read);
	if (!err)
		err = addf(x, "user.avalafs.bytes_memory", "%" PRIu64,
			   cs.memory_read);
	if (!err)
		err = addf(x, "user.avalafs.requests", "%" PRIu64,
			   fst.requests);
	return err;
}

/* A dataset's folder: which listing of its items it shows (what a
 * training run records to know what it read), or how far the first one
 * came. One line of JSON. */
static int dataset_xattrs(struct node_env *env, struct dataset *ds,
			  struct node_xattrs *x)
{
	struct catalog_listing_info li;
	char listed[32] = "", digest[33];
	uint64_t gen = 0;
	struct tm tm;
	time_t t;
	int err;

	/* a first listing on its way: how far it came, with no wait */
	catalog_listing_info(env->cat, ds, ITEM_KIND_ITEM, &li);
	err = li.gen || !li.building
		      ? catalog_listing_digest(env->cat, ds, ITEM_KIND_ITEM,
					       &gen, digest)
		      : -ENOENT;
	if (!err && gen != li.gen) /* adopted, or replaced, meanwhile */
		catalog_listing_info(env->cat, ds, ITEM_KIND_ITEM, &li);
	if (err == -ENOMEM)
		return err;
	if (err || gen != li.gen)
		return addf(x, "user.avalafs.listing",
			    "{\"state\":\"%s\",\"items_so_far\":%" PRId64
			    ",\"pages\":%" PRIu64 "}",
			    fresh_state_name(li.state), li.building, li.pages);
	t = (time_t)li.listed_at;
	if (gmtime_r(&t, &tm))
		strftime(listed, sizeof(listed), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return addf(x, "user.avalafs.listing",
		    "{\"generation\":%" PRIu64 ",\"items\":%" PRId64
		    ",\"listed_at\":\"%s\",\"state\":\"%s\","
		    "\"digest\":\"xxh3-128:%s\"}",
		    gen, li.objects, listed, fresh_state_name(li.state),
		    digest);
}

/* Takes a field of the object as user.avala.<name>. */
static int add_field(void *p, const char *name, char *text)
{
	char full[NODE_XATTR_NAME];

	snprintf(full, sizeof(full), "user.avala.%s", name);
	return add(p, full, text);
}

/* An object's folder or file: its fields, as listed. */
static int object_xattrs(struct node_env *env, const struct node *n,
			 struct node_xattrs *x)
{
	struct item *it = NULL;
	int err = objects_get(env->objects, env->op, n->ds, node_id_kind(n->id),
			      node_id_oid(n->id), &it);

	if (err == -ENOENT)
		return 0; /* gone since: nothing to say of it */
	if (err)
		return err;
	err = item_json_fields(it, fields, sizeof(fields) / sizeof(*fields),
			       add_field, x);
	if (!err)
		err = addf(x, "user.avala.dataset", "%s/%s",
			   dataset_owner(n->ds), dataset_slug(n->ds));
	item_unref(it);
	return err;
}

int node_xattrs_of(struct node_env *env, const struct node *n,
		   struct node_xattrs *x)
{
	int err = 0;

	memset(x, 0, sizeof(*x));
	if (n->ops == &node_root_ops)
		err = root_xattrs(env, x);
	else if (n->ops == &node_dataset_ops && n->ds)
		err = dataset_xattrs(env, n->ds, x);
	else if (n->ops->object_id && n->ds)
		err = object_xattrs(env, n, x);
	if (err)
		node_xattrs_clear(x);
	return err;
}

const struct node_xattr *node_xattr_find(const struct node_xattrs *x,
					 const char *name)
{
	int i;

	for (i = 0; i < x->n; i++) {
		if (!strcmp(x->a[i].name, name))
			return &x->a[i];
	}
	return NULL;
}

size_t node_xattr_names(const struct node_xattrs *x, char *buf, size_t cap)
{
	size_t need = 0, len;
	int i;

	for (i = 0; i < x->n; i++) {
		len = strlen(x->a[i].name) + 1;
		if (buf && need + len <= cap)
			memcpy(buf + need, x->a[i].name, len);
		need += len;
	}
	return need;
}

void node_xattrs_clear(struct node_xattrs *x)
{
	int i;

	for (i = 0; i < x->n; i++)
		free(x->a[i].value);
	x->n = 0;
}
