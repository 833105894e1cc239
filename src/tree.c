/* Lookup counts in a uthash by inode number. Lock order: tree->lock is a
 * leaf; nothing else is taken while it is held. */
#include "tree.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <uthash.h>

#define ROOT_INO 1

struct count {
	uint64_t ino;
	uint64_t nlookup;
	UT_hash_handle hh;
};

struct tree {
	pthread_mutex_t lock;
	struct count *by_ino; /* protected by lock */
	size_t n; /* protected by lock */
};

struct tree *tree_new(void)
{
	struct tree *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	if (tree_ref(t, ROOT_INO)) {
		tree_free(t);
		return NULL;
	}
	return t;
}

void tree_free(struct tree *t)
{
	struct count *c, *tmp;

	if (!t)
		return;
	HASH_ITER(hh, t->by_ino, c, tmp) {
		HASH_DEL(t->by_ino, c);
		free(c);
	}
	pthread_mutex_destroy(&t->lock);
	free(t);
}

int tree_ref(struct tree *t, uint64_t ino)
{
	struct count *c;
	int err = 0;

	pthread_mutex_lock(&t->lock);
	HASH_FIND(hh, t->by_ino, &ino, sizeof(ino), c);
	if (!c) {
		c = calloc(1, sizeof(*c));
		if (c) {
			c->ino = ino;
			HASH_ADD(hh, t->by_ino, ino, sizeof(c->ino), c);
			t->n++;
		} else {
			err = -ENOMEM;
		}
	}
	if (c)
		c->nlookup++;
	pthread_mutex_unlock(&t->lock);
	return err;
}

void tree_forget(struct tree *t, uint64_t ino, uint64_t count)
{
	struct count *c;

	pthread_mutex_lock(&t->lock);
	HASH_FIND(hh, t->by_ino, &ino, sizeof(ino), c);
	if (c) {
		assert(c->nlookup >= count);
		c->nlookup -= count < c->nlookup ? count : c->nlookup;
		if (c->nlookup == 0) {
			HASH_DEL(t->by_ino, c);
			free(c);
			t->n--;
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
