/* Cache tiers: the groups of data_proxy=, rendezvous hashing within a
 * group, and which members are skipped after a failure. */
#include "tier.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct member {
	char *url; /* NULL: DIRECT */
	int group;
	int64_t down_until; /* ms; protected by tiers->lock */
	bool missed; /* protected by tiers->lock: a miss was said */
};

struct tiers {
	pthread_mutex_t lock;
	struct member m[TIER_MAX];
	int n;
	int64_t reset_ms;
};

/* Whether @url is a tier's base URL: http or https, a host, no query. */
static bool tier_url(const char *url)
{
	return (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8)) &&
	       strlen(url) > 8 && !strpbrk(url, "?# \t");
}

struct tiers *tiers_new(const char *spec, int64_t reset_ms, char *why,
			size_t cap)
{
	struct tiers *t = calloc(1, sizeof(*t));
	char *copy = strdup(spec), *group, *gsave = NULL, *item, *isave;
	int g = 0;
	bool direct = false;

	if (!t || !copy)
		goto nomem;
	pthread_mutex_init(&t->lock, NULL);
	t->reset_ms = reset_ms;
	for (group = strtok_r(copy, ";", &gsave); group;
	     group = strtok_r(NULL, ";", &gsave), g++) {
		for (item = strtok_r(group, "|", &isave); item;
		     item = strtok_r(NULL, "|", &isave)) {
			struct member *m = &t->m[t->n];

			if (t->n == TIER_MAX) {
				snprintf(why, cap, "more than %d members",
					 TIER_MAX);
				goto bad;
			}
			if (!strcmp(item, "DIRECT")) {
				if (direct) {
					snprintf(why, cap,
						 "DIRECT listed twice");
					goto bad;
				}
				direct = true;
			} else if (!tier_url(item)) {
				snprintf(why, cap,
					 "%.64s is neither DIRECT nor a tier's "
					 "URL (http://HOST:PORT)",
					 item);
				goto bad;
			} else {
				size_t len = strlen(item);

				/* without the slash: the request's path
				 * follows */
				m->url = strndup(item,
						 len - (item[len - 1] == '/'));
				if (!m->url)
					goto nomem;
			}
			m->group = g;
			t->n++;
		}
	}
	if (!t->n) {
		snprintf(why, cap, "no tier listed");
		goto bad;
	}
	free(copy);
	return t;
nomem:
	snprintf(why, cap, "out of memory");
bad:
	free(copy);
	tiers_free(t);
	return NULL;
}

void tiers_free(struct tiers *t)
{
	int i;

	if (!t)
		return;
	for (i = 0; i < t->n; i++)
		free(t->m[i].url);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* The score of member @m for object @id: the member with the highest
 * serves it, and the others keep their objects when one goes. */
static uint64_t score(const struct member *m, const char *id)
{
	const char *name = m->url ? m->url : "DIRECT";

	return XXH3_64bits_withSeed(id, strlen(id),
				    XXH3_64bits(name, strlen(name)));
}

struct choice {
	const struct member *m;
	uint64_t score;
	bool down;
};

/* Whether @a is tried before @b: live before down, then by group, then by
 * score. */
static bool before(const struct choice *a, const struct choice *b)
{
	if (a->down != b->down)
		return !a->down;
	if (a->m->group != b->m->group)
		return a->m->group < b->m->group;
	return a->score > b->score;
}

size_t tiers_route(struct tiers *t, const char *id, const char **out)
{
	struct choice c[TIER_MAX], tmp;
	int64_t now = util_now_ms();
	int i, j, n = t->n;

	pthread_mutex_lock(&t->lock);
	for (i = 0; i < n; i++) {
		c[i].m = &t->m[i];
		c[i].score = score(&t->m[i], id);
		c[i].down = t->m[i].down_until > now;
	}
	pthread_mutex_unlock(&t->lock);
	/* a handful: sorted by insertion */
	for (i = 1; i < n; i++) {
		for (j = i; j > 0 && before(&c[j], &c[j - 1]); j--) {
			tmp = c[j];
			c[j] = c[j - 1];
			c[j - 1] = tmp;
		}
	}
	for (i = 0; i < n; i++)
		out[i] = c[i].m->url;
	return n;
}

static struct member *find(struct tiers *t, const char *url)
{
	int i;

	for (i = 0; i < t->n; i++) {
		if (t->m[i].url && !strcmp(t->m[i].url, url))
			return &t->m[i];
	}
	return NULL;
}

int tiers_failed(struct tiers *t, const char *url)
{
	struct member *m;
	int first = 0;

	pthread_mutex_lock(&t->lock);
	m = url ? find(t, url) : NULL;
	if (m) {
		first = m->down_until == 0;
		m->down_until = util_now_ms() + t->reset_ms;
	}
	pthread_mutex_unlock(&t->lock);
	return first;
}

int tiers_missed(struct tiers *t, const char *url)
{
	struct member *m;
	int first = 0;

	pthread_mutex_lock(&t->lock);
	m = url ? find(t, url) : NULL;
	if (m) {
		first = !m->missed;
		m->missed = true;
	}
	pthread_mutex_unlock(&t->lock);
	return first;
}

void tiers_served(struct tiers *t, const char *url)
{
	struct member *m;

	pthread_mutex_lock(&t->lock);
	m = url ? find(t, url) : NULL;
	if (m && m->down_until && m->down_until <= util_now_ms())
		m->down_until = 0;
	if (m)
		m->missed = false;
	pthread_mutex_unlock(&t->lock);
}

size_t tiers_all(struct tiers *t, const char **out)
{
	size_t n = 0;
	int i;

	for (i = 0; i < t->n; i++) {
		if (t->m[i].url)
			out[n++] = t->m[i].url;
	}
	return n;
}
