/* Metrics of a mount for Prometheus: a small HTTP server (libmicrohttpd)
 * answering GET /metrics with the counters of every part, as text. */
#ifndef AVALAFS_METRICS_H
#define AVALAFS_METRICS_H

#include <stdbool.h>
#include <stddef.h>

/* The addresses metrics= takes, for messages. */
#define METRICS_ADDR_WHAT "127.0.0.1:PORT, [::1]:PORT or unix:PATH"

/* Where the counters come from: all borrowed, and read from the server's
 * thread until metrics_stop(). */
struct metrics_sources {
	struct fs *fs; /* the FUSE requests, its tree, catalog and stream */
	struct api *api;
	struct cache *cache;
	struct disk *disk; /* may be NULL: no data kept on disk */
	struct fetch *fetch;
};

struct metrics;

/* Whether @addr reads as an address metrics= takes: a numeric IPv4
 * address or a bracketed IPv6 one with a port (0: any free one), or
 * unix:PATH. Nothing is bound. */
bool metrics_addr_valid(const char *addr);

/* Bind @addr and listen there, before anything else starts, so that an
 * address in use refuses the mount. A unix socket is made only where
 * nothing is, or where a socket of this user that no one serves was
 * left; a link is never followed. NULL after one line on stderr. */
struct metrics *metrics_open(const char *addr);

/* Serve /metrics from @src on a thread of its own (start it after a fork,
 * never before). Logs where. 0 or a negative errno (logged). */
int metrics_start(struct metrics *m, const struct metrics_sources *src);

/* Stop serving: no connection is taken any more, requests being answered
 * are answered (a few seconds at most), then the thread ends. Accepts
 * NULL and a server never started; the address stays bound. */
void metrics_stop(struct metrics *m);

/* metrics_stop(), then close the socket (a unix socket's file removed).
 * Accepts NULL. */
void metrics_free(struct metrics *m);

/* The counters of @src in Prometheus' text format: a new string of
 * *@len bytes (free() it), or NULL on ENOMEM. */
char *metrics_render(const struct metrics_sources *src, size_t *len);

#endif
