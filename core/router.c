/* router.c - which handler answers which request.
 *
 *   GET  /healthz                   200 while the process runs
 *   GET  /readyz                    200 when PostgreSQL answers and the schema is current
 *   GET  /metrics                   Prometheus text
 *   ANY  /webhooks/{channel}[/...]  the channel instance's plugin
 *   ANY  /sinks/{sink}/events[/...] the sink instance's plugin (ticket system webhooks)
 */
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "util.h"

static plugin_set *routes_plugins;
static bool draining;
static size_t ready_checks;

void router_init(plugin_set *plugins) { routes_plugins = plugins; }
void router_set_draining(bool d) { draining = d; }
size_t router_pending(void) { return ready_checks; }

static const char *const allow_get[] = { "Allow: GET", NULL };

static bool method_is(http_request *req, const char *m) { return strcmp(http_req_method(req), m) == 0; }

static void respond_json(http_request *req, int status, const char *json)
{
	http_req_respond(req, status, "application/json", json, strlen(json), NULL);
}

/* ------------------------------------------------------------- /readyz */

static void ready_done(db_batch *b, bool ok, const char *error, void *arg)
{
	http_request *req = arg;
	ready_checks--;
	if (!ok) {
		http_req_respond_error(req, 503, "database_unavailable", error ? error : "query failed", NULL);
		return;
	}
	PGresult *res = db_batch_result(b, 0);
	int version = (res && PQntuples(res) == 1) ? atoi(PQgetvalue(res, 0, 0)) : -1;
	int want = migrate_latest_version();
	char body[200];
	if (version == want) {
		snprintf(body, sizeof(body), "{\"status\":\"ready\",\"schema_version\":%d}", version);
		respond_json(req, 200, body);
	} else {
		snprintf(body, sizeof(body), "schema version is %d, this parleyd needs %d", version, want);
		http_req_respond_error(req, 503, version < want ? "schema_outdated" : "schema_newer", body, NULL);
	}
}

static void handle_readyz(http_request *req)
{
	if (draining) {
		http_req_respond_error(req, 503, "shutting_down", "this instance is stopping", NULL);
		return;
	}
	if (!db_pool_ready()) {
		static const char *const retry[] = { "Retry-After: 5", NULL };
		http_req_respond_error(req, 503, "database_unavailable", "no connection to PostgreSQL", retry);
		return;
	}
	/* A real round trip: a connection that looks up may still be dead. */
	db_batch *b = db_batch_new();
	db_batch_add(b, MIGRATE_VERSION_SQL, 0, NULL);
	ready_checks++;
	db_batch_submit(b, ready_done, req);
}

/* ------------------------------------------------------------ /metrics */

static void handle_metrics(http_request *req)
{
	struct evbuffer *out = evbuffer_new();
	metrics_render(out);
	size_t len = evbuffer_get_length(out);
	const void *data = evbuffer_pullup(out, -1);
	http_req_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", data, len, NULL);
	evbuffer_free(out);
}

/* ------------------------------------------------------ plugin routes */

/* Split "/prefix/NAME/rest" after `prefix_len` into name and subpath ("" or "/rest").
 * Returns false if NAME is empty or too long. */
static bool split_instance(const char *path, size_t prefix_len, char *name, size_t name_cap,
                           const char **subpath)
{
	const char *p = path + prefix_len;
	const char *slash = strchr(p, '/');
	size_t n = slash ? (size_t)(slash - p) : strlen(p);
	if (n == 0 || n >= name_cap)
		return false;
	memcpy(name, p, n);
	name[n] = '\0';
	*subpath = slash ? slash : "";
	return true;
}

static void handle_webhook(http_request *req, const char *path)
{
	char name[128];
	const char *subpath;
	http_req_set_route(req, "/webhooks/{instance}");
	parley_instance *inst = NULL;
	if (split_instance(path, strlen("/webhooks/"), name, sizeof(name), &subpath))
		inst = plugins_find(routes_plugins, PARLEY_KIND_CHANNEL, name);
	if (inst == NULL) {
		http_req_respond_error(req, 404, "unknown_channel", "no channel instance with that name", NULL);
		return;
	}
	parley_request *pr = host_request_new(inst, req, subpath);
	inst->desc->channel->handle_request(inst->self, pr);
}

static void handle_sink(http_request *req, const char *path)
{
	char name[128];
	const char *subpath;
	http_req_set_route(req, "/sinks/{instance}/events");
	parley_instance *inst = NULL;
	if (split_instance(path, strlen("/sinks/"), name, sizeof(name), &subpath) &&
	    strncmp(subpath, "/events", 7) == 0 && (subpath[7] == '\0' || subpath[7] == '/'))
		inst = plugins_find(routes_plugins, PARLEY_KIND_SINK, name);
	if (inst == NULL || inst->desc->sink->size < offsetof(parley_sink_ops, handle_request) + sizeof(void *) ||
	    inst->desc->sink->handle_request == NULL) {
		http_req_respond_error(req, 404, "unknown_sink", "no sink instance accepting events with that name",
		                       NULL);
		return;
	}
	parley_request *pr = host_request_new(inst, req, subpath + 7);
	inst->desc->sink->handle_request(inst->self, pr);
}

void router_handle(http_request *req, void *arg)
{
	const char *path = http_req_path(req);

	if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 || strcmp(path, "/metrics") == 0) {
		http_req_set_route(req, path);
		if (!method_is(req, "GET") && !method_is(req, "HEAD")) {
			http_req_respond_error(req, 405, "method_not_allowed", "use GET", allow_get);
			return;
		}
		if (strcmp(path, "/healthz") == 0)
			respond_json(req, 200, "{\"status\":\"ok\"}");
		else if (strcmp(path, "/readyz") == 0)
			handle_readyz(req);
		else
			handle_metrics(req);
		return;
	}
	if (strncmp(path, "/webhooks/", 10) == 0) {
		handle_webhook(req, path);
		return;
	}
	if (strncmp(path, "/sinks/", 7) == 0) {
		handle_sink(req, path);
		return;
	}
	http_req_respond_error(req, 404, "not_found", "no such route", NULL);
}
