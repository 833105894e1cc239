/* The platform's fields of an object where tools look for them: extended
 * attributes of its folder and of its files in every view (user.avala.*),
 * read from the listing, never from the network. */
#include "view_xattr.h"

#include "catalog.h"
#include "item.h"

#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The object's fields shown, by their names in its JSON. */
static const char *const fields[] = {
	"uid", "key", "status", "created_at", "updated_at", "annotations_count",
};

/* @v as the attribute's text: a string as it is, a number in decimal; NULL
 * for any other type. A new string, or NULL. */
static char *field_text(const cJSON *v)
{
	char *out = NULL;

	if (cJSON_IsString(v))
		return strdup(v->valuestring);
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
		return NULL;
	if (fabs(v->valuedouble) < 9.0e15 &&
	    v->valuedouble == (double)(int64_t)v->valuedouble) {
		if (asprintf(&out, "%" PRId64, (int64_t)v->valuedouble) < 0)
			out = NULL;
	} else if (asprintf(&out, "%.17g", v->valuedouble) < 0) {
		out = NULL;
	}
	return out;
}

static int add(struct view_xattrs *x, const char *name, char *value)
{
	if (!value)
		return -ENOMEM;
	if (x->n == VIEW_XATTR_MAX) {
		free(value);
		return 0;
	}
	snprintf(x->a[x->n].name, sizeof(x->a[x->n].name), "%s", name);
	x->a[x->n].value = value;
	x->a[x->n].len = strlen(value);
	x->n++;
	return 0;
}

int view_xattrs_of(struct fs *fs, const struct node *n, struct view_xattrs *x)
{
	struct item *it = NULL;
	cJSON *root;
	char name[VIEW_XATTR_NAME];
	size_t i;
	int err;

	memset(x, 0, sizeof(*x));
	if (!n->ops->object_id || !n->ds)
		return 0; /* none of its own */
	err = view_object(fs, n->ds, view_id_kind(n->id), view_id_oid(n->id),
			  &it);
	if (err == -ENOENT)
		return 0; /* gone since: nothing to say of it */
	if (err)
		return err;
	root = cJSON_ParseWithLength(it->json, it->json_len);
	err = root ? 0 : -EIO;
	for (i = 0; !err && i < sizeof(fields) / sizeof(*fields); i++) {
		const cJSON *v =
			cJSON_GetObjectItemCaseSensitive(root, fields[i]);

		if (!cJSON_IsString(v) && !cJSON_IsNumber(v))
			continue;
		snprintf(name, sizeof(name), "user.avala.%s", fields[i]);
		err = add(x, name, field_text(v));
	}
	if (!err) {
		char *ds = NULL;

		if (asprintf(&ds, "%s/%s", dataset_owner(n->ds),
			     dataset_slug(n->ds)) < 0)
			ds = NULL;
		err = add(x, "user.avala.dataset", ds);
	}
	cJSON_Delete(root);
	item_unref(it);
	if (err)
		view_xattrs_clear(x);
	return err;
}

const struct view_xattr *view_xattr_find(const struct view_xattrs *x,
					 const char *name)
{
	int i;

	for (i = 0; i < x->n; i++) {
		if (!strcmp(x->a[i].name, name))
			return &x->a[i];
	}
	return NULL;
}

size_t view_xattr_names(const struct view_xattrs *x, char *buf, size_t cap)
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

void view_xattrs_clear(struct view_xattrs *x)
{
	int i;

	for (i = 0; i < x->n; i++)
		free(x->a[i].value);
	x->n = 0;
}
