/* libcurl behind one engine: multi handles, one per core, each driven by its
 * own thread, own every connection (reused across requests, at most
 * max_conns per host in all); callers submit an easy handle to the least
 * busy one and sleep until it finishes. Around that: a
 * retry loop with a deadline, and key scoping.
 * Lock order: h->lock, then the share locks (taken by libcurl itself). */
#include "http.h"
#include "key.h"
#include "log.h"
#include "tier.h"
#include "config.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/x509_vfy.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HDR_KEY "X-Avala-Api-Key"
/* bytes of an error body kept for the log: room for a "detail" of the 200
 * characters logged, even written all in \u escapes */
#define ERR_BODY_MAX 4096
#define BACKOFF_BASE_MS 100
#define BACKOFF_MAX_MS 5000

/* The certificates trusted: one store for every connection of the mount,
 * loaded once and again when its file changes. Built per connection, as
 * libcurl does when given both a CA file and a CA folder (as Debian's is),
 * parsing the system's ~140 certificates took about half the CPU of a
 * mount reading small files over https (300 files/s against 530 over
 * http, same files, same run); shared, https reads within 8% of http. */
struct trust {
	pthread_mutex_t lock;
	X509_STORE *store; /* protected by lock */
	char *file; /* the PEM bundle it is loaded from */
	bool named; /* ca_file= named it (else the system's) */
	struct stat seen; /* protected by lock: the file as loaded */
	int64_t checked_ms; /* protected by lock: when it was last looked at */
	int ex_index; /* where an SSL_CTX keeps its transfer */
};

/* One transfer handed to the engine thread. */
struct job {
	CURL *easy;
	CURLcode rc;
	bool done; /* protected by h->lock */
	pthread_cond_t finished;
	struct job *next; /* protected by h->lock: the submit queue */
};

#define MAX_ENGINES 4

/* One multi handle and the thread that drives it. */
struct engine {
	struct http *h;
	CURLM *multi; /* used by the engine thread only (and wakeup) */
	pthread_t thread;
	bool running; /* protected by h->lock */
	bool stop; /* protected by h->lock */
	struct job *queue; /* protected by h->lock: jobs not yet in multi */
	unsigned active; /* protected by h->lock: jobs submitted, not done */
};

struct http {
	pthread_mutex_t lock;
	pthread_cond_t wake; /* signalled on cancel */
	struct engine engines[MAX_ENGINES];
	int n_engines;
	CURL **idle; /* protected by lock */
	size_t n_idle, cap_idle; /* protected by lock */
	struct key_source *keys; /* protected by lock */
	bool cancelled; /* protected by lock */
	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
	char *api_url;
	char *api_scheme, *api_host, *api_port;
	int timeout_s;
	int retry_after_max_s;
	bool starting; /* a server not there fails at once: start-up */
	bool offline; /* atomic: mounted without the API: a server not there
		       * fails at once until the API answers */
	struct tiers *tiers; /* data_proxy=, or NULL */
	struct tiers *api_tiers; /* the caches api_url= lists first, or NULL */
	size_t api_len; /* strlen(api_url) */
	struct key_source *tier_auth; /* data_proxy_auth=, or NULL */
	bool tier_refused; /* protected by lock: a 407 was logged */
	struct trust trust;
	char tls_said[8][128]; /* protected by lock: hosts whose TLS failure
				* was logged */
	unsigned n_tls_said; /* protected by lock */
};

/* State of one transfer attempt, filled by the callbacks. */
struct xfer {
	struct http *h;
	CURL *curl;
	/* API body: grows up to max_body */
	char *body;
	size_t len, cap, max_body;
	/* data: bytes [next, end) go to the sink, in order */
	const struct http_sink *sink;
	int64_t next; /* first object offset not yet delivered */
	int64_t end;
	int64_t pos; /* object offset of the next body byte of this answer */
	bool checked; /* this answer passed the sink's check */
	int sink_err; /* the sink's refusal, ends the request */
	bool is_data;
	bool overflow; /* more bytes than the answer may carry */
	bool bad_range; /* a Content-Range that contradicts itself */
	bool refused; /* the sink's check called the answer bad */
	bool sink_enough; /* the sink ended the answer: it has what it wants */
	bool enough; /* a 200 gave all we want; the rest is not needed */
	/* from the headers of the final answer */
	long status;
	int64_t cr_start, cr_end, cr_total; /* Content-Range, -1 when none */
	int64_t content_length;
	long retry_after;
	char etag[128];
	char err_body[ERR_BODY_MAX + 1];
	size_t err_len;
	char range[64]; /* the Range asked for */
	/* through a tier: the origin URL asked for, the object's identity
	 * and version, and where this attempt goes (NULL: the origin) */
	const struct http_data_req *req;
	struct tiers *tiers; /* where route comes from */
	const char *route[TIER_MAX];
	size_t n_route, at;
	const char *via;
	bool fresh; /* Cache-Control: no-cache: the last answer was bad */
	bool tier_says; /* the answer is the tier's own (Proxy-Status) */
	bool tier_down; /* the tier could not be reached: skip it a while */
	bool headed; /* an answer's status line came */
	char *via_url; /* an API request's URL at the cache x->via */
	/* a tier that sends nothing for stall_ms (0: no such limit) is left
	 * for the next place: curl's own low-speed check averages over
	 * seconds, and would wait out a stall after a burst */
	int64_t stall_ms, moved_at;
	curl_off_t seen;
	bool stalled;
	struct curl_slist *tier_headers;
	char curl_err[CURL_ERROR_SIZE]; /* curl's words for a failure */
	char cert_why[256]; /* the certificate that failed, and why */
	char leaf_names[160]; /* the names the server's certificate is for */
	char why[HTTP_WHY_MAX]; /* what went wrong, when nothing came */
};

static int trust_open(struct trust *t, const char *ca_file);
static void trust_close(struct trust *t);

static void share_lock(CURL *c, curl_lock_data data, curl_lock_access a,
		       void *p)
{
	struct http *h = p;

	pthread_mutex_lock(&h->share_locks[data]);
}

static void share_unlock(CURL *c, curl_lock_data data, void *p)
{
	struct http *h = p;

	pthread_mutex_unlock(&h->share_locks[data]);
}

/* Split @url into scheme, host and port (the port defaulted by scheme). */
static int url_origin(const char *url, char **scheme, char **host, char **port)
{
	CURLU *u = curl_url();
	int err = -EINVAL;

	*scheme = *host = *port = NULL;
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PORT, port, CURLU_DEFAULT_PORT) ==
		    CURLUE_OK)
		err = 0;
	curl_url_cleanup(u);
	if (err) {
		curl_free(*scheme);
		curl_free(*host);
		curl_free(*port);
		*scheme = *host = *port = NULL;
	}
	return err;
}

static bool is_loopback(const char *host)
{
	return strcmp(host, "localhost") == 0 ||
	       strncmp(host, "127.", 4) == 0 || strcmp(host, "[::1]") == 0 ||
	       strcmp(host, "::1") == 0;
}

/* The caches api_url= lists before the API itself, tried in order (the
 * API last, as DIRECT): each gets the key, so each must be https, or
 * http on loopback, like the API. 0 or -1, said. */
static int api_tiers_open(struct http *h, const struct http_config *cfg)
{
	const char *urls[TIER_MAX];
	char why[256], *spec;
	size_t n, i;

	if (asprintf(&spec, "%s;DIRECT", cfg->api_via) < 0)
		return -1;
	h->api_tiers = tiers_new(spec, (int64_t)cfg->data_proxy_reset_s * 1000,
				 why, sizeof(why));
	free(spec);
	if (!h->api_tiers) {
		log_err("api_url=%s: %s", cfg->api_via, why);
		return -1;
	}
	n = tiers_all(h->api_tiers, urls);
	for (i = 0; i < n; i++) {
		char *scheme, *host, *port;
		bool ok;

		if (url_origin(urls[i], &scheme, &host, &port)) {
			log_err("api_url: invalid URL: %s", urls[i]);
			return -1;
		}
		ok = !strcmp(scheme, "https") ||
		     (!strcmp(scheme, "http") && is_loopback(host));
		curl_free(scheme);
		curl_free(host);
		curl_free(port);
		if (!ok) {
			log_err("api_url: %s gets the API key: it must be "
				"https (plain http only for loopback)",
				urls[i]);
			return -1;
		}
	}
	return 0;
}

struct http *http_new(const struct http_config *cfg)
{
	struct http *h = calloc(1, sizeof(*h));
	int i, max_conns;

	if (!h)
		return NULL;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->wake, NULL);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&h->share_locks[i], NULL);
	h->timeout_s = cfg->timeout_s;
	/* one engine per core (receiving is most of the work), splitting the
	 * connections allowed per host between them */
	max_conns = cfg->max_conns > 0 ? cfg->max_conns : 16;
	h->n_engines = sysconf(_SC_NPROCESSORS_ONLN);
	if (h->n_engines > MAX_ENGINES)
		h->n_engines = MAX_ENGINES;
	if (h->n_engines > max_conns)
		h->n_engines = max_conns;
	if (h->n_engines < 1)
		h->n_engines = 1;
	for (i = 0; i < h->n_engines; i++) {
		struct engine *e = &h->engines[i];
		long share = max_conns / h->n_engines +
			     (i < max_conns % h->n_engines);

		e->h = h;
		e->multi = curl_multi_init();
		if (!e->multi)
			goto fail;
		curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
				  share);
		curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, share * 4);
	}
	h->retry_after_max_s = cfg->retry_after_max_s;
	h->api_url = strdup(cfg->api_url);
	if (!h->api_url || url_origin(cfg->api_url, &h->api_scheme,
				      &h->api_host, &h->api_port)) {
		log_err("invalid API URL: %s", cfg->api_url);
		goto fail;
	}
	if (strcmp(h->api_scheme, "https") != 0 &&
	    !(strcmp(h->api_scheme, "http") == 0 && is_loopback(h->api_host))) {
		log_err("API URL must be https (plain http only for loopback): %s",
			cfg->api_url);
		goto fail;
	}
	h->share = curl_share_init();
	if (!h->share)
		goto fail;
	curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(h->share, CURLSHOPT_USERDATA, h);
	/* connections and DNS live in the multi handle; TLS sessions are
	 * shared by the engines, so a new connection resumes one */
	curl_share_setopt(h->share, CURLSHOPT_SHARE,
			  CURL_LOCK_DATA_SSL_SESSION);
	if (trust_open(&h->trust, cfg->ca_file))
		goto fail;
	/* as api.c builds its URLs: no slash at the end */
	h->api_len = strlen(h->api_url);
	while (h->api_len > 0 && h->api_url[h->api_len - 1] == '/')
		h->api_url[--h->api_len] = '\0';
	if (cfg->api_via && api_tiers_open(h, cfg))
		goto fail;
	if (cfg->data_proxy) {
		char why[256];

		h->tiers = tiers_new(cfg->data_proxy,
				     (int64_t)cfg->data_proxy_reset_s * 1000,
				     why, sizeof(why));
		if (!h->tiers) {
			log_err("data_proxy=%s: %s", cfg->data_proxy, why);
			goto fail;
		}
	}
	if (cfg->data_proxy_auth) {
		h->tier_auth = key_source_new(cfg->data_proxy_auth, NULL);
		if (!h->tier_auth)
			goto fail;
	}
	return h;
fail:
	http_free(h);
	return NULL;
}

void http_set_offline(struct http *h)
{
	__atomic_store_n(&h->offline, true, __ATOMIC_RELAXED);
}

void http_set_starting(struct http *h, bool starting)
{
	h->starting = starting;
}

void http_cancel_all(struct http *h)
{
	pthread_mutex_lock(&h->lock);
	h->cancelled = true;
	pthread_cond_broadcast(&h->wake);
	pthread_mutex_unlock(&h->lock);
}

void http_free(struct http *h)
{
	size_t i;

	if (!h)
		return;
	http_quiesce(h);
	for (i = 0; i < h->n_idle; i++)
		curl_easy_cleanup(h->idle[i]);
	free(h->idle);
	for (i = 0; i < MAX_ENGINES; i++) {
		if (h->engines[i].multi)
			curl_multi_cleanup(h->engines[i].multi);
	}
	if (h->share)
		curl_share_cleanup(h->share);
	trust_close(&h->trust);
	tiers_free(h->tiers);
	tiers_free(h->api_tiers);
	key_source_free(h->tier_auth);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&h->share_locks[i]);
	pthread_cond_destroy(&h->wake);
	pthread_mutex_destroy(&h->lock);
	free(h->api_url);
	curl_free(h->api_scheme);
	curl_free(h->api_host);
	curl_free(h->api_port);
	free(h);
}

const char *http_key_origin(struct http *h)
{
	struct key_source *ks;

	pthread_mutex_lock(&h->lock);
	ks = h->keys;
	pthread_mutex_unlock(&h->lock);
	return ks ? key_source_origin(ks) : "AVALA_API_KEY";
}

void http_set_key_source(struct http *h, struct key_source *ks)
{
	pthread_mutex_lock(&h->lock);
	h->keys = ks;
	pthread_mutex_unlock(&h->lock);
}

bool http_is_api_url(struct http *h, const char *url)
{
	char *scheme, *host, *port;
	bool same;

	if (url_origin(url, &scheme, &host, &port))
		return false;
	same = strcasecmp(scheme, h->api_scheme) == 0 &&
	       strcasecmp(host, h->api_host) == 0 &&
	       strcmp(port, h->api_port) == 0;
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	return same;
}

static bool is_http_url(const char *url)
{
	char *scheme, *host, *port;
	bool ok;

	if (url_origin(url, &scheme, &host, &port))
		return false;
	ok = strcasecmp(scheme, "http") == 0 ||
	     strcasecmp(scheme, "https") == 0;
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	return ok;
}

static CURL *handle_get(struct http *h)
{
	CURL *c = NULL;

	pthread_mutex_lock(&h->lock);
	if (h->n_idle)
		c = h->idle[--h->n_idle];
	pthread_mutex_unlock(&h->lock);
	if (c)
		curl_easy_reset(c);
	else
		c = curl_easy_init();
	return c;
}

static void handle_put(struct http *h, CURL *c)
{
	pthread_mutex_lock(&h->lock);
	if (h->n_idle == h->cap_idle) {
		size_t cap = h->cap_idle ? h->cap_idle * 2 : 16;
		CURL **idle = realloc(h->idle, cap * sizeof(*idle));

		if (idle) {
			h->idle = idle;
			h->cap_idle = cap;
		}
	}
	if (h->n_idle < h->cap_idle) {
		h->idle[h->n_idle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&h->lock);
	if (c)
		curl_easy_cleanup(c);
}

/* An engine thread: add submitted jobs, drive transfers, and wake each
 * job's caller when it finishes. Exits when asked and idle. */
static void *engine_main(void *p)
{
	struct engine *e = p;
	struct http *h = e->h;

	for (;;) {
		struct job *queue;
		CURLMsg *msg;
		int running, left;

		pthread_mutex_lock(&h->lock);
		/* the queue is pushed at its head: take it oldest first */
		for (queue = NULL; e->queue;) {
			struct job *j = e->queue;

			e->queue = j->next;
			j->next = queue;
			queue = j;
		}
		if (e->stop && !queue && e->active == 0) {
			pthread_mutex_unlock(&h->lock);
			break;
		}
		pthread_mutex_unlock(&h->lock);
		for (; queue; queue = queue->next) {
			curl_easy_setopt(queue->easy, CURLOPT_PRIVATE, queue);
			if (curl_multi_add_handle(e->multi, queue->easy) !=
			    CURLM_OK) {
				pthread_mutex_lock(&h->lock);
				queue->rc = CURLE_OUT_OF_MEMORY;
				queue->done = true;
				e->active--;
				pthread_cond_signal(&queue->finished);
				pthread_mutex_unlock(&h->lock);
			}
		}
		curl_multi_perform(e->multi, &running);
		while ((msg = curl_multi_info_read(e->multi, &left))) {
			struct job *job;
			CURLcode rc;

			if (msg->msg != CURLMSG_DONE)
				continue;
			rc = msg->data.result; /* msg dies with the removal */
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
					  (char **)&job);
			curl_multi_remove_handle(e->multi, msg->easy_handle);
			pthread_mutex_lock(&h->lock);
			job->rc = rc;
			job->done = true;
			e->active--;
			pthread_cond_signal(&job->finished);
			pthread_mutex_unlock(&h->lock);
		}
		curl_multi_poll(e->multi, NULL, 0, 1000, NULL);
	}
	return NULL;
}

void http_quiesce(struct http *h)
{
	int i;

	for (i = 0; i < h->n_engines; i++) {
		struct engine *e = &h->engines[i];
		bool running;

		pthread_mutex_lock(&h->lock);
		running = e->running;
		e->stop = running;
		pthread_mutex_unlock(&h->lock);
		if (!running)
			continue;
		curl_multi_wakeup(e->multi);
		pthread_join(e->thread, NULL);
		pthread_mutex_lock(&h->lock);
		e->running = false;
		e->stop = false;
		pthread_mutex_unlock(&h->lock);
	}
}

/* Run @easy on the least busy engine and wait for it; starts the engine's
 * thread on first use. */
static CURLcode engine_run(struct http *h, CURL *easy)
{
	struct job job = { .easy = easy };
	struct engine *e = &h->engines[0];
	CURLcode rc;
	int i;

	pthread_cond_init(&job.finished, NULL);
	pthread_mutex_lock(&h->lock);
	for (i = 1; i < h->n_engines; i++) {
		if (h->engines[i].active < e->active)
			e = &h->engines[i];
	}
	if (!e->running) {
		if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
			pthread_mutex_unlock(&h->lock);
			pthread_cond_destroy(&job.finished);
			return CURLE_FAILED_INIT;
		}
		e->running = true;
	}
	job.next = e->queue;
	e->queue = &job;
	e->active++;
	pthread_mutex_unlock(&h->lock);
	curl_multi_wakeup(e->multi);

	pthread_mutex_lock(&h->lock);
	while (!job.done)
		pthread_cond_wait(&job.finished, &h->lock);
	rc = job.rc;
	pthread_mutex_unlock(&h->lock);
	pthread_cond_destroy(&job.finished);
	return rc;
}

static bool is_cancelled(struct http *h)
{
	bool c;

	pthread_mutex_lock(&h->lock);
	c = h->cancelled;
	pthread_mutex_unlock(&h->lock);
	return c;
}

static int64_t parse_i64(const char *s, const char **end)
{
	char *e;
	long long v;

	errno = 0;
	v = strtoll(s, &e, 10);
	if (e == s || errno || v < 0)
		v = -1;
	if (end)
		*end = e;
	return v;
}

/* Parse "bytes a-b/total" or "bytes STAR/total" into @x. */
static void parse_content_range(struct xfer *x, const char *v)
{
	const char *p;

	if (strncasecmp(v, "bytes", 5) != 0)
		return;
	v += 5;
	while (*v == ' ')
		v++;
	if (*v == '*') {
		p = v + 1;
	} else {
		x->cr_start = parse_i64(v, &p);
		if (*p != '-')
			return;
		x->cr_end = parse_i64(p + 1, &p);
	}
	if (*p == '/' && p[1] != '*')
		x->cr_total = parse_i64(p + 1, NULL);
}

static size_t on_header(char *data, size_t size, size_t n, void *p)
{
	struct xfer *x = p;
	size_t len = size * n;
	char line[512], *v;

	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		/* a new answer (after a redirect or 100): forget the last */
		x->cr_start = x->cr_end = x->cr_total = -1;
		x->content_length = -1;
		x->retry_after = -1;
		x->etag[0] = '\0';
		x->tier_says = false;
		x->headed = true;
		return len;
	}
	if (len >= sizeof(line))
		return len;
	memcpy(line, data, len);
	line[len] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	v = strchr(line, ':');
	if (!v)
		return len;
	*v++ = '\0';
	while (*v == ' ' || *v == '\t')
		v++;
	if (strcasecmp(line, "Content-Range") == 0)
		parse_content_range(x, v);
	else if (strcasecmp(line, "Content-Length") == 0)
		x->content_length = parse_i64(v, NULL);
	else if (strcasecmp(line, "Retry-After") == 0)
		x->retry_after = parse_i64(v, NULL);
	else if (strcasecmp(line, "ETag") == 0)
		snprintf(x->etag, sizeof(x->etag), "%s", v);
	else if (x->via && (strcasecmp(line, "Proxy-Status") == 0 ||
			    strcasecmp(line, "X-Squid-Error") == 0))
		x->tier_says = true;
	return len;
}

static bool is_success(long status)
{
	return status == 200 || status == 206;
}

static void fill_resp(const struct xfer *x, struct http_resp *resp)
{
	resp->status = x->status;
	resp->retry_after = x->retry_after;
	resp->total = x->cr_total;
	if (resp->total < 0 && x->status == 200)
		resp->total = x->content_length;
	snprintf(resp->etag, sizeof(resp->etag), "%s", x->etag);
}

/* Data bodies reach the sink only for 200/206 answers that start where we
 * asked; bytes past what we asked for are never passed on. */
static size_t on_data_body(struct xfer *x, const char *data, size_t len)
{
	size_t i = 0;

	if (!x->checked) {
		struct http_resp r = { 0 };

		if (x->status == 206 && x->cr_start != x->next) {
			x->overflow = true; /* not the range we asked for */
			return 0;
		}
		/* a size comes only from an answer that agrees with itself:
		 * its range inside its total, its length that of its range */
		if (x->status == 206 &&
		    (x->cr_end < x->cr_start ||
		     (x->cr_total >= 0 && x->cr_end >= x->cr_total) ||
		     (x->content_length >= 0 &&
		      x->content_length != x->cr_end - x->cr_start + 1))) {
			x->bad_range = true;
			return 0;
		}
		x->pos = x->status == 206 ? x->cr_start : 0;
		fill_resp(x, &r);
		if (x->sink->check) {
			x->sink_err = x->sink->check(x->sink->ctx, &r);
			if (x->sink_err == -EAGAIN) {
				x->sink_err = 0;
				x->refused = true;
				return 0;
			}
			if (x->sink_err)
				return 0;
		}
		x->checked = true;
	}
	while (i < len) {
		size_t n;

		if (x->pos < x->next) {
			/* a 200 to a Range request: skip to where we want */
			n = x->next - x->pos;
			if (n > len - i)
				n = len - i;
		} else if (x->pos < x->end) {
			n = x->end - x->pos;
			if (n > len - i)
				n = len - i;
			x->sink_err = x->sink->write(x->sink->ctx, x->pos,
						     data + i, n);
			if (x->sink_err > 0) {
				/* the sink holds all it wants */
				x->sink_err = 0;
				x->enough = x->sink_enough = true;
				return 0;
			}
			if (x->sink_err)
				return 0;
			x->next += n;
		} else if (x->status == 200) {
			x->enough = true;
			return 0; /* abort: we hold all we asked for */
		} else {
			x->overflow = true;
			return 0;
		}
		i += n;
		x->pos += n;
	}
	return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *p)
{
	struct xfer *x = p;
	size_t len = size * n;

	if (x->status == 0)
		curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &x->status);
	if (!is_success(x->status)) {
		size_t keep = ERR_BODY_MAX - x->err_len;

		if (keep > len)
			keep = len;
		memcpy(x->err_body + x->err_len, data, keep);
		x->err_len += keep;
		x->err_body[x->err_len] = '\0';
		return len;
	}
	if (x->is_data)
		return on_data_body(x, data, len);
	if (x->len + len > x->max_body) {
		x->overflow = true;
		return 0;
	}
	if (x->len + len + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 16384;
		char *b;

		while (cap < x->len + len + 1)
			cap *= 2;
		b = realloc(x->body, cap);
		if (!b)
			return 0;
		x->body = b;
		x->cap = cap;
	}
	memcpy(x->body + x->len, data, len);
	x->len += len;
	x->body[x->len] = '\0';
	return len;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int on_progress(void *p, curl_off_t dt, curl_off_t dn, curl_off_t ut,
		       curl_off_t un)
{
	struct xfer *x = p;
	int64_t now;

	if (is_cancelled(x->h))
		return 1;
	/* a tier may hold an answer back while another node's fills its
	 * cache (proxy_cache_lock): a stall counts once the answer began */
	if (!x->stall_ms || !x->headed)
		return 0;
	now = now_ms();
	if (!x->moved_at || dn != x->seen) {
		x->seen = dn;
		x->moved_at = now;
	} else if (now - x->moved_at >= x->stall_ms) {
		x->stalled = true;
		return 1;
	}
	return 0;
}

/* Sleep @ms unless cancelled first; returns -ECANCELED then. */
static int wait_ms(struct http *h, int64_t ms)
{
	struct timespec until;
	int err = 0;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&h->lock);
	while (!h->cancelled &&
	       pthread_cond_timedwait(&h->wake, &h->lock, &until) == 0)
		;
	if (h->cancelled)
		err = -ECANCELED;
	pthread_mutex_unlock(&h->lock);
	return err;
}

/* The URL without its query, for log lines: presigned signatures stay out. */
static void url_for_log(const char *url, char *out, size_t cap)
{
	snprintf(out, cap, "%.*s", (int)strcspn(url, "?#"), url);
}

/* Whether a data answer delivered all it had to: everything we asked for,
 * or everything up to the end of a shorter object. */
static bool data_answer_ok(const struct xfer *x, const char **why)
{
	int64_t total = x->status == 206 ? x->cr_total : x->content_length;

	if (x->bad_range) {
		*why = "Content-Range disagrees with itself or the body";
		return false;
	}
	if (x->refused) {
		*why = "answer disagrees with what is known of the object";
		return false;
	}
	if (x->overflow) {
		*why = "answer longer than announced or not what was asked";
		return false;
	}
	if (x->sink_enough)
		return true; /* cut short on purpose */
	if (x->status == 206 && x->pos != x->cr_end + 1) {
		*why = "body shorter than its Content-Range";
		return false;
	}
	if (x->status == 200 && !x->enough && x->content_length >= 0 &&
	    x->pos != x->content_length) {
		*why = "body shorter than its Content-Length";
		return false;
	}
	if (x->next < x->end && !(total >= 0 && x->next == total) &&
	    !(x->status == 200 && total < 0)) {
		*why = "answer ends before the range asked for";
		return false;
	}
	return true;
}

/* ---- TLS: one trusted store per mount ---- */

/* Load the PEM bundle @file into a new store, with the flags libcurl
 * sets on the stores it builds (trusted certificates first, partial
 * chains): verification stays as strict as curl's own. NULL with the
 * reason in @why when it cannot be read or holds no certificate. */
static X509_STORE *store_load(const char *file, char *why, size_t cap)
{
	X509_STORE *store;
	struct stat st;
	int n;

	if (stat(file, &st) || access(file, R_OK)) {
		snprintf(why, cap, "%s", strerror(errno));
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, cap, "not a file");
		return NULL;
	}
	if (st.st_size == 0) {
		snprintf(why, cap, "it is empty");
		return NULL;
	}
	store = X509_STORE_new();
	if (!store) {
		snprintf(why, cap, "out of memory");
		return NULL;
	}
	if (!X509_STORE_load_file(store, file)) {
		snprintf(why, cap, "not a PEM bundle of certificates");
		X509_STORE_free(store);
		return NULL;
	}
	n = sk_X509_OBJECT_num(X509_STORE_get0_objects(store));
	if (n <= 0) {
		snprintf(why, cap, "it holds no certificate");
		X509_STORE_free(store);
		return NULL;
	}
	X509_STORE_set_flags(store, X509_V_FLAG_TRUSTED_FIRST |
					    X509_V_FLAG_PARTIAL_CHAIN);
	return store;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Load the store from @ca_file, or from the bundle libcurl was built to
 * trust. 0, or -EINVAL with one line logged. */
static int trust_open(struct trust *t, const char *ca_file)
{
	char why[256];
	CURL *probe;
	char *def = NULL;

	pthread_mutex_init(&t->lock, NULL);
	t->ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	t->named = ca_file != NULL;
	if (!ca_file && (probe = curl_easy_init())) {
		if (curl_easy_getinfo(probe, CURLINFO_CAINFO, &def) ==
			    CURLE_OK &&
		    def)
			t->file = strdup(def);
		curl_easy_cleanup(probe);
	}
	if (!t->file)
		t->file = strdup(ca_file ? ca_file
					 : X509_get_default_cert_file());
	if (!t->file || t->ex_index < 0)
		return -ENOMEM;
	if (stat(t->file, &t->seen) != 0)
		memset(&t->seen, 0, sizeof(t->seen));
	t->store = store_load(t->file, why, sizeof(why));
	if (!t->store) {
		if (t->named)
			log_err("ca_file=%s: %s", t->file, why);
		else
			log_err("the system's certificates (%s): %s; give "
				"ca_file=",
				t->file, why);
		return -EINVAL;
	}
	t->checked_ms = now_ms();
	return 0;
}

static void trust_close(struct trust *t)
{
	X509_STORE_free(t->store);
	free(t->file);
	if (t->file || t->store)
		pthread_mutex_destroy(&t->lock);
}

/* The store, loaded again when its file changed (looked at once a second
 * at most); a file that turned unreadable keeps the last store. Called
 * with t->lock held. */
static X509_STORE *trust_current(struct trust *t)
{
	X509_STORE *fresh;
	struct stat st;
	char why[256];
	int64_t now = now_ms();

	if (now - t->checked_ms < 1000)
		return t->store;
	t->checked_ms = now;
	if (stat(t->file, &st) != 0 || same_file(&st, &t->seen))
		return t->store;
	fresh = store_load(t->file, why, sizeof(why));
	if (!fresh) {
		log_err("%s changed and cannot be used (%s): keeping the "
			"certificates loaded before",
			t->file, why);
		t->seen = st;
		return t->store;
	}
	log_info("%s changed: certificates loaded again", t->file);
	X509_STORE_free(t->store);
	t->store = fresh;
	t->seen = st;
	return fresh;
}

/* The subject alternative names of @cert (else its subject), in @out. */
static void leaf_names(X509 *cert, char *out, size_t cap)
{
	GENERAL_NAMES *names =
		X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	size_t o = 0;
	int i;

	out[0] = '\0';
	for (i = 0; names && i < sk_GENERAL_NAME_num(names) && o < cap; i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		const unsigned char *ip;

		if (g->type == GEN_DNS)
			o += snprintf(out + o, cap - o, "%sDNS:%.*s",
				      o ? ", " : "",
				      ASN1_STRING_length(g->d.dNSName),
				      ASN1_STRING_get0_data(g->d.dNSName));
		else if (g->type == GEN_IPADD &&
			 ASN1_STRING_length(g->d.iPAddress) == 4) {
			ip = ASN1_STRING_get0_data(g->d.iPAddress);
			o += snprintf(out + o, cap - o, "%sIP:%u.%u.%u.%u",
				      o ? ", " : "", ip[0], ip[1], ip[2],
				      ip[3]);
		}
	}
	GENERAL_NAMES_free(names);
	if (!out[0])
		X509_NAME_oneline(X509_get_subject_name(cert), out, cap);
}

/* OpenSSL's verdict on each certificate of a chain: the first one that
 * fails is noted, in words, for the transfer's message. */
static int verify_cb(int ok, X509_STORE_CTX *sctx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(
		sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct http *h;
	struct xfer *x = NULL;
	X509 *cert;
	char subject[96] = "?", issuer[96] = "?";

	if (!ssl)
		return ok;
	h = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	if (h)
		x = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl),
					h->trust.ex_index);
	cert = X509_STORE_CTX_get_current_cert(sctx);
	/* the names the server's own certificate is for: a host name that
	 * does not match is said with them */
	if (x && cert && X509_STORE_CTX_get_error_depth(sctx) == 0)
		leaf_names(cert, x->leaf_names, sizeof(x->leaf_names));
	if (ok || !x || x->cert_why[0])
		return ok;
	if (cert) {
		X509_NAME_oneline(X509_get_subject_name(cert), subject,
				  sizeof(subject));
		X509_NAME_oneline(X509_get_issuer_name(cert), issuer,
				  sizeof(issuer));
	}
	snprintf(x->cert_why, sizeof(x->cert_why),
		 "certificate %s issued by %s: %s", subject, issuer,
		 X509_verify_cert_error_string(X509_STORE_CTX_get_error(sctx)));
	return ok;
}

/* libcurl made a TLS context for a new connection: it gets the mount's
 * store (libcurl loaded none: no CA file or folder is set). */
static CURLcode tls_ctx_cb(CURL *curl, void *ctx, void *arg)
{
	struct xfer *x = arg;
	struct trust *t = &x->h->trust;
	SSL_CTX *sctx = ctx;

	/* a reference of the context's own: a store loaded again later
	 * leaves this connection's as it was */
	pthread_mutex_lock(&t->lock);
	SSL_CTX_set1_cert_store(sctx, trust_current(t));
	pthread_mutex_unlock(&t->lock);
	SSL_CTX_set_app_data(sctx, x->h);
	SSL_CTX_set_ex_data(sctx, t->ex_index, x);
	SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER, verify_cb);
	return CURLE_OK;
}

/* Connections of @x verify peers against the mount's store. */
static void tls_setup(struct http *h, struct xfer *x)
{
	curl_easy_setopt(x->curl, CURLOPT_CAINFO, NULL);
	curl_easy_setopt(x->curl, CURLOPT_CAPATH, NULL);
	curl_easy_setopt(x->curl, CURLOPT_SSL_CTX_FUNCTION, tls_ctx_cb);
	curl_easy_setopt(x->curl, CURLOPT_SSL_CTX_DATA, x);
}

/* Whether @rc says the server's certificate, or our trust in it, failed:
 * no retry mends that. */
static bool is_tls_failure(CURLcode rc)
{
	return rc == CURLE_PEER_FAILED_VERIFICATION ||
	       rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_SSL_CERTPROBLEM ||
	       rc == CURLE_SSL_ISSUER_ERROR ||
	       rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH;
}

/* Log a TLS failure once per host: every read of a file there would say
 * the same. At start the caller says it. */
static void tls_said(struct http *h, const char *url, const char *why)
{
	char *scheme = NULL, *host = NULL, *port = NULL, origin[128];
	bool say = true;
	unsigned i, n;

	url_origin(url, &scheme, &host, &port);
	snprintf(origin, sizeof(origin), "%s:%s", host ? host : "?",
		 port ? port : "?");
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	pthread_mutex_lock(&h->lock);
	n = h->n_tls_said < 8 ? h->n_tls_said : 8;
	for (i = 0; i < n && say; i++)
		say = strcmp(h->tls_said[i], origin) != 0;
	if (say)
		snprintf(h->tls_said[h->n_tls_said++ % 8],
			 sizeof(h->tls_said[0]), "%s", origin);
	pthread_mutex_unlock(&h->lock);
	if (h->starting)
		return;
	if (say)
		log_err("%s: %s", url, why);
	else
		log_debug("%s: %s", url, why);
}

/* ---- through a cache tier ---- */

static const char b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* "Proxy-Authorization: Basic " and @in in base64, a new string, or
 * NULL on ENOMEM. */
static char *basic_auth(const char *in)
{
	static const char head[] = "Proxy-Authorization: Basic ";
	const unsigned char *p = (const unsigned char *)in;
	size_t n = strlen(in), o = sizeof(head) - 1, i;
	char *out = malloc(sizeof(head) + (n + 2) / 3 * 4);

	if (!out)
		return NULL;
	memcpy(out, head, o);
	for (i = 0; i < n; i += 3) {
		unsigned v = p[i] << 16 | (i + 1 < n ? p[i + 1] << 8 : 0) |
			     (i + 2 < n ? p[i + 2] : 0);

		out[o++] = b64[v >> 18 & 63];
		out[o++] = b64[v >> 12 & 63];
		out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? b64[v & 63] : '=';
	}
	out[o] = '\0';
	return out;
}

/* The object's version as the tier's key takes it: a listing's time, in
 * the characters one has; anything else (or none) is "-", which the tier
 * does not cache. */
static void version_header(const char *v, char *out, size_t cap)
{
	size_t n = v ? strspn(v, "0123456789abcdefghijklmnopqrstuvwxyz"
				 "ABCDEFGHIJKLMNOPQRSTUVWXYZ:.+-")
		     : 0;

	if (!v || !*v || v[n] || n > 64)
		v = "-";
	snprintf(out, cap, "X-Avalafs-Version: %s", v);
}

/* "Host: " and the authority of @url (its port only when not the
 * scheme's), in @out. 0 or -EINVAL. */
static int host_header(const char *url, char *out, size_t cap)
{
	CURLU *u = curl_url();
	char *host = NULL, *port = NULL;
	int err = -EINVAL;

	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
			port = NULL;
		snprintf(out, cap, "Host: %s%s%s", host, port ? ":" : "",
			 port ? port : "");
		err = 0;
	}
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return err;
}

/* Set up @x's attempt to go through the tier at x->via: the origin's URL
 * in absolute form (a CONNECT tunnel could be cached by nobody), its
 * Host, the object's version for the tier's key (the signature changes at
 * every listing, the object does not), the token, and no-cache when the
 * last answer was bad (the tier's entry is to be replaced). 0 or a
 * negative errno. */
static int tier_setup(struct http *h, struct xfer *x)
{
	char host[512], version[96];
	const char *fixed[] = { host, version, "Accept: */*",
				x->fresh ? "Cache-Control: no-cache" : NULL };
	struct curl_slist *l = NULL, *more;
	char *token = h->tier_auth ? key_source_get(h->tier_auth) : NULL;
	char *auth = token ? basic_auth(token) : NULL;
	int err = host_header(x->req->url, host, sizeof(host));
	size_t i;

	curl_slist_free_all(x->tier_headers);
	x->tier_headers = NULL;
	version_header(x->req->version, version, sizeof(version));
	for (i = 0; !err && i < sizeof(fixed) / sizeof(*fixed); i++) {
		if (!fixed[i])
			continue;
		more = curl_slist_append(l, fixed[i]);
		if (!more)
			err = -ENOMEM;
		l = more ? more : l;
	}
	if (!err && token && !(auth && (more = curl_slist_append(l, auth))))
		err = -ENOMEM;
	else if (!err && token)
		l = more;
	if (err) {
		curl_slist_free_all(l);
		goto out;
	}
	x->tier_headers = l;
	curl_easy_setopt(x->curl, CURLOPT_URL, x->via);
	curl_easy_setopt(x->curl, CURLOPT_REQUEST_TARGET, x->req->url);
	curl_easy_setopt(x->curl, CURLOPT_HTTPHEADER, l);
	/* a redirect of the origin's is not the tier's to follow */
	curl_easy_setopt(x->curl, CURLOPT_FOLLOWLOCATION, 0L);
out:
	if (token) {
		memset(token, 0, strlen(token));
		free(token);
	}
	if (auth) {
		memset(auth, 0, strlen(auth));
		free(auth);
	}
	return err;
}

/* Set up @x's attempt at the API's @url to go to the cache at x->via
 * instead: the same path under its base. 0 or -ENOMEM. */
static int api_tier_setup(struct http *h, struct xfer *x, const char *url)
{
	free(x->via_url);
	x->via_url = NULL;
	if (asprintf(&x->via_url, "%s%s", x->via, url + h->api_len) < 0) {
		x->via_url = NULL;
		return -ENOMEM;
	}
	curl_easy_setopt(x->curl, CURLOPT_URL, x->via_url);
	return 0;
}

/* The tier at @via served: it is back, and a data tier's token is
 * good. */
static void tier_ok(struct http *h, struct tiers *t, const char *via, bool data)
{
	tiers_served(t, via);
	if (!data)
		return; /* the API's caches take no token */
	pthread_mutex_lock(&h->lock);
	h->tier_refused = false;
	pthread_mutex_unlock(&h->lock);
}

/* A tier refused the token (a data_proxy_auth file changed to a wrong
 * one): said once, not once a read, until a tier takes it again. */
static void tier_refused(struct http *h, const char *why)
{
	bool said;

	pthread_mutex_lock(&h->lock);
	said = h->tier_refused;
	h->tier_refused = true;
	pthread_mutex_unlock(&h->lock);
	if (!said)
		log_err("%s: check data_proxy_auth; reads not in the cache "
			"fail until it is accepted",
			why);
}

/* Whether the attempt of @x that ended with @rc is the tier's failure,
 * not the origin's answer: the tier could not be reached (x->tier_down:
 * it is skipped until the reset), or it could not serve this one request
 * (an answer cut off or stalled, an error it marks as its own, a redirect
 * it does not follow): that request alone goes on to the next place. */
static bool tier_failure(struct xfer *x, CURLcode rc)
{
	x->tier_down = false;
	if (!x->via)
		return false;
	if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
	    rc == CURLE_SSL_CONNECT_ERROR || is_tls_failure(rc) ||
	    (rc == CURLE_OPERATION_TIMEDOUT && !x->headed)) {
		x->tier_down = true;
		return true;
	}
	if (rc == CURLE_OK || rc == CURLE_WRITE_ERROR)
		return (x->tier_says && x->status >= 400 && x->status != 407) ||
		       (x->status >= 300 && x->status < 400);
	return x->stalled || rc == CURLE_OPERATION_TIMEDOUT ||
	       rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR ||
	       rc == CURLE_SEND_ERROR || rc == CURLE_PARTIAL_FILE;
}

/* ---- one request: set up, classify, back off ---- */

/* Set up attempt @attempt of @x at @url: its per-attempt state reset and a
 * handle configured, with @left ms to go. 0 or -ENOMEM. */
static int attempt_setup(struct http *h, struct xfer *x, const char *url,
			 struct curl_slist *headers, int64_t left)
{
	int err = 0;

	x->curl = handle_get(h);
	if (!x->curl)
		return -ENOMEM;
	x->len = 0;
	x->pos = 0;
	x->overflow = x->enough = x->checked = false;
	x->bad_range = x->refused = false;
	x->stalled = x->headed = false;
	x->stall_ms = x->moved_at = 0;
	x->seen = 0;
	x->status = 0;
	x->err_len = 0;
	x->err_body[0] = '\0';
	x->cr_start = x->cr_end = x->cr_total = -1;
	x->content_length = -1;
	x->retry_after = -1;
	x->etag[0] = '\0';
	x->curl_err[0] = x->cert_why[0] = x->leaf_names[0] = '\0';

	curl_easy_setopt(x->curl, CURLOPT_URL, url);
	curl_easy_setopt(x->curl, CURLOPT_SHARE, h->share);
	curl_easy_setopt(x->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->curl, CURLOPT_FOLLOWLOCATION, x->is_data ? 1L : 0L);
	curl_easy_setopt(x->curl, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(x->curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(x->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(x->curl, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(x->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(x->curl, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(x->curl, CURLOPT_XFERINFODATA, x);
	curl_easy_setopt(x->curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(x->curl, CURLOPT_ERRORBUFFER, x->curl_err);
	curl_easy_setopt(x->curl, CURLOPT_CONNECTTIMEOUT_MS,
			 left < 10000 ? (long)left : 10000L);
	curl_easy_setopt(x->curl, CURLOPT_TIMEOUT_MS, (long)left);
	curl_easy_setopt(x->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(x->curl, CURLOPT_LOW_SPEED_TIME,
			 h->timeout_s < 10 ? (long)h->timeout_s : 10L);
	curl_easy_setopt(x->curl, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(x->curl, CURLOPT_USERAGENT,
			 "avalafs/" PACKAGE_VERSION);
	tls_setup(h, x);
	if (x->via) {
		err = x->is_data ? tier_setup(h, x) : api_tier_setup(h, x, url);
		if (!err && x->at + 1 < x->n_route) {
			/* a tier that stalls or crawls leaves time for the
			 * next place */
			int64_t c = left / 3 < 5000 ? left / 3 : 5000;

			curl_easy_setopt(x->curl, CURLOPT_CONNECTTIMEOUT_MS,
					 (long)(c < 500 ? 500 : c));
			curl_easy_setopt(x->curl, CURLOPT_TIMEOUT_MS,
					 (long)(left / 2 < 1000 ? 1000
								: left / 2));
			x->stall_ms = (int64_t)h->timeout_s * 1000 / 3;
			if (x->stall_ms > 10000)
				x->stall_ms = 10000;
			if (x->stall_ms < 1000)
				x->stall_ms = 1000;
		}
	}
	if (!x->is_data)
		curl_easy_setopt(x->curl, CURLOPT_ACCEPT_ENCODING, "");
	if (x->is_data) {
		/* ask only for what earlier answers did not deliver */
		snprintf(x->range, sizeof(x->range), "%" PRId64 "-%" PRId64,
			 x->next, x->end - 1);
		curl_easy_setopt(x->curl, CURLOPT_RANGE, x->range);
	}
	return err;
}

/* What to do after an attempt. */
enum outcome {
	DONE, /* an answer to hand back */
	RETRY, /* try again, after a wait */
	NEXT, /* the tier failed: the next place at once */
	FAIL, /* give up now, with an errno */
};

/* The words of a transport failure @rc of @x at @url, in x->why. */
static void transport_why(struct xfer *x, CURLcode rc, const char *url)
{
	char *host = NULL, *port = NULL, *scheme = NULL;
	long os_errno = 0;

	url_origin(url, &scheme, &host, &port);
	curl_easy_getinfo(x->curl, CURLINFO_OS_ERRNO, &os_errno);
	if (rc == CURLE_COULDNT_RESOLVE_HOST)
		snprintf(x->why, sizeof(x->why), "cannot resolve host %.128s",
			 host ? host : "?");
	else if (rc == CURLE_COULDNT_CONNECT && os_errno)
		snprintf(x->why, sizeof(x->why),
			 "cannot connect to %.64s:%.8s: %s", host ? host : "?",
			 port ? port : "?", strerror((int)os_errno));
	else if (is_tls_failure(rc))
		/* the certificate OpenSSL refused, else curl's words (a host
		 * name that does not match is curl's own check) */
		snprintf(x->why, sizeof(x->why),
			 "TLS with %.64s:%.8s: %.150s%s%.100s%s",
			 host ? host : "?", port ? port : "?",
			 x->cert_why[0]	  ? x->cert_why
			 : x->curl_err[0] ? x->curl_err
					  : curl_easy_strerror(rc),
			 !x->cert_why[0] && x->leaf_names[0]
				 ? " (the certificate is for "
				 : "",
			 !x->cert_why[0] ? x->leaf_names : "",
			 !x->cert_why[0] && x->leaf_names[0] ? ")" : "");
	else
		snprintf(x->why, sizeof(x->why), "%.256s",
			 x->curl_err[0] ? x->curl_err : curl_easy_strerror(rc));
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
}

/* Classify attempt @attempt of @x, which ended with @rc: DONE, RETRY
 * (*@wait ms from a Retry-After, else 0 for the backoff), or FAIL with
 * *@err. x->why says what went wrong when it is not DONE. */
static enum outcome classify(struct http *h, struct xfer *x, CURLcode rc,
			     const char *url, int attempt, int64_t *wait,
			     int *err)
{
	const char *why = NULL;

	*wait = 0;
	*err = 0;
	x->why[0] = '\0';
	if (rc == CURLE_WRITE_ERROR && x->enough)
		rc = CURLE_OK;
	if (tier_failure(x, rc)) {
		if (x->stalled)
			snprintf(x->why, sizeof(x->why),
				 "nothing came for %" PRId64 " ms",
				 x->stall_ms);
		else if (rc != CURLE_OK && rc != CURLE_WRITE_ERROR)
			transport_why(x, rc, x->via);
		else if (x->status >= 300 && x->status < 400)
			snprintf(x->why, sizeof(x->why),
				 "it passed on a redirect (HTTP %ld)",
				 x->status);
		else
			snprintf(x->why, sizeof(x->why),
				 "it answered HTTP %ld as its own", x->status);
		return NEXT;
	}
	if (x->via && x->status == 407) {
		snprintf(x->why, sizeof(x->why),
			 "the tier %.200s refused the token (HTTP 407)",
			 x->via);
		*err = -EIO;
		return FAIL;
	}
	if (x->sink_err) {
		*err = x->sink_err;
		return FAIL;
	}
	if (rc == CURLE_ABORTED_BY_CALLBACK && is_cancelled(h)) {
		*err = -ECANCELED;
		return FAIL;
	}
	if (rc == CURLE_WRITE_ERROR && x->overflow && !x->is_data) {
		snprintf(x->why, sizeof(x->why),
			 "answer larger than %zu bytes, refused", x->max_body);
		*err = -EIO;
		return FAIL;
	}
	if (rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT ||
	    rc == CURLE_TOO_MANY_REDIRECTS) {
		snprintf(x->why, sizeof(x->why), "%s", curl_easy_strerror(rc));
		*err = -EPERM;
		return FAIL;
	}
	if (rc == CURLE_WRITE_ERROR && x->is_data &&
	    (x->bad_range || x->refused || x->overflow)) {
		data_answer_ok(x, &why); /* a bad answer: says which */
	} else if (rc != CURLE_OK) {
		transport_why(x, rc, url);
		/* a certificate that does not verify does not heal by
		 * itself; at start, a server not there is said at once */
		if (is_tls_failure(rc) ||
		    ((h->starting ||
		      __atomic_load_n(&h->offline, __ATOMIC_RELAXED)) &&
		     attempt >= 1 &&
		     (rc == CURLE_COULDNT_CONNECT ||
		      rc == CURLE_COULDNT_RESOLVE_HOST ||
		      rc == CURLE_COULDNT_RESOLVE_PROXY ||
		      rc == CURLE_SSL_CONNECT_ERROR))) {
			/* a handshake that fails is no server away */
			*err = is_tls_failure(rc) ||
					       rc == CURLE_SSL_CONNECT_ERROR
				       ? -EPROTO
				       : -EHOSTUNREACH;
			return FAIL;
		}
		return RETRY;
	} else if (x->status == 429) {
		why = "429 Too Many Requests";
		if (x->retry_after >= 0) {
			*wait = x->retry_after * 1000;
			if (*wait > (int64_t)h->retry_after_max_s * 1000)
				*wait = (int64_t)h->retry_after_max_s * 1000;
		}
	} else if (x->status >= 500) {
		why = "server error";
	} else if (x->is_data && is_success(x->status) &&
		   !data_answer_ok(x, &why)) {
		/* why is set */
	} else {
		return DONE;
	}
	/* bytes that did not match: a tier asks the origin again */
	if (x->is_data && (x->bad_range || x->refused || x->overflow ||
			   is_success(x->status)))
		x->fresh = true;
	snprintf(x->why, sizeof(x->why), "%s", why);
	return RETRY;
}

/* The wait before attempt @attempt + 1: exponential, with jitter. */
static int64_t backoff_ms(int attempt)
{
	int64_t cap = BACKOFF_BASE_MS << (attempt < 6 ? attempt : 6);

	if (cap > BACKOFF_MAX_MS)
		cap = BACKOFF_MAX_MS;
	return cap / 2 + random() % (cap / 2 + 1);
}

/* One request with retries until the deadline. @x is set up by the caller
 * except for the per-attempt state. Returns 0 when an answer came, else a
 * negative errno with x->why in words: -EPROTO for a TLS failure,
 * -EHOSTUNREACH for a server not there at start, -EIO otherwise. */
static int perform(struct http *h, struct xfer *x, const char *url,
		   struct curl_slist *headers)
{
	int64_t deadline = now_ms() + (int64_t)h->timeout_s * 1000;
	char logurl[512];
	int attempt, err;

	url_for_log(url, logurl, sizeof(logurl));
	for (attempt = 0;; attempt++) {
		int64_t wait, left;
		enum outcome o;
		CURLcode rc;

		if (is_cancelled(h))
			return -ECANCELED;
		left = deadline - now_ms();
		if (left < 1000)
			left = 1000;
		err = attempt_setup(h, x, url, headers, left);
		if (err) {
			if (x->curl)
				handle_put(h, x->curl);
			x->curl = NULL;
			return err;
		}
		rc = engine_run(h, x->curl);
		if (x->status == 0)
			curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE,
					  &x->status);
		o = classify(h, x, rc, url, attempt, &wait, &err);
		handle_put(h, x->curl);
		x->curl = NULL;
		if (o == DONE) {
			if (x->via)
				tier_ok(h, x->tiers, x->via, x->is_data);
			return 0;
		}
		if (o == NEXT) {
			const char *next =
				x->at + 1 >= x->n_route ? "from the first again"
				: x->route[x->at + 1]	? x->route[x->at + 1]
							: "the origin";

			/* what the tier could not serve, it is to ask the
			 * origin for when it is tried again */
			if (!x->tier_down && x->is_data)
				x->fresh = true;
			/* said once a switch, not once a request */
			if (x->tier_down ? tiers_failed(x->tiers, x->via)
					 : tiers_missed(x->tiers, x->via))
				log_warn("%s: %s%s: next, %s", x->via, x->why,
					 x->tier_down ? "" : " (this request)",
					 next);
			if (x->at + 1 < x->n_route &&
			    now_ms() < deadline - 1000) {
				x->via = x->route[++x->at];
				continue;
			}
			/* none left: from the first again, after a wait */
			x->via = x->route[x->at = 0];
		}
		if (o == FAIL) {
			if (err == -EPROTO)
				tls_said(h, logurl, x->why);
			else if (x->via && x->status == 407)
				tier_refused(h, x->why);
			else if (err == -EIO || err == -EPERM)
				log_err("%s: %s", logurl, x->why);
			return err;
		}
		if (wait == 0)
			wait = backoff_ms(attempt);
		if (x->status == 429 && now_ms() + wait >= deadline &&
		    deadline - now_ms() > 1000) {
			/* a Retry-After past the deadline: one last try at
			 * the deadline beats giving up now */
			wait = deadline - now_ms() - 1000;
		}
		if (now_ms() + wait >= deadline) {
			/* a tier's failure was said as it happened */
			if (o == NEXT)
				log_debug("%s: %s, giving up after %d tries",
					  logurl, x->why, attempt + 1);
			else
				log_err("%s: %s (status %ld), giving up after "
					"%d tries",
					logurl, x->why, x->status, attempt + 1);
			return -EIO;
		}
		log_debug("%s: %s (status %ld), retry in %" PRId64 " ms",
			  logurl, x->why, x->status, wait);
		if (wait_ms(h, wait))
			return -ECANCELED;
	}
}

int http_api_get(struct http *h, const char *url, size_t max_body, bool shared,
		 struct http_resp *resp)
{
	struct curl_slist *headers = NULL, *more;
	struct xfer x = { .h = h, .max_body = max_body };
	struct key_source *keys;
	char *hdr = NULL, *key;
	int err;

	memset(resp, 0, sizeof(*resp));
	resp->total = -1;
	resp->retry_after = -1;
	if (!http_is_api_url(h, url)) {
		log_err("refusing to send the API key off the API's origin");
		return -EPERM;
	}
	pthread_mutex_lock(&h->lock);
	keys = h->keys;
	pthread_mutex_unlock(&h->lock);
	key = keys ? key_source_get(keys) : NULL;
	if (key && asprintf(&hdr, HDR_KEY ": %s", key) < 0)
		hdr = NULL;
	if (key) {
		memset(key, 0, strlen(key));
		free(key);
		if (!hdr)
			return -ENOMEM; /* never without the key it has */
	}
	headers = curl_slist_append(NULL, "Accept: application/json");
	if (headers && hdr && !(more = curl_slist_append(headers, hdr))) {
		curl_slist_free_all(headers);
		headers = NULL;
	}
	if (h->api_tiers && !strncmp(url, h->api_url, h->api_len)) {
		/* what is not a listing's page is the origin's answer now,
		 * and replaces the cache's */
		if (headers && !shared &&
		    !(more = curl_slist_append(headers, "Cache-Control: "
							"no-cache"))) {
			curl_slist_free_all(headers);
			headers = NULL;
		}
		x.tiers = h->api_tiers;
		x.n_route =
			tiers_route(h->api_tiers, url + h->api_len, x.route);
		x.via = x.route[0];
	}
	err = headers ? perform(h, &x, url, headers) : -ENOMEM;
	curl_slist_free_all(headers);
	free(x.via_url);
	/* the API answers: offline no more */
	if (!err && __atomic_load_n(&h->offline, __ATOMIC_RELAXED) &&
	    __atomic_exchange_n(&h->offline, false, __ATOMIC_RELAXED))
		log_info("the API answers again: online");
	if (hdr) {
		memset(hdr, 0, strlen(hdr));
		free(hdr);
	}
	if (err) {
		free(x.body);
		resp->err = err;
		snprintf(resp->why, sizeof(resp->why), "%s",
			 x.why[0] ? x.why : strerror(-err));
		return err;
	}
	fill_resp(&x, resp);
	if (is_success(x.status)) {
		resp->body = x.body ? x.body : strdup("");
		resp->len = x.len;
	} else {
		free(x.body);
		/* all of it: a NUL inside must not make len overstate it */
		resp->body = malloc(x.err_len + 1);
		if (resp->body)
			memcpy(resp->body, x.err_body, x.err_len + 1);
		resp->len = resp->body ? x.err_len : 0;
	}
	return 0;
}

int http_data_stream(struct http *h, const struct http_data_req *req,
		     int64_t start, size_t len, const struct http_sink *sink,
		     struct http_resp *resp)
{
	const char *url = req->url;
	struct xfer x = {
		.h = h,
		.is_data = true,
		.sink = sink,
		.next = start,
		.end = start + (int64_t)len,
	};
	struct curl_slist *headers;
	int err;

	memset(resp, 0, sizeof(*resp));
	resp->total = -1;
	resp->retry_after = -1;
	if (len == 0 || start < 0)
		return -EINVAL;
	if (!is_http_url(url)) {
		log_err("refusing a data URL that is not http or https");
		return -EPERM;
	}
	/* no key header: data URLs never see the key */
	headers = curl_slist_append(NULL, "Accept: */*");
	if (!headers)
		return -ENOMEM;
	x.req = req;
	x.fresh = req->fresh;
	if (h->tiers) {
		x.tiers = h->tiers;
		x.n_route = tiers_route(h->tiers, req->id, x.route);
		x.via = x.route[0];
	}
	err = perform(h, &x, url, headers);
	curl_slist_free_all(headers);
	curl_slist_free_all(x.tier_headers);
	if (err) {
		resp->err = err;
		snprintf(resp->why, sizeof(resp->why), "%s",
			 x.why[0] ? x.why : strerror(-err));
		/* to readers, a server not trusted or not there is EIO */
		return err == -EPROTO || err == -EHOSTUNREACH ? -EIO : err;
	}
	fill_resp(&x, resp);
	if (is_success(x.status)) {
		resp->len = x.next - start;
		if (x.status == 200 && resp->total < 0 && !x.enough)
			resp->total = x.pos;
	}
	return 0;
}

void http_resp_clear(struct http_resp *resp)
{
	free(resp->body);
	resp->body = NULL;
	resp->len = 0;
}

int http_tier_check(struct http *h, char *why, size_t cap)
{
	const char *urls[TIER_MAX];
	size_t n, i;
	int err = 0;

	n = h->tiers ? tiers_all(h->tiers, urls) : 0;
	for (i = 0; i < n && !err; i++) {
		struct http_data_req req = { 0 };
		struct xfer x = { .h = h, .req = &req, .via = urls[i] };
		char *check;
		CURLcode rc;

		if (asprintf(&check, "%s/.well-known/avalafs-tier", urls[i]) <
		    0)
			return -ENOMEM;
		req.url = check;
		x.curl = handle_get(h);
		err = x.curl ? tier_setup(h, &x) : -ENOMEM;
		if (!err) {
			/* to the tier itself: its own check, not an origin's */
			curl_easy_setopt(x.curl, CURLOPT_URL, check);
			curl_easy_setopt(x.curl, CURLOPT_REQUEST_TARGET, NULL);
			curl_easy_setopt(x.curl, CURLOPT_NOBODY, 1L);
			curl_easy_setopt(x.curl, CURLOPT_CONNECTTIMEOUT_MS,
					 5000L);
			curl_easy_setopt(x.curl, CURLOPT_TIMEOUT_MS, 10000L);
			curl_easy_setopt(x.curl, CURLOPT_ERRORBUFFER,
					 x.curl_err);
			tls_setup(h, &x);
			rc = engine_run(h, x.curl);
			curl_easy_getinfo(x.curl, CURLINFO_RESPONSE_CODE,
					  &x.status);
			if (rc == CURLE_OK && x.status == 407) {
				snprintf(why, cap,
					 "the tier %.200s refused the token "
					 "(HTTP 407): check data_proxy_auth",
					 urls[i]);
				err = -EACCES;
			} else if (rc != CURLE_OK) {
				/* down now: the others serve meanwhile */
				transport_why(&x, rc, urls[i]);
				log_warn("%s: %s", urls[i], x.why);
				tiers_failed(h->tiers, urls[i]);
			}
		}
		if (x.curl)
			handle_put(h, x.curl);
		curl_slist_free_all(x.tier_headers);
		free(check);
	}
	return err;
}
