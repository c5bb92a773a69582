/* Shared by the C benchmark clients: monotonic time (the same clock as Python's
 * time.monotonic() on Linux), a one-line fatal error, and small file helpers. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* --name value arguments: returns the value of `name`, or `dflt` when it is absent. */
static inline const char *arg(int argc, char **argv, const char *name, const char *dflt)
{
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], name) == 0) {
			return argv[i + 1];
		}
	}
	if (dflt == NULL) {
		die("missing argument %s", name);
	}
	return dflt;
}

static inline void *read_file(const char *path, size_t *len)
{
	FILE *fh = fopen(path, "rb");
	if (fh == NULL) {
		die("%s: %s", path, strerror(errno));
	}
	fseek(fh, 0, SEEK_END);
	long size = ftell(fh);
	fseek(fh, 0, SEEK_SET);
	char *buf = malloc((size_t)size + 1);
	if (buf == NULL || fread(buf, 1, (size_t)size, fh) != (size_t)size) {
		die("%s: short read", path);
	}
	fclose(fh);
	*len = (size_t)size;
	return buf;
}

#endif
