/* The generated files of an item or sequence: metadata.json, status and
 * views/<view>.json. Sizes are exact: st_size always equals the bytes read. */
#ifndef AVALAFS_RENDER_H
#define AVALAFS_RENDER_H

#include <sys/types.h>

#include "item.h"

enum render_file { RENDER_METADATA, RENDER_STATUS, RENDER_VIEW };

/* The view of @it whose file name is @name, or NULL. */
const struct view *render_find_view(const struct item *it, const char *name);

/* The size of generated file @which of @it (@view_name for RENDER_VIEW), or
 * -ENOENT when @it has no such file. */
off_t render_size(const struct item *it, enum render_file which,
		  const char *view_name);

/* Copy up to @size bytes at @off of that file into @buf. Returns the byte
 * count or -ENOENT. */
ssize_t render_read(const struct item *it, enum render_file which,
		    const char *view_name, char *buf, size_t size, off_t off);

#endif
