/* The freshness state machine: every transition in one function. */
#include "fresh.h"

#include <errno.h>

const char *fresh_state_name(enum fresh_state s)
{
	static const char *const names[] = {
		[FRESH_EMPTY] = "empty",	   [FRESH_LOADING] = "loading",
		[FRESH_CURRENT] = "current",	   [FRESH_STALE] = "stale",
		[FRESH_REFRESHING] = "refreshing", [FRESH_FAILED] = "failed",
	};

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

bool fresh_servable(const struct fresh *f)
{
	return f->state == FRESH_CURRENT || f->state == FRESH_STALE ||
	       f->state == FRESH_REFRESHING;
}

bool fresh_apply(struct fresh *f, enum fresh_event ev, int err,
		 const struct fresh_clock *c)
{
	switch (ev) {
	case FRESH_READ:
		if (f->state == FRESH_CURRENT && c->now >= f->until)
			f->state = FRESH_STALE;
		if (f->state == FRESH_FAILED && c->now >= f->until)
			f->state = FRESH_EMPTY;
		if (f->state == FRESH_EMPTY) {
			f->state = FRESH_LOADING;
			return true;
		}
		if (f->state == FRESH_STALE) {
			f->state = FRESH_REFRESHING;
			return true;
		}
		return false;
	case FRESH_LOADED:
		if (f->state != FRESH_LOADING && f->state != FRESH_REFRESHING)
			return false;
		if (f->lost) {
			f->state = FRESH_EMPTY;
			f->lost = f->again = false;
			return false;
		}
		f->err = 0;
		f->state = f->again ? FRESH_STALE : FRESH_CURRENT;
		f->until = c->now + (c->took > c->ttl ? c->took : c->ttl);
		f->again = false;
		return false;
	case FRESH_LOAD_FAILED:
		if (f->lost) {
			/* it failed for the database it wrote to: the next
			 * reader starts one anew at once */
			f->state = FRESH_EMPTY;
		} else if (f->state == FRESH_LOADING) {
			f->state = FRESH_FAILED;
			f->err = err;
			f->until = c->now + c->hold;
		} else if (f->state == FRESH_REFRESHING && err == -EIO) {
			/* a server that could not answer: the last listing
			 * stays, and is tried again later */
			f->state = FRESH_CURRENT;
			f->until = c->now + c->hold;
		} else if (f->state == FRESH_REFRESHING) {
			/* the server said no (a key or a permission gone, the
			 * dataset gone): what was listed is not shown */
			f->state = FRESH_FAILED;
			f->err = err;
			f->until = c->now + c->hold;
		}
		f->again = f->lost = false;
		return false;
	case FRESH_FORGET:
		if (f->state == FRESH_CURRENT)
			f->state = FRESH_STALE;
		else if (f->state == FRESH_LOADING ||
			 f->state == FRESH_REFRESHING)
			f->again = true; /* what loads may still hold it */
		return false;
	case FRESH_LOST:
		if (f->state == FRESH_LOADING || f->state == FRESH_REFRESHING) {
			f->state = FRESH_LOADING; /* nothing served meanwhile */
			f->lost = true;
		} else if (f->state != FRESH_FAILED) {
			/* a failure keeps its answer and its hold */
			f->state = FRESH_EMPTY;
		}
		return false;
	}
	return false;
}
