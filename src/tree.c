/* Lookup counts in an open-addressing table of 16-byte slots (linear
 * probing, deletion by backward shift): a million inodes the kernel holds
 * cost 32 MiB at most. Lock order: tree->lock is a leaf; nothing else is
 * taken while it is held. */
#include "tree.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#define ROOT_INO 1
#define MIN_SLOTS 1024 /* a power of two */

struct slot {
	uint64_t ino; /* 0: empty (no inode is 0) */
	uint64_t nlookup;
};

struct tree {
	pthread_mutex_t lock;
	struct slot *slots; /* protected by lock */
	size_t cap; /* protected by lock: slots, a power of two */
	size_t n; /* protected by lock: slots in use */
};

static size_t home(const struct tree *t, uint64_t ino)
{
	/* Fibonacci hashing: inode numbers are dense in their low bits */
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 32) & (t->cap - 1);
}

/* The slot of @ino, or the empty one where it would go. */
static struct slot *find(const struct tree *t, uint64_t ino)
{
	size_t i = home(t, ino);

	while (t->slots[i].ino && t->slots[i].ino != ino)
		i = (i + 1) & (t->cap - 1);
	return &t->slots[i];
}

/* Double or halve the table to @cap slots. Called with t->lock held. */
static int resize(struct tree *t, size_t cap)
{
	struct slot *old = t->slots;
	size_t old_cap = t->cap, i;

	t->slots = calloc(cap, sizeof(*t->slots));
	if (!t->slots) {
		t->slots = old;
		return -ENOMEM;
	}
	t->cap = cap;
	for (i = 0; i < old_cap; i++) {
		if (old[i].ino)
			*find(t, old[i].ino) = old[i];
	}
	free(old);
	return 0;
}

struct tree *tree_new(void)
{
	struct tree *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	t->cap = MIN_SLOTS;
	t->slots = calloc(t->cap, sizeof(*t->slots));
	if (!t->slots || tree_ref(t, ROOT_INO)) {
		tree_free(t);
		return NULL;
	}
	return t;
}

void tree_free(struct tree *t)
{
	if (!t)
		return;
	free(t->slots);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

int tree_ref(struct tree *t, uint64_t ino)
{
	struct slot *s;
	int err = 0;

	pthread_mutex_lock(&t->lock);
	/* at most half full, so that probes stay short */
	if ((t->n + 1) * 2 > t->cap)
		err = resize(t, t->cap * 2);
	if (!err) {
		s = find(t, ino);
		if (!s->ino) {
			s->ino = ino;
			t->n++;
		}
		s->nlookup++;
	}
	pthread_mutex_unlock(&t->lock);
	return err;
}

/* Empty slot @i, moving back the entries after it that could not sit
 * where they belong because @i was taken. Called with t->lock held. */
static void erase(struct tree *t, size_t i)
{
	size_t j = i, mask = t->cap - 1;

	for (;;) {
		size_t h;

		j = (j + 1) & mask;
		if (!t->slots[j].ino)
			break;
		h = home(t, t->slots[j].ino);
		/* the entry at j may move to i when its home is not in
		 * the cyclic range (i, j] */
		if (((j - h) & mask) >= ((j - i) & mask)) {
			t->slots[i] = t->slots[j];
			i = j;
		}
	}
	t->slots[i].ino = 0;
	t->slots[i].nlookup = 0;
}

void tree_forget(struct tree *t, uint64_t ino, uint64_t count)
{
	struct slot *s;

	pthread_mutex_lock(&t->lock);
	s = find(t, ino);
	if (s->ino) {
		assert(s->nlookup >= count);
		s->nlookup -= count < s->nlookup ? count : s->nlookup;
		if (s->nlookup == 0) {
			erase(t, s - t->slots);
			t->n--;
			if (t->cap > MIN_SLOTS && t->n * 8 < t->cap)
				resize(t, t->cap / 2);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

size_t tree_count(struct tree *t)
{
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = t->n;
	pthread_mutex_unlock(&t->lock);
	return n;
}
