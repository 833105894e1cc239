/* Unit tests of src/fresh.c: each state's answer to each event. */
#include "fresh.h"

#include <errno.h>

#include "check.h"

static struct fresh_clock at(int64_t now)
{
	struct fresh_clock c = {
		.now = now, .ttl = 1000, .took = 100, .hold = 500
	};

	return c;
}

static struct fresh in(enum fresh_state s, int64_t until)
{
	struct fresh f = { .state = s, .until = until };

	return f;
}

static void test_first_listing(void)
{
	struct fresh f = { 0 };
	struct fresh_clock c = at(0);

	CHECK(f.state == FRESH_EMPTY && !fresh_servable(&f));
	/* the first reader starts the load, the next ones wait on it */
	CHECK(fresh_apply(&f, FRESH_READ, 0, &c));
	CHECK(f.state == FRESH_LOADING && !fresh_servable(&f));
	CHECK(!fresh_apply(&f, FRESH_READ, 0, &c));
	CHECK(f.state == FRESH_LOADING);
	c = at(200);
	CHECK(!fresh_apply(&f, FRESH_LOADED, 0, &c));
	CHECK(f.state == FRESH_CURRENT && f.until == 1200 &&
	      fresh_servable(&f));
	/* a load that took longer than ttl is trusted that long */
	f = in(FRESH_LOADING, 0);
	c.took = 5000;
	fresh_apply(&f, FRESH_LOADED, 0, &c);
	CHECK(f.until == 5200);
}

static void test_stale_while_revalidating(void)
{
	struct fresh f = in(FRESH_CURRENT, 1000);
	struct fresh_clock c = at(999);

	CHECK(!fresh_apply(&f, FRESH_READ, 0, &c));
	CHECK(f.state == FRESH_CURRENT);
	/* past ttl: one refresh starts, readers are served meanwhile */
	c = at(1000);
	CHECK(fresh_apply(&f, FRESH_READ, 0, &c));
	CHECK(f.state == FRESH_REFRESHING && fresh_servable(&f));
	CHECK(!fresh_apply(&f, FRESH_READ, 0, &c));
	CHECK(f.state == FRESH_REFRESHING);
	c = at(1300);
	fresh_apply(&f, FRESH_LOADED, 0, &c);
	CHECK(f.state == FRESH_CURRENT && f.until == 2300);
	/* a stale listing nobody reads is not listed again */
	f = in(FRESH_STALE, 0);
	CHECK(f.state == FRESH_STALE && fresh_servable(&f));
	CHECK(fresh_apply(&f, FRESH_READ, 0, &c));
	CHECK(f.state == FRESH_REFRESHING);
}

static void test_failures(void)
{
	struct fresh f = in(FRESH_LOADING, 0);
	struct fresh_clock c = at(100);

	/* a first load that fails answers its error for hold ms */
	CHECK(!fresh_apply(&f, FRESH_LOAD_FAILED, -EACCES, &c));
	CHECK(f.state == FRESH_FAILED && f.err == -EACCES && f.until == 600);
	c = at(599);
	CHECK(!fresh_apply(&f, FRESH_READ, 0, &c));
	CHECK(f.state == FRESH_FAILED);
	c = at(600);
	CHECK(fresh_apply(&f, FRESH_READ, 0, &c));
	CHECK(f.state == FRESH_LOADING);
	c = at(700);
	fresh_apply(&f, FRESH_LOADED, 0, &c);
	CHECK(f.state == FRESH_CURRENT && f.err == 0);
	/* a refresh that fails keeps the last listing, tried again later */
	f = in(FRESH_REFRESHING, 0);
	CHECK(!fresh_apply(&f, FRESH_LOAD_FAILED, -EIO, &c));
	CHECK(f.state == FRESH_CURRENT && f.until == 1200 &&
	      fresh_servable(&f));
	c = at(1200);
	CHECK(fresh_apply(&f, FRESH_READ, 0, &c));
	CHECK(f.state == FRESH_REFRESHING);
	/* but one the server refuses (a key, a permission, the dataset
	 * gone) is not served any more */
	CHECK(!fresh_apply(&f, FRESH_LOAD_FAILED, -EACCES, &c));
	CHECK(f.state == FRESH_FAILED && f.err == -EACCES &&
	      !fresh_servable(&f));
	/* events that do not apply change nothing */
	f = in(FRESH_CURRENT, 5000);
	CHECK(!fresh_apply(&f, FRESH_LOADED, 0, &c));
	CHECK(!fresh_apply(&f, FRESH_LOAD_FAILED, -EIO, &c));
	CHECK(f.state == FRESH_CURRENT && f.until == 5000);
	f = in(FRESH_EMPTY, 0);
	CHECK(!fresh_apply(&f, FRESH_LOADED, 0, &c));
	CHECK(f.state == FRESH_EMPTY);
}

static void test_forget(void)
{
	struct fresh f = in(FRESH_CURRENT, 5000);
	struct fresh_clock c = at(100);

	/* a 404: the listing goes stale; the next reader refreshes it */
	CHECK(!fresh_apply(&f, FRESH_FORGET, 0, &c));
	CHECK(f.state == FRESH_STALE);
	CHECK(fresh_apply(&f, FRESH_READ, 0, &c));
	/* during a load: the listing it brings may hold the object still,
	 * so it is stale at once */
	CHECK(!fresh_apply(&f, FRESH_FORGET, 0, &c));
	CHECK(f.again);
	fresh_apply(&f, FRESH_LOADED, 0, &c);
	CHECK(f.state == FRESH_STALE && !f.again);
	f = in(FRESH_LOADING, 0);
	fresh_apply(&f, FRESH_FORGET, 0, &c);
	fresh_apply(&f, FRESH_LOAD_FAILED, -EIO, &c);
	CHECK(f.state == FRESH_FAILED && !f.again);
	f = in(FRESH_EMPTY, 0);
	CHECK(!fresh_apply(&f, FRESH_FORGET, 0, &c));
	CHECK(f.state == FRESH_EMPTY);
	CHECK(fresh_state_name(FRESH_REFRESHING)[0] == 'r');
}

/* The listings kept were lost: nothing stale is served, the next reader
 * loads anew, and a load that was writing to the lost database leaves
 * nothing behind, whether it fails or completes. */
static void test_lost(void)
{
	struct fresh f = in(FRESH_CURRENT, 5000);
	struct fresh_clock c = at(100);

	fresh_apply(&f, FRESH_LOST, 0, &c);
	CHECK(f.state == FRESH_EMPTY && !fresh_servable(&f));
	CHECK(fresh_apply(&f, FRESH_READ, 0, &c));
	CHECK(f.state == FRESH_LOADING);

	f = in(FRESH_REFRESHING, 0);
	fresh_apply(&f, FRESH_LOST, 0, &c);
	CHECK(f.state == FRESH_LOADING && !fresh_servable(&f));
	/* no second load while the lost one runs */
	CHECK(!fresh_apply(&f, FRESH_READ, 0, &c));
	fresh_apply(&f, FRESH_LOAD_FAILED, -EIO, &c);
	CHECK(f.state == FRESH_EMPTY && !f.lost);
	CHECK(fresh_apply(&f, FRESH_READ, 0, &c));

	f = in(FRESH_LOADING, 0);
	fresh_apply(&f, FRESH_LOST, 0, &c);
	fresh_apply(&f, FRESH_LOADED, 0, &c);
	CHECK(f.state == FRESH_EMPTY && !fresh_servable(&f));

	/* a failure (a key refused) keeps its answer until its hold ends */
	f = in(FRESH_FAILED, 9000);
	f.err = -EACCES;
	fresh_apply(&f, FRESH_LOST, 0, &c);
	CHECK(f.state == FRESH_FAILED && f.err == -EACCES && f.until == 9000);
}

int main(void)
{
	test_first_listing();
	test_lost();
	test_stale_while_revalidating();
	test_failures();
	test_forget();
	return check_report();
}
