/* The object numbers of one kind by a hash of their uid, in memory: what a
 * listing looks its objects up in, in place of an index on disk. */
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* A slot whose object was dropped: passed over by lookups. */
#define DROPPED UINT32_MAX

uint32_t store_uids_hash(const char *uid)
{
	return (uint32_t)XXH3_64bits(uid, strlen(uid));
}

static void put(struct uid_slot *slots, size_t cap, uint32_t hash, uint32_t oid)
{
	size_t i = hash & (cap - 1);

	while (slots[i].oid)
		i = (i + 1) & (cap - 1);
	slots[i].hash = hash;
	slots[i].oid = oid;
}

/* Room for one more: the table at most three quarters full. */
static int room(struct store_uids *m)
{
	struct uid_slot *grown;
	size_t cap = m->cap ? m->cap * 2 : 1024, i;

	if ((m->used + 1) * 4 <= m->cap * 3)
		return 0;
	grown = calloc(cap, sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	for (i = 0; i < m->cap; i++) {
		if (m->slots[i].oid && m->slots[i].oid != DROPPED)
			put(grown, cap, m->slots[i].hash, m->slots[i].oid);
	}
	free(m->slots);
	m->slots = grown;
	m->cap = cap;
	m->used = m->n;
	return 0;
}

int store_uids_add(struct store_uids *m, uint32_t hash, uint64_t oid)
{
	if (!oid || oid >= DROPPED)
		return -EOVERFLOW;
	if (room(m))
		return -ENOMEM;
	put(m->slots, m->cap, hash, oid);
	m->n++;
	m->used++;
	return 0;
}

uint64_t store_uids_next(const struct store_uids *m, uint32_t hash, size_t *pos)
{
	size_t i;

	if (!m->cap)
		return 0;
	for (i = (hash + *pos) & (m->cap - 1); m->slots[i].oid;
	     i = (i + 1) & (m->cap - 1)) {
		++*pos;
		if (m->slots[i].hash == hash && m->slots[i].oid != DROPPED)
			return m->slots[i].oid;
	}
	return 0;
}

void store_uids_drop_from(struct store_uids *m, uint64_t from)
{
	size_t i;

	for (i = 0; i < m->cap; i++) {
		if (m->slots[i].oid >= from && m->slots[i].oid != DROPPED) {
			m->slots[i].oid = DROPPED;
			m->n--;
		}
	}
}

void store_uids_clear(struct store_uids *m)
{
	free(m->slots);
	memset(m, 0, sizeof(*m));
}
