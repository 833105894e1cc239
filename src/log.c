/* Logging: one line per call, to stderr or syslog, never containing the
 * API key in any form a server can echo it, nor a control byte. */
#include "log.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

/* The forms of a secret looked for: the secret itself, then the part of its
 * base64 that is the same wherever it sits in a longer encoded string, at
 * each of the three alignments, in the standard and the URL alphabet. Any
 * byte of a form may also come JSON-escaped or percent-encoded. */
enum { FORM_RAW, FORM_BASE64, LOG_FORMS = FORM_BASE64 + 6 };

#define MIN_BASE64 8 /* a shorter base64 form would match by chance */
#define MIN_PREFIX 4 /* the start of a secret masked where a line was cut */

static const char base64_std[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char base64_url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

struct secret {
	char *forms[LOG_FORMS]; /* NULL where there is none */
};

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static struct secret log_secrets[LOG_SECRETS]; /* protected by log_lock */
static bool log_debug_on;
static bool log_syslog_on;

static void erase(char *s)
{
	if (s) {
		memset(s, 0, strlen(s));
		free(s);
	}
}

static void secret_clear(struct secret *s)
{
	int f;

	for (f = 0; f < LOG_FORMS; f++) {
		erase(s->forms[f]);
		s->forms[f] = NULL;
	}
}

/* The characters of the base64 of @skip bytes of anything followed by
 * @secret that depend on @secret alone, in @alphabet: a new string, or NULL
 * when they are fewer than MIN_BASE64 or on ENOMEM. */
static char *base64_middle(const char *secret, size_t skip,
			   const char *alphabet)
{
	size_t n = strlen(secret), first, last, i, bit;
	unsigned int pair;
	unsigned char *in;
	char *out = NULL;

	/* character i holds bits [6i, 6i + 6): those past the @skip bytes and
	 * not past the secret's end, whatever follows it */
	first = (8 * skip + 5) / 6;
	last = 8 * (skip + n) / 6;
	if (last < first + MIN_BASE64)
		return NULL;
	in = calloc(skip + n + 1, 1); /* one more: the last read pairs bytes */
	if (in)
		out = malloc(last - first + 1);
	if (out) {
		memcpy(in + skip, secret, n);
		for (i = first; i < last; i++) {
			bit = 6 * i;
			pair = in[bit / 8] << 8 | in[bit / 8 + 1];
			out[i - first] =
				alphabet[(pair >> (10 - bit % 8)) & 63];
		}
		out[last - first] = '\0';
	}
	if (in) {
		memset(in, 0, skip + n);
		free(in);
	}
	return out;
}

/* Fill @s with the forms of @secret; false when not even the secret itself
 * could be copied (a base64 form left out costs less than no secret). */
static bool secret_derive(struct secret *s, const char *secret)
{
	size_t skip;

	s->forms[FORM_RAW] = strdup(secret);
	if (!s->forms[FORM_RAW])
		return false;
	for (skip = 0; skip < 3; skip++) {
		s->forms[FORM_BASE64 + skip] =
			base64_middle(secret, skip, base64_std);
		s->forms[FORM_BASE64 + 3 + skip] =
			base64_middle(secret, skip, base64_url);
	}
	return true;
}

void log_add_secret(const char *secret)
{
	struct secret fresh = { { NULL } };
	int i;

	if (!secret || !*secret)
		return;
	pthread_mutex_lock(&log_lock);
	for (i = 0; i < LOG_SECRETS; i++) {
		if (log_secrets[i].forms[FORM_RAW] &&
		    strcmp(log_secrets[i].forms[FORM_RAW], secret) == 0)
			break;
	}
	if (i == LOG_SECRETS && secret_derive(&fresh, secret)) {
		secret_clear(&log_secrets[LOG_SECRETS - 1]);
		memmove(log_secrets + 1, log_secrets,
			(LOG_SECRETS - 1) * sizeof(*log_secrets));
		log_secrets[0] = fresh;
	} else {
		secret_clear(&fresh);
	}
	pthread_mutex_unlock(&log_lock);
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

/* The value of the two hex digits at @p, either case, or -1. */
static int hex_byte(const char *p)
{
	int v = 0, i;

	for (i = 0; i < 2; i++) {
		if (!isxdigit((unsigned char)p[i]))
			return -1;
		v = v * 16 +
		    (isdigit((unsigned char)p[i])
			     ? p[i] - '0'
			     : tolower((unsigned char)p[i]) - 'a' + 10);
	}
	return v;
}

/* How many bytes at @p spell the byte @c: @c itself, a JSON escape of it
 * (\/, \", \\ or \u00XX), %XX, or + for a space; 0 when they do not. */
static size_t spells(const char *p, char c)
{
	unsigned char u = c;

	if (*p == c || (c == ' ' && *p == '+'))
		return 1;
	if (*p == '%' && hex_byte(p + 1) == u)
		return 3;
	if (*p != '\\')
		return 0;
	if (p[1] == c && (c == '/' || c == '"' || c == '\\'))
		return 2;
	if (p[1] == 'u' && p[2] == '0' && p[3] == '0' && hex_byte(p + 4) == u)
		return 6;
	return 0;
}

/* The length of the text at @in that spells @form, byte by byte, or 0.
 * With @cut (the line was cut short), a spelling of at least MIN_PREFIX
 * bytes of @form that runs into the end counts too, up to the end: the cut
 * may have fallen inside an escape. */
static size_t spelling_at(const char *in, const char *form, bool cut)
{
	const char *p = in;
	size_t i, n;

	for (i = 0; form[i]; i++) {
		n = spells(p, form[i]);
		if (n == 0) {
			if (cut && i >= MIN_PREFIX && strnlen(p, 6) < 6)
				return p - in + strlen(p);
			return 0;
		}
		p += n;
	}
	return p - in;
}

/* What follows the secret's part of a base64 string and is masked with it:
 * the one character that also holds bits of the secret, then the padding. */
static size_t base64_tail(const char *p)
{
	static const char signs[] = "+/-_";
	const char *s = p;
	size_t n;
	int i;

	if (isalnum((unsigned char)*s)) {
		s++;
	} else {
		for (i = 0; signs[i]; i++) {
			n = spells(s, signs[i]);
			if (n) {
				s += n;
				break;
			}
		}
	}
	while ((n = spells(s, '=')))
		s += n;
	return s - p;
}

/* The length of a secret, in any of its forms, that @in starts with, or 0.
 * Called with log_lock held. */
static size_t secret_at(const char *in, bool cut)
{
	size_t n;
	int i, f;

	for (i = 0; i < LOG_SECRETS && log_secrets[i].forms[FORM_RAW]; i++) {
		for (f = 0; f < LOG_FORMS; f++) {
			if (!log_secrets[i].forms[f])
				continue;
			n = spelling_at(in, log_secrets[i].forms[f], cut);
			if (n)
				return f == FORM_RAW ? n
						     : n + base64_tail(in + n);
		}
	}
	return 0;
}

/* The bytes of the printable character @s starts with, or 0 when its first
 * byte is to be escaped: a C0 control or DEL, the start of a C1 control
 * (U+0080 to U+009F, which some terminals obey), or a byte that starts no
 * well-formed UTF-8. Other UTF-8 is kept: names in lines stay readable. */
static size_t char_len(const char *text)
{
	const unsigned char *s = (const unsigned char *)text;
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (*s < 0x20 || *s == 0x7f)
		return 0;
	if (*s < 0x80)
		return 1;
	if (*s >= 0xc2 && *s <= 0xdf) {
		n = 2;
		if (*s == 0xc2)
			lo = 0xa0;
	} else if (*s >= 0xe0 && *s <= 0xef) {
		n = 3;
		if (*s == 0xe0)
			lo = 0xa0; /* no overlong form */
		else if (*s == 0xed)
			hi = 0x9f; /* no surrogate */
	} else if (*s >= 0xf0 && *s <= 0xf4) {
		n = 4;
		if (*s == 0xf0)
			lo = 0x90;
		else if (*s == 0xf4)
			hi = 0x8f; /* nothing past U+10FFFF */
	} else {
		return 0;
	}
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	}
	return n;
}

/* Append @n bytes of @p to @out (of @cap bytes, @o used); false when they do
 * not fit, so a line is cut only between whole marks and escapes. */
static bool put(char *out, size_t *o, size_t cap, const char *p, size_t n)
{
	if (*o + n >= cap)
		return false;
	memcpy(out + *o, p, n);
	*o += n;
	return true;
}

/* Copy @in to @out (of @cap bytes) with every secret, in any form,
 * replaced by a mark and, with @escape, every byte char_len() refuses
 * written as \xHH, so server text can neither forge a line nor drive a
 * terminal. @cut: @in was cut short. Called with log_lock held. */
static void scrub(const char *in, char *out, size_t cap, bool cut, bool escape)
{
	static const char mark[] = "[REDACTED]";
	char hex[5];
	size_t o = 0, n;

	while (*in) {
		n = secret_at(in, cut);
		if (n) {
			if (!put(out, &o, cap, mark, sizeof(mark) - 1))
				break;
			in += n;
			continue;
		}
		n = escape ? char_len(in) : 1;
		if (n == 0) {
			snprintf(hex, sizeof(hex), "\\x%02x",
				 (unsigned char)*in);
			if (!put(out, &o, cap, hex, 4))
				break;
			in++;
		} else {
			if (!put(out, &o, cap, in, n))
				break;
			in += n;
		}
	}
	out[o] = '\0';
}

void log_redact(const char *in, char *out, size_t cap)
{
	pthread_mutex_lock(&log_lock);
	scrub(in, out, cap, false, false);
	pthread_mutex_unlock(&log_lock);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char line[2048], clean[4 * sizeof(line)]; /* room for every \xHH */
	va_list ap;
	bool cut;

	if (level == LOG_DEBUG_ && !log_debug_on)
		return;
	va_start(ap, fmt);
	cut = vsnprintf(line, sizeof(line), fmt, ap) >= (int)sizeof(line);
	va_end(ap);

	pthread_mutex_lock(&log_lock);
	scrub(line, clean, sizeof(clean), cut, true);
	if (log_syslog_on)
		syslog(prio[level], "%s", clean);
	else
		fprintf(stderr, "avalafs: %s\n", clean);
	pthread_mutex_unlock(&log_lock);
}
