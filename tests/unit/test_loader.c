/* test_loader.c - the plugin loader and the host function table, with real
 * plugin shared objects: every rejection the loader promises, the lifecycle,
 * and a channel's outbound send going through the core's HTTP client to a
 * real HTTP server. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include <event2/event.h>

#include "config.h"
#include "db.h"
#include "migrate.h"
#include "host_api.h"
#include "http_client.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "plugin_loader.h"
#include "util.h"
#include "pg_testdb.h"

#ifndef TEST_BUILDDIR
#define TEST_BUILDDIR "."
#endif

static const char *test_plugin_dir = TEST_BUILDDIR "/tests/plugins/.libs";
static const char *real_plugin_dir = TEST_BUILDDIR "/plugin-dir";

static char tmpdir[] = "/tmp/parley-loader-XXXXXX";

/* Write a config naming `plugin_dir` with the given instance sections. */
static cfg *load_config(const char *plugin_dir, const char *sections, char *err, size_t errlen)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/parley.json", tmpdir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "{\"database\": {\"dsn\": \"host=127.0.0.1 dbname=none\"}, \"plugin_dir\": \"%s\"%s%s}\n",
	        plugin_dir, sections[0] ? ", " : "", sections);
	fclose(f);
	cfg *c = NULL;
	if (!cfg_load(path, &c, err, errlen))
		return NULL;
	return c;
}

static void expect_open_fails(const char *file, parley_kind kind, const char *needle)
{
	char path[512], err[1024];
	snprintf(path, sizeof(path), "%s/%s", test_plugin_dir, file);
	loaded_plugin *p = NULL;
	assert_false(loader_open_file(path, kind, &p, err, sizeof(err)));
	assert_null(p);
	if (strstr(err, needle) == NULL || strstr(err, path) == NULL)
		fail_msg("error \"%s\" should name %s and contain \"%s\"", err, path, needle);
}

static void test_rejects_missing_entry_symbol(void **state)
{
	expect_open_fails("no_entry.so", 0, "no entry symbol parley_plugin_entry");
}

static void test_rejects_other_abi_major(void **state)
{
	expect_open_fails("wrong_major.so", 0, "built for plugin ABI 99.");
}

static void test_rejects_too_small_descriptor(void **state)
{
	expect_open_fails("small_descriptor.so", 0, "descriptor is 16 bytes");
}

static void test_rejects_wrong_kind(void **state)
{
	expect_open_fails("wrong_kind.so", PARLEY_KIND_SINK, "is a notifier plugin, configured as a sink");
}

static void test_rejects_missing_mandatory_operation(void **state)
{
	expect_open_fails("missing_op.so", PARLEY_KIND_SINK, "missing mandatory operation sink.append_message");
}

/* The daemon is not linked with --export-dynamic: a plugin that reaches for a
 * core internal cannot even be loaded. */
static void test_rejects_plugin_using_core_internal_symbol(void **state)
{
	expect_open_fails("core_symbol.so", 0, "undefined symbol: log_msg");
}

static void test_create_failure_names_file_and_key(void **state)
{
	char err[2048];
	cfg *c = load_config(test_plugin_dir,
	                     "\"channels\": [{\"name\": \"x\", \"plugin\": \"create_fails\", \"config\": {}}]",
	                     err, sizeof(err));
	assert_non_null(c);
	plugin_set *s = NULL;
	assert_false(plugins_load(c, &s, err, sizeof(err)));
	if (strstr(err, "parley.json: channels[0].config.token: is not accepted by this test plugin") == NULL)
		fail_msg("unexpected error: %s", err);
	cfg_free(c);
}

static void test_missing_plugin_is_config_error(void **state)
{
	char err[2048];
	cfg *c = load_config(test_plugin_dir,
	                     "\"sinks\": [{\"name\": \"x\", \"plugin\": \"does_not_exist\"}]", err, sizeof(err));
	assert_non_null(c);
	plugin_set *s = NULL;
	assert_false(plugins_load(c, &s, err, sizeof(err)));
	if (strstr(err, "sinks[0].plugin: plugin \"does_not_exist\" not found") == NULL)
		fail_msg("unexpected error: %s", err);
	cfg_free(c);
}

static void test_plugin_config_checked_against_declared_keys(void **state)
{
	char err[2048];
	cfg *c = load_config(test_plugin_dir,
	                     "\"sinks\": [{\"name\": \"p\", \"plugin\": \"probe_sink\", \"config\": {\"lable\": \"x\"}}]",
	                     err, sizeof(err));
	assert_non_null(c);
	plugin_set *s = NULL;
	assert_false(plugins_load(c, &s, err, sizeof(err)));
	if (strstr(err, "sinks[0].config.lable") == NULL)
		fail_msg("unexpected error: %s", err);
	cfg_free(c);
}

static void test_configured_kind_must_match(void **state)
{
	char err[2048];
	cfg *c = load_config(test_plugin_dir,
	                     "\"channels\": [{\"name\": \"p\", \"plugin\": \"probe_sink\"}]", err, sizeof(err));
	assert_non_null(c);
	plugin_set *s = NULL;
	assert_false(plugins_load(c, &s, err, sizeof(err)));
	if (strstr(err, "is a sink plugin, configured as a channel") == NULL)
		fail_msg("unexpected error: %s", err);
	cfg_free(c);
}

/* A kind's own folder is searched first (plugin_dir/notifiers/NAME.so), then
 * plugin_dir itself; a plugin in a kind's folder serves only that kind, and
 * --list-plugins names it with its folder. */
static void test_kind_folder_is_searched_first(void **state)
{
	char dir[512], sub[600], link[700], target[700], err[2048];
	snprintf(dir, sizeof(dir), "%s/kinds", tmpdir);
	snprintf(sub, sizeof(sub), "%s/notifiers", dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(target, sizeof(target), "%s/notice_probe.so", test_plugin_dir);
	snprintf(link, sizeof(link), "%s/notice_probe.so", sub);
	assert_int_equal(symlink(target, link), 0);
	snprintf(target, sizeof(target), "%s/probe_sink.so", test_plugin_dir);
	snprintf(link, sizeof(link), "%s/probe_sink.so", dir);
	assert_int_equal(symlink(target, link), 0);

	cfg *c = load_config(dir,
	                     "\"notifiers\": [{\"name\": \"n\", \"plugin\": \"notice_probe\","
	                     " \"config\": {\"log_file\": \"/dev/null\"}}],"
	                     "\"sinks\": [{\"name\": \"s\", \"plugin\": \"probe_sink\"}]",
	                     err, sizeof(err));
	assert_non_null(c);
	plugin_set *s = NULL;
	if (!plugins_load(c, &s, err, sizeof(err)))
		fail_msg("load: %s", err);
	assert_non_null(plugins_find(s, PARLEY_KIND_NOTIFIER, "n"));
	assert_non_null(plugins_find(s, PARLEY_KIND_SINK, "s"));
	plugins_free(s);
	cfg_free(c);

	/* Not found for another kind: sinks/ and plugin_dir have no such file. */
	c = load_config(dir, "\"sinks\": [{\"name\": \"x\", \"plugin\": \"notice_probe\"}]",
	                err, sizeof(err));
	assert_non_null(c);
	s = NULL;
	assert_false(plugins_load(c, &s, err, sizeof(err)));
	if (strstr(err, "plugin \"notice_probe\" not found") == NULL)
		fail_msg("unexpected error: %s", err);
	cfg_free(c);

	char path[600];
	snprintf(path, sizeof(path), "%s/list.txt", tmpdir);
	FILE *f = fopen(path, "w+");
	assert_non_null(f);
	assert_true(loader_list_dir(dir, f, false));
	rewind(f);
	char buf[4096];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	assert_non_null(strstr(buf, "notifiers/notice_probe.so  notifier  notice_probe  "));
	assert_non_null(strstr(buf, "probe_sink.so  sink  probe_sink  "));
}

/* The ticket sinks take their settings from the core (ABI 1.3 tables) and
 * check only what a table cannot say. Each config is refused with the key
 * and the reason, and never with a secret; a valid one loads, reloads
 * with a change, and a refused reload names the key too. */
static void sink_config_refused(const char *plugin, const char *config, const char *needle)
{
	char sections[1024], err[2048];
	snprintf(sections, sizeof(sections),
	         "\"sinks\": [{\"name\": \"t\", \"plugin\": \"%s\", \"config\": %s}]", plugin, config);
	cfg *c = load_config(real_plugin_dir, sections, err, sizeof(err));
	assert_non_null(c);
	plugin_set *s = NULL;
	assert_false(plugins_load(c, &s, err, sizeof(err)));
	if (strstr(err, needle) == NULL)
		fail_msg("%s %s: error \"%s\" should contain \"%s\"", plugin, config, err, needle);
	if (strstr(err, "s3cr3t") != NULL)
		fail_msg("%s: error \"%s\" shows a secret", plugin, err);
	cfg_free(c);
}

static void test_ticket_sinks_refuse_bad_settings(void **state)
{
	(void)state;
#define ZD "\"base_url\": \"https://acme.zendesk.com\""
	sink_config_refused("zendesk", "{" ZD ", \"email\": \"bot@acme.com\", \"api_token\": \"s3cr3t\", "
	                    "\"oauth_token\": \"s3cr3t\"}",
	                    "sinks[0].config.oauth_token: set either oauth_token or api_token, not both");
	sink_config_refused("zendesk", "{" ZD ", \"api_token\": \"s3cr3t\"}",
	                    "sinks[0].config.email: required: email and api_token, or oauth_token");
	sink_config_refused("zendesk", "{" ZD ", \"email\": \"bot@acme.com\"}",
	                    "sinks[0].config.api_token: required: email and api_token, or oauth_token");
	sink_config_refused("zendesk", "{" ZD ", \"email\": \"bot\", \"api_token\": \"s3cr3t\"}",
	                    "sinks[0].config.email: must be the API user's e-mail address");
	sink_config_refused("zendesk", "{\"base_url\": \"https://acme.zendesk.com/?x=1\", "
	                    "\"oauth_token\": \"s3cr3t\"}",
	                    "sinks[0].config.base_url: must be an http:// or https:// URL without user "
	                    "or query");
	sink_config_refused("zendesk", "{" ZD ", \"oauth_token\": \"s3cr3t\\nX\"}",
	                    "sinks[0].config.oauth_token: must not contain control characters");
	sink_config_refused("zendesk", "{" ZD ", \"oauth_token\": \"s3cr3t\", "
	                    "\"requests_per_minute\": 0}",
	                    "sinks[0].config.requests_per_minute: must be between 1 and 100000");
#undef ZD
#define FD "\"base_url\": \"https://acme.freshdesk.com\", \"api_key\": \"s3cr3t\""
	sink_config_refused("freshdesk", "{\"base_url\": \"https://acme.freshdesk.com/#x\", "
	                    "\"api_key\": \"s3cr3t\"}",
	                    "sinks[0].config.base_url: must be an http:// or https:// URL");
	sink_config_refused("freshdesk", "{" FD ", \"webhook_username\": \"parley\"}",
	                    "sinks[0].config.webhook_username: needs webhook_secret as its password");
	sink_config_refused("freshdesk", "{" FD ", \"webhook_secret\": \"s3cr3t\", "
	                    "\"webhook_username\": \"a:b\"}",
	                    "sinks[0].config.webhook_username: must be non-empty, without ':'");
	sink_config_refused("freshdesk", "{" FD ", \"group_id\": 0}",
	                    "sinks[0].config.group_id: must be at least 1");
	sink_config_refused("freshdesk", "{" FD ", \"priority\": 5}",
	                    "sinks[0].config.priority: must be between 1 and 4");
	sink_config_refused("freshdesk", "{\"base_url\": \"https://acme.freshdesk.com\", "
	                    "\"api_key\": \"\"}",
	                    "sinks[0].config.api_key: must be between 1 and 4096 bytes long");
#undef FD
}

/* Every setting of both sinks takes effect on SIGHUP, as before the
 * tables: a reload with other values is accepted, one the plugin's own
 * check refuses names the key and keeps the old settings. */
static void test_ticket_sinks_reload_their_settings(void **state)
{
	(void)state;
	static const char *const good[] = {
		"\"sinks\": [{\"name\": \"z\", \"plugin\": \"zendesk\", \"config\": "
		"{\"base_url\": \"https://acme.zendesk.com\", \"oauth_token\": \"tok\"}}, "
		"{\"name\": \"f\", \"plugin\": \"freshdesk\", \"config\": "
		"{\"base_url\": \"https://acme.freshdesk.com/\", \"api_key\": \"key\"}}]",
		"\"sinks\": [{\"name\": \"z\", \"plugin\": \"zendesk\", \"config\": "
		"{\"base_url\": \"https://other.zendesk.com\", \"email\": \"bot@other.com\", "
		"\"api_token\": \"tok\", \"requests_per_minute\": 400, \"timeout_ms\": 500, "
		"\"webhook_secret\": \"w\", \"insecure_skip_verify\": true}}, "
		"{\"name\": \"f\", \"plugin\": \"freshdesk\", \"config\": "
		"{\"base_url\": \"https://other.freshdesk.com\", \"api_key\": \"key2\", "
		"\"webhook_secret\": \"w\", \"webhook_username\": \"u\", \"requests_per_minute\": 5, "
		"\"timeout_ms\": 500, \"priority\": 4, \"source\": 7, \"group_id\": 12, "
		"\"tls_verify\": false}}]",
	};
	char err[2048];
	cfg *c = load_config(real_plugin_dir, good[0], err, sizeof(err));
	assert_non_null(c);
	plugin_set *s = NULL;
	if (!plugins_load(c, &s, err, sizeof(err)))
		fail_msg("load: %s", err);
	cfg_free(c);
	/* No "take a restart" on SIGHUP: every row is reloadable. */
	for (size_t i = 0; i < s->n_instances; i++) {
		const parley_plugin_descriptor *d = s->instances[i]->desc;
		assert_true(d->n_settings > 0);
		for (size_t r = 0; r < d->n_settings; r++) {
			const parley_setting *row =
				(const void *)((const char *)d->settings + r * d->setting_size);
			if (!(row->flags & PARLEY_SETTING_FLAG_RELOADABLE))
				fail_msg("%s: %s is not reloadable", d->name, row->name);
		}
	}

	c = load_config(real_plugin_dir, good[1], err, sizeof(err));
	assert_non_null(c);
	if (!plugins_reload(s, c, err, sizeof(err)))
		fail_msg("reload: %s", err);
	cfg_free(c);

	c = load_config(real_plugin_dir,
	                "\"sinks\": [{\"name\": \"z\", \"plugin\": \"zendesk\", \"config\": "
	                "{\"base_url\": \"https://acme.zendesk.com\", \"oauth_token\": \"tok\", "
	                "\"api_token\": \"tok\"}}, "
	                "{\"name\": \"f\", \"plugin\": \"freshdesk\", \"config\": "
	                "{\"base_url\": \"https://acme.freshdesk.com\", \"api_key\": \"key\"}}]",
	                err, sizeof(err));
	assert_non_null(c);
	assert_false(plugins_reload(s, c, err, sizeof(err)));
	if (strstr(err, "sinks[0].config.oauth_token: set either oauth_token or api_token") == NULL)
		fail_msg("unexpected error: %s", err);
	cfg_free(c);
	plugins_free(s);
	metrics_reset();
}

/* One plugin file, several instances, each with its own config; a ticket
 * opened through the sink's operation table completes with its external id. */
struct delivery_result {
	bool done;
	parley_outcome outcome;
	int64_t retry_at_ms;
	char reason[512];
	char external_id[128];
	struct event_base *base;
};

static void delivery_done(void *arg, const host_delivery_result *res)
{
	struct delivery_result *r = arg;
	r->done = true;
	r->outcome = res->outcome;
	r->retry_at_ms = res->retry_at_ms;
	snprintf(r->reason, sizeof(r->reason), "%s", res->reason ? res->reason : "");
	snprintf(r->external_id, sizeof(r->external_id), "%s", res->external_id ? res->external_id : "");
	if (r->base)
		event_base_loopbreak(r->base);
}

static void test_instances_lifecycle_and_sink_delivery(void **state)
{
	char err[2048];
	cfg *c = load_config(test_plugin_dir,
	                     "\"sinks\": [{\"name\": \"a\", \"plugin\": \"probe_sink\", \"config\": {\"label\": \"one\"}},"
	                     "            {\"name\": \"b\", \"plugin\": \"probe_sink\", \"config\": {\"label\": \"two\"}}]",
	                     err, sizeof(err));
	assert_non_null(c);
	plugin_set *s = NULL;
	if (!plugins_load(c, &s, err, sizeof(err)))
		fail_msg("load: %s", err);
	assert_int_equal(s->n_plugins, 1);     /* one .so ... */
	assert_int_equal(s->n_instances, 2);   /* ... two instances */
	assert_true(plugins_start(s, err, sizeof(err)));
	parley_instance *b = plugins_find(s, PARLEY_KIND_SINK, "b");
	assert_non_null(b);
	assert_null(plugins_find(s, PARLEY_KIND_CHANNEL, "b"));

	struct delivery_result r = { 0 };
	parley_customer_info cust = { .size = sizeof(cust), .customer_id = "1", .display_name = "Ann" };
	parley_conversation_info conv = { .size = sizeof(conv), .conversation_id = "7",
	                                  .visibility = PARLEY_VISIBILITY_PRIVATE, .customer = &cust };
	parley_message_info msg = { .size = sizeof(msg), .message_id = "9", .text = "hello", .inbound = 1 };
	parley_ticket_request t = { .size = sizeof(t), .idempotency_key = "job-42", .conversation = &conv,
	                            .first_message = &msg };
	b->desc->sink->open_ticket(b->self, &t, host_delivery_new(b, delivery_done, &r));
	assert_true(r.done);
	assert_int_equal(r.outcome, PARLEY_OK);
	assert_string_equal(r.external_id, "T-job-42");

	/* Reload hands each instance its new config; a changed instance set is refused. */
	cfg *c2 = load_config(test_plugin_dir,
	                      "\"sinks\": [{\"name\": \"a\", \"plugin\": \"probe_sink\", \"config\": {\"label\": \"1\"}},"
	                      "            {\"name\": \"b\", \"plugin\": \"probe_sink\", \"config\": {\"label\": \"2\"}}]",
	                      err, sizeof(err));
	assert_non_null(c2);
	assert_true(plugins_reload(s, c2, err, sizeof(err)));
	cfg *c3 = load_config(test_plugin_dir,
	                      "\"sinks\": [{\"name\": \"a\", \"plugin\": \"probe_sink\"}]", err, sizeof(err));
	assert_non_null(c3);
	assert_false(plugins_reload(s, c3, err, sizeof(err)));
	assert_non_null(strstr(err, "needs a restart"));
	cfg *c4 = load_config(test_plugin_dir,
	                      "\"sinks\": [{\"name\": \"a\", \"plugin\": \"probe_sink\", \"config\": {\"label\": 5}},"
	                      "            {\"name\": \"b\", \"plugin\": \"probe_sink\"}]", err, sizeof(err));
	assert_non_null(c4);
	assert_false(plugins_reload(s, c4, err, sizeof(err)));
	assert_non_null(strstr(err, "sinks[0].config.label"));

	plugins_stop(s);
	plugins_free(s);
	metrics_reset();
	cfg_free(c);
	cfg_free(c2);
	cfg_free(c3);
	cfg_free(c4);
}

static void test_list_dir_describes_plugins_and_errors(void **state)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/list.txt", tmpdir);
	FILE *f = fopen(path, "w+");
	assert_non_null(f);
	assert_true(loader_list_dir(test_plugin_dir, f, false));
	fflush(f);
	rewind(f);
	char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	assert_non_null(strstr(buf, "probe_sink.so  sink  probe_sink  "));
	assert_non_null(strstr(buf, "abi 1.2"));
	assert_non_null(strstr(buf, "wrong_major.so  error: "));
}

/* ------------------------------------------------ webhook channel send */

static struct {
	int status;
	const char *extra;          /* one extra response header or NULL */
	const char *body;
	char method[16], path[64], signature[128], idem[128];
	char *received;
	size_t received_len;
	int hits;
} receiver;

static void receiver_handler(http_request *req, void *arg)
{
	receiver.hits++;
	snprintf(receiver.method, sizeof(receiver.method), "%s", http_req_method(req));
	snprintf(receiver.path, sizeof(receiver.path), "%s", http_req_path(req));
	const char *sig = http_req_header(req, "x-parley-signature");
	snprintf(receiver.signature, sizeof(receiver.signature), "%s", sig ? sig : "");
	const char *idem = http_req_header(req, "Idempotency-Key");
	snprintf(receiver.idem, sizeof(receiver.idem), "%s", idem ? idem : "");
	size_t len;
	const unsigned char *body = http_req_body(req, &len);
	free(receiver.received);
	receiver.received = xstrndup((const char *)body, len);
	receiver.received_len = len;
	const char *hdrs[] = { receiver.extra, NULL };
	http_req_respond(req, receiver.status, "application/json", receiver.body, strlen(receiver.body),
	                 receiver.extra ? hdrs : NULL);
}

static void send_once(int status, const char *extra, const char *body, struct delivery_result *r)
{
	struct event_base *base = event_base_new();
	host_api_set_base(base);
	assert_true(http_client_init(base, 5000, 1 << 20));
	http_server_limits lim = { .max_body_bytes = 1 << 20, .max_header_bytes = 16384, .read_timeout_ms = 5000,
	                           .write_timeout_ms = 5000, .idle_timeout_ms = 5000, .max_connections = 64 };
	char err[2048];
	http_server *srv = http_server_new(base, "127.0.0.1", 0, &lim, receiver_handler, NULL, err, sizeof(err));
	assert_non_null(srv);
	receiver.status = status;
	receiver.extra = extra;
	receiver.body = body;

	char sections[512];
	snprintf(sections, sizeof(sections),
	         "\"channels\": [{\"name\": \"site\", \"plugin\": \"webhook\", \"config\": "
	         "{\"secret\": \"s3cret\", \"callback_url\": \"http://127.0.0.1:%d/cb\", "
	         "\"callback_timeout_ms\": 2000}}]",
	         http_server_port(srv));
	cfg *c = load_config(real_plugin_dir, sections, err, sizeof(err));
	assert_non_null(c);
	plugin_set *s = NULL;
	if (!plugins_load(c, &s, err, sizeof(err)))
		fail_msg("load: %s", err);
	parley_instance *inst = plugins_find(s, PARLEY_KIND_CHANNEL, "site");
	assert_non_null(inst);

	memset(r, 0, sizeof(*r));
	r->base = base;
	parley_outbound_message m = {
		.size = sizeof(m), .idempotency_key = "job-7", .conversation_id = "12",
		.visibility = PARLEY_VISIBILITY_PRIVATE, .recipient_id = "visitor-1",
		.thread_id = "dm:visitor-1", .in_reply_to = "m-1", .text = "We are on it \xc3\xa9",
	};
	inst->desc->channel->send(inst->self, &m, host_delivery_new(inst, delivery_done, r));
	if (!r->done)
		event_base_dispatch(base);
	assert_true(r->done);

	plugins_free(s);
	http_server_free(srv);
	http_client_shutdown();
	cfg_free(c);
	metrics_reset();
	event_base_free(base);
}

static void test_webhook_send_is_signed_and_ok(void **state)
{
	struct delivery_result r;
	send_once(200, NULL, "{\"id\":\"ext-1\"}", &r);
	assert_int_equal(r.outcome, PARLEY_OK);
	assert_string_equal(r.external_id, "ext-1");
	assert_string_equal(receiver.method, "POST");
	assert_string_equal(receiver.path, "/cb");
	assert_string_equal(receiver.idem, "job-7");
	/* The signature is over the exact bytes received. */
	unsigned char mac[32];
	char hex[65], expect[80];
	util_hmac_sha256("s3cret", 6, receiver.received, receiver.received_len, mac);
	util_hex(mac, 32, hex);
	snprintf(expect, sizeof(expect), "sha256=%s", hex);
	assert_string_equal(receiver.signature, expect);
	json_error_t jerr;
	json_t *o = json_loads(receiver.received, 0, &jerr);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "text")), "We are on it \xc3\xa9");
	assert_string_equal(json_string_value(json_object_get(o, "recipient_id")), "visitor-1");
	assert_string_equal(json_string_value(json_object_get(o, "visibility")), "private");
	assert_string_equal(json_string_value(json_object_get(o, "idempotency_key")), "job-7");
	json_decref(o);
}

static void test_webhook_send_5xx_is_retry(void **state)
{
	struct delivery_result r;
	send_once(503, NULL, "{}", &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
}

static void test_webhook_send_429_honours_retry_after(void **state)
{
	struct delivery_result r;
	int64_t before = util_now_ms();
	send_once(429, "Retry-After: 7", "{}", &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_true(r.retry_at_ms >= before + 6000 && r.retry_at_ms <= util_now_ms() + 8000);
}

static void test_webhook_send_4xx_is_fail_with_reason(void **state)
{
	struct delivery_result r;
	send_once(422, NULL, "{\"error\":\"recipient unknown\"}", &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_non_null(strstr(r.reason, "422"));
	assert_non_null(strstr(r.reason, "recipient unknown"));
}

/* ---------------------------------------------- state and timers */

static struct {
	int calls;
	int ok;
	char value[256];
	bool absent;
	struct event_base *base;
} st;

static void state_got(void *arg, int ok, const char *value)
{
	st.calls++;
	st.ok = ok;
	st.absent = value == NULL;
	snprintf(st.value, sizeof(st.value), "%s", value ? value : "");
	event_base_loopbreak(st.base);
}

static void state_put_done(void *arg, int ok)
{
	st.calls++;
	st.ok = ok;
	event_base_loopbreak(st.base);
}

static void wait_call(int before)
{
	struct timeval limit = { 10, 0 };
	event_base_loopexit(st.base, &limit);
	while (st.calls == before)
		if (event_base_dispatch(st.base) != 0 || st.calls == before)
			break;
	assert_int_equal(st.calls, before + 1);
}

/* A plugin's durable state survives in PostgreSQL per instance: put, get,
 * overwrite, absent keys, and instances do not see each other's keys. */
static void test_state_is_durable_per_instance(void **state)
{
	const char *base_dsn = getenv("PARLEY_TEST_DSN");
	if (base_dsn == NULL)
		skip();
	char dbname[64];
	char *dsn = pg_testdb_create(base_dsn, "parley_test_loader", dbname, sizeof(dbname));
	if (dsn == NULL)
		fail_msg("%s", dbname);
	char err[512];
	int applied = 0;
	if (!migrate_apply(dsn, &applied, err, sizeof(err)))
		fail_msg("migrate: %s", err);

	st.base = event_base_new();
	host_api_set_base(st.base);
	db_pool_options o = { .dsn = dsn, .pool_size = 2, .connect_timeout_ms = 5000, .query_timeout_ms = 5000 };
	assert_true(db_pool_start(st.base, &o));
	const parley_host *h = host_api_table();
	struct parley_instance a = { .name = "poller-a", .component = "channel/poller-a" };
	struct parley_instance b = { .name = "poller-b", .component = "channel/poller-b" };

	h->state_get(&a, "cursor", state_got, NULL);
	wait_call(0);
	assert_true(st.ok);
	assert_true(st.absent);
	h->state_put(&a, "cursor", "1234567890123456789", state_put_done, NULL);
	wait_call(1);
	assert_true(st.ok);
	h->state_put(&a, "cursor", "1234567890123456790", state_put_done, NULL);
	wait_call(2);
	h->state_get(&a, "cursor", state_got, NULL);
	wait_call(3);
	assert_true(st.ok);
	assert_string_equal(st.value, "1234567890123456790");
	h->state_get(&b, "cursor", state_got, NULL);
	wait_call(4);
	assert_true(st.absent);

	db_pool_stop();
	event_base_loop(st.base, EVLOOP_NONBLOCK);
	event_base_free(st.base);
	pg_testdb_drop(base_dsn, dbname);
	free(dsn);
	metrics_reset();
}

static int timer_hits[3];
static struct event_base *timer_base;

static void timer_hit(void *arg)
{
	int i = (int)(intptr_t)arg;
	timer_hits[i]++;
	if (i == 2)
		event_base_loopbreak(timer_base);
}

/* Plugin timers fire once after their delay, in order; a cancelled one never fires. */
static void test_timers_fire_once_and_cancel(void **state)
{
	timer_base = event_base_new();
	host_api_set_base(timer_base);
	const parley_host *h = host_api_table();
	struct parley_instance a = { .name = "t", .component = "channel/t" };
	uint64_t start = util_mono_us();
	assert_non_null(h->timer_start(&a, 20, timer_hit, (void *)(intptr_t)0));
	parley_timer *cancelled = h->timer_start(&a, 30, timer_hit, (void *)(intptr_t)1);
	assert_non_null(h->timer_start(&a, 60, timer_hit, (void *)(intptr_t)2));
	assert_int_equal(host_api_timer_count(), 3);
	h->timer_cancel(cancelled);
	assert_int_equal(host_api_timer_count(), 2);
	event_base_dispatch(timer_base);
	/* libevent schedules on the coarse monotonic clock: allow its granularity. */
	assert_true(util_mono_us() - start >= 45000);
	assert_int_equal(timer_hits[0], 1);
	assert_int_equal(timer_hits[1], 0);
	assert_int_equal(timer_hits[2], 1);
	assert_int_equal(host_api_timer_count(), 0);
	event_base_free(timer_base);
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
	free(receiver.received);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rejects_missing_entry_symbol),
		cmocka_unit_test(test_rejects_other_abi_major),
		cmocka_unit_test(test_rejects_too_small_descriptor),
		cmocka_unit_test(test_rejects_wrong_kind),
		cmocka_unit_test(test_rejects_missing_mandatory_operation),
		cmocka_unit_test(test_rejects_plugin_using_core_internal_symbol),
		cmocka_unit_test(test_create_failure_names_file_and_key),
		cmocka_unit_test(test_missing_plugin_is_config_error),
		cmocka_unit_test(test_plugin_config_checked_against_declared_keys),
		cmocka_unit_test(test_configured_kind_must_match),
		cmocka_unit_test(test_kind_folder_is_searched_first),
		cmocka_unit_test(test_instances_lifecycle_and_sink_delivery),
		cmocka_unit_test(test_list_dir_describes_plugins_and_errors),
		cmocka_unit_test(test_webhook_send_is_signed_and_ok),
		cmocka_unit_test(test_webhook_send_5xx_is_retry),
		cmocka_unit_test(test_webhook_send_429_honours_retry_after),
		cmocka_unit_test(test_webhook_send_4xx_is_fail_with_reason),
		cmocka_unit_test(test_state_is_durable_per_instance),
		cmocka_unit_test(test_timers_fire_once_and_cancel),
		cmocka_unit_test(test_ticket_sinks_refuse_bad_settings),
		cmocka_unit_test(test_ticket_sinks_reload_their_settings),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
