/* test_config.c - the configuration file: what loads, what each key defaults
 * to, and the exact one-line error for everything that does not load.
 *
 * Each test gets its own temporary directory holding "parley.json" and any
 * files it references. To keep the documents readable, the JSON in this file
 * is written with single quotes; write_json() turns them into double quotes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <sys/stat.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_internal.h"  /* the settings table, walked by the table-driven tests */

#ifndef PARLEY_PLUGIN_DIR
#define PARLEY_PLUGIN_DIR "/usr/local/lib/parley/plugins"
#endif

/* A value that must never appear in an error message. It is not URL-safe
 * (so it fails as an instance name) and short enough that jansson would
 * quote it in a syntax error's "near '...'" text. */
#define SECRET "s3cr3t.Zebra.993"

typedef struct fixture {
	char dir[PATH_MAX];    /* the temporary directory */
	char file[PATH_MAX];   /* dir/parley.json */
	char err[1024];
	cfg *c;
} fixture;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");
	snprintf(f->dir, sizeof(f->dir), "%s/parley-config-XXXXXX",
	         tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	int n = snprintf(f->file, sizeof(f->file), "%s/parley.json", f->dir);
	if (n < 0 || (size_t)n >= sizeof(f->file)) {
		rmdir(f->dir);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	cfg_free(f->c);
	nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* Write `content` verbatim to dir/name. */
static void write_raw(fixture *f, const char *name, const char *content, size_t len)
{
	char path[PATH_MAX];
	int n = snprintf(path, sizeof(path), "%s/%s", f->dir, name);
	assert_true(n > 0 && (size_t)n < sizeof(path));
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(content, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static void write_text(fixture *f, const char *name, const char *content)
{
	write_raw(f, name, content, strlen(content));
}

/* Write parley.json from single-quoted JSON. */
static void write_json(fixture *f, const char *json)
{
	char *doc = strdup(json);
	for (char *p = doc; *p; p++)
		if (*p == '\'')
			*p = '"';
	write_text(f, "parley.json", doc);
	free(doc);
}

static bool load(fixture *f, const char *json)
{
	write_json(f, json);
	cfg_free(f->c);
	f->c = NULL;
	f->err[0] = '\0';
	return cfg_load(f->file, &f->c, f->err, sizeof(f->err));
}

static void assert_loads(fixture *f, const char *json)
{
	if (!load(f, json))
		fail_msg("expected the config to load, got: %s", f->err);
	assert_non_null(f->c);
}

/* The config must be refused with exactly "FILE: <expected>". */
static void assert_refused(fixture *f, const char *json, const char *expected)
{
	assert_false(load(f, json));
	assert_null(f->c);
	char want[PATH_MAX + 1024];
	int n = snprintf(want, sizeof(want), "%s: %s", f->file, expected);
	assert_true(n > 0 && (size_t)n < sizeof(want));
	assert_string_equal(f->err, want);
	assert_null(strchr(f->err, '\n'));
}

/* A minimal valid document with `extra` spliced in after the database. */
static const char *with_db(const char *extra, char *buf, size_t len)
{
	int n = snprintf(buf, len, "{'database': {'dsn': 'dbname=parley'}%s%s}",
	                 extra[0] != '\0' ? ", " : "", extra);
	assert_true(n > 0 && (size_t)n < len);
	return buf;
}

/* ------------------------------------------------------------------------ */
/* Valid configurations                                                     */
/* ------------------------------------------------------------------------ */

static void test_full_config_sets_every_field(void **state)
{
	fixture *f = *state;
	assert_loads(f,
		"{'listen': '0.0.0.0:9090',"
		" 'public_url': 'https://parley.example.com',"
		" 'database': {'dsn': 'host=db dbname=parley', 'pool_size': 8,"
		"   'connect_timeout_ms': 2000, 'query_timeout_ms': 3000, 'migrate_on_start': false},"
		" 'plugin_dir': '/opt/parley/plugins',"
		" 'log': {'level': 'debug', 'format': 'json'},"
		" 'limits': {'max_body_bytes': 2048, 'max_header_bytes': 4096,"
		"   'read_timeout_ms': 1000, 'write_timeout_ms': 2000, 'idle_timeout_ms': 3000,"
		"   'max_connections': 50, 'shutdown_timeout_ms': 0},"
		" 'channels': [{'name': 'site', 'plugin': 'webhook', 'config': {'secret': 'x'}},"
		"              {'name': 'shop-2', 'plugin': 'webhook'}],"
		" 'sinks': [{'name': 'zendesk_eu', 'plugin': 'zendesk', 'config': {}}],"
		" 'notifiers': [{'name': 'Slack', 'plugin': 'slack'}]}");
	cfg *c = f->c;
	assert_string_equal(c->file, f->file);
	assert_string_equal(c->listen_host, "0.0.0.0");
	assert_int_equal(c->listen_port, 9090);
	assert_string_equal(c->public_url, "https://parley.example.com");
	assert_string_equal(c->database.dsn, "host=db dbname=parley");
	assert_int_equal(c->database.pool_size, 8);
	assert_int_equal(c->database.connect_timeout_ms, 2000);
	assert_int_equal(c->database.query_timeout_ms, 3000);
	assert_false(c->database.migrate_on_start);
	assert_string_equal(c->plugin_dir, "/opt/parley/plugins");
	assert_int_equal(c->log.level, LOGL_DEBUG);
	assert_true(c->log.json);
	assert_int_equal(c->limits.max_body_bytes, 2048);
	assert_int_equal(c->limits.max_header_bytes, 4096);
	assert_int_equal(c->limits.read_timeout_ms, 1000);
	assert_int_equal(c->limits.write_timeout_ms, 2000);
	assert_int_equal(c->limits.idle_timeout_ms, 3000);
	assert_int_equal(c->limits.max_connections, 50);
	assert_int_equal(c->limits.shutdown_timeout_ms, 0);

	assert_int_equal(c->n_channels, 2);
	assert_string_equal(c->channels[0].name, "site");
	assert_string_equal(c->channels[0].plugin, "webhook");
	assert_string_equal(c->channels[0].path, "channels[0]");
	assert_string_equal(json_string_value(json_object_get(c->channels[0].config, "secret")), "x");
	assert_string_equal(c->channels[1].name, "shop-2");
	assert_string_equal(c->channels[1].path, "channels[1]");
	/* An instance without "config" gets an empty object, never NULL. */
	assert_true(json_is_object(c->channels[1].config));
	assert_int_equal(json_object_size(c->channels[1].config), 0);
	assert_int_equal(c->n_sinks, 1);
	assert_string_equal(c->sinks[0].name, "zendesk_eu");
	assert_string_equal(c->sinks[0].path, "sinks[0]");
	assert_int_equal(c->n_notifiers, 1);
	assert_string_equal(c->notifiers[0].name, "Slack");
	assert_string_equal(c->notifiers[0].plugin, "slack");
	assert_string_equal(c->notifiers[0].path, "notifiers[0]");
}

static void test_minimal_config_gets_defaults(void **state)
{
	fixture *f = *state;
	assert_loads(f, "{'database': {'dsn': 'dbname=parley'}}");
	cfg *c = f->c;
	assert_string_equal(c->listen_host, "127.0.0.1");
	assert_int_equal(c->listen_port, 8080);
	assert_string_equal(c->public_url, "http://127.0.0.1:8080");
	assert_int_equal(c->database.pool_size, 4);
	assert_int_equal(c->database.connect_timeout_ms, 5000);
	assert_int_equal(c->database.query_timeout_ms, 10000);
	assert_true(c->database.migrate_on_start);
	assert_string_equal(c->plugin_dir, PARLEY_PLUGIN_DIR);
	assert_int_equal(c->log.level, LOGL_INFO);
	assert_false(c->log.json);
	assert_int_equal(c->limits.max_body_bytes, 4194304);
	assert_int_equal(c->limits.max_header_bytes, 16384);
	assert_int_equal(c->limits.read_timeout_ms, 10000);
	assert_int_equal(c->limits.write_timeout_ms, 10000);
	assert_int_equal(c->limits.idle_timeout_ms, 60000);
	assert_int_equal(c->limits.max_connections, 1024);
	assert_int_equal(c->limits.shutdown_timeout_ms, 10000);
	assert_int_equal(c->n_channels, 0);
	assert_null(c->channels);
	assert_int_equal(c->n_sinks, 0);
	assert_int_equal(c->n_notifiers, 0);
}

static void test_empty_sections_keep_defaults(void **state)
{
	fixture *f = *state;
	char buf[512];
	assert_loads(f, with_db("'log': {}, 'limits': {}, 'channels': [], 'sinks': [],"
	                        " 'notifiers': []", buf, sizeof(buf)));
	assert_int_equal(f->c->log.level, LOGL_INFO);
	assert_int_equal(f->c->limits.max_connections, 1024);
	assert_int_equal(f->c->n_channels, 0);
}

static void test_listen_ipv6_and_default_public_url(void **state)
{
	fixture *f = *state;
	char buf[512];
	assert_loads(f, with_db("'listen': '[::1]:8443'", buf, sizeof(buf)));
	assert_string_equal(f->c->listen_host, "::1");
	assert_int_equal(f->c->listen_port, 8443);
	assert_string_equal(f->c->public_url, "http://[::1]:8443");

	assert_loads(f, with_db("'listen': 'localhost:65535'", buf, sizeof(buf)));
	assert_string_equal(f->c->listen_host, "localhost");
	assert_int_equal(f->c->listen_port, 65535);
}

static void test_public_url_loses_trailing_slash(void **state)
{
	fixture *f = *state;
	char buf[512];
	assert_loads(f, with_db("'public_url': 'http://parley.example.com/care/'", buf, sizeof(buf)));
	assert_string_equal(f->c->public_url, "http://parley.example.com/care");
}

static void test_instance_names_may_repeat_across_kinds(void **state)
{
	fixture *f = *state;
	char buf[512];
	assert_loads(f, with_db("'channels': [{'name': 'main', 'plugin': 'webhook'}],"
	                        " 'sinks': [{'name': 'main', 'plugin': 'zendesk'}]", buf, sizeof(buf)));
	assert_string_equal(f->c->channels[0].name, "main");
	assert_string_equal(f->c->sinks[0].name, "main");
}

static void test_boundary_values_are_accepted(void **state)
{
	fixture *f = *state;
	char buf[512];
	assert_loads(f, "{'database': {'dsn': 'x', 'pool_size': 64, 'connect_timeout_ms': 100,"
	                " 'query_timeout_ms': 100},"
	                " 'limits': {'max_body_bytes': 1024, 'max_header_bytes': 1024,"
	                " 'read_timeout_ms': 100, 'write_timeout_ms': 100, 'idle_timeout_ms': 100,"
	                " 'max_connections': 100000, 'shutdown_timeout_ms': 0}}");
	assert_int_equal(f->c->database.pool_size, 64);
	assert_int_equal(f->c->limits.max_connections, 100000);
	assert_loads(f, with_db("'listen': '127.0.0.1:1'", buf, sizeof(buf)));
	assert_int_equal(f->c->listen_port, 1);
}

/* ------------------------------------------------------------------------ */
/* Refused configurations: one line, "FILE: PATH: reason"                   */
/* ------------------------------------------------------------------------ */

/* Each row: a document, whole or spliced after a minimal valid one (with_db),
 * and exactly the reason it must be refused with. One test per topic. */
static const struct refusal {
	const char *topic;
	bool whole;        /* doc is the whole file, not spliced after the database */
	const char *doc;
	const char *reason;
} refusals[] = {
	{ "unknown key", false,
	  "'lsiten': '127.0.0.1:8080'",
	  "lsiten: unknown key" },
	{ "unknown key", true,
	  "{'database': {'dsn': 'x', 'pool': 4}}",
	  "database.pool: unknown key" },
	{ "unknown key", false,
	  "'log': {'levle': 'info'}",
	  "log.levle: unknown key" },
	{ "unknown key", false,
	  "'limits': {'max_body': 4096}",
	  "limits.max_body: unknown key" },
	{ "unknown key", false,
	  "'channels': [{'name': 'a', 'plugin': 'webhook', 'conf': {}}]",
	  "channels[0].conf: unknown key" },
	{ "wrong type", false,
	  "'limits': {'max_body_bytes': '4096'}",
	  "limits.max_body_bytes: expected an integer, got string" },
	{ "wrong type", false,
	  "'limits': {'read_timeout_ms': 1500.0}",
	  "limits.read_timeout_ms: expected an integer, got real" },
	{ "wrong type", false,
	  "'listen': 8080",
	  "listen: expected a string, got integer" },
	{ "wrong type", true,
	  "{'database': {'dsn': 'x', 'migrate_on_start': 'yes'}}",
	  "database.migrate_on_start: expected a boolean, got string" },
	{ "wrong type", true,
	  "{'database': 'dbname=parley'}",
	  "database: expected an object, got string" },
	{ "wrong type", true,
	  "{'database': {'dsn': null}}",
	  "database.dsn: expected a string, got null" },
	{ "wrong type", false,
	  "'log': 'debug'",
	  "log: expected an object, got string" },
	{ "wrong type", false,
	  "'channels': {'name': 'a'}",
	  "channels: expected an array, got object" },
	{ "wrong type", false,
	  "'sinks': ['zendesk']",
	  "sinks[0]: expected an object, got string" },
	{ "wrong type", false,
	  "'notifiers': [{'name': 'a', 'plugin': 'slack', 'config': []}]",
	  "notifiers[0].config: expected an object, got array" },
	{ "wrong type", false,
	  "'plugin_dir': true",
	  "plugin_dir: expected a string, got boolean" },
	{ "wrong type", true,
	  "[{'database': {'dsn': 'x'}}]",
	  "(top level): expected an object, got array" },
	{ "missing", true,
	  "{}",
	  "database: required key missing" },
	{ "missing", true,
	  "{'database': {}}",
	  "database.dsn: required key missing" },
	{ "missing", false,
	  "'channels': [{'plugin': 'webhook'}]",
	  "channels[0].name: required key missing" },
	{ "missing", false,
	  "'sinks': [{'name': 'a', 'plugin': 'zendesk'}, {'name': 'b'}]",
	  "sinks[1].plugin: required key missing" },
	{ "range", true,
	  "{'database': {'dsn': 'x', 'pool_size': 0}}",
	  "database.pool_size: must be between 1 and 64" },
	{ "range", true,
	  "{'database': {'dsn': 'x', 'pool_size': 65}}",
	  "database.pool_size: must be between 1 and 64" },
	{ "range", true,
	  "{'database': {'dsn': 'x', 'connect_timeout_ms': 99}}",
	  "database.connect_timeout_ms: must be at least 100" },
	{ "range", true,
	  "{'database': {'dsn': 'x', 'query_timeout_ms': 99999999999}}",
	  "database.query_timeout_ms: must be between 100 and 2147483647" },
	{ "range", false,
	  "'limits': {'max_body_bytes': 1023}",
	  "limits.max_body_bytes: must be at least 1024" },
	{ "range", false,
	  "'limits': {'max_header_bytes': 100}",
	  "limits.max_header_bytes: must be at least 1024" },
	{ "range", false,
	  "'limits': {'idle_timeout_ms': -5}",
	  "limits.idle_timeout_ms: must be at least 100" },
	{ "range", false,
	  "'limits': {'max_connections': 100001}",
	  "limits.max_connections: must be between 1 and 100000" },
	{ "range", false,
	  "'limits': {'shutdown_timeout_ms': -1}",
	  "limits.shutdown_timeout_ms: must be at least 0" },
	{ "listen", false,
	  "'listen': 'localhost'",
	  "listen: expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080" },
	{ "listen", false,
	  "'listen': ':8080'",
	  "listen: expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080" },
	{ "listen", false,
	  "'listen': '[::1]8080'",
	  "listen: expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080" },
	{ "listen", false,
	  "'listen': '127.0.0.1:0'",
	  "listen: port must be between 1 and 65535" },
	{ "listen", false,
	  "'listen': '127.0.0.1:65536'",
	  "listen: port must be between 1 and 65535" },
	{ "listen", false,
	  "'listen': '127.0.0.1:http'",
	  "listen: port must be between 1 and 65535" },
	{ "listen", false,
	  "'listen': '::1:8080'",
	  "listen: an IPv6 address goes in brackets, e.g. [::1]:8080" },
	{ "public_url", false,
	  "'public_url': 'parley.example.com'",
	  "public_url: must start with http:// or https://" },
	{ "public_url", false,
	  "'public_url': 'ftp://parley.example.com'",
	  "public_url: must start with http:// or https://" },
	{ "public_url", false,
	  "'public_url': 'https://'",
	  "public_url: has no host after the scheme" },
	{ "public_url", false,
	  "'public_url': 'https://parley example.com'",
	  "public_url: must not contain spaces or control characters" },
	{ "log", false,
	  "'log': {'level': 'verbose'}",
	  "log.level: must be one of error, warn, info, debug" },
	{ "log", false,
	  "'log': {'format': 'xml'}",
	  "log.format: must be text or json" },
	{ "log", false,
	  "'plugin_dir': ''",
	  "plugin_dir: must not be empty" },
	{ "duplicate name", false,
	  "'channels': [{'name': 'site', 'plugin': 'webhook'}," " {'name': 'shop', 'plugin': 'webhook'}," " {'name': 'site', 'plugin': 'telegram'}]",
	  "channels[2].name: duplicate instance name \"site\" (also channels[0])" },
	{ "duplicate name", false,
	  "'notifiers': [{'name': 'ops', 'plugin': 'slack'}," " {'name': 'ops', 'plugin': 'mail'}]",
	  "notifiers[1].name: duplicate instance name \"ops\" (also notifiers[0])" },
	{ "plugin name", false,
	  "'channels': [{'name': 'a', 'plugin': '../evil'}]",
	  "channels[0].plugin: must be 1 to 64 characters from a-z 0-9 _" },
	{ "plugin name", false,
	  "'channels': [{'name': 'a', 'plugin': 'Webhook'}]",
	  "channels[0].plugin: must be 1 to 64 characters from a-z 0-9 _" },
	{ "plugin name", false,
	  "'channels': [{'name': 'a', 'plugin': 'web-hook'}]",
	  "channels[0].plugin: must be 1 to 64 characters from a-z 0-9 _" },
	{ "plugin name", false,
	  "'channels': [{'name': 'a', 'plugin': ''}]",
	  "channels[0].plugin: must be 1 to 64 characters from a-z 0-9 _" },
};

static void refuse_each(fixture *f, const char *topic)
{
	char buf[1024];
	size_t n = 0;
	for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		const struct refusal *r = &refusals[i];
		if (strcmp(r->topic, topic) != 0)
			continue;
		assert_refused(f, r->whole ? r->doc : with_db(r->doc, buf, sizeof(buf)), r->reason);
		n++;
	}
	assert_true(n > 0);
}

static void test_unknown_keys_are_refused(void **state) { refuse_each(*state, "unknown key"); }

static void test_wrong_types_are_refused(void **state) { refuse_each(*state, "wrong type"); }

static void test_missing_required_keys_are_refused(void **state) { refuse_each(*state, "missing"); }

static void test_out_of_range_values_are_refused(void **state) { refuse_each(*state, "range"); }

static void test_bad_listen_is_refused(void **state) { refuse_each(*state, "listen"); }

static void test_bad_public_url_is_refused(void **state) { refuse_each(*state, "public_url"); }

static void test_bad_log_settings_are_refused(void **state) { refuse_each(*state, "log"); }

static void test_duplicate_instance_names_are_refused(void **state) { refuse_each(*state, "duplicate name"); }

static void test_instance_names_must_be_url_safe(void **state)
{
	fixture *f = *state;
	char buf[512];
	const char *reason = "channels[0].name: must be 1 to 64 characters from A-Z a-z 0-9 _ -";
	assert_refused(f, with_db("'channels': [{'name': 'a b', 'plugin': 'webhook'}]",
	                          buf, sizeof(buf)), reason);
	assert_refused(f, with_db("'channels': [{'name': 'a/b', 'plugin': 'webhook'}]",
	                          buf, sizeof(buf)), reason);
	assert_refused(f, with_db("'channels': [{'name': '', 'plugin': 'webhook'}]",
	                          buf, sizeof(buf)), reason);

	char name64[65], name65[66], doc[1024];
	memset(name64, 'n', 64);
	name64[64] = '\0';
	memset(name65, 'n', 65);
	name65[65] = '\0';
	snprintf(doc, sizeof(doc), "'channels': [{'name': '%s', 'plugin': 'webhook'}]", name65);
	assert_refused(f, with_db(doc, buf, sizeof(buf)), reason);
	snprintf(doc, sizeof(doc), "'channels': [{'name': '%s', 'plugin': 'webhook'}]", name64);
	assert_loads(f, with_db(doc, buf, sizeof(buf)));
	assert_string_equal(f->c->channels[0].name, name64);
}

static void test_name_is_url_safe(void **state)
{
	assert_true(cfg_name_is_url_safe("site"));
	assert_true(cfg_name_is_url_safe("Shop_EU-2"));
	assert_true(cfg_name_is_url_safe("0"));
	assert_false(cfg_name_is_url_safe(""));
	assert_false(cfg_name_is_url_safe(NULL));
	assert_false(cfg_name_is_url_safe("a b"));
	assert_false(cfg_name_is_url_safe("a/b"));
	assert_false(cfg_name_is_url_safe(".."));
	assert_false(cfg_name_is_url_safe("a.b"));
	assert_false(cfg_name_is_url_safe("caf\xc3\xa9"));
	assert_false(cfg_name_is_url_safe("a%20b"));
	char name[66];
	memset(name, 'x', 65);
	name[65] = '\0';
	assert_false(cfg_name_is_url_safe(name));
	name[64] = '\0';
	assert_true(cfg_name_is_url_safe(name));
}

static void test_plugin_names_must_be_file_safe(void **state) { refuse_each(*state, "plugin name"); }

static void test_json_syntax_error_names_line_and_column(void **state)
{
	fixture *f = *state;
	assert_refused(f,
		"{\n"
		"  'database': {\n"
		"    'dsn': 'dbname=parley',\n"
		"  }\n"
		"}\n",
		"line 4, column 3: invalid JSON: string or '}' expected");
}

static void test_duplicate_json_keys_are_refused(void **state)
{
	fixture *f = *state;
	assert_refused(f,
		"{\n"
		"  'database': {'dsn': 'a'},\n"
		"  'database': {'dsn': 'b'}\n"
		"}\n",
		"line 3, column 12: duplicate key \"database\"");
}

static void test_missing_file_is_refused(void **state)
{
	fixture *f = *state;
	cfg *c = (cfg *)0x1;
	char path[PATH_MAX + 32], want[PATH_MAX + 128];
	snprintf(path, sizeof(path), "%s/absent.json", f->dir);
	assert_false(cfg_load(path, &c, f->err, sizeof(f->err)));
	assert_null(c);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
	assert_string_equal(f->err, want);
}

/* ------------------------------------------------------------------------ */
/* Secrets never reach an error message                                     */
/* ------------------------------------------------------------------------ */

static void assert_no_secret(fixture *f)
{
	assert_true(f->err[0] != '\0');
	if (strstr(f->err, SECRET) != NULL || strstr(f->err, "Zebra") != NULL)
		fail_msg("error message leaks the secret: %s", f->err);
}

static void test_errors_never_contain_values(void **state)
{
	fixture *f = *state;
	write_text(f, "secret", SECRET "\n");
	setenv("PARLEY_TEST_CFG_SECRET", SECRET, 1);

	/* A broken neighbour of a secret. */
	assert_false(load(f, "{'database': {'dsn': '$file:secret', 'pool_size': 'four'},"
	                     " 'channels': [{'name': 'a', 'plugin': 'webhook',"
	                     "   'config': {'app_secret': '$env:PARLEY_TEST_CFG_SECRET'}}]}"));
	assert_no_secret(f);

	/* The secret itself in a key that checks its value's shape. */
	assert_false(load(f, "{'database': {'dsn': 'x'}, 'listen': '$file:secret'}"));
	assert_no_secret(f);
	assert_false(load(f, "{'database': {'dsn': 'x'}, 'public_url': '$env:PARLEY_TEST_CFG_SECRET'}"));
	assert_no_secret(f);
	assert_false(load(f, "{'database': {'dsn': 'x'}, 'log': {'level': '$file:secret'}}"));
	assert_no_secret(f);
	assert_false(load(f, "{'database': {'dsn': 'x'},"
	                     " 'channels': [{'name': '$file:secret', 'plugin': 'webhook'}]}"));
	assert_no_secret(f);

	/* A secret pasted into the file with a syntax error right after it. */
	assert_false(load(f, "{'database': {'dsn': 'x'}, 'token': '" SECRET));
	assert_no_secret(f);
	assert_false(load(f, "{'database': {'dsn': 'x'}, 'token': '" SECRET "\\q'}"));
	assert_no_secret(f);

	unsetenv("PARLEY_TEST_CFG_SECRET");
}

/* ------------------------------------------------------------------------ */
/* $env: and $file: references                                              */
/* ------------------------------------------------------------------------ */

static void test_env_reference_is_resolved(void **state)
{
	fixture *f = *state;
	setenv("PARLEY_TEST_CFG_DSN", "host=db.internal dbname=parley", 1);
	setenv("PARLEY_TEST_CFG_LISTEN", "[::]:9000", 1);
	assert_loads(f, "{'listen': '$env:PARLEY_TEST_CFG_LISTEN',"
	                " 'database': {'dsn': '$env:PARLEY_TEST_CFG_DSN'}}");
	assert_string_equal(f->c->database.dsn, "host=db.internal dbname=parley");
	assert_string_equal(f->c->listen_host, "::");
	assert_int_equal(f->c->listen_port, 9000);
	unsetenv("PARLEY_TEST_CFG_DSN");
	unsetenv("PARLEY_TEST_CFG_LISTEN");
}

static void test_unset_env_reference_is_refused(void **state)
{
	fixture *f = *state;
	unsetenv("PARLEY_TEST_CFG_UNSET");
	assert_refused(f, "{'database': {'dsn': '$env:PARLEY_TEST_CFG_UNSET'}}",
	               "database.dsn: environment variable PARLEY_TEST_CFG_UNSET is not set");
	assert_refused(f, "{'database': {'dsn': '$env:'}}",
	               "database.dsn: empty environment variable name after \"$env:\"");
}

/* Types are checked on the resolved value, not on the reference. */
static void test_resolved_value_is_type_checked(void **state)
{
	fixture *f = *state;
	setenv("PARLEY_TEST_CFG_LEVEL", "loud", 1);
	assert_refused(f, "{'database': {'dsn': 'x'}, 'log': {'level': '$env:PARLEY_TEST_CFG_LEVEL'}}",
	               "log.level: must be one of error, warn, info, debug");
	setenv("PARLEY_TEST_CFG_LEVEL", "warn", 1);
	assert_loads(f, "{'database': {'dsn': 'x'}, 'log': {'level': '$env:PARLEY_TEST_CFG_LEVEL'}}");
	assert_int_equal(f->c->log.level, LOGL_WARN);
	unsetenv("PARLEY_TEST_CFG_LEVEL");
}

static void test_env_reference_inside_instance_config_array(void **state)
{
	fixture *f = *state;
	setenv("PARLEY_TEST_CFG_TOKEN", "tok-1", 1);
	assert_loads(f, "{'database': {'dsn': 'x'},"
	                " 'sinks': [{'name': 'a', 'plugin': 'zendesk', 'config': {"
	                "   'routes': [{'team': 'eu', 'tokens': ['plain', '$env:PARLEY_TEST_CFG_TOKEN']}]}}]}");
	json_t *tokens = json_object_get(json_array_get(json_object_get(f->c->sinks[0].config,
	                                                                 "routes"), 0), "tokens");
	assert_string_equal(json_string_value(json_array_get(tokens, 0)), "plain");
	assert_string_equal(json_string_value(json_array_get(tokens, 1)), "tok-1");
	unsetenv("PARLEY_TEST_CFG_TOKEN");

	assert_refused(f, "{'database': {'dsn': 'x'},"
	                  " 'sinks': [{'name': 'a', 'plugin': 'zendesk', 'config': {"
	                  "   'routes': [{'team': 'eu', 'tokens': ['plain', '$env:PARLEY_TEST_CFG_TOKEN']}]}}]}",
	               "sinks[0].config.routes[0].tokens[1]: environment variable "
	               "PARLEY_TEST_CFG_TOKEN is not set");
}

static void test_file_reference_strips_one_trailing_newline(void **state)
{
	fixture *f = *state;
	write_text(f, "lf", "secret-lf\n");
	write_text(f, "crlf", "secret-crlf\r\n");
	write_text(f, "two", "secret-two\n\n");
	write_text(f, "none", "secret-none");
	write_text(f, "empty", "");
	assert_loads(f, "{'database': {'dsn': 'x'}, 'channels': [{'name': 'a', 'plugin': 'p',"
	                " 'config': {'lf': '$file:lf', 'crlf': '$file:crlf', 'two': '$file:two',"
	                "            'none': '$file:none', 'empty': '$file:empty'}}]}");
	json_t *c = f->c->channels[0].config;
	assert_string_equal(json_string_value(json_object_get(c, "lf")), "secret-lf");
	assert_string_equal(json_string_value(json_object_get(c, "crlf")), "secret-crlf");
	assert_string_equal(json_string_value(json_object_get(c, "two")), "secret-two\n");
	assert_string_equal(json_string_value(json_object_get(c, "none")), "secret-none");
	assert_string_equal(json_string_value(json_object_get(c, "empty")), "");
}

static void test_file_reference_is_relative_to_config_dir(void **state)
{
	fixture *f = *state;
	char sub[PATH_MAX + 8], doc[PATH_MAX * 2];
	snprintf(sub, sizeof(sub), "%s/keys", f->dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	write_text(f, "keys/dsn", "dbname=from_file\n");

	/* Relative: the config's directory, wherever the process runs. */
	char cwd[PATH_MAX];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir("/"), 0);
	bool ok = load(f, "{'database': {'dsn': '$file:keys/dsn'}}");
	assert_int_equal(chdir(cwd), 0);
	if (!ok)
		fail_msg("%s", f->err);
	assert_string_equal(f->c->database.dsn, "dbname=from_file");

	/* Absolute paths are taken as they are. */
	snprintf(doc, sizeof(doc), "{'database': {'dsn': '$file:%s/keys/dsn'}}", f->dir);
	assert_loads(f, doc);
	assert_string_equal(f->c->database.dsn, "dbname=from_file");
}

static void test_missing_file_reference_is_refused(void **state)
{
	fixture *f = *state;
	char want[PATH_MAX * 2];
	snprintf(want, sizeof(want), "database.dsn: cannot read file %s/nope: "
	         "No such file or directory", f->dir);
	assert_refused(f, "{'database': {'dsn': '$file:nope'}}", want);

	snprintf(want, sizeof(want), "database.dsn: cannot read file %s/.: not a regular file", f->dir);
	assert_refused(f, "{'database': {'dsn': '$file:.'}}", want);

	assert_refused(f, "{'database': {'dsn': '$file:'}}",
	               "database.dsn: empty file name after \"$file:\"");
}

static void test_file_reference_is_capped_at_one_mebibyte(void **state)
{
	fixture *f = *state;
	size_t cap = 1024 * 1024;
	char *big = malloc(cap + 1);
	memset(big, 'k', cap + 1);
	write_raw(f, "exact", big, cap);
	write_raw(f, "big", big, cap + 1);
	free(big);

	assert_loads(f, "{'database': {'dsn': '$file:exact'}}");
	assert_int_equal(strlen(f->c->database.dsn), cap);

	char want[PATH_MAX * 2];
	snprintf(want, sizeof(want), "database.dsn: file %s/big is larger than 1048576 bytes", f->dir);
	assert_refused(f, "{'database': {'dsn': '$file:big'}}", want);
}

static void test_file_reference_must_be_text(void **state)
{
	fixture *f = *state;
	char want[PATH_MAX * 2];
	write_raw(f, "nul", "ab\0cd", 5);
	snprintf(want, sizeof(want), "database.dsn: file %s/nul contains a NUL byte", f->dir);
	assert_refused(f, "{'database': {'dsn': '$file:nul'}}", want);

	write_raw(f, "latin1", "caf\xe9", 4);
	snprintf(want, sizeof(want), "database.dsn: file %s/latin1 is not valid UTF-8", f->dir);
	assert_refused(f, "{'database': {'dsn': '$file:latin1'}}", want);
}

static void test_resolve_string(void **state)
{
	fixture *f = *state;
	char err[256];
	char *s = cfg_resolve_string("plain value", err, sizeof(err));
	assert_string_equal(s, "plain value");
	free(s);

	/* Only a prefix makes a reference. */
	s = cfg_resolve_string("not $env:HOME", err, sizeof(err));
	assert_string_equal(s, "not $env:HOME");
	free(s);

	setenv("PARLEY_TEST_CFG_VALUE", "from env", 1);
	s = cfg_resolve_string("$env:PARLEY_TEST_CFG_VALUE", err, sizeof(err));
	assert_string_equal(s, "from env");
	free(s);
	unsetenv("PARLEY_TEST_CFG_VALUE");

	assert_null(cfg_resolve_string("$env:PARLEY_TEST_CFG_VALUE", err, sizeof(err)));
	assert_string_equal(err, "environment variable PARLEY_TEST_CFG_VALUE is not set");

	char ref[PATH_MAX + 16], want[PATH_MAX * 2];
	write_text(f, "token", "from file\n");
	snprintf(ref, sizeof(ref), "$file:%s/token", f->dir);
	s = cfg_resolve_string(ref, err, sizeof(err));
	assert_string_equal(s, "from file");
	free(s);

	snprintf(ref, sizeof(ref), "$file:%s/absent", f->dir);
	assert_null(cfg_resolve_string(ref, err, sizeof(err)));
	snprintf(want, sizeof(want), "cannot read file %s/absent: No such file or directory", f->dir);
	assert_string_equal(err, want);
}

/* ------------------------------------------------------------------------ */
/* plugin_dir                                                               */
/* ------------------------------------------------------------------------ */

static void test_relative_plugin_dir_is_relative_to_config_dir(void **state)
{
	fixture *f = *state;
	char buf[512], want[PATH_MAX * 2];
	assert_loads(f, with_db("'plugin_dir': '../build/plugins'", buf, sizeof(buf)));
	snprintf(want, sizeof(want), "%s/../build/plugins", f->dir);
	assert_string_equal(f->c->plugin_dir, want);

	assert_loads(f, with_db("'plugin_dir': '/srv/parley/plugins'", buf, sizeof(buf)));
	assert_string_equal(f->c->plugin_dir, "/srv/parley/plugins");
}

/* A config file named without a directory is in the current one; the
 * result is absolute so a later chdir does not change it. */
static void test_plugin_dir_of_config_in_current_dir(void **state)
{
	fixture *f = *state;
	char buf[512], cwd[PATH_MAX], dir[PATH_MAX], want[PATH_MAX * 2];
	write_json(f, with_db("'plugin_dir': 'plugins'", buf, sizeof(buf)));
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(f->dir), 0);
	assert_non_null(getcwd(dir, sizeof(dir)));
	bool ok = cfg_load("parley.json", &f->c, f->err, sizeof(f->err));
	assert_int_equal(chdir(cwd), 0);
	if (!ok)
		fail_msg("%s", f->err);
	snprintf(want, sizeof(want), "%s/plugins", dir);
	assert_string_equal(f->c->plugin_dir, want);
	assert_string_equal(f->c->file, "parley.json");
}

/* ------------------------------------------------------------------------ */
/* cfg_validate_plugin_config                                               */
/* ------------------------------------------------------------------------ */

/* The keys of the shipped webhook channel, as docs/CONFIG.md lists them. */
static const parley_config_key webhook_keys[] = {
	{ "secret", PARLEY_CONFIG_STRING, PARLEY_CONFIG_REQUIRED | PARLEY_CONFIG_SECRET, "" },
	{ "callback_url", PARLEY_CONFIG_STRING, 0, "" },
	{ "callback_timeout_ms", PARLEY_CONFIG_INTEGER, 0, "" },
	{ "tls_verify", PARLEY_CONFIG_BOOLEAN, 0, "" },
	{ "extra", PARLEY_CONFIG_JSON, 0, "" },
	{ NULL, 0, 0, NULL }
};

static bool validate(const char *json, const parley_config_key *keys, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *obj = json_loads(json, JSON_DECODE_ANY, &jerr);
	if (obj == NULL)
		fail_msg("bad test JSON: %s", jerr.text);
	bool ok = cfg_validate_plugin_config("parley.json", "channels[2]", obj, keys, err, errlen);
	json_decref(obj);
	return ok;
}

static void test_plugin_config_accepts_declared_keys(void **state)
{
	char err[256] = "";
	assert_true(validate("{\"secret\": \"s\", \"callback_url\": \"https://x\","
	                     " \"callback_timeout_ms\": 5000, \"tls_verify\": false,"
	                     " \"extra\": [1, {\"a\": null}]}", webhook_keys, err, sizeof(err)));
	assert_true(validate("{\"secret\": \"s\"}", webhook_keys, err, sizeof(err)));
	assert_true(validate("{\"secret\": \"s\", \"extra\": \"text\"}", webhook_keys, err, sizeof(err)));
	/* A plugin without keys takes an empty config, or none at all. */
	assert_true(validate("{}", NULL, err, sizeof(err)));
	assert_true(cfg_validate_plugin_config("parley.json", "channels[2]", NULL, NULL,
	                                       err, sizeof(err)));
}

static void test_plugin_config_unknown_key(void **state)
{
	char err[256];
	assert_false(validate("{\"secret\": \"s\", \"app_secret\": \"t\"}", webhook_keys,
	                      err, sizeof(err)));
	assert_string_equal(err, "parley.json: channels[2].config.app_secret: unknown key");

	assert_false(validate("{\"anything\": 1}", NULL, err, sizeof(err)));
	assert_string_equal(err, "parley.json: channels[2].config.anything: unknown key");
}

static void test_plugin_config_wrong_type(void **state)
{
	char err[256];
	assert_false(validate("{\"secret\": 42}", webhook_keys, err, sizeof(err)));
	assert_string_equal(err, "parley.json: channels[2].config.secret: "
	                         "expected a string, got integer");
	assert_false(validate("{\"secret\": \"s\", \"callback_timeout_ms\": \"10000\"}",
	                      webhook_keys, err, sizeof(err)));
	assert_string_equal(err, "parley.json: channels[2].config.callback_timeout_ms: "
	                         "expected an integer, got string");
	assert_false(validate("{\"secret\": \"s\", \"callback_timeout_ms\": 1.5}",
	                      webhook_keys, err, sizeof(err)));
	assert_string_equal(err, "parley.json: channels[2].config.callback_timeout_ms: "
	                         "expected an integer, got real");
	assert_false(validate("{\"secret\": \"s\", \"tls_verify\": \"false\"}",
	                      webhook_keys, err, sizeof(err)));
	assert_string_equal(err, "parley.json: channels[2].config.tls_verify: "
	                         "expected a boolean, got string");
	assert_false(validate("{\"secret\": \"s\", \"tls_verify\": 0}",
	                      webhook_keys, err, sizeof(err)));
	assert_string_equal(err, "parley.json: channels[2].config.tls_verify: "
	                         "expected a boolean, got integer");
}

static void test_plugin_config_missing_required(void **state)
{
	char err[256];
	assert_false(validate("{\"callback_url\": \"https://x\"}", webhook_keys, err, sizeof(err)));
	assert_string_equal(err, "parley.json: channels[2].config.secret: required key missing");
	assert_false(cfg_validate_plugin_config("parley.json", "channels[2]", NULL, webhook_keys,
	                                        err, sizeof(err)));
	assert_string_equal(err, "parley.json: channels[2].config.secret: required key missing");
}

static void test_plugin_config_must_be_object(void **state)
{
	char err[256];
	assert_false(validate("[]", webhook_keys, err, sizeof(err)));
	assert_string_equal(err, "parley.json: channels[2].config: expected an object, got array");
}

static void test_plugin_config_error_hides_value(void **state)
{
	char err[256];
	assert_false(validate("{\"secret\": [\"" SECRET "\"]}", webhook_keys, err, sizeof(err)));
	assert_null(strstr(err, SECRET));
}

/* ------------------------------------------------------------------------ */
/* The shipped example                                                      */
/* ------------------------------------------------------------------------ */

static void test_ingest_and_jobs_defaults(void **state)
{
	fixture *f = *state;
	assert_loads(f, "{'database': {'dsn': 'x'}}");
	assert_int_equal(f->c->ingest.batch_max_events, 500);
	assert_int_equal(f->c->ingest.batch_max_delay_ms, 2);
	assert_int_equal(f->c->ingest.max_inflight_batches, 3);
	assert_int_equal(f->c->ingest.reopen_window_s, 604800);
	assert_true(f->c->ingest.auto_merge_verified_email);
	assert_true(f->c->ingest.auto_merge_verified_phone);
	assert_string_equal(f->c->ingest.case_prefix, "PC-");
	assert_string_equal(f->c->ingest.order_number_pattern, CFG_DEFAULT_ORDER_PATTERN);
	assert_true(f->c->jobs.enabled);
	assert_int_equal(f->c->jobs.concurrency, 16);
	assert_int_equal(f->c->jobs.lease_ms, 60000);
	assert_int_equal(f->c->jobs.max_attempts, 10);
	assert_int_equal(f->c->jobs.backoff_base_ms, 1000);
	assert_int_equal(f->c->jobs.backoff_max_ms, 3600000);
	assert_int_equal(f->c->jobs.sweep_interval_ms, 5000);
	assert_int_equal(f->c->jobs.unclaimed_notice_ms, 300000);
}

static void test_ingest_and_jobs_values(void **state)
{
	fixture *f = *state;
	char buf[1024];
	assert_loads(f, with_db("'ingest': {'batch_max_events': 1, 'batch_max_delay_ms': 0, "
	                        "'max_inflight_batches': 3, 'reopen_window_s': 60, "
	                        "'auto_merge_verified_email': false, 'auto_merge_verified_phone': false, "
	                        "'case_prefix': 'CASE-', 'order_number_pattern': '#([0-9]{6})', "
	                        "'notify_new_conversation': ['ops']}, "
	                        "'notifiers': [{'name': 'ops', 'plugin': 'slack'}], "
	                        "'jobs': {'enabled': false, 'concurrency': 2, 'lease_ms': 500, "
	                        "'max_attempts': 3, 'backoff_base_ms': 10, 'backoff_max_ms': 10, "
	                        "'sweep_interval_ms': 50, 'unclaimed_notice_ms': 100}", buf, sizeof(buf)));
	assert_int_equal(f->c->ingest.batch_max_events, 1);
	assert_int_equal(f->c->ingest.batch_max_delay_ms, 0);
	assert_int_equal(f->c->ingest.max_inflight_batches, 3);
	assert_int_equal(f->c->ingest.reopen_window_s, 60);
	assert_false(f->c->ingest.auto_merge_verified_email);
	assert_false(f->c->ingest.auto_merge_verified_phone);
	assert_string_equal(f->c->ingest.case_prefix, "CASE-");
	assert_string_equal(f->c->ingest.order_number_pattern, "#([0-9]{6})");
	assert_int_equal(f->c->ingest.n_notify_new_conversation, 1);
	assert_string_equal(f->c->ingest.notify_new_conversation[0], "ops");
	assert_false(f->c->jobs.enabled);
	assert_int_equal(f->c->jobs.concurrency, 2);
	assert_int_equal(f->c->jobs.lease_ms, 500);
	assert_int_equal(f->c->jobs.max_attempts, 3);
	assert_int_equal(f->c->jobs.backoff_base_ms, 10);
	assert_int_equal(f->c->jobs.backoff_max_ms, 10);
	assert_int_equal(f->c->jobs.sweep_interval_ms, 50);
	assert_int_equal(f->c->jobs.unclaimed_notice_ms, 100);
}

static void test_ingest_and_jobs_errors(void **state)
{
	fixture *f = *state;
	char buf[1024];
	assert_refused(f, with_db("'ingest': {'batch_max_events': 0}", buf, sizeof(buf)),
	               "ingest.batch_max_events: must be between 1 and 10000");
	assert_refused(f, with_db("'ingest': {'batch_max_delay_ms': 1001}", buf, sizeof(buf)),
	               "ingest.batch_max_delay_ms: must be between 0 and 1000");
	assert_refused(f, with_db("'ingest': {'reopen_window_s': -1}", buf, sizeof(buf)),
	               "ingest.reopen_window_s: must be at least 0");
	assert_refused(f, with_db("'ingest': {'batch_size': 5}", buf, sizeof(buf)),
	               "ingest.batch_size: unknown key");
	assert_refused(f, with_db("'ingest': {'case_prefix': 'P C'}", buf, sizeof(buf)),
	               "ingest.case_prefix: must be 1..16 of A-Z a-z 0-9 - _");
	assert_refused(f, with_db("'ingest': {'case_prefix': ''}", buf, sizeof(buf)),
	               "ingest.case_prefix: must be 1..16 of A-Z a-z 0-9 - _");
	assert_false(load(f, with_db("'ingest': {'order_number_pattern': 'order ([0-9]+'}", buf, sizeof(buf))));
	assert_non_null(strstr(f->err, ": ingest.order_number_pattern: invalid regular expression: "));
	assert_refused(f, with_db("'ingest': {'order_number_pattern': ''}", buf, sizeof(buf)),
	               "ingest.order_number_pattern: must not be empty");
	assert_refused(f, with_db("'ingest': 5", buf, sizeof(buf)),
	               "ingest: expected an object, got integer");
	assert_refused(f, with_db("'ingest': {'notify_new_conversation': ['ops']}", buf, sizeof(buf)),
	               "ingest.notify_new_conversation[0]: no notifier instance of that name");
	assert_refused(f, with_db("'ingest': {'notify_new_conversation': 'ops'}", buf, sizeof(buf)),
	               "ingest.notify_new_conversation: expected an array, got string");
	assert_refused(f, with_db("'ingest': {'notify_new_conversation': [5]}", buf, sizeof(buf)),
	               "ingest.notify_new_conversation[0]: expected a string, got integer");
	assert_refused(f, with_db("'jobs': {'concurrency': 0}", buf, sizeof(buf)),
	               "jobs.concurrency: must be between 1 and 1000");
	assert_refused(f, with_db("'jobs': {'lease_ms': 499}", buf, sizeof(buf)),
	               "jobs.lease_ms: must be at least 500");
	assert_refused(f, with_db("'jobs': {'unclaimed_notice_ms': 99}", buf, sizeof(buf)),
	               "jobs.unclaimed_notice_ms: must be at least 100");
	assert_refused(f, with_db("'jobs': {'backoff_base_ms': 100, 'backoff_max_ms': 50}", buf, sizeof(buf)),
	               "jobs.backoff_max_ms: must be at least jobs.backoff_base_ms");
	assert_refused(f, with_db("'jobs': {'enabled': 'yes'}", buf, sizeof(buf)),
	               "jobs.enabled: expected a boolean, got string");
	assert_refused(f, with_db("'jobs': {'workers': 1}", buf, sizeof(buf)),
	               "jobs.workers: unknown key");
}

/* ------------------------------------------------------------------------ */
/* The settings table                                                       */
/* ------------------------------------------------------------------------ */

typedef void (*row_fn)(fixture *f, const cfg_section *s, const cfg_setting *r);

static void walk_rows(fixture *f, const cfg_section *s, row_fn fn)
{
	for (const cfg_setting *r = s->rows; r->key != NULL; r++) {
		if (r->type == CFG_T_SECTION)
			walk_rows(f, r->section, fn);
		else
			fn(f, s, r);
	}
}

/* A document setting one key of a section (or the top level) to `value`. */
static const char *with_setting(const cfg_section *s, const char *key, long long value,
                                char *buf, size_t len)
{
	int n;
	if (s->path[0] == '\0')
		n = snprintf(buf, len, "{'database': {'dsn': 'x'}, '%s': %lld}", key, value);
	else if (strcmp(s->path, "database") == 0)
		n = snprintf(buf, len, "{'database': {'dsn': 'x', '%s': %lld}}", key, value);
	else
		n = snprintf(buf, len, "{'database': {'dsn': 'x'}, '%s': {'%s': %lld}}", s->path, key, value);
	assert_true(n > 0 && (size_t)n < len);
	return buf;
}

/* Every row is documented, and an integer's default lies in its range;
 * out of range is refused with the range the table (and the reference)
 * states, and the default itself loads. */
static void check_row(fixture *f, const cfg_section *s, const cfg_setting *r)
{
	assert_non_null(r->doc);
	if (strchr(r->doc, '|') != NULL)
		fail_msg("%s.%s: a \"|\" in its description breaks the Markdown table", s->path, r->key);
	/* A restart-only setting the reload could not compare would never be named. */
	bool comparable = r->same != NULL || (r->type != CFG_T_LIST &&
	                                      (r->type != CFG_T_STRING || r->offset != 0));
	if (!(r->flags & CFG_RELOAD) && !comparable)
		fail_msg("%s.%s: takes a restart but has neither a field nor a comparison", s->path, r->key);
	if (r->type != CFG_T_INT && r->type != CFG_T_SIZE)
		return;
	if (r->def < r->min || r->def > r->max)
		fail_msg("%s.%s: default %lld outside %lld..%lld", s->path, r->key, r->def, r->min, r->max);
	char doc[512], want[256];
	assert_loads(f, with_setting(s, r->key, r->def, doc, sizeof(doc)));
	if (r->max >= INT_MAX)
		snprintf(want, sizeof(want), "%s%s%s: must be at least %lld", s->path,
		         s->path[0] ? "." : "", r->key, r->min);
	else
		snprintf(want, sizeof(want), "%s%s%s: must be between %lld and %lld", s->path,
		         s->path[0] ? "." : "", r->key, r->min, r->max);
	assert_refused(f, with_setting(s, r->key, r->min - 1, doc, sizeof(doc)), want);
	if (r->max < INT_MAX)
		assert_refused(f, with_setting(s, r->key, r->max + 1, doc, sizeof(doc)), want);
}

static void test_every_setting_is_documented_and_checked_by_its_row(void **state)
{
	walk_rows(*state, &cfg_root_section, check_row);
}

static char *reference(bool markdown)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);
	assert_non_null(fp);
	cfg_print_reference(fp, markdown);
	assert_int_equal(fclose(fp), 0);
	return text;
}

static void check_in_reference(fixture *f, const cfg_section *s, const cfg_setting *r)
{
	char line[256];
	char *text = reference(false);
	snprintf(line, sizeof(line), "\n%s%s%s (", s->path, s->path[0] ? "." : "", r->key);
	if (strstr(text, line) == NULL && strncmp(text, line + 1, strlen(line + 1)) != 0)
		fail_msg("--help-config lacks %s", line + 1);
	free(text);
	text = reference(true);
	snprintf(line, sizeof(line), "\n| `%s` | ", r->key);
	assert_non_null(strstr(text, line));
	free(text);
	(void)f;
}

static void test_reference_lists_every_setting(void **state)
{
	walk_rows(*state, &cfg_root_section, check_in_reference);
	char *md = reference(true);
	assert_non_null(strstr(md, "| `max_connections` | integer | `1024` | 1..100000 | node | yes | "));
	assert_non_null(strstr(md, "| `pool_size` | integer | `4` | 1..64 | node | restart | "));
	assert_non_null(strstr(md, "| `dsn` | string | — (**required**) |  | node | restart | "));
	assert_non_null(strstr(md, "| `case_prefix` | string | `\"PC-\"` | 1..16 of `A-Z a-z 0-9 - _` | "
	                           "cluster | policy | "));
	free(md);
}

/* Two configurations: f->c is the running one, *next the reloaded one. */
static size_t restart_changes(fixture *f, const char *cur, const char *next, char *out, size_t len)
{
	assert_loads(f, cur);
	cfg *a = f->c;
	f->c = NULL;
	assert_loads(f, next);
	size_t n = cfg_restart_changes(a, f->c, out, len);
	cfg_free(a);
	return n;
}

static void test_reload_names_every_change_it_cannot_apply(void **state)
{
	fixture *f = *state;
	char out[512];
	static const char base[] =
		"{'listen': '127.0.0.1:8080', 'database': {'dsn': 'x'},"
		" 'channels': [{'name': 'site', 'plugin': 'webhook', 'config': {'secret': 'a'}}],"
		" 'notifiers': [{'name': 'ops', 'plugin': 'slack'}]}";
	assert_int_equal(restart_changes(f, base, base, out, sizeof(out)), 0);
	assert_string_equal(out, "");

	/* What a reload applies is not named. */
	assert_int_equal(restart_changes(f, base,
		"{'listen': '127.0.0.1:8080', 'database': {'dsn': 'x'}, 'log': {'level': 'debug'},"
		" 'limits': {'max_body_bytes': 2048}, 'ingest': {'case_prefix': 'X-',"
		" 'notify_new_conversation': ['ops']}, 'notices': [{'notifier': 'ops'}],"
		" 'channels': [{'name': 'site', 'plugin': 'webhook', 'config': {'secret': 'b'}}],"
		" 'notifiers': [{'name': 'ops', 'plugin': 'slack'}]}", out, sizeof(out)), 0);

	/* Everything else is, by its path, in the table's order. A public_url
	 * derived from listen changes with it. Cluster keys are not named: the
	 * cluster policy sets them, not the reload. */
	assert_int_equal(restart_changes(f, base,
		"{'listen': '127.0.0.1:9090', 'database': {'dsn': 'y', 'pool_size': 5,"
		" 'migrate_on_start': false}, 'plugin_dir': '/elsewhere',"
		" 'jobs': {'concurrency': 2, 'notify_delivery_failed': ['ops2']},"
		" 'channels': [{'name': 'site', 'plugin': 'webhook', 'config': {'secret': 'a'}}],"
		" 'notifiers': [{'name': 'ops2', 'plugin': 'slack'}]}", out, sizeof(out)), 8);
	assert_string_equal(out, "listen, public_url, database.dsn, database.pool_size, "
	                         "database.migrate_on_start, plugin_dir, jobs.concurrency, "
	                         "notifiers (the set of instances)");

	/* A written public_url stays when listen moves. */
	assert_int_equal(restart_changes(f,
		"{'listen': '[::1]:8080', 'public_url': 'https://p.example', 'database': {'dsn': 'x'}}",
		"{'listen': '[::1]:8081', 'public_url': 'https://p.example', 'database': {'dsn': 'x'}}",
		out, sizeof(out)), 1);
	assert_string_equal(out, "listen");

	/* A short buffer is cut, never overrun, and stays terminated. */
	char small[12];
	assert_int_equal(restart_changes(f, base,
		"{'listen': '127.0.0.1:9090', 'database': {'dsn': 'y'}}", small, sizeof(small)), 5);
	assert_int_equal(strlen(small), sizeof(small) - 1);
}

/* PARLEY_SRCDIR, else automake's test harness's srcdir, else ".". */
static void example_path(char *out, size_t len)
{
	const char *dir = getenv("PARLEY_SRCDIR");
	if (dir == NULL || dir[0] == '\0')
		dir = getenv("srcdir");
	if (dir == NULL || dir[0] == '\0')
		dir = ".";
	snprintf(out, len, "%s/etc/parley.example.json", dir);
}

static void test_example_config_loads(void **state)
{
	fixture *f = *state;
	char path[PATH_MAX];
	example_path(path, sizeof(path));
	setenv("PARLEY_SITE_SECRET", "example-site-secret", 1);
	bool ok = cfg_load(path, &f->c, f->err, sizeof(f->err));
	unsetenv("PARLEY_SITE_SECRET");
	if (!ok)
		fail_msg("%s", f->err);

	assert_int_equal(f->c->n_channels, 1);
	cfg_instance *site = &f->c->channels[0];
	assert_string_equal(site->name, "site");
	assert_string_equal(site->plugin, "webhook");
	assert_string_equal(json_string_value(json_object_get(site->config, "secret")),
	                    "example-site-secret");
	assert_string_equal(json_string_value(json_object_get(site->config, "callback_url")),
	                    "https://example.com/parley/outbound");
	assert_true(cfg_validate_plugin_config(path, site->path, site->config, webhook_keys,
	                                       f->err, sizeof(f->err)));
	assert_string_equal(site->move_to_private_text, CFG_MOVE_TEXT_DEFAULT);
	assert_int_equal(f->c->jobs.n_notify_delivery_failed, 0);

	/* Without the secret it is refused, naming the variable. */
	cfg *c = NULL;
	assert_false(cfg_load(path, &c, f->err, sizeof(f->err)));
	assert_non_null(strstr(f->err, "channels[0].config.secret: environment variable "
	                                "PARLEY_SITE_SECRET is not set"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full_config_sets_every_field, setup, teardown),
		cmocka_unit_test_setup_teardown(test_minimal_config_gets_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ingest_and_jobs_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ingest_and_jobs_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ingest_and_jobs_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_sections_keep_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_ipv6_and_default_public_url, setup, teardown),
		cmocka_unit_test_setup_teardown(test_public_url_loses_trailing_slash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_instance_names_may_repeat_across_kinds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_boundary_values_are_accepted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_keys_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_types_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_required_keys_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range_values_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_listen_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_public_url_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_log_settings_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_instance_names_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_instance_names_must_be_url_safe, setup, teardown),
		cmocka_unit_test(test_name_is_url_safe),
		cmocka_unit_test_setup_teardown(test_plugin_names_must_be_file_safe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_syntax_error_names_line_and_column, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_json_keys_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors_never_contain_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_reference_is_resolved, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unset_env_reference_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolved_value_is_type_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_reference_inside_instance_config_array, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_reference_strips_one_trailing_newline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_reference_is_relative_to_config_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file_reference_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_reference_is_capped_at_one_mebibyte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_reference_must_be_text, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolve_string, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relative_plugin_dir_is_relative_to_config_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plugin_dir_of_config_in_current_dir, setup, teardown),
		cmocka_unit_test(test_plugin_config_accepts_declared_keys),
		cmocka_unit_test(test_plugin_config_unknown_key),
		cmocka_unit_test(test_plugin_config_wrong_type),
		cmocka_unit_test(test_plugin_config_missing_required),
		cmocka_unit_test(test_plugin_config_must_be_object),
		cmocka_unit_test(test_plugin_config_error_hides_value),
		cmocka_unit_test_setup_teardown(test_example_config_loads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_setting_is_documented_and_checked_by_its_row,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_reference_lists_every_setting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload_names_every_change_it_cannot_apply, setup,
		                                teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
