/* api.h - the agent API under /api/v1: its operation table, who is asking,
 * and the call of the operation's SQL function.
 *
 * Most operations are one SQL function (sql/functions/api*.sql) called as
 *   fn(actor jsonb, req jsonb) RETURNS TABLE (status integer, body jsonb)
 * in the same transaction as the authentication of the caller, so the C
 * side only collects the request: path parameters, query parameters (each
 * name at most once) and the JSON body (an object, no duplicate keys). The
 * answer is the function's status and body; an error it raises with
 * parley_api_error() becomes {"error", "detail"} with its status and rolls
 * everything back.
 *
 * Operations that need C (a login, the event stream) have a handler that
 * runs after authentication with the caller in hand. */
#ifndef PARLEY_CORE_API_H
#define PARLEY_CORE_API_H

#include <stdbool.h>
#include <jansson.h>

#include "db.h"
#include "http_server.h"
#include "route_match.h"

#define API_PREFIX "/api/v1"
#define API_SESSION_COOKIE "parley_session"
#define API_CSRF_HEADER "X-CSRF-Token"
#define API_SECRET_MAX 128   /* bytes of a token or cookie value we look at */

/* Who is asking, as parley_api_authenticate described them (owned by the
 * API layer; borrowed by handlers for the call). */
typedef struct api_actor {
	json_t *json;          /* {"kind", "agent_id", "role", "team_ids", ...}; NULL when public */
	long long agent_id;    /* 0: none (a token without an agent) */
	const char *role;      /* "agent", "supervisor", "admin"; borrowed from json */
} api_actor;

/* A handler written in C: runs once the caller is authenticated (or at once
 * for API_PUBLIC operations, with actor->json NULL). It must answer req. */
typedef void (*api_handler_fn)(http_request *req, const route_match *m, const api_actor *actor);

enum api_op_flags {
	API_PUBLIC = 1 << 0,   /* no credentials needed (logging in) */
	/* The operation queues sends to customers. Its function is called twice,
	 * each time in a transaction of its own: first with "preview": true and
	 * req.node (api_sends_node) in the request, answering every refusal it
	 * knows as usual or 200 {"sends": [{"instance", "payload"}]}; the
	 * channels then check those sends against their platforms' rules
	 * (check_send), and a refusal is answered 409 {"error": rule, "detail"}
	 * with nothing stored. Otherwise it is called again without "preview"
	 * and does the work. */
	API_SENDS = 1 << 1,
};

typedef struct api_op {
	const char *method;      /* "GET" (HEAD too), "POST", "PATCH", "PUT", "DELETE" */
	const char *pattern;     /* "/api/v1/conversations/{id}"; also the metrics label */
	const char *sql_fn;      /* the operation's SQL function, or NULL with handler */
	api_handler_fn handler;  /* or NULL with sql_fn */
	unsigned flags;
} api_op;

/* Settings the API takes from the node's configuration. */
typedef struct api_options {
	bool cookie_secure;      /* public_url is https: cookies get Secure */
	int session_idle_minutes; /* api.session_idle_minutes: an unused session ends */
	int session_max_hours;   /* api.session_max_hours: every session ends */
} api_options;

void api_init(const api_options *opts);
/* The router hands every request under /api/v1/ here. */
void api_handle(http_request *req);

/* --- for handlers --- */

/* Answer `body` (borrowed) as JSON with `status`. */
void api_respond_json(http_request *req, int status, const json_t *body,
                      const char *const *extra_headers);
/* Answer a failed batch: a PA<status> SQLSTATE becomes that status with the
 * function's code and detail, no database 503, anything else 500 (logged). */
void api_respond_db_error(http_request *req, const db_batch *b, const char *error);
/* Whether cookies the API sets get the Secure attribute. */
bool api_options_cookie_secure(void);
/* The API's settings in force (borrowed). */
const api_options *api_options_get(void);

/* The request as an operation's SQL function takes it: {"path", "query",
 * "body"} (new reference), or NULL after answering the client's mistake
 * (bad query, a body that is not a JSON object). */
json_t *api_collect_request(http_request *req, const route_match *m);

/* How api_call_sql hands back an answer: status and body (borrowed; NULL
 * when empty). status 0: the call failed and the client has been answered
 * already; only release arg. Otherwise the callback answers req. */
typedef void (*api_sql_done_fn)(http_request *req, int status, json_t *body, void *arg);

/* Call sql_fn(actor, request) as the table's operations are called: in one
 * transaction that first authenticates the caller from req's credentials
 * again (so a token revoked while a handler waited on a password check fails
 * here), or with actor NULL when authenticate is false (logging in).
 * request (stolen) may hold a part "internal" that only C code writes
 * (digests, hashes). With done NULL the function's answer is sent as it is.
 * A refusal (parley_api_error) or database failure is answered here. */
void api_call_sql(http_request *req, const char *sql_fn, bool authenticate, json_t *request,
                  api_sql_done_fn done, void *arg);

/* The parley_session cookie's value sent with req (a borrowed span of the
 * header), or NULL. */
const char *api_session_cookie(http_request *req, size_t *len);

/* The request's credential as parley_api_authenticate takes it: kind
 * ("token" or "session", static) and the secret's SHA-256 in hex. false
 * when it carries none (or a malformed one). For handlers that check their
 * caller again later (the event stream). */
bool api_request_credential(http_request *req, const char **kind, char secret_hash[65]);

/* Lowercase hex SHA-256 of len bytes into out (65 bytes with the NUL). */
void api_sha256_hex(const void *data, size_t len, char out[65]);

#endif
