/* libFuzzer target: the name rules. Input lines are "uid\tkey" (no tab: no
 * key); every object must get a name of at most 255 bytes, without '/',
 * not "." or "..", and distinct from all the others. */
#include "names.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct names_input in[64];
	char *copy = malloc(size + 1), *line, *save = NULL, *out[64];
	size_t n = 0, i, j;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	for (line = strtok_r(copy, "\n", &save); line && n < 64;
	     line = strtok_r(NULL, "\n", &save)) {
		char *tab = strchr(line, '\t');

		if (tab)
			*tab = '\0';
		if (!*line)
			continue; /* a uid is never empty */
		in[n].uid = line;
		in[n].key = tab ? tab + 1 : NULL;
		in[n].key_len = tab ? strlen(tab + 1) : 0;
		in[n].prev = NULL;
		n++;
	}
	if (names_assign(in, n, out) == 0) {
		for (i = 0; i < n; i++) {
			if (strlen(out[i]) > NAMES_MAX || strchr(out[i], '/') ||
			    !strcmp(out[i], ".") || !strcmp(out[i], "..") ||
			    !*out[i])
				abort();
			for (j = 0; j < i; j++) {
				if (!strcmp(out[i], out[j]))
					abort();
			}
		}
		for (i = 0; i < n; i++)
			free(out[i]);
	}
	free(copy);
	return 0;
}
