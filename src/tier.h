/* The cache tiers data requests go through (DESIGN section 8), as
 * data_proxy= lists them: groups separated by ';' tried in order, members
 * of a group separated by '|' sharing the load (an object always goes to
 * the same member: the highest rendezvous score of its identity), DIRECT
 * (only where listed) the origin itself. A member that failed is skipped
 * until data_proxy_reset has passed. */
#ifndef AVALAFS_TIER_H
#define AVALAFS_TIER_H

#include <stddef.h>
#include <stdint.h>

#define TIER_MAX 16 /* members in all, DIRECT included */

struct tiers;

/* The tiers of @spec ("http://t1:3128|http://t2:3128;DIRECT"), a member
 * skipped for @reset_ms after it failed. NULL on a spec that is not one,
 * with the reason in @why (of @cap bytes), or on ENOMEM. */
struct tiers *tiers_new(const char *spec, int64_t reset_ms, char *why,
			size_t cap);

/* Accepts NULL. */
void tiers_free(struct tiers *t);

/* Where a request for the object named @id goes, best first, in @out (at
 * most TIER_MAX): each a tier's base URL, or NULL for the origin itself.
 * Members that failed less than the reset time ago come last, so that a
 * request still has somewhere to go. Returns how many. */
size_t tiers_route(struct tiers *t, const char *id, const char **out);

/* The member @url failed (it could not be reached, or answered as itself
 * that it could not serve): skip it until the reset. Returns 1 the first
 * time since it last worked (say it), else 0. */
int tiers_failed(struct tiers *t, const char *url);

/* The member @url could not serve one request (it is not skipped for
 * that). Returns 1 the first time since it last served (say it), else 0. */
int tiers_missed(struct tiers *t, const char *url);

/* The member @url served: it is back. */
void tiers_served(struct tiers *t, const char *url);

/* The members, for the start-up check: @out gets the tiers' URLs (no
 * DIRECT). Returns how many. */
size_t tiers_all(struct tiers *t, const char **out);

#endif
