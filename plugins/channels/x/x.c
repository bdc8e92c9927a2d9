/* x.c - the "x" channel: X (Twitter) mentions, replies and DMs.
 *
 * Inbound:  the Account Activity webhook at /webhooks/{instance}: GET answers
 *           the CRC challenge, POST carries tweet_create_events,
 *           direct_message_events and tweet_delete_events, signed with
 *           x-twitter-webhooks-signature (HMAC-SHA256 of the raw body with
 *           the consumer secret).
 * Listening: each configured search query is polled on a timer through
 *           GET /2/tweets/search/recent (app-only bearer token); the matches
 *           and the query's since_id cursor are committed together.
 * Outbound: public replies with POST /2/tweets, DMs with
 *           POST /2/dm_conversations/with/{id}/messages, signed with OAuth
 *           1.0a (HMAC-SHA1) as the brand's account.
 *
 * This file is the glue to the host table; parsing, signatures and answer
 * classification are in x_parse.c, OAuth signing in x_oauth.c. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "parley/parley.h"
#include "../../common/plugin_util.h"
#include "../../common/instance.h"
#include "x_oauth.h"
#include "x_parse.h"

#define X_VERSION "0.1.0"
#define X_DEFAULT_API_URL "https://api.x.com"
#define X_DEFAULT_TIMEOUT_MS 10000
#define X_MAX_TIMEOUT_MS 600000
#define X_DEFAULT_SEARCH_INTERVAL_S 60
#define X_MAX_SEARCH_INTERVAL_S 86400
#define X_MAX_QUERIES 25
#define X_MAX_QUERY_BYTES 4096      /* X's longest query (Pro access) */
#define X_SEARCH_MAX_PAGES 5        /* pages fetched per poll before committing */
#define X_MAX_SEARCH_BODY (4u << 20)
#define X_USER_AGENT "User-Agent: parley-x/" X_VERSION

/* One instance's settings; replaced as a whole on reload. */
typedef struct x_settings {
	char *consumer_key;          /* owned; secret-ish: never logged */
	char *consumer_secret;       /* owned; wiped before it is freed */
	char *access_token;          /* owned; wiped */
	char *access_token_secret;   /* owned; wiped */
	char *bearer_token;          /* owned; wiped; NULL without search */
	char *user_id;               /* owned: the brand's account id */
	char *api_url;               /* owned; no trailing slash */
	char **queries;              /* owned; n_queries strings */
	size_t n_queries;
	int64_t search_interval_ms;
	long timeout_ms;
	int tls_verify;
} x_settings;

typedef struct x_channel x_channel;

/* One search query's poller. Lives from start() to destroy(). */
typedef struct x_search {
	x_channel *ch;               /* borrowed: owns this */
	size_t index;
	char *query;                 /* owned copy (the settings may be reloaded) */
	char state_key[48];          /* "search:<sha256 prefix of the query>" */
	char since_id[X_MAX_ID_LEN + 1];      /* the committed cursor; "" = none */
	char newest_id[X_MAX_ID_LEN + 1];     /* of the poll in progress */
	parley_timer *timer;         /* owned by the core while pending */
	char *pages[X_SEARCH_MAX_PAGES];      /* owned answer bodies of this poll */
	size_t page_lens[X_SEARCH_MAX_PAGES];
	size_t n_pages;
	int loaded;                  /* the cursor was read */
} x_search;

struct x_channel {
	const parley_host *host;     /* owned by the core; valid until destroy */
	parley_instance *inst;       /* owned by the core; valid until destroy */
	x_settings cfg;
	x_search *searches;          /* owned; cfg.n_queries of them after start */
	size_t n_searches;
	int stopped;                 /* stop() ran: start nothing new */
};

/* One outbound send waiting for its HTTP answer. */
typedef struct x_send_ctx {
	x_channel *ch;               /* borrowed: callbacks run before destroy */
	parley_delivery *d;          /* owned by the core until delivery_complete */
	int private_reply;           /* report the DM conversation as the thread */
	int is_dm;
	char recipient[X_MAX_ID_LEN + 1];
} x_send_ctx;

static const parley_config_key x_config_keys[] = {
	{ "consumer_key", PARLEY_CONFIG_STRING, PARLEY_CONFIG_REQUIRED | PARLEY_CONFIG_SECRET,
	  "the X app's API key (OAuth 1.0a consumer key)" },
	{ "consumer_secret", PARLEY_CONFIG_STRING, PARLEY_CONFIG_REQUIRED | PARLEY_CONFIG_SECRET,
	  "the X app's API key secret: CRC answers, webhook signatures, OAuth 1.0a" },
	{ "access_token", PARLEY_CONFIG_STRING, PARLEY_CONFIG_REQUIRED | PARLEY_CONFIG_SECRET,
	  "the brand account's OAuth 1.0a access token (read, write and DMs)" },
	{ "access_token_secret", PARLEY_CONFIG_STRING, PARLEY_CONFIG_REQUIRED | PARLEY_CONFIG_SECRET,
	  "the brand account's OAuth 1.0a access token secret" },
	{ "user_id", PARLEY_CONFIG_STRING, PARLEY_CONFIG_REQUIRED,
	  "the brand account's numeric user id: its own tweets and DMs are outbound" },
	{ "api_url", PARLEY_CONFIG_STRING, 0,
	  "base URL of the X API (default https://api.x.com)" },
	{ "bearer_token", PARLEY_CONFIG_STRING, PARLEY_CONFIG_SECRET,
	  "app-only bearer token for recent search (required with search_queries)" },
	{ "search_queries", PARLEY_CONFIG_JSON, 0,
	  "list of recent-search queries to listen to (mentions without a tag)" },
	{ "search_interval_s", PARLEY_CONFIG_INTEGER, 0,
	  "seconds between polls of each search query (default 60)" },
	{ "timeout_ms", PARLEY_CONFIG_INTEGER, 0,
	  "whole-request limit for X API calls (default 10000)" },
	{ "tls_verify", PARLEY_CONFIG_BOOLEAN, 0,
	  "verify the API's TLS certificate (default true; false for tests only)" },
	{ NULL, 0, 0, NULL }
};

/* ------------------------------------------------------------------------ */
/* Settings                                                                 */
/* ------------------------------------------------------------------------ */

/* Overwrite and free a secret. s: owned, may be NULL. */
static void free_secret(char *s)
{
	if (s != NULL)
		OPENSSL_cleanse(s, strlen(s));
	free(s);
}

static void settings_free(void *settings)
{
	x_settings *s = settings;
	free(s->consumer_key);
	free_secret(s->consumer_secret);
	free_secret(s->access_token);
	free_secret(s->access_token_secret);
	free_secret(s->bearer_token);
	free(s->user_id);
	free(s->api_url);
	for (size_t i = 0; i < s->n_queries; i++)
		free(s->queries[i]);
	free(s->queries);
	memset(s, 0, sizeof(*s));
}

/* search_queries: a JSON array of non-empty strings into out. json: borrowed. */
static int read_queries(const parley_host *host, parley_instance *inst, const char *json,
                        x_settings *out)
{
	json_t *arr = json_loads(json, 0, NULL), *q;
	size_t i;
	int ok = 1;

	if (!json_is_array(arr) || json_array_size(arr) > X_MAX_QUERIES) {
		host->config_error(inst, "search_queries", "must be a list of at most 25 query strings");
		json_decref(arr);
		return 0;
	}
	out->queries = calloc(json_array_size(arr) + 1, sizeof(char *));
	if (out->queries == NULL) {
		json_decref(arr);
		return 0;
	}
	json_array_foreach(arr, i, q) {
		if (!json_is_string(q) || json_string_length(q) == 0 ||
		    json_string_length(q) > X_MAX_QUERY_BYTES ||
		    strlen(json_string_value(q)) != json_string_length(q)) {
			host->config_error(inst, "search_queries",
			                   "every query must be a non-empty string of at most 4096 bytes");
			ok = 0;
			break;
		}
		out->queries[i] = pu_strdup(json_string_value(q));
		if (out->queries[i] == NULL) {
			ok = 0;
			break;
		}
		out->n_queries = i + 1;
	}
	json_decref(arr);
	return ok;
}

static int check_required(const parley_host *host, parley_instance *inst, const char *key,
                          const char *value)
{
	if (value == NULL || value[0] == '\0') {
		host->config_error(inst, key, "must not be empty");
		return 0;
	}
	if (!pu_header_safe(value)) {
		host->config_error(inst, key, "must not contain control characters");
		return 0;
	}
	return 1;
}

/* Read and check one instance's config into *out (owned by the caller, free
 * with settings_free). cfg: borrowed. Problems go to config_error. */
static int settings_read(const parley_host *host, parley_instance *inst,
                         const parley_config *cfg, void *settings)
{
	x_settings *out = settings;
	const char *ck = host->config_string(cfg, "consumer_key");
	const char *cs = host->config_string(cfg, "consumer_secret");
	const char *at = host->config_string(cfg, "access_token");
	const char *ats = host->config_string(cfg, "access_token_secret");
	const char *uid = host->config_string(cfg, "user_id");
	const char *url = host->config_string(cfg, "api_url");
	const char *bearer = host->config_string(cfg, "bearer_token");
	const char *queries = host->config_json(cfg, "search_queries");
	int64_t interval = X_DEFAULT_SEARCH_INTERVAL_S, timeout = X_DEFAULT_TIMEOUT_MS;
	int verify = 1, ok = 1;
	size_t url_len;

	memset(out, 0, sizeof(*out));
	ok &= check_required(host, inst, "consumer_key", ck);
	ok &= check_required(host, inst, "consumer_secret", cs);
	ok &= check_required(host, inst, "access_token", at);
	ok &= check_required(host, inst, "access_token_secret", ats);
	if (uid == NULL || !x_id_is_valid(uid)) {
		host->config_error(inst, "user_id", "must be the account's numeric id, e.g. \"2975699229\"");
		ok = 0;
	}
	if (url == NULL)
		url = X_DEFAULT_API_URL;
	if (!pu_url_is_http(url) || strpbrk(url, "?#") != NULL) {
		host->config_error(inst, "api_url", "must be an http:// or https:// URL without a query");
		ok = 0;
	}
	if (bearer != NULL && !check_required(host, inst, "bearer_token", bearer))
		ok = 0;
	if (host->config_integer(cfg, "search_interval_s", &interval) &&
	    (interval < 1 || interval > X_MAX_SEARCH_INTERVAL_S)) {
		host->config_error(inst, "search_interval_s", "must be between 1 and 86400");
		ok = 0;
	}
	if (host->config_integer(cfg, "timeout_ms", &timeout) &&
	    (timeout < 1 || timeout > X_MAX_TIMEOUT_MS)) {
		host->config_error(inst, "timeout_ms", "must be between 1 and 600000");
		ok = 0;
	}
	host->config_boolean(cfg, "tls_verify", &verify);
	if (ok && queries != NULL && !read_queries(host, inst, queries, out))
		ok = 0;
	if (ok && out->n_queries > 0 && bearer == NULL) {
		host->config_error(inst, "bearer_token", "is required to poll search_queries");
		ok = 0;
	}
	if (!ok) {
		settings_free(out);
		return -1;
	}

	url_len = strlen(url);
	while (url_len > 0 && url[url_len - 1] == '/')
		url_len--;
	out->consumer_key = pu_strdup(ck);
	out->consumer_secret = pu_strdup(cs);
	out->access_token = pu_strdup(at);
	out->access_token_secret = pu_strdup(ats);
	out->bearer_token = pu_strdup(bearer);
	out->user_id = pu_strdup(uid);
	out->api_url = strndup(url, url_len);
	out->search_interval_ms = interval * 1000;
	out->timeout_ms = (long)timeout;
	out->tls_verify = verify;
	if (out->consumer_key == NULL || out->consumer_secret == NULL || out->access_token == NULL ||
	    out->access_token_secret == NULL || (bearer != NULL && out->bearer_token == NULL) ||
	    out->user_id == NULL || out->api_url == NULL) {
		host->log(inst, PARLEY_LOG_ERROR, "out of memory reading the config");
		settings_free(out);
		return -1;
	}
	return 0;
}

static void settings_announce(void *self)
{
	const x_channel *ch = self;
	if (ch->cfg.n_queries == 0)
		ch->host->log(ch->inst, PARLEY_LOG_INFO, "account %s, no search listening",
		              ch->cfg.user_id);
	else
		ch->host->log(ch->inst, PARLEY_LOG_INFO,
		              "account %s, %zu search quer%s every %" PRId64 " s", ch->cfg.user_id,
		              ch->cfg.n_queries, ch->cfg.n_queries == 1 ? "y" : "ies",
		              ch->cfg.search_interval_ms / 1000);
	if (!ch->cfg.tls_verify)
		ch->host->log(ch->inst, PARLEY_LOG_WARN,
		              "tls_verify is false: X API certificates are not checked");
}

/* ------------------------------------------------------------------------ */
/* Inbound                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct request_emit_ctx {
	const parley_host *host;
	parley_request *req;
	size_t refused;             /* events the core found invalid (logged by it) */
} request_emit_ctx;

/* ev: borrowed; request_emit copies it. An event the core refuses is
 * counted and skipped, never a reason to refuse the whole POST: below the
 * Enterprise tier X does not redeliver, so the other events would be lost. */
static int emit_to_request(void *arg, const parley_event *ev)
{
	request_emit_ctx *ctx = arg;
	if (ctx->host->request_emit(ctx->req, ev) != 0)
		ctx->refused++;
	return 0;
}

static void log_stats(x_channel *ch, const x_parse_stats *st, const char *source)
{
	if (st->unknown > 0)
		ch->host->log(ch->inst, PARLEY_LOG_INFO, "%s: ignored %zu event type(s) such as %s",
		              source, st->unknown, st->first_unknown);
	if (st->skipped > 0)
		ch->host->log(ch->inst, PARLEY_LOG_DEBUG, "%s: skipped %zu item(s), first: %s",
		              source, st->skipped, st->first_skip);
}

/* GET ?crc_token=...: prove we hold the consumer secret. */
static void answer_crc(x_channel *ch, parley_request *req)
{
	const parley_host *host = ch->host;
	const char *token = host->request_query(req, "crc_token");
	char answer[X_CRC_RESPONSE_LEN + 1];

	if (token == NULL || token[0] == '\0') {
		host->respond_error(req, 400, "missing_crc_token", "GET needs ?crc_token=");
		return;
	}
	x_crc_response(ch->cfg.consumer_secret, strlen(ch->cfg.consumer_secret), token,
	               host->hmac_sha256, answer);
	host->counter_add(ch->inst, "x_crc_total", 1);
	host->respond(req, 200, "application/json", answer, strlen(answer));
}

/* req: owned by the core; answered exactly once below. */
static void x_handle_request(void *self, parley_request *req)
{
	x_channel *ch = self;
	const parley_host *host = ch->host;
	const char *subpath = host->request_subpath(req);
	const char *method = host->request_method(req);
	const unsigned char *body;
	size_t len = 0;
	x_parse_stats stats;
	x_parse_error err;
	request_emit_ctx ctx = { host, req, 0 };
	char answer[48];
	int n;

	if (subpath != NULL && subpath[0] != '\0' && strcmp(subpath, "/") != 0) {
		host->respond_error(req, 404, "not_found", "use the instance's URL itself");
		return;
	}
	if (strcmp(method, "GET") == 0) {
		answer_crc(ch, req);
		return;
	}
	if (strcmp(method, "POST") != 0) {
		host->respond_error(req, 405, "method_not_allowed", "use GET (CRC) or POST");
		return;
	}

	/* Verify the raw bytes before anything parses them. */
	body = host->request_body(req, &len);
	if (body == NULL) {
		body = (const unsigned char *)"";
		len = 0;
	}
	switch (x_verify_signature(host->request_header(req, "x-twitter-webhooks-signature"),
	                           ch->cfg.consumer_secret, strlen(ch->cfg.consumer_secret), body,
	                           len, host->hmac_sha256, host->secure_equals)) {
	case X_SIG_OK:
		break;
	case X_SIG_MISSING:
		host->counter_add(ch->inst, "x_rejected_total", 1);
		host->respond_error(req, 401, "missing_signature",
		                    "the x-twitter-webhooks-signature header is required");
		return;
	case X_SIG_BAD:
	default:
		host->counter_add(ch->inst, "x_rejected_total", 1);
		host->log(ch->inst, PARLEY_LOG_DEBUG, "request with a bad signature refused");
		host->respond_error(req, 401, "bad_signature",
		                    "x-twitter-webhooks-signature does not match the body");
		return;
	}

	if (!x_parse_activity(body, len, ch->cfg.user_id, emit_to_request, &ctx, &stats, &err)) {
		/* Events emitted before the failure are discarded: not a 2xx. */
		host->counter_add(ch->inst, "x_rejected_total", 1);
		host->respond_error(req, err.http_status, err.code, err.detail);
		return;
	}
	log_stats(ch, &stats, "webhook");
	if (ctx.refused > 0) {
		host->counter_add(ch->inst, "x_refused_events_total", ctx.refused);
		host->log(ch->inst, PARLEY_LOG_WARN, "webhook: %zu event(s) refused by the core, the "
		          "other %zu stored", ctx.refused, stats.emitted - ctx.refused);
	}
	host->counter_add(ch->inst, "x_events_total", stats.emitted - ctx.refused);
	n = snprintf(answer, sizeof(answer), "{\"accepted\":%zu}", stats.emitted - ctx.refused);
	host->respond(req, 200, "application/json", answer, (size_t)n);
}

/* ------------------------------------------------------------------------ */
/* Listening: recent search                                                 */
/* ------------------------------------------------------------------------ */

static void search_poll(void *arg);
static void search_load(void *arg);

static void search_drop_pages(x_search *s)
{
	for (size_t i = 0; i < s->n_pages; i++)
		free(s->pages[i]);
	s->n_pages = 0;
	s->newest_id[0] = '\0';
}

/* Run fn for s after delay_ms, unless the channel stopped. */
static void search_schedule(x_search *s, int64_t delay_ms, parley_timer_fn fn)
{
	x_channel *ch = s->ch;

	if (ch->stopped)
		return;
	if (delay_ms < 0)
		delay_ms = 0;
	s->timer = ch->host->timer_start(ch->inst, (uint64_t)delay_ms, fn, s);
	if (s->timer == NULL)
		ch->host->log(ch->inst, PARLEY_LOG_ERROR, "search %zu: could not start a timer",
		              s->index);
}

typedef struct batch_emit_ctx {
	const parley_host *host;
	parley_emit_batch *b;
	size_t refused;
} batch_emit_ctx;

/* An event the core refuses is logged by the core; the rest still count. */
static int emit_to_batch(void *arg, const parley_event *ev)
{
	batch_emit_ctx *ctx = arg;

	if (ctx->host->emit_event(ctx->b, ev) != 0)
		ctx->refused++;
	return 0;
}

/* arg: the x_search. ok: whether the events and the cursor were stored. */
static void search_committed(void *arg, int ok)
{
	x_search *s = arg;
	x_channel *ch = s->ch;

	if (ok) {
		memcpy(s->since_id, s->newest_id, sizeof(s->since_id));
	} else {
		ch->host->log(ch->inst, PARLEY_LOG_WARN,
		              "search %zu: results not stored; polling again from the old cursor",
		              s->index);
	}
	search_drop_pages(s);
	search_schedule(s, ch->cfg.search_interval_ms, search_poll);
}

/* Every page of this poll is in: emit them all and commit with the new
 * cursor in one transaction. */
static void search_commit(x_search *s)
{
	x_channel *ch = s->ch;
	const parley_host *host = ch->host;
	batch_emit_ctx ctx = { host, NULL, 0 };
	size_t emitted = 0;

	if (s->newest_id[0] == '\0') {
		/* Nothing new: the cursor stays. */
		search_drop_pages(s);
		search_schedule(s, ch->cfg.search_interval_ms, search_poll);
		return;
	}
	ctx.b = host->emit_begin(ch->inst);
	for (size_t i = 0; i < s->n_pages; i++) {
		x_search_meta meta;
		x_parse_stats stats;
		x_parse_error err;

		/* Each page parsed once already; it cannot fail now but for
		 * memory, and then the events of that page are missing: abort. */
		if (!x_parse_search(s->pages[i], s->page_lens[i], ch->cfg.user_id, emit_to_batch,
		                    &ctx, &meta, &stats, &err)) {
			host->emit_abort(ctx.b);
			host->log(ch->inst, PARLEY_LOG_WARN, "search %zu: %s", s->index, err.detail);
			search_drop_pages(s);
			search_schedule(s, ch->cfg.search_interval_ms, search_poll);
			return;
		}
		emitted += stats.emitted;
		log_stats(ch, &stats, "search");
	}
	host->counter_add(ch->inst, "x_search_events_total", emitted - ctx.refused);
	host->emit_commit(ctx.b, s->state_key, s->newest_id, search_committed, s);
}

static int count_only(void *arg, const parley_event *ev)
{
	(void)arg;
	(void)ev;
	return 0;
}

static int start_search_request(x_search *s, const char *pagination_token);

/* arg: the x_search. response: borrowed. */
static void search_answered(void *arg, const parley_http_response *response)
{
	x_search *s = arg;
	x_channel *ch = s->ch;
	const parley_host *host = ch->host;
	long status = host->http_response_status(response);
	const unsigned char *body;
	size_t len = 0;
	x_search_meta meta;
	x_parse_stats stats;
	x_parse_error err;

	if (ch->stopped) {
		search_drop_pages(s);
		return;
	}
	body = host->http_response_body(response, &len);
	if (status == 429) {
		int64_t at = x_rate_limit_reset_ms(host->http_response_header(response,
		                                                              "x-rate-limit-reset"),
		                                   host->now_ms());
		int64_t wait = at > 0 ? at - host->now_ms() : ch->cfg.search_interval_ms;
		host->log(ch->inst, PARLEY_LOG_WARN, "search %zu: rate limited; next poll in %" PRId64
		          " ms", s->index, wait);
		host->counter_add(ch->inst, "x_search_rate_limited_total", 1);
		search_drop_pages(s);
		search_schedule(s, wait > ch->cfg.search_interval_ms ? wait : ch->cfg.search_interval_ms,
		                search_poll);
		return;
	}
	if (status != 200 || body == NULL || len > X_MAX_SEARCH_BODY ||
	    !x_parse_search(body, len, ch->cfg.user_id, count_only, NULL, &meta, &stats, &err)) {
		x_send_result r;
		x_classify_send(status, host->http_response_error(response), NULL, body, len,
		                "search", host->now_ms(), &r);
		host->log(ch->inst, PARLEY_LOG_WARN, "search %zu failed: %s", s->index,
		          status == 200 ? "the answer is not a search result" : r.reason);
		host->counter_add(ch->inst, "x_search_errors_total", 1);
		search_drop_pages(s);
		search_schedule(s, ch->cfg.search_interval_ms, search_poll);
		return;
	}
	s->pages[s->n_pages] = malloc(len);
	if (s->pages[s->n_pages] == NULL) {
		search_drop_pages(s);
		search_schedule(s, ch->cfg.search_interval_ms, search_poll);
		return;
	}
	memcpy(s->pages[s->n_pages], body, len);
	s->page_lens[s->n_pages++] = len;
	/* The first page holds the newest results: its newest_id is the cursor
	 * once every page is stored. */
	if (s->n_pages == 1)
		memcpy(s->newest_id, meta.newest_id, sizeof(s->newest_id));
	if (meta.next_token[0] != '\0' && s->since_id[0] != '\0') {
		if (s->n_pages < X_SEARCH_MAX_PAGES && start_search_request(s, meta.next_token) == 0)
			return;
		host->log(ch->inst, PARLEY_LOG_WARN,
		          "search %zu: more than %d pages of new results; older ones are skipped",
		          s->index, X_SEARCH_MAX_PAGES);
	}
	search_commit(s);
}

/* GET one page. 0 if started (search_answered runs), -1 if not. */
static int start_search_request(x_search *s, const char *pagination_token)
{
	x_channel *ch = s->ch;
	char *url = x_search_url(ch->cfg.api_url, s->query, s->since_id, pagination_token);
	pu_buf auth = { 0 };
	char *auth_header;
	int rc = -1;

	pu_buf_str(&auth, "Authorization: Bearer ");
	pu_buf_str(&auth, ch->cfg.bearer_token);
	auth_header = pu_buf_take(&auth);
	if (url != NULL && auth_header != NULL) {
		const char *headers[] = { auth_header, X_USER_AGENT, NULL };
		parley_http_call call = {
			.size = sizeof(call),
			.method = "GET",
			.url = url,
			.headers = headers,
			.timeout_ms = ch->cfg.timeout_ms,
			.insecure_skip_verify = !ch->cfg.tls_verify,
		};
		rc = ch->host->http_request(ch->inst, &call, search_answered, s);
	}
	free(url);
	free_secret(auth_header);
	return rc;
}

/* Timer: poll the query from the committed cursor. arg: the x_search. */
static void search_poll(void *arg)
{
	x_search *s = arg;

	s->timer = NULL;   /* fired: the core freed it */
	if (s->ch->stopped)
		return;
	search_drop_pages(s);
	if (start_search_request(s, NULL) != 0) {
		s->ch->host->log(s->ch->inst, PARLEY_LOG_WARN, "search %zu: could not start the request",
		                 s->index);
		search_schedule(s, s->ch->cfg.search_interval_ms, search_poll);
	}
}

/* arg: the x_search. value: borrowed, NULL when no cursor was stored. */
static void search_loaded(void *arg, int ok, const char *value)
{
	x_search *s = arg;
	x_channel *ch = s->ch;

	if (!ok) {
		ch->host->log(ch->inst, PARLEY_LOG_WARN, "search %zu: cursor not readable; retrying",
		              s->index);
		search_schedule(s, ch->cfg.search_interval_ms, search_load);
		return;
	}
	if (value != NULL && x_id_is_valid(value))
		snprintf(s->since_id, sizeof(s->since_id), "%s", value);
	s->loaded = 1;
	/* Spread the first polls of several queries over a few seconds. */
	search_schedule(s, (int64_t)(s->index % 10) * 500, search_poll);
}

/* Timer or start(): read the query's cursor. arg: the x_search. */
static void search_load(void *arg)
{
	x_search *s = arg;

	s->timer = NULL;
	if (s->ch->stopped)
		return;
	s->ch->host->state_get(s->ch->inst, s->state_key, search_loaded, s);
}

/* "search:" and the first 16 bytes of SHA-256(query) in hex: stable across
 * restarts and reorderings of the list, short whatever the query. */
static void state_key_for(const char *query, char out[48])
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)query, strlen(query), md);
	memcpy(out, "search:", 7);
	pu_hex_encode(md, 16, out + 7);
}

static int x_start(void *self)
{
	x_channel *ch = self;

	if (ch->cfg.n_queries == 0)
		return 0;
	if (!PARLEY_HAS_FIELD(ch->host, parley_host, emit_commit)) {
		ch->host->log(ch->inst, PARLEY_LOG_ERROR,
		              "this parleyd is too old for search_queries (plugin ABI 1.1 needed)");
		return -1;
	}
	ch->searches = calloc(ch->cfg.n_queries, sizeof(*ch->searches));
	if (ch->searches == NULL)
		return -1;
	ch->n_searches = ch->cfg.n_queries;
	for (size_t i = 0; i < ch->n_searches; i++) {
		x_search *s = &ch->searches[i];
		s->ch = ch;
		s->index = i;
		s->query = pu_strdup(ch->cfg.queries[i]);
		if (s->query == NULL)
			return -1;
		state_key_for(s->query, s->state_key);
	}
	for (size_t i = 0; i < ch->n_searches; i++)
		search_load(&ch->searches[i]);
	return 0;
}

static void x_stop(void *self)
{
	x_channel *ch = self;

	ch->stopped = 1;
	for (size_t i = 0; i < ch->n_searches; i++) {
		if (ch->searches[i].timer != NULL) {
			ch->host->timer_cancel(ch->searches[i].timer);
			ch->searches[i].timer = NULL;
		}
	}
}

/* ------------------------------------------------------------------------ */
/* Outbound                                                                 */
/* ------------------------------------------------------------------------ */

/* arg: the x_send_ctx, freed here. response: borrowed. */
static void x_send_done(void *arg, const parley_http_response *response)
{
	x_send_ctx *ctx = arg;
	x_channel *ch = ctx->ch;
	const parley_host *host = ch->host;
	const unsigned char *body;
	size_t len = 0;
	x_send_result r;

	body = host->http_response_body(response, &len);
	x_classify_send(host->http_response_status(response), host->http_response_error(response),
	                host->http_response_header(response, "x-rate-limit-reset"), body, len,
	                ctx->is_dm ? "direct message" : "reply", host->now_ms(), &r);
	if (r.outcome == PARLEY_OK) {
		if (r.external_id[0] != '\0')
			host->delivery_set_external_id(ctx->d, r.external_id);
		if (ctx->private_reply) {
			char thread[X_MAX_DM_CONVERSATION_LEN + 1];
			/* The inbound parser computes DM threads from the two user
			 * ids; use exactly that so the customer's answer lands in
			 * the new conversation. X's dm_conversation_id is the same
			 * text for a 1:1 chat. */
			if (x_dm_conversation_id(ch->cfg.user_id, ctx->recipient, thread)) {
				if (r.dm_conversation_id[0] != '\0' &&
				    strcmp(r.dm_conversation_id, thread) != 0)
					host->log(ch->inst, PARLEY_LOG_WARN,
					          "X named the DM conversation %s, expected %s",
					          r.dm_conversation_id, thread);
				host->delivery_set_thread_id(ctx->d, thread);
			}
		}
		host->counter_add(ch->inst, "x_sent_total", 1);
		host->delivery_complete(ctx->d, PARLEY_OK, 0, NULL);
	} else {
		host->log(ch->inst, r.outcome == PARLEY_RETRY ? PARLEY_LOG_INFO : PARLEY_LOG_WARN,
		          "%s", r.reason);
		host->delivery_complete(ctx->d, r.outcome, r.retry_at_ms, r.reason);
	}
	free(ctx);
}

/* POST body to url signed as the brand. ctx: on 0 owned by x_send_done. */
static int start_post(x_channel *ch, const char *url, const char *body, x_send_ctx *ctx)
{
	char nonce[33], timestamp[24];
	char *auth;
	int rc;

	if (!x_oauth_nonce(nonce))
		return -1;
	snprintf(timestamp, sizeof(timestamp), "%" PRId64, ch->host->now_ms() / 1000);
	/* A JSON body is not part of the OAuth 1.0a signature (only form
	 * bodies are), and these URLs have no query: no extra parameters. */
	x_oauth_request oa = {
		.method = "POST",
		.base_url = url,
		.consumer_key = ch->cfg.consumer_key,
		.consumer_secret = ch->cfg.consumer_secret,
		.token = ch->cfg.access_token,
		.token_secret = ch->cfg.access_token_secret,
		.nonce = nonce,
		.timestamp = timestamp,
	};
	auth = x_oauth_header(&oa);
	if (auth == NULL)
		return -1;
	const char *headers[] = { auth, "Content-Type: application/json", X_USER_AGENT, NULL };
	parley_http_call call = {
		.size = sizeof(call),
		.method = "POST",
		.url = url,
		.headers = headers,
		.body = body,
		.body_len = strlen(body),
		.timeout_ms = ch->cfg.timeout_ms,
		.insecure_skip_verify = !ch->cfg.tls_verify,
	};
	rc = ch->host->http_request(ch->inst, &call, x_send_done, ctx);
	free_secret(auth);
	return rc;
}

/* msg: borrowed. d: owned by the core until delivery_complete, called
 * exactly once here or from x_send_done. */
static void x_send(void *self, const parley_outbound_message *msg, parley_delivery *d)
{
	x_channel *ch = self;
	const parley_host *host = ch->host;
	parley_send_kind kind = PARLEY_HAS_FIELD(msg, parley_outbound_message, kind)
	                                ? msg->kind : PARLEY_SEND_MESSAGE;
	/* A private conversation is a DM chat; a move to private is a DM to
	 * the public post's author. */
	int dm = kind == PARLEY_SEND_PRIVATE_REPLY || msg->visibility == PARLEY_VISIBILITY_PRIVATE;
	/* A reply answers the customer's latest post, else the thread's root. */
	const char *target = msg->in_reply_to != NULL ? msg->in_reply_to : msg->thread_id;
	x_send_request req;
	x_send_ctx *ctx;

	if (kind == PARLEY_SEND_PRIVATE_REPLY &&
	    !PARLEY_HAS_FIELD(host, parley_host, delivery_set_thread_id)) {
		host->delivery_complete(d, PARLEY_FAIL, 0, "this parleyd cannot move to private");
		return;
	}
	switch (x_build_send(ch->cfg.api_url, dm, msg->recipient_id, target, msg->text, &req)) {
	case X_BUILD_OK:
		break;
	case X_BUILD_BAD_TEXT:
		host->delivery_complete(d, PARLEY_FAIL, 0,
		                        "the message is empty or not valid UTF-8 text");
		return;
	case X_BUILD_BAD_TARGET:
		host->delivery_complete(d, PARLEY_FAIL, 0,
		                        dm ? "the recipient is not an X user id"
		                           : "there is no X post id to reply to");
		return;
	case X_BUILD_NO_MEMORY:
	default:
		host->delivery_complete(d, PARLEY_RETRY, 0, "out of memory");
		return;
	}

	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL) {
		host->delivery_complete(d, PARLEY_RETRY, 0, "out of memory");
	} else {
		ctx->ch = ch;
		ctx->d = d;
		ctx->is_dm = dm;
		ctx->private_reply = kind == PARLEY_SEND_PRIVATE_REPLY;
		if (dm)
			snprintf(ctx->recipient, sizeof(ctx->recipient), "%s", msg->recipient_id);
		if (start_post(ch, req.url, req.body, ctx) == 0)
			ctx = NULL;   /* x_send_done frees it */
		else
			host->delivery_complete(d, PARLEY_RETRY, 0, "could not start the X API request");
	}
	free(ctx);
	free(req.url);
	free(req.body);
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

static int same_queries(const x_settings *a, const x_settings *b)
{
	if (a->n_queries != b->n_queries)
		return 0;
	for (size_t i = 0; i < a->n_queries; i++) {
		if (strcmp(a->queries[i], b->queries[i]) != 0)
			return 0;
	}
	return 1;
}

/* Pollers own copies of their queries and read the rest of the settings
 * at each poll, but adding or removing one takes a restart. */
static int x_check_reload(void *self, const void *next)
{
	x_channel *ch = self;

	if (!same_queries(&ch->cfg, next)) {
		ch->host->config_error(ch->inst, "search_queries", "changing the list takes a restart");
		return -1;
	}
	return 0;
}

static void x_finish(void *self)
{
	x_channel *ch = self;

	/* No timer is cancelled here: stop() cancelled ours, and any the core
	 * still held when it shut down it freed itself. */
	for (size_t i = 0; i < ch->n_searches; i++) {
		x_search *s = &ch->searches[i];
		search_drop_pages(s);
		free(s->query);
	}
	free(ch->searches);
}

static const pu_instance_class x_class = {
	PU_INSTANCE_LAYOUT(x_channel, cfg),
	.check_reload = x_check_reload,
	.finish = x_finish,
	.read = settings_read,
	.free = settings_free,
	.announce = settings_announce,
};

PU_INSTANCE_FUNCTIONS(x, x_class)

static const parley_channel_ops x_ops = {
	.size = sizeof(parley_channel_ops),
	.handle_request = x_handle_request,
	.send = x_send,
};

static const parley_plugin_descriptor x_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_CHANNEL,
	.name = "x",
	.version = X_VERSION,
	.description = "X (Twitter): mentions, replies, DMs and search listening",
	.config_keys = x_config_keys,
	.create = x_create,
	.start = x_start,
	.reload = x_reload,
	.stop = x_stop,
	.destroy = x_destroy,
	.channel = &x_ops,
};

PARLEY_PLUGIN_ENTRY(&x_descriptor)
