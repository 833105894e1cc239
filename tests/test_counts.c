/* Unit tests of src/tree.c: lookup counts kept exactly through growth,
 * shrinking and deletions in the middle of probe runs. */
#include "tree.h"

#include <stdlib.h>

#include "check.h"

#define N 20000

int main(void)
{
	static uint64_t want[N]; /* counts by index; inode = index * 7 + 2 */
	struct tree *t = tree_new();
	size_t i, held = 1; /* the root */
	unsigned seed = 1;
	int round, ref_failed = 0;

	CHECK(t && tree_count(t) == 1);
	for (round = 0; round < 200000; round++) {
		size_t k = rand_r(&seed) % N;
		uint64_t ino = k * 7 + 2;

		if (rand_r(&seed) % 3 && want[k]) {
			uint64_t n = 1 + rand_r(&seed) % want[k];

			tree_forget(t, ino, n);
			want[k] -= n;
			held -= want[k] == 0;
		} else {
			ref_failed += tree_ref(t, ino) != 0;
			held += want[k] == 0;
			want[k]++;
		}
		if (round % 20000 == 0)
			CHECK(tree_count(t) == held);
	}
	CHECK(ref_failed == 0);
	CHECK(tree_count(t) == held);
	/* forget it all: every count was exact, the table empties */
	for (i = 0; i < N; i++) {
		if (want[i])
			tree_forget(t, i * 7 + 2, want[i]);
	}
	CHECK(tree_count(t) == 1);
	/* an inode the table does not hold is ignored */
	tree_forget(t, 5, 1);
	CHECK(tree_count(t) == 1);
	tree_free(t);
	return check_report();
}
