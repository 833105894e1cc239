/* The freshness of one listing as a state machine with named states: what
 * a reader gets and when a listing is fetched. Pure: no clock, no locks,
 * so each transition can be tested alone. */
#ifndef AVALAFS_FRESH_H
#define AVALAFS_FRESH_H

#include <stdbool.h>
#include <stdint.h>

enum fresh_state {
	FRESH_EMPTY, /* no listing, none loading */
	FRESH_LOADING, /* the first listing is loading; its pages show as
			* they come */
	FRESH_CURRENT, /* a complete listing, trusted until @until */
	FRESH_STALE, /* a complete listing past its time: the next reader
		      * starts a refresh, and is answered from it at once */
	FRESH_REFRESHING, /* a complete listing, served while the next one
			   * loads */
	FRESH_FAILED, /* no listing to serve: the last load failed (a first
		       * one, or a refresh the server refused); readers get
		       * its error until @until */
};

enum fresh_event {
	FRESH_READ, /* a reader wants the listing */
	FRESH_LOADED, /* the load in progress completed */
	FRESH_LOAD_FAILED, /* it failed with @err */
	FRESH_FORGET, /* an object went away (the API said 404): list again */
	FRESH_LOST, /* the listings kept were lost (their database was set
		     * aside): readers wait for a new one */
};

struct fresh {
	enum fresh_state state;
	int64_t until; /* ms: CURRENT: when it goes stale; FAILED: retry */
	int err; /* FAILED: the load's error */
	bool again; /* a forget came during a load: list again after it */
	bool lost; /* the load in progress writes to a lost database: its
		    * end, whatever it is, leaves nothing to serve */
};

/* The times a transition depends on, in ms. */
struct fresh_clock {
	int64_t now;
	int64_t ttl; /* how long a listing is trusted */
	int64_t took; /* LOADED: how long the load took (trusted at least as
		       * long: a listing is as old as its fetch) */
	int64_t hold; /* how long a failure is answered before a retry */
};

/* Apply @ev to @f at @c->now (with @err for FRESH_LOAD_FAILED). Returns
 * true when a load must start now. */
bool fresh_apply(struct fresh *f, enum fresh_event ev, int err,
		 const struct fresh_clock *c);

/* Whether a listing can be served: a complete one (@f->state is CURRENT,
 * STALE or REFRESHING). */
bool fresh_servable(const struct fresh *f);

/* The state's name, for log lines and tests. */
const char *fresh_state_name(enum fresh_state s);

#endif
