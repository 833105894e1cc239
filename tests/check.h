/* The checks the C unit tests count: CHECK(expr), CHECK_STR(got, want),
 * and CHECK_REPORT() printing "N passed, N failed" as main's last word. */
#ifndef AVALAFS_TESTS_CHECK_H
#define AVALAFS_TESTS_CHECK_H

#include <stdio.h>
#include <string.h>

static int n_pass, n_fail;

#define CHECK(expr)                                                            \
	do {                                                                   \
		if (expr) {                                                    \
			n_pass++;                                              \
		} else {                                                       \
			n_fail++;                                              \
			fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, \
				__LINE__, #expr);                              \
		}                                                              \
	} while (0)

/* Compare two strings (either may be NULL) and show both when they differ. */
#define CHECK_STR(got, want) check_str(__FILE__, __LINE__, #got, got, want)

static inline void check_str(const char *file, int line, const char *expr,
			     const char *got, const char *want)
{
	if ((!got && !want) || (got && want && strcmp(got, want) == 0)) {
		n_pass++;
		return;
	}
	n_fail++;
	fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n", file, line,
		expr, got ? got : "(null)", want ? want : "(null)");
}

/* The closing line, and main's exit status. */
static inline int check_report(void)
{
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail != 0;
}

#endif
