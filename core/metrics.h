/* metrics.h - Prometheus text exposition of the daemon's counters.
 *
 * Single-threaded: called only from the loop. */
#ifndef PARLEY_CORE_METRICS_H
#define PARLEY_CORE_METRICS_H

#include <stdint.h>
#include <event2/buffer.h>

/* One finished HTTP request: parley_http_requests_total{route,method,status}
 * and parley_http_request_duration_seconds{route} histogram. Strings borrowed. */
void metrics_http_observe(const char *route, const char *method, int status, double seconds);

/* A named counter with one label set, e.g.
 * metrics_counter_add("parley_plugin_events_total", "Events", "instance=\"demo\"", 1).
 * `labels` is the inside of {...} (already escaped) or NULL. Copies names. */
void metrics_counter_add(const char *name, const char *help, const char *labels, uint64_t delta);
/* A gauge set to a value. */
void metrics_gauge_set(const char *name, const char *help, const char *labels, double value);
/* Drop every label set of gauge `name` (it renders with no samples). */
void metrics_gauge_clear(const char *name);

/* Collectors run at render time to set gauges (db pool states, plugins). */
typedef void (*metrics_collector_fn)(void *arg);
void metrics_add_collector(metrics_collector_fn fn, void *arg);

/* Render everything in text format 0.0.4 into out. */
void metrics_render(struct evbuffer *out);
void metrics_reset(void); /* frees everything (shutdown, tests) */

/* Escape a label value for the exposition format into a malloc'd string. */
char *metrics_escape_label(const char *value);

#endif
