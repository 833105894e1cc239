/* Small helpers written once: the monotonic clock, deadlines for condition
 * waits, a growable array, and what an HTTP status means. */
#ifndef AVALAFS_UTIL_H
#define AVALAFS_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t util_now_ms(void);

/* A condition variable whose timed waits run on CLOCK_MONOTONIC, so a
 * change of the wall clock neither cuts nor stretches them. 0 or -errno. */
int util_cond_init(pthread_cond_t *cond);

/* Wait on @cond (made by util_cond_init) until util_now_ms() reaches
 * @until_ms. Returns 0 when woken, ETIMEDOUT after the deadline. */
int util_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock,
			 int64_t until_ms);

/* Make room for one more element of @size bytes in the array *@v holding
 * @n of @*cap: doubles the capacity (from @first) when it is full. Returns
 * 0 or -ENOMEM, leaving the array as it was. */
int util_grow(void **v, size_t size, size_t n, size_t *cap, size_t first);

/* The errno for an HTTP status: 401/403 EACCES, 404/410 ENOENT, else EIO
 * (negative). */
int util_http_errno(long status);

/* How a request ended, for counters: by the class of the last answer's
 * HTTP status, or why none came. */
enum util_outcome {
	UTIL_OK, /* 2xx, and 416 to a range: an answer to use */
	UTIL_DENIED, /* 401, 403 */
	UTIL_NOT_FOUND, /* 404, 410 */
	UTIL_THROTTLED, /* 429 after the retries */
	UTIL_REFUSED, /* any other status below 500 */
	UTIL_SERVER_ERROR, /* 5xx after the retries */
	UTIL_NO_ANSWER, /* none came: unreachable, timed out, TLS */
	UTIL_CANCELLED, /* given up at unmount */
	UTIL_OUTCOMES
};

/* The outcome of a request that returned @err (0 or a negative errno)
 * with the last answer's @status (0: none). */
enum util_outcome util_http_outcome(long status, int err);

/* Its name as counters label it: "ok", "denied", ... */
const char *util_outcome_name(enum util_outcome o);

#define UTIL_GROW(v, n, cap, first) \
	util_grow((void **)&(v), sizeof(*(v)), (n), &(cap), (first))

#endif
