/* api_session.c - browser sessions (POST, GET, DELETE /api/v1/session) and
 * an agent's own password (PUT /api/v1/me/password). See api_accounts.h.
 *
 * A login is three steps, each on the loop: the throttle and the stored hash
 * (SQL), the password check (the password worker's thread), then the session
 * (SQL). The password stays in this process; the session's secret goes to
 * the client in the cookie and to the database as its SHA-256 only. */
#include "api_accounts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "accounts.h"
#include "log.h"
#include "password.h"
#include "password_worker.h"
#include "util.h"

#define SESSION_LOG "api"

/* ------------------------------------------------------------ helpers */

/* base64url without padding of len (at most 48) bytes into out. */
static void b64url(const unsigned char *in, size_t len, char *out)
{
	unsigned char tmp[80];
	int n = EVP_EncodeBlock(tmp, in, (int)len);
	size_t o = 0;
	for (int i = 0; i < n && tmp[i] != '='; i++)
		out[o++] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i];
	out[o] = '\0';
}

void api_session_csrf(const char *secret, size_t len, char out[API_CSRF_MAX])
{
	static const char label[] = "parley session csrf token";
	unsigned char mac[32];
	util_hmac_sha256(secret, len, label, sizeof(label) - 1, mac);
	b64url(mac, sizeof(mac), out);
	OPENSSL_cleanse(mac, sizeof(mac));
}

void api_respond_password_busy(http_request *req)
{
	static const char *const retry[] = { "Retry-After: 1", NULL };
	http_req_respond_error(req, 503, "busy", "too many password checks at once; retry", retry);
}

/* Overwrite a JSON string's characters (a password in a parsed body) before
 * the value is freed. */
static void wipe_json_string(json_t *s)
{
	if (json_is_string(s))
		OPENSSL_cleanse((char *)json_string_value(s), json_string_length(s));
}

static void free_secret(char *s)
{
	if (s != NULL) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* The request has no query parameters and a body with no field but those
 * of `fields` (NULL-terminated), or the client is answered 400. The same
 * answers as parley_api_only. */
static bool request_only(http_request *req, json_t *r, const char *const *fields)
{
	char detail[160];
	const char *key;
	json_t *v;
	json_object_foreach(json_object_get(r, "query"), key, v) {
		snprintf(detail, sizeof(detail), "query: unknown field \"%.64s\"", key);
		http_req_respond_error(req, 400, "unknown_field", detail, NULL);
		return false;
	}
	json_object_foreach(json_object_get(r, "body"), key, v) {
		bool known = false;
		for (size_t i = 0; fields[i] != NULL && !known; i++)
			known = strcmp(key, fields[i]) == 0;
		if (!known) {
			snprintf(detail, sizeof(detail), "body: unknown field \"%.64s\"", key);
			http_req_respond_error(req, 400, "unknown_field", detail, NULL);
			return false;
		}
	}
	return true;
}

/* A required string of at most max bytes in the body, or NULL after a 422. */
static const char *body_string(http_request *req, json_t *r, const char *field, size_t max)
{
	json_t *v = json_object_get(json_object_get(r, "body"), field);
	char detail[160];
	if (!json_is_string(v) || json_string_length(v) == 0)
		snprintf(detail, sizeof(detail), "%s: %s", field, v == NULL || json_is_null(v) ? "required"
		         : json_is_string(v) ? "must not be empty" : "must be a string");
	else if (json_string_length(v) > max)
		snprintf(detail, sizeof(detail), "%s: at most %zu bytes", field, max);
	else
		return json_string_value(v);
	http_req_respond_error(req, 422, "invalid_field", detail, NULL);
	return NULL;
}

/* The client's IP address ("ip:port" or "[ip6]:port" without the port). */
static void peer_address(http_request *req, char *out, size_t len)
{
	const char *p = http_req_peer(req);
	const char *end;
	if (p[0] == '[' && (end = strchr(p, ']')) != NULL)
		p++;
	else
		end = strrchr(p, ':');
	int n = end != NULL ? (int)(end - p) : (int)strlen(p);
	snprintf(out, len, "%.*s", n, p);
}

static void respond_throttled(http_request *req, json_t *body)
{
	json_int_t wait = json_integer_value(json_object_get(body, "retry_after"));
	char header[48];
	snprintf(header, sizeof(header), "Retry-After: %lld", (long long)(wait > 0 ? wait : 1));
	const char *const extra[] = { header, NULL };
	http_req_respond_error(req, 429, "too_many_attempts",
	                       "too many failed password checks; wait before trying again", extra);
}

/* Answer what an SQL step returned that the handler does not treat itself. */
static void respond_as_is(http_request *req, int status, json_t *body)
{
	if (body == NULL)
		http_req_respond(req, status, "application/json", "", 0, NULL);
	else
		api_respond_json(req, status, body, NULL);
}

/* "Set-Cookie: parley_session=VALUE; ..." into out; max_age 0 clears it. */
static void session_cookie(char *out, size_t len, const char *value, int max_age)
{
	snprintf(out, len, "Set-Cookie: %s=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Strict%s",
	         API_SESSION_COOKIE, value, max_age, api_options_cookie_secure() ? "; Secure" : "");
}

/* -------------------------------------------------------------- login */

typedef struct login {
	http_request *req;
	char *email;
	char *password;            /* wiped once the worker has its copy */
	char address[64];          /* the client's IP: the throttle's key */
	long long agent_id;        /* 0: no such agent */
	char *hash;                /* what the password was checked against; NULL: the dummy */
	char secret[ACCOUNTS_SECRET_MAX];   /* the new session's cookie value */
} login;

static void login_free(login *lg)
{
	free(lg->email);
	free_secret(lg->password);
	free(lg->hash);
	OPENSSL_cleanse(lg->secret, sizeof(lg->secret));
	free(lg);
}

static void login_finished(http_request *req, int status, json_t *body, void *arg)
{
	login *lg = arg;
	if (status == 201 && body != NULL) {
		char csrf[API_CSRF_MAX], cookie[256];
		api_session_csrf(lg->secret, strlen(lg->secret), csrf);
		json_object_set_new(body, "csrf_token", json_string(csrf));
		session_cookie(cookie, sizeof(cookie), lg->secret, api_options_get()->session_max_hours * 3600);
		const char *const extra[] = { cookie, "Cache-Control: no-store", NULL };
		api_respond_json(req, 201, body, extra);
		OPENSSL_cleanse(cookie, sizeof(cookie));
		OPENSSL_cleanse(csrf, sizeof(csrf));
	} else if (status != 0) {
		respond_as_is(req, status, body);
	}
	login_free(lg);
}

static void login_checked(bool ok, bool match, void *arg)
{
	login *lg = arg;
	if (!ok && lg->hash != NULL)
		log_warn(SESSION_LOG, "agent %lld: the stored password hash could not be checked", lg->agent_id);
	bool matched = ok && match && lg->hash != NULL && lg->agent_id > 0;
	char secret_hash[65] = "", csrf[API_CSRF_MAX], csrf_hash[65] = "";
	if (matched) {
		if (!accounts_new_secret(lg->secret, sizeof(lg->secret), secret_hash)) {
			http_req_respond_error(lg->req, 500, "internal_error", "no random bytes for a session", NULL);
			login_free(lg);
			return;
		}
		api_session_csrf(lg->secret, strlen(lg->secret), csrf);
		api_sha256_hex(csrf, strlen(csrf), csrf_hash);
		OPENSSL_cleanse(csrf, sizeof(csrf));
	}
	const api_options *o = api_options_get();
	json_t *internal = json_pack("{s:s, s:s, s:I, s:b, s:s?, s:s?, s:s?, s:i, s:i, s:s}",
	                             "email", lg->email, "address", lg->address,
	                             "agent_id", (json_int_t)lg->agent_id, "matched", matched,
	                             "verified_hash", lg->hash,
	                             "secret_hash", matched ? secret_hash : NULL,
	                             "csrf_hash", matched ? csrf_hash : NULL,
	                             "idle_minutes", o->session_idle_minutes,
	                             "max_hours", o->session_max_hours, "peer", lg->address);
	api_call_sql(lg->req, "parley_api_login_finish", false, json_pack("{s:o}", "internal", internal),
	             login_finished, lg);
}

static void login_begun(http_request *req, int status, json_t *body, void *arg)
{
	login *lg = arg;
	if (status != 200) {
		if (status == 429)
			respond_throttled(req, body);
		else if (status != 0)
			respond_as_is(req, status, body);
		login_free(lg);
		return;
	}
	json_t *id = json_object_get(body, "agent_id");
	lg->agent_id = json_is_integer(id) ? (long long)json_integer_value(id) : 0;
	lg->hash = xstrdup(json_string_value(json_object_get(body, "password_hash")));
	/* No hash (no such agent, disabled, no password): the dummy, which
	 * takes as long and never matches. */
	bool queued = password_worker_verify(lg->password, lg->hash, login_checked, lg);
	free_secret(lg->password);
	lg->password = NULL;
	if (!queued) {
		api_respond_password_busy(req);
		login_free(lg);
	}
}

void api_session_login(http_request *req, const route_match *m, const api_actor *actor)
{
	(void)actor;
	json_t *r = api_collect_request(req, m);
	if (r == NULL)
		return;
	static const char *const fields[] = { "email", "password", NULL };
	const char *email, *password;
	if (!request_only(req, r, fields) || (email = body_string(req, r, "email", 254)) == NULL ||
	    (password = body_string(req, r, "password", PASSWORD_MAX_BYTES)) == NULL) {
		wipe_json_string(json_object_get(json_object_get(r, "body"), "password"));
		json_decref(r);
		return;
	}
	login *lg = xcalloc(1, sizeof(*lg));
	lg->req = req;
	lg->email = xstrdup(email);
	lg->password = xstrdup(password);
	peer_address(req, lg->address, sizeof(lg->address));
	wipe_json_string(json_object_get(json_object_get(r, "body"), "password"));
	json_decref(r);
	api_call_sql(req, "parley_api_login_begin", false,
	             json_pack("{s:{s:s, s:s}}", "internal", "email", lg->email, "address", lg->address),
	             login_begun, lg);
}

/* ------------------------------------------------- the current session */

static void session_got(http_request *req, int status, json_t *body, void *arg)
{
	char *csrf = arg;
	if (status == 200 && body != NULL && csrf != NULL) {
		json_object_set_new(body, "csrf_token", json_string(csrf));
		static const char *const extra[] = { "Cache-Control: no-store", NULL };
		api_respond_json(req, 200, body, extra);
	} else if (status != 0) {
		respond_as_is(req, status, body);
	}
	free_secret(csrf);
}

void api_session_get(http_request *req, const route_match *m, const api_actor *actor)
{
	json_t *r = api_collect_request(req, m);
	if (r == NULL)
		return;
	char *csrf = NULL;
	size_t len = 0;
	const char *cookie = api_session_cookie(req, &len);
	const char *kind = json_string_value(json_object_get(actor->json, "kind"));
	if (cookie != NULL && kind != NULL && strcmp(kind, "session") == 0) {
		csrf = xmalloc(API_CSRF_MAX);
		api_session_csrf(cookie, len, csrf);
	}
	api_call_sql(req, "parley_api_session_get", true, r, session_got, csrf);
}

static void logged_out(http_request *req, int status, json_t *body, void *arg)
{
	(void)arg;
	if (status == 204) {
		char cookie[160];
		session_cookie(cookie, sizeof(cookie), "", 0);
		const char *const extra[] = { cookie, NULL };
		http_req_respond(req, 204, "application/json", "", 0, extra);
	} else if (status != 0) {
		respond_as_is(req, status, body);
	}
}

void api_session_logout(http_request *req, const route_match *m, const api_actor *actor)
{
	(void)actor;
	json_t *r = api_collect_request(req, m);
	if (r != NULL)
		api_call_sql(req, "parley_api_session_end", true, r, logged_out, NULL);
}

/* ---------------------------------------------------- own password */

typedef struct pw_change {
	http_request *req;
	char *current, *next;      /* wiped once the worker has its copy */
	char *verified;            /* the stored hash current matched */
} pw_change;

static void pw_change_free(pw_change *pc)
{
	free_secret(pc->current);
	free_secret(pc->next);
	free(pc->verified);
	free(pc);
}

static void pw_hashed(bool ok, const char *hash, void *arg)
{
	pw_change *pc = arg;
	if (!ok) {
		http_req_respond_error(pc->req, 500, "internal_error", "the new password could not be hashed", NULL);
	} else {
		json_t *q = json_pack("{s:{s:s, s:s}}", "internal", "verified_hash", pc->verified,
		                      "password_hash", hash);
		api_call_sql(pc->req, "parley_api_password_set", true, q, NULL, NULL);
	}
	pw_change_free(pc);
}

static void pw_checked(bool ok, bool match, void *arg)
{
	pw_change *pc = arg;
	if (!ok || !match) {
		if (!ok)
			log_warn(SESSION_LOG, "a stored password hash could not be checked");
		http_req_respond_error(pc->req, 403, "wrong_password", "current_password is not the agent's password",
		                       NULL);
		pw_change_free(pc);
		return;
	}
	bool queued = password_worker_hash(pc->next, pw_hashed, pc);
	if (!queued) {
		api_respond_password_busy(pc->req);
		pw_change_free(pc);
	}
}

static void pw_begun(http_request *req, int status, json_t *body, void *arg)
{
	pw_change *pc = arg;
	const char *hash = status == 200 ? json_string_value(json_object_get(body, "password_hash")) : NULL;
	if (hash == NULL) {
		if (status == 429)
			respond_throttled(req, body);
		else if (status != 0)
			respond_as_is(req, status == 200 ? 500 : status, body);
		pw_change_free(pc);
		return;
	}
	pc->verified = xstrdup(hash);
	bool queued = password_worker_verify(pc->current, pc->verified, pw_checked, pc);
	free_secret(pc->current);
	pc->current = NULL;
	if (!queued) {
		api_respond_password_busy(req);
		pw_change_free(pc);
	}
}

void api_session_change_password(http_request *req, const route_match *m, const api_actor *actor)
{
	(void)actor;
	json_t *r = api_collect_request(req, m);
	if (r == NULL)
		return;
	json_t *body = json_object_get(r, "body");
	static const char *const fields[] = { "current_password", "new_password", NULL };
	const char *current, *next;
	char why[200], detail[240];
	bool fine = request_only(req, r, fields) &&
	            (current = body_string(req, r, "current_password", PASSWORD_MAX_BYTES)) != NULL &&
	            (next = body_string(req, r, "new_password", PASSWORD_MAX_BYTES)) != NULL;
	if (fine && !password_acceptable(next, why, sizeof(why))) {
		snprintf(detail, sizeof(detail), "new_password: %s", why);
		http_req_respond_error(req, 422, "invalid_field", detail, NULL);
		fine = false;
	}
	pw_change *pc = NULL;
	if (fine) {
		pc = xcalloc(1, sizeof(*pc));
		pc->req = req;
		pc->current = xstrdup(current);
		pc->next = xstrdup(next);
	}
	wipe_json_string(json_object_get(body, "current_password"));
	wipe_json_string(json_object_get(body, "new_password"));
	json_decref(r);
	if (pc != NULL)
		api_call_sql(req, "parley_api_password_begin", true, json_pack("{s:{}, s:{}}", "path", "query"),
		             pw_begun, pc);
}
