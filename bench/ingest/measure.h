/* measure.h - clocks and latency samples shared by loadgen and dbdrive.
 *
 * Header-only (static functions), like mix.h: each benchmark program links
 * only its own source file. */
#ifndef PARLEY_BENCH_MEASURE_H
#define PARLEY_BENCH_MEASURE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

/* Monotonic nanoseconds. */
static inline int64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* CPU seconds (user + system) this process used so far. */
static inline double bench_cpu_seconds(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Append one latency sample (ms) to a growing array; false when out of
 * memory. *lat: owned by the caller (free). */
static inline bool bench_record_latency(double **lat, size_t *n, size_t *cap, double ms)
{
	if (*n == *cap) {
		size_t grown = *cap ? *cap * 2 : 4096;
		double *p = realloc(*lat, grown * sizeof(*p));
		if (p == NULL)
			return false;
		*lat = p;
		*cap = grown;
	}
	(*lat)[(*n)++] = ms;
	return true;
}

#endif
