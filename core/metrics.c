/* metrics.c - Prometheus text exposition (format 0.0.4) of the daemon's
 * counters, gauges and the HTTP latency histogram.
 *
 * Families live in an array sorted by name, and each family's samples in an
 * array sorted by their label text, so rendering is a plain walk and its
 * order never changes between scrapes (tests and diffs rely on that). The
 * numbers are small (tens of families, a few samples each), so binary search
 * plus memmove on insert is all the structure needed. */
#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "log.h"
#include "util.h"

/* configure passes PACKAGE_VERSION on the command line, or, with a config
 * header, in the build directory's config.h: angle brackets so automake's
 * -I. finds that one rather than core/config.h (the daemon's configuration).
 * PARLEY_VERSION, if given, wins; a bare compile says "dev". */
#if defined(HAVE_CONFIG_H)
#include <config.h>
#endif
#if defined(PARLEY_VERSION)
#define METRICS_VERSION PARLEY_VERSION
#elif defined(PACKAGE_VERSION)
#define METRICS_VERSION PACKAGE_VERSION
#else
#define METRICS_VERSION "dev"
#endif

#define METRICS_COMPONENT "metrics"

/* A runaway label (say, a client-chosen value) must not eat the memory. */
#define METRICS_MAX_SAMPLES_PER_FAMILY 4096

#define HTTP_REQUESTS_NAME "parley_http_requests_total"
#define HTTP_DURATION_NAME "parley_http_request_duration_seconds"

/* Upper bounds of the latency buckets, and their le="" labels spelled as
 * Prometheus clients usually spell them. The +Inf bucket is the count. */
static const double duration_bounds[] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};
static const char *const duration_le[] = {
	"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5",
	"5", "10"
};
#define N_BUCKETS (sizeof(duration_bounds) / sizeof(duration_bounds[0]))

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metric_sample {
	char *labels;                  /* owned; inside of {...}, "" for none */
	uint64_t count;                /* counter value; histogram observations */
	double value;                  /* gauge value; histogram sum */
	uint64_t *buckets;             /* histogram only: per-bucket (not cumulative) */
};

struct metric_family {
	char *name;                    /* owned */
	char *help;                    /* owned */
	enum metric_type type;
	struct metric_sample *samples; /* owned, sorted by labels */
	size_t n_samples, cap_samples;
	bool warned_full;
};

struct metric_collector {
	metrics_collector_fn fn;
	void *arg;
};

static struct {
	struct metric_family *families;  /* sorted by name */
	size_t n_families, cap_families;
	struct metric_collector *collectors;
	size_t n_collectors;
} m;

static double process_start_seconds;

/* Record the start time when the program is loaded, which is as close to
 * the process start as the code can see, and independent of when the first
 * metric happens to be touched. */
__attribute__((constructor)) static void metrics_record_start_time(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	process_start_seconds = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* ------------------------------------------------------------- lookup */

/* Prometheus metric names: [a-zA-Z_:][a-zA-Z0-9_:]*. Anything else would
 * make the whole exposition unparseable. */
static bool name_is_valid(const char *name)
{
	if (name == NULL || *name == '\0')
		return false;
	for (const char *p = name; *p; p++) {
		bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
		             *p == ':';
		bool digit = *p >= '0' && *p <= '9';
		if (!alpha && !(digit && p != name))
			return false;
	}
	return true;
}

/* Index of `name`, or where it would be inserted (with *found false). */
static size_t family_index(const char *name, bool *found)
{
	size_t lo = 0, hi = m.n_families;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m.families[mid].name, name);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

/* The family `name` of `type`, created if new. NULL (after a warning) when
 * the name is invalid or already used with another type. Strings borrowed. */
static struct metric_family *family_get(const char *name, const char *help,
                                        enum metric_type type)
{
	if (!name_is_valid(name)) {
		log_warn(METRICS_COMPONENT, "ignoring a metric with an invalid name");
		return NULL;
	}
	bool found;
	size_t i = family_index(name, &found);
	if (found) {
		struct metric_family *f = &m.families[i];
		if (f->type != type) {
			log_warn(METRICS_COMPONENT, "metric %s is used with two types; ignoring", name);
			return NULL;
		}
		if (f->help == NULL && help != NULL)
			f->help = xstrdup(help);
		return f;
	}
	if (m.n_families == m.cap_families) {
		m.cap_families = m.cap_families ? m.cap_families * 2 : 16;
		m.families = xrealloc(m.families, m.cap_families * sizeof(*m.families));
	}
	memmove(&m.families[i + 1], &m.families[i], (m.n_families - i) * sizeof(*m.families));
	m.n_families++;
	struct metric_family *f = &m.families[i];
	memset(f, 0, sizeof(*f));
	f->name = xstrdup(name);
	f->help = xstrdup(help);
	f->type = type;
	return f;
}

/* The sample with these labels, created (zeroed) if new; NULL when the
 * family is full or the labels are not escaped. `labels` borrowed. */
static struct metric_sample *sample_get(struct metric_family *f, const char *labels)
{
	if (labels == NULL)
		labels = "";
	/* Escaped label text never holds a raw newline; one would break the
	 * line-based format for every metric after it. */
	if (strchr(labels, '\n') != NULL) {
		log_warn(METRICS_COMPONENT, "ignoring %s: unescaped newline in labels", f->name);
		return NULL;
	}
	size_t lo = 0, hi = f->n_samples;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(f->samples[mid].labels, labels);
		if (c == 0)
			return &f->samples[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (f->n_samples >= METRICS_MAX_SAMPLES_PER_FAMILY) {
		if (!f->warned_full) {
			log_warn(METRICS_COMPONENT, "%s has %d label sets; dropping new ones", f->name,
			         METRICS_MAX_SAMPLES_PER_FAMILY);
			f->warned_full = true;
		}
		return NULL;
	}
	if (f->n_samples == f->cap_samples) {
		f->cap_samples = f->cap_samples ? f->cap_samples * 2 : 4;
		f->samples = xrealloc(f->samples, f->cap_samples * sizeof(*f->samples));
	}
	memmove(&f->samples[lo + 1], &f->samples[lo], (f->n_samples - lo) * sizeof(*f->samples));
	f->n_samples++;
	struct metric_sample *s = &f->samples[lo];
	memset(s, 0, sizeof(*s));
	s->labels = xstrdup(labels);
	if (f->type == METRIC_HISTOGRAM)
		s->buckets = xcalloc(N_BUCKETS, sizeof(*s->buckets));
	return s;
}

/* ------------------------------------------------------------- updates */

char *metrics_escape_label(const char *value)
{
	if (value == NULL)
		value = "";
	size_t extra = 0;
	for (const char *p = value; *p; p++)
		if (*p == '\\' || *p == '"' || *p == '\n')
			extra++;
	char *out = xmalloc(strlen(value) + extra + 1);
	char *o = out;
	for (const char *p = value; *p; p++) {
		switch (*p) {
		case '\\': *o++ = '\\'; *o++ = '\\'; break;
		case '"': *o++ = '\\'; *o++ = '"'; break;
		case '\n': *o++ = '\\'; *o++ = 'n'; break;
		default: *o++ = *p; break;
		}
	}
	*o = '\0';
	return out;
}

void metrics_counter_add(const char *name, const char *help, const char *labels, uint64_t delta)
{
	struct metric_family *f = family_get(name, help, METRIC_COUNTER);
	struct metric_sample *s = f ? sample_get(f, labels) : NULL;
	if (s != NULL)
		s->count += delta;
}

void metrics_gauge_set(const char *name, const char *help, const char *labels, double value)
{
	struct metric_family *f = family_get(name, help, METRIC_GAUGE);
	struct metric_sample *s = f ? sample_get(f, labels) : NULL;
	if (s != NULL)
		s->value = value;
}

void metrics_gauge_clear(const char *name)
{
	bool found;
	size_t i = family_index(name, &found);
	if (!found || m.families[i].type != METRIC_GAUGE)
		return;
	struct metric_family *f = &m.families[i];
	for (size_t j = 0; j < f->n_samples; j++) {
		free(f->samples[j].labels);
		free(f->samples[j].buckets);
	}
	f->n_samples = 0;
}

void metrics_http_observe(const char *route, const char *method, int status, double seconds)
{
	char *e_route = metrics_escape_label(route ? route : "unknown");
	char *e_method = metrics_escape_label(method);
	size_t cap = strlen(e_route) + strlen(e_method) + 64;
	char *labels = xmalloc(cap);

	snprintf(labels, cap, "route=\"%s\",method=\"%s\",status=\"%d\"", e_route, e_method, status);
	metrics_counter_add(HTTP_REQUESTS_NAME, "HTTP requests served, by route, method and status",
	                    labels, 1);

	snprintf(labels, cap, "route=\"%s\"", e_route);
	struct metric_family *f = family_get(HTTP_DURATION_NAME,
	                                     "Time to answer HTTP requests, by route",
	                                     METRIC_HISTOGRAM);
	struct metric_sample *s = f ? sample_get(f, labels) : NULL;
	if (s != NULL) {
		/* A clock step can make a duration negative or NaN: count it as 0
		 * rather than poison the sum. */
		if (!(seconds >= 0))
			seconds = 0;
		for (size_t i = 0; i < N_BUCKETS; i++) {
			if (seconds <= duration_bounds[i]) {
				s->buckets[i]++;
				break;
			}
		}
		s->count++;
		s->value += seconds;
	}
	free(labels);
	free(e_method);
	free(e_route);
}

void metrics_add_collector(metrics_collector_fn fn, void *arg)
{
	if (fn == NULL)
		return;
	m.collectors = xrealloc(m.collectors, (m.n_collectors + 1) * sizeof(*m.collectors));
	m.collectors[m.n_collectors].fn = fn;
	m.collectors[m.n_collectors].arg = arg;
	m.n_collectors++;
}

/* ------------------------------------------------------------- render */

/* The shortest text that reads back as the same double, as the format
 * wants it (NaN, +Inf, -Inf spelled out). */
static void format_double(double v, char *buf, size_t len)
{
	if (isnan(v)) {
		snprintf(buf, len, "NaN");
	} else if (isinf(v)) {
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
	} else {
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(buf, len, "%.*g", prec, v);
			if (strtod(buf, NULL) == v)
				break;
		}
	}
}

/* HELP text escapes only backslash and newline. */
static void render_help(struct evbuffer *out, const struct metric_family *f)
{
	evbuffer_add_printf(out, "# HELP %s ", f->name);
	for (const char *p = f->help ? f->help : f->name; *p; p++) {
		if (*p == '\\')
			evbuffer_add(out, "\\\\", 2);
		else if (*p == '\n')
			evbuffer_add(out, "\\n", 2);
		else
			evbuffer_add(out, p, 1);
	}
	evbuffer_add(out, "\n", 1);
}

/* name{labels} or name{labels,extra} or name{extra} or name. */
static void render_series(struct evbuffer *out, const char *name, const char *suffix,
                          const char *labels, const char *extra)
{
	bool has_labels = labels[0] != '\0';
	bool has_extra = extra != NULL;
	evbuffer_add_printf(out, "%s%s", name, suffix);
	if (has_labels || has_extra)
		evbuffer_add_printf(out, "{%s%s%s}", labels, has_labels && has_extra ? "," : "",
		                    has_extra ? extra : "");
}

static void render_family(struct evbuffer *out, const struct metric_family *f)
{
	static const char *const type_names[] = { "counter", "gauge", "histogram" };
	char num[64];

	render_help(out, f);
	evbuffer_add_printf(out, "# TYPE %s %s\n", f->name, type_names[f->type]);
	for (size_t i = 0; i < f->n_samples; i++) {
		const struct metric_sample *s = &f->samples[i];
		switch (f->type) {
		case METRIC_COUNTER:
			render_series(out, f->name, "", s->labels, NULL);
			evbuffer_add_printf(out, " %" PRIu64 "\n", s->count);
			break;
		case METRIC_GAUGE:
			format_double(s->value, num, sizeof(num));
			render_series(out, f->name, "", s->labels, NULL);
			evbuffer_add_printf(out, " %s\n", num);
			break;
		case METRIC_HISTOGRAM: {
			uint64_t cumulative = 0;
			char le[32];
			for (size_t b = 0; b < N_BUCKETS; b++) {
				cumulative += s->buckets[b];
				snprintf(le, sizeof(le), "le=\"%s\"", duration_le[b]);
				render_series(out, f->name, "_bucket", s->labels, le);
				evbuffer_add_printf(out, " %" PRIu64 "\n", cumulative);
			}
			render_series(out, f->name, "_bucket", s->labels, "le=\"+Inf\"");
			evbuffer_add_printf(out, " %" PRIu64 "\n", s->count);
			format_double(s->value, num, sizeof(num));
			render_series(out, f->name, "_sum", s->labels, NULL);
			evbuffer_add_printf(out, " %s\n", num);
			render_series(out, f->name, "_count", s->labels, NULL);
			evbuffer_add_printf(out, " %" PRIu64 "\n", s->count);
			break;
		}
		}
	}
}

void metrics_render(struct evbuffer *out)
{
	/* Collectors first, so their gauges are current in this scrape. */
	for (size_t i = 0; i < m.n_collectors; i++)
		m.collectors[i].fn(m.collectors[i].arg);

	metrics_gauge_set("parley_process_start_time_seconds",
	                  "Start time of the process since the Unix epoch, in seconds", NULL,
	                  process_start_seconds);
	char *version = metrics_escape_label(METRICS_VERSION);
	char labels[128];
	snprintf(labels, sizeof(labels), "version=\"%s\"", version);
	free(version);
	metrics_gauge_set("parley_build_info", "The running build; the value is always 1", labels, 1);

	for (size_t i = 0; i < m.n_families; i++)
		render_family(out, &m.families[i]);
}

void metrics_reset(void)
{
	for (size_t i = 0; i < m.n_families; i++) {
		struct metric_family *f = &m.families[i];
		for (size_t j = 0; j < f->n_samples; j++) {
			free(f->samples[j].labels);
			free(f->samples[j].buckets);
		}
		free(f->samples);
		free(f->name);
		free(f->help);
	}
	free(m.families);
	free(m.collectors);
	memset(&m, 0, sizeof(m));
}
