/* Generated files, served straight from the parsed item: no copies, no
 * allocation, and the size known before any read. */
#include "render.h"
#include "item_json.h"

#include <errno.h>
#include <string.h>

const struct view *render_find_view(const struct item *it, const char *name)
{
	size_t i;

	for (i = 0; i < it->n_views; i++) {
		if (strcmp(it->views[i].name, name) == 0)
			return &it->views[i];
	}
	return NULL;
}

/* The text of a file, in up to two parts: status is "<status>" + "\n". */
static int parts(const struct item *it, enum render_file which,
		 const char *view_name, const char **p1, size_t *l1,
		 const char **p2, size_t *l2)
{
	const struct view *v;

	*p2 = NULL;
	*l2 = 0;
	switch (which) {
	case RENDER_METADATA:
		*p1 = item_json_pretty((struct item *)it, l1);
		return *p1 ? 0 : -ENOMEM;
	case RENDER_STATUS:
		if (!it->status)
			return -ENOENT;
		*p1 = it->status;
		*l1 = strlen(it->status);
		*p2 = "\n";
		*l2 = 1;
		return 0;
	case RENDER_VIEW:
		v = render_find_view(it, view_name);
		if (!v)
			return -ENOENT;
		*p1 = v->json;
		*l1 = v->json_len;
		return 0;
	}
	return -ENOENT;
}

off_t render_size(const struct item *it, enum render_file which,
		  const char *view_name)
{
	const char *p1, *p2;
	size_t l1, l2;
	int err = parts(it, which, view_name, &p1, &l1, &p2, &l2);

	return err ? err : (off_t)(l1 + l2);
}

/* Copy the part [@start, @start + @len) of @src that overlaps the window
 * [@off, @off + @size) into @buf. Returns bytes copied. */
static size_t copy_part(const char *src, size_t len, size_t start, char *buf,
			size_t size, off_t off)
{
	size_t from, to, woff;

	if (len == 0 || (size_t)off >= start + len ||
	    (size_t)off + size <= start)
		return 0;
	from = (size_t)off > start ? (size_t)off - start : 0;
	to = (size_t)off + size - start < len ? (size_t)off + size - start
					      : len;
	woff = start + from - (size_t)off;
	memcpy(buf + woff, src + from, to - from);
	return to - from;
}

ssize_t render_read(const struct item *it, enum render_file which,
		    const char *view_name, char *buf, size_t size, off_t off)
{
	const char *p1, *p2;
	size_t l1, l2;
	int err = parts(it, which, view_name, &p1, &l1, &p2, &l2);

	if (err)
		return err;
	if (off < 0)
		return -EINVAL;
	return copy_part(p1, l1, 0, buf, size, off) +
	       copy_part(p2, l2, l1, buf, size, off);
}
