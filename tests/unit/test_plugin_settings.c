/* test_plugin_settings.c - ABI 1.3 settings tables, through the real loader
 * and real plugin shared objects: the core fills the plugin's struct with
 * defaults and written values, refuses every kind of bad value with the file,
 * the JSON path and the reason (never the value), hands a reload its new
 * struct and keeps the old one when the reload is refused, and still loads
 * plugins built against ABI 1.2. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "config.h"
#include "host_api.h"
#include "log.h"
#include "metrics.h"
#include "plugin_loader.h"
#include "plugin_settings.h"
#include "../plugins/settings_probe.h"

#ifndef TEST_BUILDDIR
#define TEST_BUILDDIR "."
#endif

static const char *test_plugin_dir = TEST_BUILDDIR "/tests/plugins/.libs";
static char tmpdir[] = "/tmp/parley-psettings-XXXXXX";

/* A config with one settings_probe notifier whose "config" is `config`. */
static cfg *load_probe(const char *config, char *err, size_t errlen)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/parley.json", tmpdir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "{\"database\": {\"dsn\": \"host=127.0.0.1 dbname=none\"}, \"plugin_dir\": \"%s\","
	        " \"notifiers\": [{\"name\": \"n\", \"plugin\": \"settings_probe\", \"config\": %s}]}\n",
	        test_plugin_dir, config);
	fclose(f);
	cfg *c = NULL;
	if (!cfg_load(path, &c, err, errlen))
		fail_msg("config: %s", err);
	return c;
}

static const settings_probe *probe_of(plugin_set *s)
{
	parley_instance *inst = plugins_find(s, PARLEY_KIND_NOTIFIER, "n");
	assert_non_null(inst);
	const settings_probe *p = inst->self;
	/* The plugin reads the very struct the core owns. */
	assert_ptr_equal(p->settings, inst->settings);
	return p;
}

static void test_defaults_fill_absent_keys(void **state)
{
	char err[2048];
	cfg *c = load_probe("{\"token\": \"12345678\"}", err, sizeof(err));
	plugin_set *s = NULL;
	if (!plugins_load(c, &s, err, sizeof(err)))
		fail_msg("load: %s", err);
	const settings_probe_settings *v = probe_of(s)->settings;
	assert_string_equal(v->label, "none");
	assert_string_equal(v->token, "12345678");
	assert_int_equal(v->timeout_ms, 5000);
	assert_int_equal(v->verbose, 1);
	assert_string_equal(v->endpoint, "https://api.example.com/v1");
	assert_string_equal(v->tags[0], "a");
	assert_string_equal(v->tags[1], "b");
	assert_null(v->tags[2]);
	assert_null(v->extra);
	assert_null(v->auth_user);
	assert_string_equal(v->auth_key, "probe-default-key");
	assert_int_equal(v->port, 8080);
	plugins_free(s);
	metrics_reset();
	cfg_free(c);
}

static void test_written_values_fill_every_type(void **state)
{
	char err[2048], secret_path[256];
	/* Secrets may come from a file, resolved by the core as for any key. */
	snprintf(secret_path, sizeof(secret_path), "%s/token", tmpdir);
	FILE *f = fopen(secret_path, "w");
	assert_non_null(f);
	fputs("from-a-file-0001\n", f);
	fclose(f);
	char config[1024];
	snprintf(config, sizeof(config),
	         "{\"label\": \"L\", \"token\": \"$file:%s\", \"timeout_ms\": 60000,"
	         " \"verbose\": false, \"endpoint\": \"http://127.0.0.1:9/x\", \"tags\": [\"x\"],"
	         " \"extra\": {\"k\": [1, true]}, \"auth\": {\"user\": \"u\", \"key\": \"k2\"},"
	         " \"port\": 1}", secret_path);
	cfg *c = load_probe(config, err, sizeof(err));
	plugin_set *s = NULL;
	/* extra without verbose is the plugin's own cross-field refusal ... */
	assert_false(plugins_load(c, &s, err, sizeof(err)));
	if (strstr(err, "parley.json: notifiers[0].config.extra: needs verbose") == NULL)
		fail_msg("unexpected error: %s", err);
	cfg_free(c);

	/* ... so with verbose on, every value lands in its field. */
	snprintf(config, sizeof(config),
	         "{\"label\": \"L\", \"token\": \"$file:%s\", \"timeout_ms\": 60000,"
	         " \"verbose\": true, \"endpoint\": \"http://127.0.0.1:9/x\", \"tags\": [\"x\"],"
	         " \"extra\": {\"k\": [1, true]}, \"auth\": {\"user\": \"u\", \"key\": \"k2\"},"
	         " \"port\": 1}", secret_path);
	c = load_probe(config, err, sizeof(err));
	if (!plugins_load(c, &s, err, sizeof(err)))
		fail_msg("load: %s", err);
	const settings_probe_settings *v = probe_of(s)->settings;
	assert_string_equal(v->label, "L");
	assert_string_equal(v->token, "from-a-file-0001");
	assert_int_equal(v->timeout_ms, 60000);
	assert_int_equal(v->verbose, 1);
	assert_string_equal(v->endpoint, "http://127.0.0.1:9/x");
	assert_string_equal(v->tags[0], "x");
	assert_null(v->tags[1]);
	assert_string_equal(v->extra, "{\"k\":[1,true]}");
	assert_string_equal(v->auth_user, "u");
	assert_string_equal(v->auth_key, "k2");
	assert_int_equal(v->port, 1);
	plugins_free(s);
	metrics_reset();
	cfg_free(c);
}

/* Every refusal names the file, the JSON path and the reason. */
static void test_each_error_names_file_path_and_reason(void **state)
{
	static const struct { const char *config, *needle; } cases[] = {
		{ "{}", "token: required key missing" },
		{ "{\"token\": 12345678}", "token: expected a string, got integer" },
		{ "{\"token\": \"12345678\", \"tokn\": 1}", "tokn: unknown key" },
		{ "{\"token\": \"12345678\", \"label\": \"\"}", "label: must be between 1 and 32 bytes long" },
		{ "{\"token\": \"12345678\", \"timeout_ms\": 99}", "timeout_ms: must be between 100 and 60000" },
		{ "{\"token\": \"12345678\", \"timeout_ms\": \"5\"}", "timeout_ms: expected an integer, got string" },
		{ "{\"token\": \"12345678\", \"verbose\": 1}", "verbose: expected a boolean, got integer" },
		{ "{\"token\": \"12345678\", \"endpoint\": \"ftp://x\"}", "endpoint: must be an http:// or https:// URL" },
		{ "{\"token\": \"12345678\", \"tags\": \"a\"}", "tags: expected an array, got string" },
		{ "{\"token\": \"12345678\", \"tags\": [\"a\", 3]}", "tags[1]: expected a string, got integer" },
		{ "{\"token\": \"12345678\", \"tags\": [\"\"]}", "tags[0]: must be 1 to 16 characters" },
		{ "{\"token\": \"12345678\", \"tags\": [\"a\", \"b\\nc\"]}",
		  "tags[1]: must not contain control characters" },
		{ "{\"token\": \"12345678\", \"label\": \"a\\u007f\"}", "label: must not contain control characters" },
		{ "{\"token\": \"12345678\", \"auth\": 5}", "auth: expected an object, got integer" },
		{ "{\"token\": \"12345678\", \"auth\": {\"usr\": \"x\"}}", "auth.usr: unknown key" },
		{ "{\"token\": \"12345678\", \"auth\": {\"user\": 5}}", "auth.user: expected a string, got integer" },
		{ "{\"token\": \"12345678\", \"port\": 70000}", "port: must be between 1 and 65535" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[2048], want[256];
		cfg *c = load_probe(cases[i].config, err, sizeof(err));
		plugin_set *s = NULL;
		assert_false(plugins_load(c, &s, err, sizeof(err)));
		assert_null(s);
		snprintf(want, sizeof(want), "parley.json: notifiers[0].config.%s", cases[i].needle);
		if (strstr(err, want) == NULL)
			fail_msg("%s: error \"%s\" should contain \"%s\"", cases[i].config, err, want);
		cfg_free(c);
	}
}

static void test_secrets_are_never_echoed(void **state)
{
	char err[2048];
	cfg *c = load_probe("{\"token\": \"SEKRIT7\"}", err, sizeof(err));
	plugin_set *s = NULL;
	assert_false(plugins_load(c, &s, err, sizeof(err)));
	assert_non_null(strstr(err, "notifiers[0].config.token: must be between 8 and 64 bytes long"));
	assert_null(strstr(err, "SEKRIT7"));
	cfg_free(c);

	/* The listing shows type, default and range, but no secret's default. */
	char path[256], buf[8192];
	snprintf(path, sizeof(path), "%s/list.txt", tmpdir);
	FILE *f = fopen(path, "w+");
	assert_non_null(f);
	assert_true(loader_list_dir(test_plugin_dir, f, true));
	rewind(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	static const char *const lines[] = {
		"settings_probe.so  notifier  settings_probe  1.3.0  abi 1.4",
		"config.label (string, default \"none\", range 1..32 bytes, printable, reloadable): any text",
		"config.token (string, required, secret, range 8..64 bytes, reloadable): a secret",
		"config.timeout_ms (integer, default 5000, range 100..60000, reloadable)",
		"config.verbose (boolean, default true, reloadable)",
		"config.endpoint (url, default \"https://api.example.com/v1\", reloadable)",
		"config.tags (list of strings, default [\"a\", \"b\"], range 1..16 bytes each, printable, "
		"reloadable)",
		"config.extra (json, reloadable)",
		"config.auth.key (string, secret, default hidden, reloadable)",
		"config.port (integer, default 8080, range 1..65535): takes a restart",
		/* an ABI 1.2 plugin's declared keys, as before */
		"config.label (string): any text; echoed in logs and by the webhook",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		if (strstr(buf, lines[i]) == NULL)
			fail_msg("listing lacks \"%s\":\n%s", lines[i], buf);
	assert_null(strstr(buf, "probe-default-key"));
}

static void test_reload_hands_new_values_and_keeps_old_on_refusal(void **state)
{
	char err[2048];
	cfg *c = load_probe("{\"token\": \"12345678\", \"label\": \"one\"}", err, sizeof(err));
	plugin_set *s = NULL;
	if (!plugins_load(c, &s, err, sizeof(err)))
		fail_msg("load: %s", err);

	cfg *c2 = load_probe("{\"token\": \"87654321\", \"label\": \"two\", \"timeout_ms\": 200,"
	                     " \"port\": 9090}", err, sizeof(err));
	assert_true(plugins_reload(s, c2, err, sizeof(err)));
	const settings_probe *p = probe_of(s);
	assert_int_equal(p->reloads, 1);
	assert_string_equal(p->settings->label, "two");
	assert_string_equal(p->settings->token, "87654321");
	assert_int_equal(p->settings->timeout_ms, 200);
	/* port is not reloadable: it keeps its running value until a restart */
	assert_int_equal(p->settings->port, 8080);
	const settings_probe_settings *two = p->settings;

	/* Refused by the plugin: the previous struct stays, untouched. */
	cfg *c3 = load_probe("{\"token\": \"12345678\", \"label\": \"refuse\"}", err, sizeof(err));
	assert_false(plugins_reload(s, c3, err, sizeof(err)));
	assert_non_null(strstr(err, "notifiers[0].config.label: refused by the plugin"));
	p = probe_of(s);
	assert_ptr_equal(p->settings, two);
	assert_string_equal(p->settings->label, "two");
	assert_int_equal(p->reloads, 1);

	/* Refused by the core: the plugin is not even asked. */
	cfg *c4 = load_probe("{\"token\": \"12345678\", \"timeout_ms\": 1}", err, sizeof(err));
	assert_false(plugins_reload(s, c4, err, sizeof(err)));
	assert_non_null(strstr(err, "notifiers[0].config.timeout_ms: must be between 100 and 60000"));
	p = probe_of(s);
	assert_ptr_equal(p->settings, two);
	assert_int_equal(p->reloads, 1);

	plugins_free(s);
	metrics_reset();
	cfg_free(c);
	cfg_free(c2);
	cfg_free(c3);
	cfg_free(c4);
}

/* A restart-only setting changed on SIGHUP keeps its running value and is
 * named; reloadable ones change. */
static void test_restart_only_change_is_held_and_named(void **state)
{
	char path[512], err[1024], held[256];
	snprintf(path, sizeof(path), "%s/settings_probe.so", test_plugin_dir);
	loaded_plugin *p = NULL;
	if (!loader_open_file(path, 0, &p, err, sizeof(err)))
		fail_msg("open: %s", err);
	json_t *a = json_pack("{s:s, s:i, s:s}", "token", "12345678", "port", 80, "label", "x");
	json_t *b = json_pack("{s:s, s:i, s:s}", "token", "12345678", "port", 81, "label", "y");
	void *cur = NULL, *next = NULL;
	assert_true(psettings_fill(p->desc, "f.json", "notifiers[3]", a, &cur, err, sizeof(err)));
	assert_true(psettings_fill(p->desc, "f.json", "notifiers[3]", b, &next, err, sizeof(err)));
	assert_int_equal(psettings_hold_restart_only(p->desc, "notifiers[3]", cur, next, held,
	                                             sizeof(held)), 1);
	assert_string_equal(held, "notifiers[3].config.port");
	const settings_probe_settings *n = next;
	assert_int_equal(n->port, 80);
	assert_string_equal(n->label, "y");
	/* Nothing restart-only changed: nothing held. */
	assert_int_equal(psettings_hold_restart_only(p->desc, "notifiers[3]", cur, next, held,
	                                             sizeof(held)), 0);
	assert_string_equal(held, "");
	psettings_free(p->desc, cur);
	psettings_free(p->desc, next);
	json_decref(a);
	json_decref(b);
	loader_close(p);
}

static void test_broken_table_is_refused_when_opened(void **state)
{
	char path[512], err[1024];
	snprintf(path, sizeof(path), "%s/bad_settings.so", test_plugin_dir);
	loaded_plugin *p = NULL;
	assert_false(loader_open_file(path, 0, &p, err, sizeof(err)));
	assert_null(p);
	const char *want = "bad_settings.so: settings table row 0 (timeout_ms): default timeout_ms: "
	                   "must be between 1 and 10";
	if (strstr(err, want) == NULL)
		fail_msg("error \"%s\" should contain \"%s\"", err, want);
}

/* Every way a table can be wrong is refused when the plugin is opened,
 * naming the row and the reason. */
typedef struct table_struct { const char *a; int64_t n; int b; } table_struct;

static void test_table_errors_name_row_and_reason(void **state)
{
	static const struct { parley_setting row; const char *needle; } cases[] = {
		{ { .name = "", .type = PARLEY_SETTING_STRING }, "row 1 (?): no valid name" },
		{ { .name = "a..b", .type = PARLEY_SETTING_STRING }, "no valid name" },
		{ { .name = "a", .type = PARLEY_SETTING_STRING }, "row 1 (a): clashes with row 0 (\"a\")" },
		{ { .name = "a.x", .type = PARLEY_SETTING_STRING }, "clashes with row 0" },
		{ { .name = "c", .type = 99 }, "row 1 (c): unknown type 99" },
		{ { .name = "c", .type = PARLEY_SETTING_BOOLEAN, .flags = 0x100,
		    .offset = offsetof(table_struct, b) }, "unknown flags 0x100" },
		{ { .name = "c", .type = PARLEY_SETTING_INTEGER, .offset = sizeof(table_struct) },
		  "is outside the 24-byte struct or misaligned for type integer" },
		{ { .name = "c", .type = PARLEY_SETTING_INTEGER, .offset = 4 }, "offset 4 is outside" },
		{ { .name = "c", .type = PARLEY_SETTING_INTEGER, .min = 5, .max = 1,
		    .offset = offsetof(table_struct, n) }, "min 5 and max 1 are not a range" },
		{ { .name = "c", .type = PARLEY_SETTING_STRING, .flags = PARLEY_SETTING_FLAG_REQUIRED,
		    .default_value = "x" }, "is required and has a default" },
		{ { .name = "c", .type = PARLEY_SETTING_INTEGER, .default_value = "ten",
		    .offset = offsetof(table_struct, n) }, "not JSON" },
		{ { .name = "c", .type = PARLEY_SETTING_URL, .default_value = "ftp://x" },
		  "default c: must be an http:// or https:// URL" },
		{ { .name = "c", .type = PARLEY_SETTING_BOOLEAN, .default_value = "1",
		    .offset = offsetof(table_struct, b) }, "default c: expected a boolean, got integer" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		parley_setting rows[2] = {
			{ .name = "a", .type = PARLEY_SETTING_STRING, .offset = offsetof(table_struct, a) },
			cases[i].row,
		};
		parley_plugin_descriptor d = { .size = sizeof(d), .settings = rows, .n_settings = 2,
		                               .setting_size = sizeof(parley_setting),
		                               .settings_size = sizeof(table_struct) };
		char err[512];
		assert_true(psettings_present(&d));
		assert_false(psettings_check_table(&d, err, sizeof(err)));
		if (strstr(err, cases[i].needle) == NULL)
			fail_msg("case %zu: \"%s\" should contain \"%s\"", i, err, cases[i].needle);
	}

	/* Rows smaller than ABI 1.3's, and a table that is fine. */
	parley_setting ok[1] = { { .name = "a", .type = PARLEY_SETTING_STRING,
	                           .offset = offsetof(table_struct, a) } };
	parley_plugin_descriptor d = { .size = sizeof(d), .settings = ok, .n_settings = 1,
	                               .setting_size = offsetof(parley_setting, offset),
	                               .settings_size = sizeof(table_struct) };
	char err[512];
	assert_false(psettings_check_table(&d, err, sizeof(err)));
	assert_non_null(strstr(err, "ABI 1.3 needs at least"));
	d.setting_size = sizeof(parley_setting);
	assert_true(psettings_check_table(&d, err, sizeof(err)));
	/* A descriptor too small to carry a table has none. */
	d.size = offsetof(parley_plugin_descriptor, settings);
	assert_false(psettings_present(&d));
}

/* probe_sink declares ABI 1.2 (a descriptor without the settings table):
 * it loads, reads its keys itself and gets no settings struct. */
static void test_abi_1_2_plugin_still_loads(void **state)
{
	char err[2048], path[256];
	snprintf(path, sizeof(path), "%s/parley.json", tmpdir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "{\"database\": {\"dsn\": \"host=127.0.0.1 dbname=none\"}, \"plugin_dir\": \"%s\","
	        " \"sinks\": [{\"name\": \"s\", \"plugin\": \"probe_sink\", \"config\": {\"label\": \"x\"}}]}\n",
	        test_plugin_dir);
	fclose(f);
	cfg *c = NULL;
	assert_true(cfg_load(path, &c, err, sizeof(err)));
	plugin_set *s = NULL;
	if (!plugins_load(c, &s, err, sizeof(err)))
		fail_msg("load: %s", err);
	parley_instance *inst = plugins_find(s, PARLEY_KIND_SINK, "s");
	assert_non_null(inst);
	assert_int_equal(inst->desc->abi_minor, 2);
	assert_true(inst->desc->size < sizeof(parley_plugin_descriptor));
	assert_null(inst->settings);
	struct parley_config pc = { .obj = NULL, .settings = NULL };
	assert_null(host_api_table()->config_settings(&pc));
	assert_true(plugins_reload(s, c, err, sizeof(err)));
	plugins_free(s);
	metrics_reset();
	cfg_free(c);
}

static int setup(void **state)
{
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	log_set_level(LOGL_ERROR);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_fill_absent_keys),
		cmocka_unit_test(test_written_values_fill_every_type),
		cmocka_unit_test(test_each_error_names_file_path_and_reason),
		cmocka_unit_test(test_secrets_are_never_echoed),
		cmocka_unit_test(test_reload_hands_new_values_and_keeps_old_on_refusal),
		cmocka_unit_test(test_restart_only_change_is_held_and_named),
		cmocka_unit_test(test_broken_table_is_refused_when_opened),
		cmocka_unit_test(test_table_errors_name_row_and_reason),
		cmocka_unit_test(test_abi_1_2_plugin_still_loads),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
