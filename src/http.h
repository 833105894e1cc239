/* The HTTP engine: every request avalafs makes goes through here. It owns
 * connection reuse, retries with backoff, the deadline, and the rule that the
 * API key goes only to the API's own origin. */
#ifndef AVALAFS_HTTP_H
#define AVALAFS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_config {
	const char *api_url; /* base URL; its scheme, host and port get the key */
	const char *api_via; /* caches of the API (tier.h's syntax, base URLs
			      * where api_url's paths follow), tried before
			      * it, or NULL */
	const char *ca_file; /* PEM bundle of the certificates trusted, or NULL
			      * for the system's */
	const char *data_proxy; /* the tiers (tier.h), or NULL: direct */
	const char *data_proxy_auth; /* file of "user:token", or NULL */
	int data_proxy_reset_s; /* a failed tier is tried again after */
	int timeout_s; /* deadline for one request, retries included; > 0 */
	int retry_after_max_s; /* longest Retry-After honoured */
	int max_conns; /* connections per host */
};

#define HTTP_WHY_MAX 384

/* What came back from one request (after retries). */
struct http_resp {
	long status; /* HTTP status of the last answer, 0 when none came */
	char *body; /* API calls: the body (NUL-terminated), data calls: NULL */
	size_t len; /* bytes of body, or bytes stored by a data call */
	int64_t total; /* whole object size from Content-Range/-Length, or -1 */
	char etag[128]; /* ETag of the answer, "" when none */
	long retry_after; /* its Retry-After in seconds, or -1 */
	int err; /* when no answer came: what the call returned */
	char why[HTTP_WHY_MAX]; /* and why, in words */
};

struct http;

/* A new engine, or NULL on a bad config or a CA file that cannot be used
 * (one line logged). Call after curl_global_init(). */
struct http *http_new(const struct http_config *cfg);

/* Stop the engine's requests (in flight and retry waits) and free it.
 * Accepts NULL. */
void http_free(struct http *h);

/* Wait for requests in flight and stop the engine thread (before fork());
 * the next request starts it again. */
void http_quiesce(struct http *h);

/* While @starting, a server that is not there (connection refused, host
 * unknown) fails a request after two tries instead of at its deadline, so
 * that start-up says so at once. */
void http_set_starting(struct http *h, bool starting);

/* Mounted without the API (from listings kept on disk): a server not
 * there fails at once, as at start, until the API first answers. */
void http_set_offline(struct http *h);

/* Ask each tier of data_proxy= whether it takes the token: 0, or
 * -EACCES with why in @why when one refuses it (407). A tier that cannot
 * be reached now is logged and skipped (the next ones serve). */
int http_tier_check(struct http *h, char *why, size_t cap);

/* Make requests in flight and waiting retries give up with -ECANCELED. */
void http_cancel_all(struct http *h);

struct key_source;

/* Take API keys from @ks (borrowed) from now on. */
void http_set_key_source(struct http *h, struct key_source *ks);

/* Where the API key comes from, for messages (key_source_origin()). */
const char *http_key_origin(struct http *h);

/* Whether @url has the API's scheme, host and port. */
bool http_is_api_url(struct http *h, const char *url);

/* GET an API URL with the key, through the caches api_url= lists first
 * (a listing's page, @shared, may be their cached answer; anything else
 * is asked of the API through them with no-cache); redirects are not
 * followed and bodies over @max_body are refused. Retries 429, 5xx and transport errors until the
 * deadline; a certificate that does not verify is not retried. Returns 0
 * when an answer came (see @resp->status; free it with http_resp_clear()),
 * else with @resp->why in words: -EIO when none did, -EPROTO for a TLS
 * failure, -EHOSTUNREACH for a server not there at start, -EPERM for a URL
 * off the API's origin, -ECANCELED on shutdown. */
int http_api_get(struct http *h, const char *url, size_t max_body, bool shared,
		 struct http_resp *resp);

/* Where http_data_stream() delivers a body. */
struct http_sink {
	/* Called once per answer before its first byte, with its status and
	 * headers; -EAGAIN calls it a bad answer, to be tried again until the
	 * deadline; another negative errno refuses it and ends the request.
	 * May be NULL. */
	int (*check)(void *ctx, const struct http_resp *resp);
	/* Bytes at object offset @off, in order and never twice; a negative
	 * errno ends the request with it, a positive value ends it as a
	 * success (the sink has all it wants). */
	int (*write)(void *ctx, int64_t off, const char *data, size_t len);
	void *ctx;
};

/* One object's bytes asked for. */
struct http_data_req {
	const char *url; /* the data URL, presigned */
	const char *id; /* the object's identity: its tier member */
	const char *version; /* its listing's time, for the tier's key; or
			      * NULL */
	bool fresh; /* not from a tier's cache: what came before was bad */
};

/* GET bytes [@start, @start + @len) of @req's data URL (http or https
 * only, never with the key), through the tiers of data_proxy= when there
 * are, handing them to @sink as they arrive: a body shorter or longer than
 * announced is retried, never passed on, and a retry after a cut-off
 * answer asks only for the bytes not yet delivered. A tier that fails
 * hands the request to the next place at once. A Range past the end
 * answers 416 with @resp->total set. Returns 0 when an answer came
 * (@resp->len: bytes delivered), the sink's errno, -EIO when none did,
 * -EPERM for a refused URL, -ECANCELED on shutdown. */
int http_data_stream(struct http *h, const struct http_data_req *req,
		     int64_t start, size_t len, const struct http_sink *sink,
		     struct http_resp *resp);

/* Free what @resp holds; accepts a zeroed struct. */
void http_resp_clear(struct http_resp *resp);

#endif
