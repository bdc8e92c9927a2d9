/* router.c - which handler answers which request: the route table at the
 * end of this file, matched by route_match.c. A path no route matches is
 * 404 not_found; a path some route matches with another method is 405
 * with Allow naming the methods the table has for it. */
#include "router.h"
#include "route_match.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>

#include "api.h"
#include "db.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "policy.h"
#include "util.h"

static plugin_set *routes_plugins;
static bool draining;
static size_t ready_checks;

void router_init(plugin_set *plugins) { routes_plugins = plugins; }
void router_set_draining(bool d) { draining = d; }
size_t router_pending(void) { return ready_checks; }

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
	char body[1400];
	if (version == want) {
		/* The cluster policy's detail is information, not a condition of being ready. */
		char *policy = policy_status_json();
		snprintf(body, sizeof(body), "{\"status\":\"ready\",\"schema_version\":%d,\"policy\":%s}",
		         version, policy);
		free(policy);
		respond_json(req, 200, body);
	} else {
		snprintf(body, sizeof(body), "schema version is %d, this parleyd needs %d", version, want);
		http_req_respond_error(req, 503, version < want ? "schema_outdated" : "schema_newer", body, NULL);
	}
}

static void handle_readyz(http_request *req, const route_match *m)
{
	(void)m;
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

static void handle_metrics(http_request *req, const route_match *m)
{
	(void)m;
	struct evbuffer *out = evbuffer_new();
	metrics_render(out);
	size_t len = evbuffer_get_length(out);
	const void *data = evbuffer_pullup(out, -1);
	http_req_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", data, len, NULL);
	evbuffer_free(out);
}

/* ------------------------------------------------------------- /healthz */

static void handle_healthz(http_request *req, const route_match *m)
{
	(void)m;
	respond_json(req, 200, "{\"status\":\"ok\"}");
}

/* ------------------------------------------------------ plugin routes */

/* The plugin sees the rest of the path after its route ("" or "/x/y"). */
static void handle_webhook(http_request *req, const route_match *m)
{
	parley_instance *inst = plugins_find(routes_plugins, PARLEY_KIND_CHANNEL, route_param(m, "channel"));
	if (inst == NULL) {
		http_req_respond_error(req, 404, "unknown_channel", "no channel instance with that name", NULL);
		return;
	}
	parley_request *pr = host_request_new(inst, req, m->rest);
	inst->desc->channel->handle_request(inst->self, pr);
}

static void handle_sink_events(http_request *req, const route_match *m)
{
	parley_instance *inst = plugins_find(routes_plugins, PARLEY_KIND_SINK, route_param(m, "sink"));
	/* handle_request is optional and only in descriptors of ABI 1.1 on. */
	if (inst == NULL || inst->desc->sink->size < offsetof(parley_sink_ops, handle_request) + sizeof(void *) ||
	    inst->desc->sink->handle_request == NULL) {
		http_req_respond_error(req, 404, "unknown_sink", "no sink instance accepting events with that name",
		                       NULL);
		return;
	}
	parley_request *pr = host_request_new(inst, req, m->rest);
	inst->desc->sink->handle_request(inst->self, pr);
}

/* ------------------------------------------------------------ the API */

static void handle_api(http_request *req, const route_match *m)
{
	(void)m;
	api_handle(req);
}

/* ------------------------------------------------------------ the table */

/* First match wins. The metrics label is fixed per route, so request paths
 * cannot create label values. */
static const route routes[] = {
	{ "GET", "/healthz", "/healthz", ROUTE_AUTH_NONE, handle_healthz },
	{ "GET", "/readyz", "/readyz", ROUTE_AUTH_NONE, handle_readyz },
	{ "GET", "/metrics", "/metrics", ROUTE_AUTH_NONE, handle_metrics },
	/* Any method: platforms verify with GET handshakes (Meta, X) and post
	 * events; the plugin answers 405 for what it does not take. */
	{ NULL, "/webhooks/{channel}/...", "/webhooks/{instance}", ROUTE_AUTH_PLUGIN, handle_webhook },
	{ NULL, "/sinks/{sink}/events/...", "/sinks/{instance}/events", ROUTE_AUTH_PLUGIN, handle_sink_events },
	/* The API authenticates each operation itself (api.c). */
	{ NULL, "/api/v1/...", "/api/v1", ROUTE_AUTH_NONE, handle_api },
};

/* Whether the caller may use the route. Nothing to check for the kinds of
 * today: open routes, and plugins that verify signatures themselves. API
 * tokens and agent sessions will be checked here. */
static bool auth_allows(const route *rt, http_request *req)
{
	(void)req;
	switch (rt->auth) {
	case ROUTE_AUTH_NONE:
	case ROUTE_AUTH_PLUGIN:
		return true;
	}
	return false;   /* an unknown kind refuses rather than opens */
}

void router_handle(http_request *req, void *arg)
{
	(void)arg;
	const route *rt;
	route_match m;
	char allow[96];
	switch (route_lookup(routes, sizeof(routes) / sizeof(routes[0]), http_req_method(req),
	                     http_req_path(req), &rt, &m, allow, sizeof(allow))) {
	case ROUTE_NO_PATH:
		http_req_respond_error(req, 404, "not_found", "no such route", NULL);
		return;
	case ROUTE_WRONG_METHOD: {
		char header[128], detail[128];
		http_req_set_route(req, rt->label);
		snprintf(header, sizeof(header), "Allow: %s", allow);
		snprintf(detail, sizeof(detail), "use %s", allow);
		const char *const extra[] = { header, NULL };
		http_req_respond_error(req, 405, "method_not_allowed", detail, extra);
		return;
	}
	case ROUTE_FOUND:
		break;
	}
	http_req_set_route(req, rt->label);
	if (!auth_allows(rt, req)) {
		http_req_respond_error(req, 401, "unauthorized", NULL, NULL);
		return;
	}
	rt->handler(req, &m);
}
