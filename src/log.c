/* Logging: one line per call, to stderr or syslog, never containing the
 * API key. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char *log_secrets[LOG_SECRETS]; /* protected by log_lock */
static bool log_debug_on;
static bool log_syslog_on;

void log_add_secret(const char *secret)
{
	char *copy;
	int i;

	if (!secret || !*secret)
		return;
	pthread_mutex_lock(&log_lock);
	for (i = 0; i < LOG_SECRETS; i++) {
		if (log_secrets[i] && strcmp(log_secrets[i], secret) == 0)
			break;
	}
	if (i == LOG_SECRETS && (copy = strdup(secret))) {
		free(log_secrets[LOG_SECRETS - 1]);
		memmove(log_secrets + 1, log_secrets,
			(LOG_SECRETS - 1) * sizeof(*log_secrets));
		log_secrets[0] = copy;
	}
	pthread_mutex_unlock(&log_lock);
}

/* When a line was cut, the start of a secret may end it: mask that too.
 * Called with log_lock held. */
static void redact_cut_end(char *line)
{
	size_t len = strlen(line), k;
	int i;

	for (i = 0; i < LOG_SECRETS && log_secrets[i]; i++) {
		size_t slen = strlen(log_secrets[i]);

		for (k = slen - 1; k >= 4 && k > 0; k--) {
			if (k <= len &&
			    strncmp(line + len - k, log_secrets[i], k) == 0) {
				memset(line + len - k, '*', k);
				return;
			}
		}
	}
}

void log_set_debug(bool on)
{
	log_debug_on = on;
}

void log_use_syslog(bool on)
{
	if (on && !log_syslog_on)
		openlog("avalafs", LOG_PID, LOG_DAEMON);
	log_syslog_on = on;
}

/* The length of the secret @in starts with, or 0. */
static size_t secret_at(const char *in)
{
	size_t len;
	int i;

	for (i = 0; i < LOG_SECRETS && log_secrets[i]; i++) {
		len = strlen(log_secrets[i]);
		if (strncmp(in, log_secrets[i], len) == 0)
			return len;
	}
	return 0;
}

/* Copy @in to @out (of @cap bytes), every secret replaced by a mark.
 * Called with log_lock held. */
static void redact(const char *in, char *out, size_t cap)
{
	static const char mark[] = "[REDACTED]";
	size_t o = 0, slen;

	while (*in && o + 1 < cap) {
		slen = secret_at(in);
		if (slen) {
			size_t n = sizeof(mark) - 1;

			if (n > cap - 1 - o)
				n = cap - 1 - o;
			memcpy(out + o, mark, n);
			o += n;
			in += slen;
		} else {
			out[o++] = *in++;
		}
	}
	out[o] = '\0';
}

void log_redact(const char *in, char *out, size_t cap)
{
	pthread_mutex_lock(&log_lock);
	redact(in, out, cap);
	pthread_mutex_unlock(&log_lock);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char line[2048], clean[2048];
	va_list ap;
	bool cut;

	if (level == LOG_DEBUG_ && !log_debug_on)
		return;
	va_start(ap, fmt);
	cut = vsnprintf(line, sizeof(line), fmt, ap) >= (int)sizeof(line);
	va_end(ap);

	pthread_mutex_lock(&log_lock);
	if (cut)
		redact_cut_end(line);
	redact(line, clean, sizeof(clean));
	if (log_syslog_on)
		syslog(prio[level], "%s", clean);
	else
		fprintf(stderr, "avalafs: %s\n", clean);
	pthread_mutex_unlock(&log_lock);
}
