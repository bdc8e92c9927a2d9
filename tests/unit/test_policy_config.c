/* test_policy_config.c - node settings and the cluster policy, as the
 * settings table declares them: what a policy file accepts and refuses, the
 * canonical JSON that is stored and compared, taking a policy's values into
 * a node's configuration, and what a node reports about a policy.
 *
 * JSON is written with single quotes for readability; put() turns them into
 * double quotes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_internal.h"  /* the settings table, walked below */

typedef struct fixture {
	char dir[PATH_MAX];
	char file[PATH_MAX + 16];   /* dir/policy.json (or the node's file) */
	char err[1024];
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");
	snprintf(f->dir, sizeof(f->dir), "%s/parley-policy-XXXXXX",
	         tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->file, sizeof(f->file), "%s/policy.json", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	unlink(f->file);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void put(fixture *f, const char *json)
{
	FILE *fp = fopen(f->file, "w");
	assert_non_null(fp);
	for (const char *p = json; *p; p++)
		fputc(*p == '\'' ? '"' : *p, fp);
	assert_int_equal(fclose(fp), 0);
}

static cfg *policy(fixture *f, const char *json)
{
	put(f, json);
	cfg *c = NULL;
	if (!cfg_policy_load(f->file, &c, f->err, sizeof(f->err)))
		fail_msg("expected the policy to load, got: %s", f->err);
	return c;
}

static cfg *node(fixture *f, const char *json)
{
	put(f, json);
	cfg *c = NULL;
	if (!cfg_load(f->file, &c, f->err, sizeof(f->err)))
		fail_msg("expected the node file to load, got: %s", f->err);
	return c;
}

static json_t *parse(const char *json)
{
	char *doc = strdup(json);
	for (char *p = doc; *p; p++)
		if (*p == '\'')
			*p = '"';
	json_t *v = json_loads(doc, 0, NULL);
	free(doc);
	assert_non_null(v);
	return v;
}

/* ------------------------------------------------------------ refusals */

static const struct {
	const char *policy;
	const char *error;     /* after "FILE: " */
} refused[] = {
	{ "[]", "(top level): expected an object, got array" },
	{ "{'ingest': {'case_prefix': 'a b'}}", "ingest.case_prefix: must be 1..16 of A-Z a-z 0-9 - _" },
	{ "{'ingest': {'reopen_window_s': -1}}", "ingest.reopen_window_s: must be at least 0" },
	{ "{'ingest': {'auto_merge_verified_email': 1}}",
	  "ingest.auto_merge_verified_email: expected a boolean, got integer" },
	{ "{'ingest': {'order_number_pattern': '('}}", NULL /* regcomp's words vary */ },
	{ "{'ingest': {'max_inflight_batches': 2}}",
	  "ingest.max_inflight_batches: a node setting: it belongs in each node's file, not in the "
	  "cluster policy" },
	{ "{'database': {'dsn': 'x'}}",
	  "database: a node setting: it belongs in each node's file, not in the cluster policy" },
	{ "{'channels': []}",
	  "channels: a node setting: it belongs in each node's file, not in the cluster policy" },
	{ "{'ingest': {'case_prefx': 'X-'}}", "ingest.case_prefx: unknown key" },
	{ "{'sinks': [{'name': 'desk', 'plugin': 'zendesk'}]}", "sinks[0].plugin: unknown key" },
	{ "{'sinks': [{'route': {}}]}", "sinks[0].name: required key missing" },
	{ "{'sinks': [{'name': 'a'}, {'name': 'a'}]}",
	  "sinks[1].name: duplicate sink name \"a\" (also sinks[0])" },
	{ "{'sinks': [{'name': 'a', 'route': {'visibility': 'all'}}]}",
	  "sinks[0].route.visibility: must be \"public\" or \"private\"" },
	{ "{'notices': [{'kinds': ['message.received']}]}", "notices[0].notifier: required key missing" },
	{ "{'jobs': {'notify_delivery_failed': 'ops'}}",
	  "jobs.notify_delivery_failed: expected an array, got string" },
};

static void test_a_policy_file_refuses_with_file_key_and_reason(void **state)
{
	fixture *f = *state;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		put(f, refused[i].policy);
		cfg *c = NULL;
		f->err[0] = '\0';
		if (cfg_policy_load(f->file, &c, f->err, sizeof(f->err)))
			fail_msg("%s: expected a refusal", refused[i].policy);
		assert_null(c);
		char want[PATH_MAX + 512];
		if (refused[i].error == NULL) {
			snprintf(want, sizeof(want), "%s: ingest.order_number_pattern: invalid regular "
			         "expression: ", f->file);
			assert_memory_equal(f->err, want, strlen(want));
			continue;
		}
		snprintf(want, sizeof(want), "%s: %s", f->file, refused[i].error);
		if (strcmp(f->err, want) != 0)
			fail_msg("%s:\n got  %s\n want %s", refused[i].policy, f->err, want);
	}
}

static bool section_has_cluster_key(const cfg_section *s)
{
	for (const cfg_setting *r = s->rows; r->key != NULL; r++)
		if ((r->flags & CFG_CLUSTER) || r->parse_policy != NULL)
			return true;
	return false;
}

/* Every row without a cluster part is refused in a policy, every cluster
 * row is accepted: the scope column is what the reader enforces. */
static void check_scope(fixture *f, const cfg_section *s, const cfg_setting *r)
{
	char doc[512], want[PATH_MAX + 256];
	const char *value = r->type == CFG_T_BOOL ? "true"
	                  : r->type == CFG_T_INT || r->type == CFG_T_SIZE ? "100000"
	                  : r->type == CFG_T_STRING ? "'X-'"
	                  : r->type == CFG_T_SECTION ? "{}" : "[]";
	if (s->path[0] != '\0')
		snprintf(doc, sizeof(doc), "{'%s': {'%s': %s}}", s->path, r->key, value);
	else
		snprintf(doc, sizeof(doc), "{'%s': %s}", r->key, value);
	put(f, doc);
	cfg *c = NULL;
	bool ok = cfg_policy_load(f->file, &c, f->err, sizeof(f->err));
	bool cluster = (r->flags & CFG_CLUSTER) || r->parse_policy != NULL;
	if (cluster) {
		if (!ok && strstr(f->err, "a node setting") != NULL)
			fail_msg("%s: a cluster key refused as a node setting: %s", doc, f->err);
	} else if (r->type != CFG_T_SECTION) {
		/* In a section without cluster keys (database, log, limits) the
		 * section itself is refused. */
		bool whole = s->path[0] != '\0' && !section_has_cluster_key(s);
		snprintf(want, sizeof(want), "%s: %s%s%s: a node setting: it belongs in each node's "
		         "file, not in the cluster policy", f->file, s->path,
		         s->path[0] && !whole ? "." : "", whole ? "" : r->key);
		if (ok || strcmp(f->err, want) != 0)
			fail_msg("%s: expected %s, got %s", doc, want, ok ? "success" : f->err);
	}
	cfg_free(c);
}

static void walk(fixture *f, const cfg_section *s)
{
	for (const cfg_setting *r = s->rows; r->key != NULL; r++) {
		check_scope(f, s, r);
		if (r->type == CFG_T_SECTION)
			walk(f, r->section);
	}
}

static void test_the_scope_of_every_row_decides_what_a_policy_holds(void **state)
{
	walk(*state, &cfg_root_section);
}

/* ------------------------------------------------------ canonical JSON */

static void test_the_canonical_policy_holds_every_cluster_key_with_defaults(void **state)
{
	fixture *f = *state;
	cfg *c = policy(f, "{'ingest': {'case_prefix': 'T-'}, 'sinks': [{'name': 'zz'},"
	                   " {'name': 'aa', 'route': {'visibility': 'private'}}]}");
	json_t *got = cfg_cluster_json(c);
	json_t *want = parse(
		"{'ingest': {'reopen_window_s': 604800, 'auto_merge_verified_email': true,"
		" 'auto_merge_verified_phone': true, 'case_prefix': 'T-',"
		" 'order_number_pattern': 'order[^0-9]{0,12}([0-9][0-9A-Z-]{3,})',"
		" 'notify_new_conversation': []},"
		" 'jobs': {'notify_delivery_failed': []},"
		" 'assignment': {'away_grace_seconds': 300},"
		" 'sinks': [{'name': 'aa', 'route': {'visibility': 'private'}}, {'name': 'zz', 'route': {}}],"
		" 'notices': []}");
	if (!json_equal(got, want)) {
		char *text = json_dumps(got, JSON_SORT_KEYS);
		fail_msg("got %s", text);
	}
	json_decref(got);
	json_decref(want);
	cfg_free(c);
}

/* A node file and a policy file saying the same thing store the same body. */
static void test_a_node_file_and_a_policy_with_the_same_rules_are_equal(void **state)
{
	fixture *f = *state;
	cfg *n = node(f, "{'database': {'dsn': 'x'}, 'ingest': {'case_prefix': 'N-', 'batch_max_events': 7},"
	                 " 'channels': [{'name': 'site', 'plugin': 'webhook', 'config': {'secret': 'a'}}],"
	                 " 'sinks': [{'name': 'desk', 'plugin': 'zendesk', 'config': {},"
	                 "            'route': {'channels': ['site']}}],"
	                 " 'notifiers': [{'name': 'ops', 'plugin': 'slack'}],"
	                 " 'notices': [{'notifier': 'ops', 'kinds': ['sink.failed']}]}");
	cfg *p = policy(f, "{'notices': [{'notifier': 'ops', 'kinds': ['sink.failed']}],"
	                   " 'sinks': [{'name': 'desk', 'route': {'channels': ['site']}}],"
	                   " 'ingest': {'case_prefix': 'N-'}}");
	json_t *a = cfg_cluster_json(n), *b = cfg_cluster_json(p);
	assert_true(json_equal(a, b));
	char out[256];
	assert_int_equal(cfg_cluster_differences(a, b, out, sizeof(out)), 0);
	assert_string_equal(out, "");
	json_decref(a);
	json_decref(b);
	cfg_free(n);
	cfg_free(p);
}

/* -------------------------------------------- a policy on a node's file */

static void test_a_node_takes_the_policy_values_and_reports_what_differs(void **state)
{
	fixture *f = *state;
	cfg *n = node(f, "{'database': {'dsn': 'x'}, 'ingest': {'case_prefix': 'N-'},"
	                 " 'channels': [{'name': 'site', 'plugin': 'webhook', 'config': {'secret': 'a'}}],"
	                 " 'sinks': [{'name': 'desk', 'plugin': 'zendesk', 'config': {}},"
	                 "           {'name': 'other', 'plugin': 'zendesk', 'config': {}}],"
	                 " 'notifiers': [{'name': 'ops', 'plugin': 'slack'}]}");
	cfg *p = policy(f, "{'ingest': {'case_prefix': 'P-', 'reopen_window_s': 60,"
	                   "            'notify_new_conversation': ['ops', 'pager']},"
	                   " 'jobs': {'notify_delivery_failed': ['ops']},"
	                   " 'sinks': [{'name': 'desk', 'route': {'channels': ['site', 'shop']}},"
	                   "           {'name': 'gone'}],"
	                   " 'notices': [{'notifier': 'mail'}]}");
	json_t *file_body = cfg_cluster_json(n), *policy_body = cfg_cluster_json(p);
	char out[512];
	assert_int_equal(cfg_cluster_differences(file_body, policy_body, out, sizeof(out)), 6);
	assert_string_equal(out, "ingest.reopen_window_s, ingest.case_prefix, "
	                         "ingest.notify_new_conversation, jobs.notify_delivery_failed, sinks, "
	                         "notices");
	assert_int_equal(cfg_policy_unknown_names(n, p, out, sizeof(out)), 4);
	assert_string_equal(out, "ingest.notify_new_conversation \"pager\", notices[0].notifier \"mail\", "
	                         "sinks[0].route.channels \"shop\", sinks[1].name \"gone\"");
	assert_int_equal(cfg_policy_unrouted_sinks(n, p, out, sizeof(out)), 1);
	assert_string_equal(out, "other");

	cfg_take_cluster(n, p);
	assert_string_equal(n->ingest.case_prefix, "P-");
	assert_int_equal(n->ingest.reopen_window_s, 60);
	assert_int_equal(n->ingest.n_notify_new_conversation, 2);
	assert_string_equal(n->ingest.notify_new_conversation[1], "pager");
	assert_int_equal(n->jobs.n_notify_delivery_failed, 1);
	assert_int_equal(n->database.pool_size, 4);   /* node settings stay */
	/* A sink the policy names takes its route; one it does not takes nothing. */
	json_t *now = cfg_cluster_json(n);
	json_t *want = parse("[{'name': 'desk', 'route': {'channels': ['site', 'shop']}},"
	                     " {'name': 'other', 'route': {'channels': []}}]");
	assert_true(json_equal(json_object_get(now, "sinks"), want));
	assert_true(json_equal(json_object_get(now, "notices"), json_object_get(policy_body, "notices")));
	json_decref(want);
	json_decref(now);

	/* A short buffer is cut, never overrun. */
	char small[10];
	assert_int_equal(cfg_cluster_differences(file_body, policy_body, small, sizeof(small)), 6);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	json_decref(file_body);
	json_decref(policy_body);
	cfg_free(n);
	cfg_free(p);
}

/* Only a file that writes a cluster key (a sink's route included) can
 * disagree with the policy. */
static void test_a_file_writes_cluster_keys_only_when_it_names_one(void **state)
{
	fixture *f = *state;
	static const struct {
		const char *file;
		bool writes;
	} cases[] = {
		{ "{'database': {'dsn': 'x'}, 'ingest': {'batch_max_events': 9}, 'jobs': {'concurrency': 2}}",
		  false },
		{ "{'database': {'dsn': 'x'}, 'sinks': [{'name': 'd', 'plugin': 'zendesk'}]}", false },
		{ "{'database': {'dsn': 'x'}, 'sinks': [{'name': 'd', 'plugin': 'zendesk', 'route': {}}]}",
		  true },
		{ "{'database': {'dsn': 'x'}, 'ingest': {'case_prefix': 'PC-'}}", true },
		{ "{'database': {'dsn': 'x'}, 'notices': []}", true },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cfg *c = node(f, cases[i].file);
		if (c->writes_cluster_keys != cases[i].writes)
			fail_msg("%s: writes_cluster_keys is %d", cases[i].file, c->writes_cluster_keys);
		cfg_free(c);
	}
}

/* etc/policy.example.json loads and says what etc/parley.example.json says. */
static void test_the_example_policy_agrees_with_the_example_node_file(void **state)
{
	(void)state;
	char err[1024], dir[PATH_MAX], path[PATH_MAX + 32];
	const char *src = getenv("PARLEY_SRCDIR");
	if (src == NULL || src[0] == '\0')
		src = getenv("srcdir");
	snprintf(dir, sizeof(dir), "%s", src != NULL && src[0] != '\0' ? src : ".");
	cfg *p = NULL, *n = NULL;
	snprintf(path, sizeof(path), "%s/etc/policy.example.json", dir);
	if (!cfg_policy_load(path, &p, err, sizeof(err)))
		fail_msg("%s", err);
	snprintf(path, sizeof(path), "%s/etc/parley.example.json", dir);
	setenv("PARLEY_SITE_SECRET", "example-site-secret", 1);
	bool ok = cfg_load(path, &n, err, sizeof(err));
	unsetenv("PARLEY_SITE_SECRET");
	if (!ok)
		fail_msg("%s", err);
	json_t *a = cfg_cluster_json(p), *b = cfg_cluster_json(n);
	char out[256];
	if (cfg_cluster_differences(a, b, out, sizeof(out)) != 0)
		fail_msg("the examples differ in %s", out);
	json_decref(a);
	json_decref(b);
	cfg_free(p);
	cfg_free(n);
}

/* A stored body is read like a file, with "what" in place of the file name. */
static void test_a_stored_body_is_checked_like_a_file(void **state)
{
	(void)state;
	char err[512];
	cfg *c = NULL;
	json_t *body = parse("{'ingest': {'case_prefix': ''}}");
	assert_false(cfg_policy_parse(body, "cluster policy version 7", &c, err, sizeof(err)));
	assert_string_equal(err, "cluster policy version 7: ingest.case_prefix: must be 1..16 of "
	                         "A-Z a-z 0-9 - _");
	json_decref(body);
	body = parse("{'ingest': {'case_prefix': 'Q-'}}");
	assert_true(cfg_policy_parse(body, "cluster policy version 7", &c, err, sizeof(err)));
	assert_string_equal(c->ingest.case_prefix, "Q-");
	json_decref(body);
	cfg_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_a_policy_file_refuses_with_file_key_and_reason,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_the_scope_of_every_row_decides_what_a_policy_holds,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_the_canonical_policy_holds_every_cluster_key_with_defaults,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_node_file_and_a_policy_with_the_same_rules_are_equal,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_node_takes_the_policy_values_and_reports_what_differs,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_file_writes_cluster_keys_only_when_it_names_one,
		                                setup, teardown),
		cmocka_unit_test(test_the_example_policy_agrees_with_the_example_node_file),
		cmocka_unit_test(test_a_stored_body_is_checked_like_a_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
