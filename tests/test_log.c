/* Unit tests of what a failed call tells: the errno of an HTTP status, and
 * what the log lets through of server text (secrets, control bytes). */
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static void test_errno(void)
{
	CHECK(util_http_errno(401) == -EACCES);
	CHECK(util_http_errno(403) == -EACCES);
	CHECK(util_http_errno(404) == -ENOENT);
	CHECK(util_http_errno(500) == -EIO);
	CHECK(util_http_errno(502) == -EIO);
	CHECK(util_http_errno(503) == -EIO);
	CHECK(util_http_errno(400) == -EIO);
	CHECK(util_http_errno(0) == -EIO);
}

/* Everything log_err() writes to stderr while @fn runs: a new string. */
static char *stderr_of(void (*fn)(void))
{
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	char *text = NULL;
	long len;

	if (!tmp || saved < 0)
		goto out;
	fflush(stderr);
	dup2(fileno(tmp), STDERR_FILENO);
	fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	len = ftell(tmp);
	text = calloc(1, len + 1);
	rewind(tmp);
	if (text && fread(text, 1, len, tmp) != (size_t)len) {
		free(text);
		text = NULL;
	}
out:
	if (saved >= 0)
		close(saved);
	if (tmp)
		fclose(tmp);
	return text;
}

#define KEY "sk/live+Zq9~abc=def_ghi-jkl0123"

/* @key with every byte written as @fmt ("%%%02X", "\\u%04x"...). */
static void encode_all(const char *key, const char *fmt, char *out, size_t cap)
{
	size_t o = 0;

	for (; *key && o + 7 < cap; key++)
		o += snprintf(out + o, cap - o, fmt, (unsigned char)*key);
}

/* The key, in every form a server may echo it, is masked: as it is, JSON-
 * escaped, percent-encoded, base64 and base64url at each alignment, and
 * in a mix of these. */
static void test_log_redact(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "a " KEY " b", "a [REDACTED] b" },
		{ "a \"sk\\/live+Zq9~abc=def_ghi-jkl0123\" b",
		  "a \"[REDACTED]\" b" },
		{ "sk\\u002flive\\u002BZq9~abc\\u003ddef_ghi-jkl0123",
		  "[REDACTED]" },
		{ "key=sk%2Flive%2BZq9~abc%3Ddef_ghi-jkl0123&x=1",
		  "key=[REDACTED]&x=1" },
		{ "key=sk%2flive%2bZq9%7eabc%3ddef_ghi-jkl0123&x=1",
		  "key=[REDACTED]&x=1" },
		{ "key=sk%2flive+Zq9~abc\\u003ddef%5Fghi-jkl0123",
		  "key=[REDACTED]" },
		/* base64 of the key alone, padded or not */
		{ "t c2svbGl2ZStacTl+YWJjPWRlZl9naGktamtsMDEyMw== u",
		  "t [REDACTED] u" },
		{ "t c2svbGl2ZStacTl-YWJjPWRlZl9naGktamtsMDEyMw u",
		  "t [REDACTED] u" },
		{ "t c2svbGl2ZStacTl%2BYWJjPWRlZl9naGktamtsMDEyMw%3D%3D u",
		  "t [REDACTED] u" },
		/* after 1 and 2 bytes of something else: the first character
		 * holds bits of both and is all that is left */
		{ "eHNrL2xpdmUrWnE5fmFiYz1kZWZfZ2hpLWprbDAxMjM=",
		  "eH[REDACTED]" },
		{ "eHlzay9saXZlK1pxOX5hYmM9ZGVmX2doaS1qa2wwMTIz",
		  "eHl[REDACTED]" },
		/* inside a longer encoded string */
		{ "eyJhdXRoIjoic2svbGl2ZStacTl+YWJjPWRlZl9naGktamtsMDEyMyJ9",
		  "eyJhdXRoIjoi[REDACTED]J9" },
		{ "eyJhdXRoIjoic2svbGl2ZStacTl-YWJjPWRlZl9naGktamtsMDEyMyJ9",
		  "eyJhdXRoIjoi[REDACTED]J9" },
		/* not the key: left alone */
		{ "sk/live+Zq9 and c2svbGl2 and sk%2Flive",
		  "sk/live+Zq9 and c2svbGl2 and sk%2Flive" },
	};
	char in[512], out[512];
	size_t i;

	log_add_secret(KEY);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		log_redact(cases[i].in, out, sizeof(out));
		CHECK_STR(out, cases[i].out);
	}
	encode_all(KEY, "%%%02X", in, sizeof(in));
	log_redact(in, out, sizeof(out));
	CHECK_STR(out, "[REDACTED]");
	encode_all(KEY, "%%%02x", in, sizeof(in));
	log_redact(in, out, sizeof(out));
	CHECK_STR(out, "[REDACTED]");
	encode_all(KEY, "\\u%04x", in, sizeof(in));
	log_redact(in, out, sizeof(out));
	CHECK_STR(out, "[REDACTED]");
	encode_all(KEY, "\\u%04X", in, sizeof(in));
	log_redact(in, out, sizeof(out));
	CHECK_STR(out, "[REDACTED]");

	/* a secret too short for its base64 to be told from chance is
	 * masked only as it is */
	log_add_secret("s3cr");
	log_redact("s3cr czNjcg== s%33cr", out, sizeof(out));
	CHECK_STR(out, "[REDACTED] czNjcg== [REDACTED]");
	/* a mark that does not fit is left out whole */
	log_redact("abc " KEY, out, 10);
	CHECK_STR(out, "abc ");
}

static void log_hostile_line(void)
{
	log_err("denied\n avalafs: forged\x1b[2J\r\x7f \xc2\x9b"
		"1m \xff\xc3 caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 "
		"\xed\xa0\x80");
}

static void log_cut_line(void)
{
	char pad[2048 - 8 - 1 + 1];

	/* the line holds 2047 bytes: the key is cut after 8 of them */
	memset(pad, 'x', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	log_err("%s%s", pad, KEY);
	log_err("%s%s", pad, "sk%2Flive%2BZq9");
}

/* A line is one line whatever the server sent: control bytes, C1 controls
 * and bytes that are not UTF-8 are written as \xHH; UTF-8 is kept. */
static void test_log_escape(void)
{
	char *text = stderr_of(log_hostile_line), *line;

	CHECK_STR(text,
		  "avalafs: denied\\x0a avalafs: forged\\x1b[2J\\x0d"
		  "\\x7f \\xc2\\x9b1m \\xff\\xc3 caf\xc3\xa9 \xe2\x82\xac "
		  "\xf0\x9f\x98\x80 \\xed\\xa0\\x80\n");
	free(text);

	/* a key cut by the end of a long line is masked as far as it got */
	text = stderr_of(log_cut_line);
	CHECK(text && !strstr(text, "sk/live") && !strstr(text, "sk%2F"));
	line = text ? strchr(text, '\n') : NULL;
	CHECK(line && line - text > 2000 &&
	      strncmp(line - 10, "[REDACTED]\n", 11) == 0);
	CHECK(text && strlen(text) > 11 &&
	      strcmp(text + strlen(text) - 11, "[REDACTED]\n") == 0);
	free(text);
}

int main(void)
{
	test_errno();
	test_log_redact();
	test_log_escape();
	return check_report();
}
