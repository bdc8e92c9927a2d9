/* test_metrics.c - the Prometheus exposition: exact sample lines, escaping,
 * one HELP/TYPE per family, collectors, accumulation, stable order. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/buffer.h>

#include "metrics.h"

/* Render everything into a NUL-terminated, malloc'd string. */
static char *render(void)
{
	struct evbuffer *b = evbuffer_new();
	assert_non_null(b);
	metrics_render(b);
	size_t n = evbuffer_get_length(b);
	char *text = malloc(n + 1);
	assert_non_null(text);
	evbuffer_remove(b, text, n);
	text[n] = '\0';
	evbuffer_free(b);
	return text;
}

/* Where `line` appears as a whole line of `text`, or NULL. */
static const char *find_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
		bool starts = p == text || p[-1] == '\n';
		if (starts && p[n] == '\n')
			return p;
	}
	return NULL;
}

static void assert_has_line(const char *text, const char *line)
{
	if (find_line(text, line) == NULL)
		fail_msg("missing line: %s\n--- rendered ---\n%s", line, text);
}

static int count_occurrences(const char *text, const char *needle)
{
	int n = 0;
	for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

static int reset(void **state)
{
	metrics_reset();
	return 0;
}

static void test_http_observe_renders_counters_and_histogram(void **state)
{
	/* Durations chosen to be exact in binary, so the sum prints exactly;
	 * 0.25 sits on a bucket bound, which is inclusive (le = "<="). */
	metrics_http_observe("/webhooks/{instance}", "POST", 200, 0.0625);
	metrics_http_observe("/webhooks/{instance}", "POST", 200, 0.25);
	metrics_http_observe("/webhooks/{instance}", "POST", 401, 0.5);
	metrics_http_observe("/healthz", "GET", 200, 0.0009765625);

	char *t = render();
	assert_has_line(t, "parley_http_requests_total{route=\"/webhooks/{instance}\",method=\"POST\",status=\"200\"} 2");
	assert_has_line(t, "parley_http_requests_total{route=\"/webhooks/{instance}\",method=\"POST\",status=\"401\"} 1");
	assert_has_line(t, "parley_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1");
	assert_has_line(t, "# TYPE parley_http_requests_total counter");
	assert_has_line(t, "# TYPE parley_http_request_duration_seconds histogram");

	const char *h = "parley_http_request_duration_seconds";
	char line[256];
#define HIST_LINE(suffix_labels, value) \
	(snprintf(line, sizeof(line), "%s%s %s", h, suffix_labels, value), line)
	assert_has_line(t, HIST_LINE("_bucket{route=\"/webhooks/{instance}\",le=\"0.001\"}", "0"));
	assert_has_line(t, HIST_LINE("_bucket{route=\"/webhooks/{instance}\",le=\"0.05\"}", "0"));
	assert_has_line(t, HIST_LINE("_bucket{route=\"/webhooks/{instance}\",le=\"0.1\"}", "1"));
	assert_has_line(t, HIST_LINE("_bucket{route=\"/webhooks/{instance}\",le=\"0.25\"}", "2"));
	assert_has_line(t, HIST_LINE("_bucket{route=\"/webhooks/{instance}\",le=\"0.5\"}", "3"));
	assert_has_line(t, HIST_LINE("_bucket{route=\"/webhooks/{instance}\",le=\"10\"}", "3"));
	assert_has_line(t, HIST_LINE("_bucket{route=\"/webhooks/{instance}\",le=\"+Inf\"}", "3"));
	assert_has_line(t, HIST_LINE("_sum{route=\"/webhooks/{instance}\"}", "0.8125"));
	assert_has_line(t, HIST_LINE("_count{route=\"/webhooks/{instance}\"}", "3"));
	assert_has_line(t, HIST_LINE("_bucket{route=\"/healthz\",le=\"0.001\"}", "1"));
	assert_has_line(t, HIST_LINE("_count{route=\"/healthz\"}", "1"));
#undef HIST_LINE
	/* Every bucket of the format is there, in order, for each route. */
	assert_int_equal(count_occurrences(t, "_bucket{route=\"/healthz\""), 14);
	const char *b1 = strstr(t, "_bucket{route=\"/healthz\",le=\"0.001\"}");
	const char *b2 = strstr(t, "_bucket{route=\"/healthz\",le=\"0.0025\"}");
	const char *binf = strstr(t, "_bucket{route=\"/healthz\",le=\"+Inf\"}");
	assert_true(b1 && b2 && binf && b1 < b2 && b2 < binf);
	free(t);
}

static void test_escape_label(void **state)
{
	char *e = metrics_escape_label("a\"b\\c\nd");
	assert_string_equal(e, "a\\\"b\\\\c\\nd");
	free(e);

	e = metrics_escape_label("plain");
	assert_string_equal(e, "plain");
	free(e);

	e = metrics_escape_label("");
	assert_string_equal(e, "");
	free(e);
}

static void test_observe_escapes_route_and_method(void **state)
{
	metrics_http_observe("/x\"y\\z\nw", "GET", 404, 0.001);
	char *t = render();
	assert_has_line(t, "parley_http_requests_total{route=\"/x\\\"y\\\\z\\nw\",method=\"GET\",status=\"404\"} 1");
	/* No raw newline from the label leaked into the output. */
	assert_null(strstr(t, "\nw\""));
	free(t);
}

static void test_help_and_type_once_per_family(void **state)
{
	metrics_counter_add("parley_plugin_events_total", "Events emitted", "instance=\"a\"", 1);
	metrics_counter_add("parley_plugin_events_total", "Events emitted", "instance=\"b\"", 2);
	metrics_counter_add("parley_plugin_events_total", "Events emitted", "instance=\"c\"", 3);
	metrics_http_observe("/a", "GET", 200, 0.01);
	metrics_http_observe("/b", "GET", 200, 0.01);

	char *t = render();
	assert_int_equal(count_occurrences(t, "# HELP parley_plugin_events_total "), 1);
	assert_int_equal(count_occurrences(t, "# TYPE parley_plugin_events_total counter\n"), 1);
	assert_has_line(t, "# HELP parley_plugin_events_total Events emitted");
	assert_int_equal(count_occurrences(t, "# TYPE parley_http_request_duration_seconds "), 1);
	assert_int_equal(count_occurrences(t, "# HELP parley_http_request_duration_seconds "), 1);
	assert_int_equal(count_occurrences(t, "# TYPE parley_http_requests_total "), 1);
	/* The TYPE line comes before the family's first sample. */
	assert_true(strstr(t, "# TYPE parley_plugin_events_total") <
	            strstr(t, "parley_plugin_events_total{"));
	free(t);

	/* Rendering twice changes nothing. */
	char *t1 = render();
	char *t2 = render();
	assert_string_equal(t1, t2);
	free(t1);
	free(t2);
}

static int collector_calls;

static void pool_collector(void *arg)
{
	int *idle = arg;
	collector_calls++;
	metrics_gauge_set("parley_db_connections", "Database connections by state", "state=\"idle\"",
	                  *idle);
	metrics_gauge_set("parley_db_connections", "Database connections by state", "state=\"busy\"",
	                  1.5);
}

static void test_collector_sets_gauges_at_render(void **state)
{
	int idle = 3;
	collector_calls = 0;
	metrics_add_collector(pool_collector, &idle);
	assert_int_equal(collector_calls, 0);

	char *t = render();
	assert_int_equal(collector_calls, 1);
	assert_has_line(t, "# TYPE parley_db_connections gauge");
	assert_has_line(t, "parley_db_connections{state=\"idle\"} 3");
	assert_has_line(t, "parley_db_connections{state=\"busy\"} 1.5");
	free(t);

	/* A gauge holds the last value set, and the collector runs per render. */
	idle = 7;
	t = render();
	assert_int_equal(collector_calls, 2);
	assert_has_line(t, "parley_db_connections{state=\"idle\"} 7");
	assert_null(find_line(t, "parley_db_connections{state=\"idle\"} 3"));
	free(t);
}

static void test_counter_add_accumulates(void **state)
{
	metrics_counter_add("parley_deliveries_total", "Deliveries", "outcome=\"ok\"", 1);
	metrics_counter_add("parley_deliveries_total", "Deliveries", "outcome=\"ok\"", 41);
	metrics_counter_add("parley_deliveries_total", "Deliveries", "outcome=\"retry\"", 0);
	metrics_counter_add("parley_unlabelled_total", "No labels", NULL, 5);
	metrics_counter_add("parley_unlabelled_total", "No labels", "", 5);

	char *t = render();
	assert_has_line(t, "parley_deliveries_total{outcome=\"ok\"} 42");
	assert_has_line(t, "parley_deliveries_total{outcome=\"retry\"} 0");
	/* NULL and "" are the same, empty, label set. */
	assert_has_line(t, "parley_unlabelled_total 10");
	free(t);
}

static void test_gauge_clear_drops_every_label_set(void **state)
{
	metrics_gauge_set("parley_cluster_jobs", "Jobs", "state=\"queued\"", 3);
	metrics_gauge_set("parley_cluster_jobs", "Jobs", "state=\"dead\"", 1);
	metrics_counter_add("parley_kept_total", "Kept", NULL, 2);
	metrics_gauge_clear("parley_cluster_jobs");
	metrics_gauge_clear("parley_kept_total");   /* not a gauge: left alone */
	metrics_gauge_clear("parley_never_set");    /* unknown: nothing happens */

	char *t = render();
	assert_null(strstr(t, "parley_cluster_jobs{"));
	assert_has_line(t, "parley_kept_total 2");
	free(t);
	/* Set again after a clear, a label set is back. */
	metrics_gauge_set("parley_cluster_jobs", "Jobs", "state=\"dead\"", 4);
	t = render();
	assert_has_line(t, "parley_cluster_jobs{state=\"dead\"} 4");
	assert_null(strstr(t, "parley_cluster_jobs{state=\"queued\"}"));
	free(t);
}

static void test_order_is_by_family_then_labels(void **state)
{
	metrics_counter_add("parley_zeta_total", "z", "k=\"b\"", 1);
	metrics_counter_add("parley_alpha_total", "a", "k=\"b\"", 1);
	metrics_counter_add("parley_zeta_total", "z", "k=\"a\"", 1);
	metrics_counter_add("parley_alpha_total", "a", "k=\"a\"", 1);

	char *t = render();
	const char *aa = find_line(t, "parley_alpha_total{k=\"a\"} 1");
	const char *ab = find_line(t, "parley_alpha_total{k=\"b\"} 1");
	const char *za = find_line(t, "parley_zeta_total{k=\"a\"} 1");
	const char *zb = find_line(t, "parley_zeta_total{k=\"b\"} 1");
	assert_true(aa && ab && za && zb);
	assert_true(aa < ab);
	assert_true(ab < za);
	assert_true(za < zb);
	free(t);
}

static void test_builtin_process_and_build_info(void **state)
{
	char *t = render();
	assert_has_line(t, "# TYPE parley_process_start_time_seconds gauge");
	assert_has_line(t, "# TYPE parley_build_info gauge");
	const char *bi = strstr(t, "\nparley_build_info{version=\"");
	assert_non_null(bi);
	const char *eol = strchr(bi + 1, '\n');
	assert_non_null(eol);
	assert_memory_equal(eol - 3, "} 1", 3);

	const char *st = strstr(t, "\nparley_process_start_time_seconds ");
	assert_non_null(st);
	double start = strtod(st + strlen("\nparley_process_start_time_seconds "), NULL);
	double now = (double)time(NULL);
	/* This test process started moments ago. */
	assert_true(start <= now + 1);
	assert_true(start > now - 600);
	free(t);
}

static void test_type_conflicts_and_bad_names_are_ignored(void **state)
{
	metrics_counter_add("parley_things", "Things", NULL, 4);
	metrics_gauge_set("parley_things", "Things", NULL, 99);        /* wrong type */
	metrics_counter_add("bad name{", "Broken", NULL, 1);            /* invalid name */
	metrics_counter_add("parley_bad_labels_total", "x", "a=\"1\"\nb=\"2\"", 1);

	char *t = render();
	assert_has_line(t, "parley_things 4");
	assert_int_equal(count_occurrences(t, "# TYPE parley_things "), 1);
	assert_null(strstr(t, "bad name"));
	assert_null(strstr(t, "b=\"2\""));
	free(t);
}

static void test_reset_forgets_everything(void **state)
{
	metrics_counter_add("parley_gone_total", "Gone", NULL, 1);
	metrics_add_collector(pool_collector, &(int){ 1 });
	metrics_reset();
	collector_calls = 0;

	char *t = render();
	assert_null(strstr(t, "parley_gone_total"));
	assert_int_equal(collector_calls, 0);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_http_observe_renders_counters_and_histogram, reset, reset),
		cmocka_unit_test_setup_teardown(test_escape_label, reset, reset),
		cmocka_unit_test_setup_teardown(test_observe_escapes_route_and_method, reset, reset),
		cmocka_unit_test_setup_teardown(test_help_and_type_once_per_family, reset, reset),
		cmocka_unit_test_setup_teardown(test_collector_sets_gauges_at_render, reset, reset),
		cmocka_unit_test_setup_teardown(test_counter_add_accumulates, reset, reset),
		cmocka_unit_test_setup_teardown(test_order_is_by_family_then_labels, reset, reset),
		cmocka_unit_test_setup_teardown(test_builtin_process_and_build_info, reset, reset),
		cmocka_unit_test_setup_teardown(test_type_conflicts_and_bad_names_are_ignored, reset, reset),
		cmocka_unit_test_setup_teardown(test_reset_forgets_everything, reset, reset),
		cmocka_unit_test_setup_teardown(test_gauge_clear_drops_every_label_set, reset, reset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
