/* Unit tests of src/tier.c: data_proxy= lists parsed, each object routed to
 * one member of a group and the same one every time, groups in order,
 * DIRECT where listed, failed members last until the reset. */
#include "tier.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static void test_bad_lists(void)
{
	static const char *bad[] = {
		"",
		";",
		"tier:3128",
		"ftp://tier:3128",
		"http://tier:3128?x=1",
		"DIRECT;DIRECT",
		"http://a:1|http://b:1|http://c:1|http://d:1|http://e:1|"
		"http://f:1|http://g:1|http://h:1|http://i:1|http://j:1|"
		"http://k:1|http://l:1|http://m:1|http://n:1|http://o:1|"
		"http://p:1|http://q:1",
	};
	char why[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		why[0] = '\0';
		CHECK(!tiers_new(bad[i], 1000, why, sizeof(why)));
		CHECK(why[0] != '\0');
	}
	CHECK(!tiers_new("gopher://x", 1000, why, sizeof(why)));
	CHECK(strstr(why, "neither DIRECT nor a tier's URL"));
}

static void test_routes(void)
{
	char why[256], id[32];
	struct tiers *t = tiers_new("http://a:3128|http://b:3128/;"
				    "http://c:3128;DIRECT",
				    200, why, sizeof(why));
	const char *r[TIER_MAX], *again[TIER_MAX], *all[TIER_MAX];
	int on_a = 0, i;

	CHECK(t != NULL);
	if (!t)
		return;
	CHECK(tiers_all(t, all) == 3);
	CHECK_STR(all[1], "http://b:3128"); /* without its slash */
	for (i = 0; i < 200; i++) {
		snprintf(id, sizeof(id), "object-%d", i);
		CHECK(tiers_route(t, id, r) == 4);
		/* one of the first group, then the other, then c, then the
		 * origin */
		CHECK((!strcmp(r[0], "http://a:3128") &&
		       !strcmp(r[1], "http://b:3128")) ||
		      (!strcmp(r[0], "http://b:3128") &&
		       !strcmp(r[1], "http://a:3128")));
		CHECK_STR(r[2], "http://c:3128");
		CHECK(r[3] == NULL);
		tiers_route(t, id, again);
		CHECK(again[0] == r[0]); /* the same member every time */
		on_a += !strcmp(r[0], "http://a:3128");
	}
	/* the group shares the load */
	CHECK(on_a > 60 && on_a < 140);

	/* a failed member comes last, said once, until the reset */
	tiers_route(t, "object-1", r);
	CHECK(tiers_failed(t, r[0]) == 1);
	CHECK(tiers_failed(t, r[0]) == 0);
	tiers_route(t, "object-1", again);
	CHECK(again[0] == r[1] && again[3] == r[0]);
	CHECK(again[2] == NULL); /* the origin before the failed member */
	tiers_served(t, r[0]); /* before the reset: still skipped */
	tiers_route(t, "object-1", again);
	CHECK(again[0] == r[1]);
	usleep(250 * 1000);
	tiers_route(t, "object-1", again);
	CHECK(again[0] == r[0]); /* tried again after the reset */
	tiers_served(t, r[0]);
	CHECK(tiers_failed(t, r[0]) == 1); /* back: a new failure is said */

	/* a request it could not serve: said once, the member not skipped */
	CHECK(tiers_missed(t, "http://c:3128") == 1);
	CHECK(tiers_missed(t, "http://c:3128") == 0);
	tiers_route(t, "object-1", again);
	CHECK_STR(again[1], "http://c:3128");
	tiers_served(t, "http://c:3128");
	CHECK(tiers_missed(t, "http://c:3128") == 1);
	tiers_free(t);
}

static void test_without_direct(void)
{
	char why[256];
	struct tiers *t = tiers_new("http://a:3128", 1000, why, sizeof(why));
	const char *r[TIER_MAX];

	CHECK(t && tiers_route(t, "x", r) == 1 && r[0] != NULL);
	if (t)
		tiers_failed(t, r[0]);
	CHECK(t && tiers_route(t, "x", r) == 1 && r[0] != NULL);
	tiers_free(t);
	tiers_free(NULL);
}

int main(void)
{
	test_bad_lists();
	test_routes();
	test_without_direct();
	return check_report();
}
