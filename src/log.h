/* Logging to stderr (or syslog once daemonized), with the API key redacted
 * from every line and every control byte escaped. */
#ifndef AVALAFS_LOG_H
#define AVALAFS_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_ERR_, LOG_WARN_, LOG_INFO_, LOG_DEBUG_ };

/* Replace every later occurrence of @secret in log lines by "[REDACTED]":
 * as it is, with any of its bytes JSON-escaped or percent-encoded, and in
 * base64 or base64url (also inside a longer encoded string). The forms are
 * derived once, here; the last LOG_SECRETS secrets are kept. */
void log_add_secret(const char *secret);

#define LOG_SECRETS 8

/* Copy @in into @out (of @cap bytes) with every secret, in any form,
 * replaced by a mark, for text that is cut before it is logged. */
void log_redact(const char *in, char *out, size_t cap);

/* Show debug lines too. */
void log_set_debug(bool on);

/* Send lines to syslog instead of stderr (after the process detached). */
void log_use_syslog(bool on);

/* Log one line: secrets redacted, and every byte below 0x20, DEL, C1
 * control or byte of invalid UTF-8 written as \xHH, so the text a server
 * sent can neither start a line of its own nor drive a terminal. */
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_ERR_, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN_, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO_, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG_, __VA_ARGS__)

#endif
