/* api_accounts.c - the account operations that carry a secret: an agent
 * written with a password (hashed here, off the loop), and a new API token
 * (its secret made here and shown once). See api_accounts.h. */
#include "api_accounts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

#include "accounts.h"
#include "password.h"
#include "password_worker.h"
#include "util.h"

/* ------------------------------------------------- agents with passwords */

typedef struct agent_write {
	http_request *req;
	const char *sql_fn;
	json_t *request;
} agent_write;

static void agent_password_hashed(bool ok, const char *hash, void *arg)
{
	agent_write *aw = arg;
	if (!ok) {
		http_req_respond_error(aw->req, 500, "internal_error", "the password could not be hashed", NULL);
		json_decref(aw->request);
	} else {
		json_object_set_new(aw->request, "internal", json_pack("{s:s}", "password_hash", hash));
		api_call_sql(aw->req, aw->sql_fn, true, aw->request, NULL, NULL);
	}
	free(aw);
}

/* The SQL function does the rest; a "password" in the body is taken out
 * here and comes back as internal.password_hash once hashed. */
static void agent_write_start(http_request *req, const route_match *m, const api_actor *actor,
                              const char *sql_fn)
{
	json_t *r = api_collect_request(req, m);
	if (r == NULL)
		return;
	json_t *body = json_object_get(r, "body");
	json_t *pw = json_object_get(body, "password");
	if (pw == NULL) {
		api_call_sql(req, sql_fn, true, r, NULL, NULL);
		return;
	}
	/* The password never reaches the database, whatever comes next. */
	char *password = json_is_string(pw) ? xstrdup(json_string_value(pw)) : NULL;
	if (password != NULL)
		OPENSSL_cleanse((char *)json_string_value(pw), json_string_length(pw));
	json_object_del(body, "password");
	char why[200], detail[240];
	if (actor->role == NULL || strcmp(actor->role, "admin") != 0) {
		/* Refused by the SQL function (403) before it looks at the rest:
		 * no hashing for callers who may not set passwords. */
		api_call_sql(req, sql_fn, true, r, NULL, NULL);
	} else if (password == NULL) {
		http_req_respond_error(req, 422, "invalid_field", "password: must be a string", NULL);
		json_decref(r);
	} else if (!password_acceptable(password, why, sizeof(why))) {
		snprintf(detail, sizeof(detail), "password: %s", why);
		http_req_respond_error(req, 422, "invalid_field", detail, NULL);
		json_decref(r);
	} else {
		agent_write *aw = xcalloc(1, sizeof(*aw));
		*aw = (agent_write){ req, sql_fn, r };
		if (!password_worker_hash(password, agent_password_hashed, aw)) {
			api_respond_password_busy(req);
			json_decref(r);
			free(aw);
		}
	}
	if (password != NULL) {
		OPENSSL_cleanse(password, strlen(password));
		free(password);
	}
}

void api_accounts_agent_create(http_request *req, const route_match *m, const api_actor *actor)
{
	agent_write_start(req, m, actor, "parley_api_agent_create");
}

void api_accounts_agent_update(http_request *req, const route_match *m, const api_actor *actor)
{
	agent_write_start(req, m, actor, "parley_api_agent_update");
}

/* ------------------------------------------------------------ tokens */

static void token_created(http_request *req, int status, json_t *body, void *arg)
{
	char *secret = arg;
	if (status == 201 && body != NULL) {
		json_object_set_new(body, "secret", json_string(secret));
		static const char *const extra[] = { "Cache-Control: no-store", NULL };
		api_respond_json(req, 201, body, extra);
	} else if (status != 0) {
		if (body != NULL)
			api_respond_json(req, status, body, NULL);
		else
			http_req_respond(req, status, "application/json", "", 0, NULL);
	}
	OPENSSL_cleanse(secret, ACCOUNTS_SECRET_MAX);
	free(secret);
}

void api_accounts_token_create(http_request *req, const route_match *m, const api_actor *actor)
{
	(void)actor;
	json_t *r = api_collect_request(req, m);
	if (r == NULL)
		return;
	char *secret = xcalloc(1, ACCOUNTS_SECRET_MAX);
	char hash[65], prefix[13];
	if (!accounts_new_secret(secret, ACCOUNTS_SECRET_MAX, hash)) {
		http_req_respond_error(req, 500, "internal_error", "no random bytes for the secret", NULL);
		json_decref(r);
		free(secret);
		return;
	}
	/* The prefix lets people tell tokens apart in lists; the digest is what
	 * a Bearer header is checked against. */
	snprintf(prefix, sizeof(prefix), "%.12s", secret);
	json_object_set_new(r, "internal", json_pack("{s:s, s:s}", "secret_hash", hash, "prefix", prefix));
	api_call_sql(req, "parley_api_token_create", true, r, token_created, secret);
}
