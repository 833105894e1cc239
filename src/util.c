/* Helpers used across modules: the clock, timed waits, growable arrays. */
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

int64_t util_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int util_cond_init(pthread_cond_t *cond)
{
	pthread_condattr_t attr;
	int err;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	err = pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
	return -err;
}

int util_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock,
			 int64_t until_ms)
{
	struct timespec ts = {
		.tv_sec = until_ms / 1000,
		.tv_nsec = (until_ms % 1000) * 1000000,
	};

	return pthread_cond_timedwait(cond, lock, &ts);
}

int util_http_errno(long status)
{
	switch (status) {
	case 401:
	case 403:
		return -EACCES;
	case 404:
	case 410:
		return -ENOENT;
	default:
		return -EIO;
	}
}

enum util_outcome util_http_outcome(long status, int err)
{
	if (err == -ECANCELED)
		return UTIL_CANCELLED;
	if (status == 0)
		return UTIL_NO_ANSWER;
	if ((status >= 200 && status < 300) || status == 416)
		return UTIL_OK;
	if (status == 401 || status == 403)
		return UTIL_DENIED;
	if (status == 404 || status == 410)
		return UTIL_NOT_FOUND;
	if (status == 429)
		return UTIL_THROTTLED;
	return status >= 500 ? UTIL_SERVER_ERROR : UTIL_REFUSED;
}

const char *util_outcome_name(enum util_outcome o)
{
	static const char *const names[UTIL_OUTCOMES] = {
		[UTIL_OK] = "ok",
		[UTIL_DENIED] = "denied",
		[UTIL_NOT_FOUND] = "not_found",
		[UTIL_THROTTLED] = "throttled",
		[UTIL_REFUSED] = "refused",
		[UTIL_SERVER_ERROR] = "server_error",
		[UTIL_NO_ANSWER] = "no_answer",
		[UTIL_CANCELLED] = "cancelled",
	};

	return (unsigned)o < UTIL_OUTCOMES ? names[o] : "unknown";
}

int util_grow(void **v, size_t size, size_t n, size_t *cap, size_t first)
{
	size_t want;
	void *p;

	if (n < *cap)
		return 0;
	want = *cap ? *cap * 2 : first;
	if (want < n + 1 || want > SIZE_MAX / size)
		return -ENOMEM;
	p = realloc(*v, want * size);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = want;
	return 0;
}
