/* Inode table: uthash by inode number and by (parent, ident). Lock order:
 * tree->lock is a leaf; nothing else is taken while it is held. */
#include "tree.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct tree {
	pthread_mutex_t lock;
	struct node *by_ino; /* protected by lock */
	struct node *by_child; /* protected by lock */
	fuse_ino_t next_ino; /* protected by lock */
};

static struct node *node_new(struct node *parent, enum node_type type,
			     const char *ident, struct dataset *ds)
{
	struct node *n = calloc(1, sizeof(*n));
	size_t len = strlen(ident);
	fuse_ino_t pino = parent ? parent->ino : 0;

	if (!n)
		return NULL;
	n->ident = strdup(ident);
	n->hkey_len = sizeof(pino) + len;
	n->hkey = malloc(n->hkey_len);
	if (!n->ident || !n->hkey) {
		free(n->ident);
		free(n->hkey);
		free(n);
		return NULL;
	}
	memcpy(n->hkey, &pino, sizeof(pino));
	memcpy(n->hkey + sizeof(pino), ident, len);
	n->parent = parent;
	n->type = type;
	if (parent) {
		n->kind = parent->kind;
		n->ds = parent->ds;
		n->uid = parent->uid;
	}
	if (ds)
		n->ds = ds;
	if (type == NODE_LIST)
		n->kind = strcmp(ident, "sequences") == 0 ? ITEM_KIND_SEQUENCE
							  : ITEM_KIND_ITEM;
	if (type == NODE_OBJECT)
		n->uid = n->ident;
	return n;
}

struct tree *tree_new(void)
{
	struct tree *t = calloc(1, sizeof(*t));
	struct node *root;

	if (!t)
		return NULL;
	root = node_new(NULL, NODE_ROOT, "", NULL);
	if (!root) {
		free(t);
		return NULL;
	}
	pthread_mutex_init(&t->lock, NULL);
	root->ino = FUSE_ROOT_ID;
	root->nlookup = 1; /* the kernel holds the root from mount on */
	HASH_ADD(hh_ino, t->by_ino, ino, sizeof(root->ino), root);
	t->next_ino = FUSE_ROOT_ID + 1;
	return t;
}

void tree_free(struct tree *t)
{
	struct node *n, *tmp;

	if (!t)
		return;
	HASH_CLEAR(hh_child, t->by_child);
	HASH_ITER(hh_ino, t->by_ino, n, tmp) {
		HASH_DELETE(hh_ino, t->by_ino, n);
		free(n->ident);
		free(n->hkey);
		free(n);
	}
	pthread_mutex_destroy(&t->lock);
	free(t);
}

struct node *tree_get(struct tree *t, fuse_ino_t ino)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	HASH_FIND(hh_ino, t->by_ino, &ino, sizeof(ino), n);
	pthread_mutex_unlock(&t->lock);
	return n;
}

struct node *tree_child(struct tree *t, struct node *parent,
			enum node_type type, const char *ident,
			struct dataset *ds)
{
	size_t len = sizeof(fuse_ino_t) + strlen(ident);
	char stack[512], *key = len <= sizeof(stack) ? stack : malloc(len);
	struct node *n, *fresh;

	if (!key)
		return NULL;
	memcpy(key, &parent->ino, sizeof(fuse_ino_t));
	memcpy(key + sizeof(fuse_ino_t), ident, len - sizeof(fuse_ino_t));
	pthread_mutex_lock(&t->lock);
	HASH_FIND(hh_child, t->by_child, key, len, n);
	pthread_mutex_unlock(&t->lock);
	if (key != stack)
		free(key);
	if (n)
		return n;

	fresh = node_new(parent, type, ident, ds);
	if (!fresh)
		return NULL;
	pthread_mutex_lock(&t->lock);
	HASH_FIND(hh_child, t->by_child, fresh->hkey, fresh->hkey_len, n);
	if (!n) {
		n = fresh;
		fresh = NULL;
		n->ino = t->next_ino++;
		HASH_ADD(hh_ino, t->by_ino, ino, sizeof(n->ino), n);
		HASH_ADD_KEYPTR(hh_child, t->by_child, n->hkey, n->hkey_len, n);
	}
	pthread_mutex_unlock(&t->lock);
	if (fresh) {
		free(fresh->ident);
		free(fresh->hkey);
		free(fresh);
	}
	return n;
}

void tree_ref(struct tree *t, struct node *n)
{
	pthread_mutex_lock(&t->lock);
	n->nlookup++;
	pthread_mutex_unlock(&t->lock);
}

void tree_forget(struct tree *t, fuse_ino_t ino, uint64_t count)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	HASH_FIND(hh_ino, t->by_ino, &ino, sizeof(ino), n);
	if (n) {
		assert(n->nlookup >= count);
		n->nlookup -= count < n->nlookup ? count : n->nlookup;
	}
	pthread_mutex_unlock(&t->lock);
}
