/* api.c - the agent API: the operation table at the end of this file, who
 * is asking (a Bearer token or a session cookie with its CSRF token), and
 * the call of an operation's SQL function in the transaction that
 * authenticates the caller. See api.h. */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>

#include "api_sends.h"
#include "api_accounts.h"
#include "live_events.h"
#include "log.h"
#include "util.h"

#define API_LOG "api"

static api_options api_opts;



bool api_options_cookie_secure(void)
{
	return api_opts.cookie_secure;
}

const api_options *api_options_get(void)
{
	return &api_opts;
}

void api_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32) {
		fputs("parleyd: SHA-256 failed\n", stderr);
		abort();
	}
	util_hex(md, 32, out);
}

/* ------------------------------------------------------------ answers */

void api_respond_json(http_request *req, int status, const json_t *body,
                      const char *const *extra_headers)
{
	char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
	if (text == NULL) {
		http_req_respond_error(req, 500, "internal_error", "the answer could not be encoded", NULL);
		return;
	}
	http_req_respond(req, status, "application/json", text, strlen(text), extra_headers);
	free(text);
}

/* "code: detail" from parley_api_error, split. */
static void split_api_message(const char *msg, char *code, size_t code_len, const char **detail)
{
	const char *colon = strstr(msg, ": ");
	size_t n = colon != NULL ? (size_t)(colon - msg) : strlen(msg);
	if (n >= code_len)
		n = code_len - 1;
	memcpy(code, msg, n);
	code[n] = '\0';
	*detail = colon != NULL ? colon + 2 : NULL;
}

void api_respond_db_error(http_request *req, const db_batch *b, const char *error)
{
	const char *state = b != NULL ? db_batch_sqlstate(b) : "";
	if (strncmp(state, "PA", 2) == 0) {
		int status = atoi(state + 2);
		if (status < 400 || status > 599)
			status = 500;
		char code[64];
		const char *detail;
		split_api_message(error != NULL ? error : "error", code, sizeof(code), &detail);
		const char *const retry[] = { "Retry-After: 60", NULL };
		http_req_respond_error(req, status, code, detail, status == 429 ? retry : NULL);
		return;
	}
	if (state[0] == '\0' && error != NULL &&
	    (strcmp(error, DB_ERR_UNAVAILABLE) == 0 || strcmp(error, DB_ERR_TIMEOUT) == 0 ||
	     strcmp(error, DB_ERR_SHUTDOWN) == 0 || strncmp(error, "database connection lost", 24) == 0)) {
		static const char *const retry[] = { "Retry-After: 5", NULL };
		http_req_respond_error(req, 503, "database_unavailable", error, retry);
		return;
	}
	/* A query timeout inside PostgreSQL (57014) or a serialization failure
	 * (40001, 40P01) is worth a retry too. */
	if (strcmp(state, "57014") == 0 || strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) {
		static const char *const retry[] = { "Retry-After: 1", NULL };
		http_req_respond_error(req, 503, "busy", "the database was too busy; retry", retry);
		return;
	}
	/* The message may quote customer data: log it, do not hand it out. */
	log_error(API_LOG, "%s %s failed: [%s] %s", http_req_method(req), http_req_path(req), state,
	          error != NULL ? error : "");
	http_req_respond_error(req, 500, "internal_error", "the request failed; see the server log", NULL);
}

/* ------------------------------------------------------- credentials */

/* A secret as clients send it: 1..API_SECRET_MAX of [A-Za-z0-9_-.~]. */
static bool secret_ok(const char *s, size_t n)
{
	if (n == 0 || n > API_SECRET_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		      ch == '_' || ch == '-' || ch == '.' || ch == '~'))
			return false;
	}
	return true;
}

/* The value of cookie `name` in a Cookie header (borrowed span), or NULL. */
static const char *cookie_value(const char *header, const char *name, size_t *len)
{
	size_t name_len = strlen(name);
	const char *p = header;
	while (p != NULL && *p != '\0') {
		while (*p == ' ' || *p == ';')
			p++;
		const char *end = strchr(p, ';');
		size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
		if (n > name_len && strncmp(p, name, name_len) == 0 && p[name_len] == '=') {
			*len = n - name_len - 1;
			return p + name_len + 1;
		}
		p = end;
	}
	return NULL;
}

typedef struct credential {
	const char *kind;           /* "token", "session" or NULL (none given) */
	char secret_hash[65];
	char csrf_hash[65];         /* "" when no CSRF header */
	bool malformed;             /* something was sent, but not a credential */
} credential;

static void read_credential(http_request *req, credential *c)
{
	memset(c, 0, sizeof(*c));
	const char *auth = http_req_header(req, "Authorization");
	if (auth != NULL) {
		/* RFC 6750: "Bearer" is case-insensitive; one space, then the token. */
		if (strncasecmp(auth, "Bearer ", 7) != 0 || !secret_ok(auth + 7, strlen(auth + 7))) {
			c->malformed = true;
			return;
		}
		c->kind = "token";
		api_sha256_hex(auth + 7, strlen(auth + 7), c->secret_hash);
		return;
	}
	const char *cookies = http_req_header(req, "Cookie");
	size_t len = 0;
	const char *v = cookies != NULL ? cookie_value(cookies, API_SESSION_COOKIE, &len) : NULL;
	if (v == NULL)
		return;
	if (!secret_ok(v, len)) {
		c->malformed = true;
		return;
	}
	c->kind = "session";
	api_sha256_hex(v, len, c->secret_hash);
	const char *csrf = http_req_header(req, API_CSRF_HEADER);
	if (csrf != NULL && secret_ok(csrf, strlen(csrf)))
		api_sha256_hex(csrf, strlen(csrf), c->csrf_hash);
}

bool api_request_credential(http_request *req, const char **kind, char secret_hash[65])
{
	credential c;
	read_credential(req, &c);
	if (c.malformed || c.kind == NULL)
		return false;
	*kind = c.kind;
	memcpy(secret_hash, c.secret_hash, 65);
	return true;
}

static bool method_writes(const char *method)
{
	return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
}

/* ------------------------------------------------------------ requests */

/* {"path": {...}, "query": {...}, "body": ...}, or NULL after answering
 * the client's mistake. */
static json_t *collect_request(http_request *req, const route_match *m)
{
	json_t *path = json_object(), *query = json_object();
	for (size_t i = 0; i < m->n_params; i++) {
		char name[64];
		size_t n = m->params[i].name_len < sizeof(name) - 1 ? m->params[i].name_len : sizeof(name) - 1;
		memcpy(name, m->params[i].name, n);
		name[n] = '\0';
		json_object_set_new(path, name, json_string(m->params[i].value));
	}
	json_t *r = json_pack("{s:o, s:o, s:n}", "path", path, "query", query, "body");
	size_t nq = http_req_query_count(req);
	for (size_t i = 0; i < nq; i++) {
		const char *name, *value;
		http_req_query_at(req, i, &name, &value);
		json_t *v = json_string(value);
		json_t *name_check = json_string(name);   /* NULL: not UTF-8 */
		bool name_ok = name_check != NULL;
		json_decref(name_check);
		if (v == NULL || !name_ok) {
			json_decref(v);
			json_decref(r);
			http_req_respond_error(req, 400, "invalid_parameter", "query parameters must be UTF-8", NULL);
			return NULL;
		}
		if (json_object_get(query, name) != NULL) {
			char detail[160];
			snprintf(detail, sizeof(detail), "%.64s: given more than once", name);
			json_decref(v);
			json_decref(r);
			http_req_respond_error(req, 400, "invalid_parameter", detail, NULL);
			return NULL;
		}
		json_object_set_new(query, name, v);
	}
	size_t len = 0;
	const unsigned char *body = http_req_body(req, &len);
	if (len == 0)
		return r;
	const char *ct = http_req_header(req, "Content-Type");
	if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0 ||
	    (ct[16] != '\0' && ct[16] != ';' && ct[16] != ' ')) {
		json_decref(r);
		http_req_respond_error(req, 415, "unsupported_media_type", "send application/json", NULL);
		return NULL;
	}
	json_error_t jerr;
	json_t *b = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (b == NULL || !json_is_object(b)) {
		char detail[256];
		if (b == NULL)
			snprintf(detail, sizeof(detail), "the body is not valid JSON: %s (at byte %d)", jerr.text,
			         jerr.position);
		else
			snprintf(detail, sizeof(detail), "the body must be a JSON object");
		json_decref(b);
		json_decref(r);
		http_req_respond_error(req, 400, "malformed_json", detail, NULL);
		return NULL;
	}
	json_object_set_new(r, "body", b);
	return r;
}

/* ------------------------------------------------------------- calls */

typedef struct api_call {
	http_request *req;
	const api_op *op;
	route_match m;
	bool authenticated;         /* the batch starts with the authentication */
	credential cred;
	char *request;              /* the request as JSON text, for the SQL function */
	bool previewing;            /* API_SENDS: this batch asks for the sends only */
} api_call;

static void call_free(api_call *call)
{
	free(call->request);
	free(call);
}

static void submit_call(api_call *call);

/* API_SENDS, the preview answered: the channels check the sends; then the
 * operation runs for real, or a refusal is the answer. */
static void preview_done(api_call *call, int status, const char *body, size_t len)
{
	if (status != 200) {
		/* Refused before any send (not found, a collision, a rule the
		 * database knows): that is the answer. */
		http_req_respond(call->req, status, "application/json", body, len, NULL);
		call_free(call);
		return;
	}
	json_t *answer = json_loadb(body, len, 0, NULL);
	json_t *sends = json_object_get(answer, "sends");
	char reason[512];
	const char *rule = json_is_array(sends) ? api_sends_refusal(sends, reason, sizeof(reason)) : NULL;
	if (!json_is_array(sends))
		log_error(API_LOG, "%s preview answered no sends", call->op->sql_fn);
	json_decref(answer);
	if (rule != NULL) {
		http_req_respond_error(call->req, 409, rule, reason, NULL);
		call_free(call);
		return;
	}
	call->previewing = false;
	submit_call(call);
}

static void call_done(db_batch *b, bool ok, const char *error, void *arg)
{
	api_call *call = arg;
	http_request *req = call->req;
	if (!ok) {
		api_respond_db_error(req, b, error);
		call_free(call);
		return;
	}
	int idx = call->authenticated ? 1 : 0;
	if (call->op->handler != NULL) {
		/* Authentication only; the C handler takes it from here. */
		PGresult *res = db_batch_result(b, 0);
		json_t *actor_json = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
		api_actor actor = { actor_json, 0, NULL };
		json_t *aid = json_object_get(actor_json, "agent_id");
		actor.agent_id = json_is_integer(aid) ? (long long)json_integer_value(aid) : 0;
		actor.role = json_string_value(json_object_get(actor_json, "role"));
		call->op->handler(req, &call->m, &actor);
		json_decref(actor_json);
		call_free(call);
		return;
	}
	PGresult *res = db_batch_result(b, idx);
	if (res == NULL || PQntuples(res) != 1) {
		log_error(API_LOG, "%s did not return one row", call->op->sql_fn);
		http_req_respond_error(req, 500, "internal_error", "the request failed; see the server log", NULL);
		call_free(call);
		return;
	}
	int status = atoi(PQgetvalue(res, 0, 0));
	if (call->previewing) {
		preview_done(call, status, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
		return;
	}
	if (status == 204 || PQgetisnull(res, 0, 1))
		http_req_respond(req, status, "application/json", "", 0, NULL);
	else
		http_req_respond(req, status, "application/json", PQgetvalue(res, 0, 1),
		                 (size_t)PQgetlength(res, 0, 1), NULL);
	call_free(call);
}

/* One transaction: the authentication, then the operation's function. */
static void submit_call(api_call *call)
{
	db_batch *b = db_batch_new();
	if (!(call->op->flags & API_PUBLIC)) {
		const credential *cred = &call->cred;
		const char *params[] = { cred->kind, cred->secret_hash, cred->csrf_hash[0] ? cred->csrf_hash : NULL,
		                         method_writes(http_req_method(call->req)) ? "true" : "false" };
		db_batch_add(b, "SELECT parley_api_authenticate($1, $2, $3, $4::boolean)::text", 4, params);
		call->authenticated = true;
	}
	if (call->op->sql_fn != NULL) {
		char sql[240];
		/* sql_fn comes from the table below, never from the request. */
		snprintf(sql, sizeof(sql),
		         "SELECT status, body::text FROM %s(current_setting('parley.actor', true)::jsonb, "
		         "CASE WHEN $2 THEN $1::jsonb || '{\"preview\": true}' ELSE $1::jsonb END)",
		         call->op->sql_fn);
		const char *params[] = { call->request, call->previewing ? "true" : "false" };
		db_batch_add(b, sql, 2, params);
	}
	db_batch_submit(b, call_done, call);
}

static void start_call(http_request *req, const api_op *op, const route_match *m)
{
	credential cred;
	json_t *request = NULL;
	memset(&cred, 0, sizeof(cred));
	if (!(op->flags & API_PUBLIC)) {
		read_credential(req, &cred);
		if (cred.malformed || cred.kind == NULL) {
			static const char *const challenge[] = { "WWW-Authenticate: Bearer realm=\"parley\"", NULL };
			http_req_respond_error(req, 401, "unauthorized",
			                       cred.malformed ? "malformed credentials" : "no credentials", challenge);
			return;
		}
	}
	if (op->sql_fn != NULL && (request = collect_request(req, m)) == NULL)
		return;
	if ((op->flags & API_PUBLIC) && op->handler != NULL) {
		api_actor none = { NULL, 0, NULL };
		op->handler(req, m, &none);
		return;
	}
	api_call *call = calloc(1, sizeof(*call));
	if (op->flags & API_SENDS)
		json_object_set_new(request, "node", api_sends_node());
	char *text = request != NULL ? json_dumps(request, JSON_COMPACT) : NULL;
	json_decref(request);
	if (call == NULL || (op->sql_fn != NULL && text == NULL)) {
		free(call);
		free(text);
		http_req_respond_error(req, 503, "out_of_memory", NULL, NULL);
		return;
	}
	call->req = req;
	call->op = op;
	call->m = *m;
	call->cred = cred;
	call->request = text;
	call->previewing = (op->flags & API_SENDS) != 0;
	submit_call(call);
}

/* ------------------------------------------------- calls from handlers */

json_t *api_collect_request(http_request *req, const route_match *m)
{
	return collect_request(req, m);
}

const char *api_session_cookie(http_request *req, size_t *len)
{
	const char *cookies = http_req_header(req, "Cookie");
	return cookies != NULL ? cookie_value(cookies, API_SESSION_COOKIE, len) : NULL;
}

typedef struct sql_call {
	http_request *req;
	const char *sql_fn;
	bool authenticated;
	api_sql_done_fn done;
	void *arg;
} sql_call;

static void sql_call_done(db_batch *b, bool ok, const char *error, void *arg)
{
	sql_call *c = arg;
	http_request *req = c->req;
	PGresult *res = ok ? db_batch_result(b, c->authenticated ? 1 : 0) : NULL;
	if (!ok) {
		api_respond_db_error(req, b, error);
	} else if (res == NULL || PQntuples(res) != 1) {
		log_error(API_LOG, "%s did not return one row", c->sql_fn);
		http_req_respond_error(req, 500, "internal_error", "the request failed; see the server log", NULL);
		ok = false;
	}
	if (!ok) {
		if (c->done != NULL)
			c->done(req, 0, NULL, c->arg);
		free(c);
		return;
	}
	int status = atoi(PQgetvalue(res, 0, 0));
	bool empty = status == 204 || PQgetisnull(res, 0, 1);
	if (c->done == NULL) {
		if (empty)
			http_req_respond(req, status, "application/json", "", 0, NULL);
		else
			http_req_respond(req, status, "application/json", PQgetvalue(res, 0, 1),
			                 (size_t)PQgetlength(res, 0, 1), NULL);
	} else {
		json_t *body = empty ? NULL : json_loadb(PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1), 0, NULL);
		c->done(req, status, body, c->arg);
		json_decref(body);
	}
	free(c);
}

void api_call_sql(http_request *req, const char *sql_fn, bool authenticate, json_t *request,
                  api_sql_done_fn done, void *arg)
{
	credential cred;
	if (authenticate) {
		read_credential(req, &cred);
		if (cred.malformed || cred.kind == NULL) {
			json_decref(request);
			http_req_respond_error(req, 401, "unauthorized", "no credentials", NULL);
			if (done != NULL)
				done(req, 0, NULL, arg);
			return;
		}
	}
	char *text = json_dumps(request, JSON_COMPACT);
	json_decref(request);
	if (text == NULL) {
		http_req_respond_error(req, 500, "internal_error", "the request could not be encoded", NULL);
		if (done != NULL)
			done(req, 0, NULL, arg);
		return;
	}
	sql_call *c = xcalloc(1, sizeof(*c));
	*c = (sql_call){ req, sql_fn, authenticate, done, arg };
	db_batch *b = db_batch_new();
	if (authenticate) {
		const char *params[] = { cred.kind, cred.secret_hash, cred.csrf_hash[0] ? cred.csrf_hash : NULL,
		                         method_writes(http_req_method(req)) ? "true" : "false" };
		db_batch_add(b, "SELECT parley_api_authenticate($1, $2, $3, $4::boolean)::text", 4, params);
	}
	/* sql_fn is a handler's constant, never from the request. */
	char sql[200];
	snprintf(sql, sizeof(sql), "SELECT status, body::text FROM %s(%s, $1::jsonb)", sql_fn,
	         authenticate ? "current_setting('parley.actor', true)::jsonb" : "NULL::jsonb");
	const char *params[] = { text };
	db_batch_add(b, sql, 1, params);
	free(text);
	db_batch_submit(b, sql_call_done, c);
}

/* ------------------------------------------------------------ the table */

/* First match wins; literal paths before templated ones of the same shape. */
static const api_op ops[] = {
	{ "GET", "/api/v1/me", "parley_api_me", NULL, 0 },
	/* accounts: session, agents, teams, tokens, audit */
	{ "POST", "/api/v1/session", NULL, api_session_login, API_PUBLIC },
	{ "GET", "/api/v1/session", NULL, api_session_get, 0 },
	{ "DELETE", "/api/v1/session", NULL, api_session_logout, 0 },
	{ "PUT", "/api/v1/me/password", NULL, api_session_change_password, 0 },
	{ "PUT", "/api/v1/me/availability", "parley_api_me_availability", NULL, 0 },
	{ "GET", "/api/v1/agents", "parley_api_agents_list", NULL, 0 },
	{ "POST", "/api/v1/agents", NULL, api_accounts_agent_create, 0 },
	{ "GET", "/api/v1/agents/{id}", "parley_api_agent_get", NULL, 0 },
	{ "PATCH", "/api/v1/agents/{id}", NULL, api_accounts_agent_update, 0 },
	{ "GET", "/api/v1/teams", "parley_api_teams_list", NULL, 0 },
	{ "POST", "/api/v1/teams", "parley_api_team_create", NULL, 0 },
	{ "GET", "/api/v1/teams/{id}", "parley_api_team_get", NULL, 0 },
	{ "PATCH", "/api/v1/teams/{id}", "parley_api_team_update", NULL, 0 },
	{ "DELETE", "/api/v1/teams/{id}", "parley_api_team_delete", NULL, 0 },
	{ "GET", "/api/v1/tokens", "parley_api_tokens_list", NULL, 0 },
	{ "POST", "/api/v1/tokens", NULL, api_accounts_token_create, 0 },
	{ "DELETE", "/api/v1/tokens/{id}", "parley_api_token_revoke", NULL, 0 },
	{ "GET", "/api/v1/audit", "parley_api_audit_list", NULL, 0 },

	/* conversations, timeline, cases */
	{ "GET", "/api/v1/conversations", "parley_api_conversations_list", NULL, 0 },
	{ "GET", "/api/v1/conversations/{id}", "parley_api_conversation_get", NULL, 0 },
	{ "PATCH", "/api/v1/conversations/{id}", "parley_api_conversation_patch", NULL, 0 },
	{ "GET", "/api/v1/conversations/{id}/timeline", "parley_api_conversation_timeline", NULL, 0 },
	{ "POST", "/api/v1/conversations/{id}/read", "parley_api_conversation_read", NULL, 0 },
	{ "GET", "/api/v1/cases/{id}", "parley_api_case_get", NULL, 0 },

	/* replies, notes, canned replies, macros */
	{ "POST", "/api/v1/conversations/{id}/replies", "parley_api_reply", NULL, API_SENDS },
	{ "POST", "/api/v1/conversations/{id}/notes", "parley_api_note", NULL, 0 },
	{ "POST", "/api/v1/conversations/{id}/move-to-private", "parley_api_move_to_private", NULL, API_SENDS },
	{ "POST", "/api/v1/conversations/{id}/canned-replies/{canned_id}/render", "parley_api_canned_render", NULL, 0 },
	{ "POST", "/api/v1/conversations/{id}/macros/{macro_id}/apply", "parley_api_macro_apply", NULL, API_SENDS },
	{ "GET", "/api/v1/canned-replies", "parley_api_canned_list", NULL, 0 },
	{ "POST", "/api/v1/canned-replies", "parley_api_canned_create", NULL, 0 },
	{ "GET", "/api/v1/canned-replies/{id}", "parley_api_canned_get", NULL, 0 },
	{ "PATCH", "/api/v1/canned-replies/{id}", "parley_api_canned_update", NULL, 0 },
	{ "DELETE", "/api/v1/canned-replies/{id}", "parley_api_canned_delete", NULL, 0 },
	{ "GET", "/api/v1/macros", "parley_api_macro_list", NULL, 0 },
	{ "POST", "/api/v1/macros", "parley_api_macro_create", NULL, 0 },
	{ "GET", "/api/v1/macros/{id}", "parley_api_macro_get", NULL, 0 },
	{ "PATCH", "/api/v1/macros/{id}", "parley_api_macro_update", NULL, 0 },
	{ "DELETE", "/api/v1/macros/{id}", "parley_api_macro_delete", NULL, 0 },

	/* customers */
	{ "GET", "/api/v1/customers", "parley_api_customers_search", NULL, 0 },
	{ "POST", "/api/v1/customers/unmerge", "parley_api_customer_unmerge", NULL, 0 },
	{ "GET", "/api/v1/customers/{id}", "parley_api_customer_get", NULL, 0 },
	{ "PATCH", "/api/v1/customers/{id}", "parley_api_customer_patch", NULL, 0 },
	{ "POST", "/api/v1/customers/{id}/merge", "parley_api_customer_merge", NULL, 0 },

	/* assignment, jobs */
	{ "POST", "/api/v1/conversations/{id}/assign", "parley_api_conversation_assign", NULL, 0 },
	{ "POST", "/api/v1/conversations/{id}/unassign", "parley_api_conversation_unassign", NULL, 0 },
	{ "POST", "/api/v1/conversations/{id}/transfer", "parley_api_conversation_transfer", NULL, 0 },
	{ "GET", "/api/v1/jobs/dead", "parley_api_jobs_dead", NULL, 0 },
	{ "POST", "/api/v1/jobs/{id}/retry", "parley_api_job_retry", NULL, 0 },
	{ "POST", "/api/v1/jobs/{id}/discard", "parley_api_job_discard", NULL, 0 },

	/* live events, presence */
	{ "GET", "/api/v1/events", NULL, live_events_handle, 0 },
	{ "POST", "/api/v1/conversations/{id}/presence", "parley_api_presence", NULL, 0 },

};
#define N_OPS (sizeof(ops) / sizeof(ops[0]))
static route api_routes[N_OPS];

void api_init(const api_options *opts)
{
	api_opts = *opts;
	/* The matcher's view of the table: method and pattern, the pattern as
	 * the metrics label. */
	for (size_t i = 0; i < N_OPS; i++)
		api_routes[i] = (route){ ops[i].method, ops[i].pattern, ops[i].pattern, ROUTE_AUTH_NONE, NULL };
}

void api_handle(http_request *req)
{
	const route *rt;
	route_match m;
	char allow[96];
	switch (route_lookup(api_routes, N_OPS, http_req_method(req), http_req_path(req), &rt, &m, allow,
	                     sizeof(allow))) {
	case ROUTE_NO_PATH:
		http_req_set_route(req, API_PREFIX);
		http_req_respond_error(req, 404, "not_found", "no such API route", NULL);
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
	start_call(req, &ops[rt - api_routes], &m);
}
