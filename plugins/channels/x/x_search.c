/* x_search.c - the x channel's listening: each configured search query is
 * polled on a timer through GET /2/tweets/search/recent (app-only bearer
 * token), up to X_SEARCH_MAX_PAGES pages a poll; the matches and the
 * query's since_id cursor are committed together, so the cursor moves
 * exactly with the stored events. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/sha.h>

#include "parley/parley.h"
#include "../../common/plugin_util.h"
#include "x_parse.h"
#include "x_channel.h"

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
	search_schedule(s, x_interval_ms(&ch->cfg), search_poll);
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
		search_schedule(s, x_interval_ms(&ch->cfg), search_poll);
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
			search_schedule(s, x_interval_ms(&ch->cfg), search_poll);
			return;
		}
		emitted += stats.emitted;
		x_log_stats(ch, &stats, "search");
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
		int64_t wait = at > 0 ? at - host->now_ms() : x_interval_ms(&ch->cfg);
		host->log(ch->inst, PARLEY_LOG_WARN, "search %zu: rate limited; next poll in %" PRId64
		          " ms", s->index, wait);
		host->counter_add(ch->inst, "x_search_rate_limited_total", 1);
		search_drop_pages(s);
		search_schedule(s, wait > x_interval_ms(&ch->cfg) ? wait : x_interval_ms(&ch->cfg),
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
		search_schedule(s, x_interval_ms(&ch->cfg), search_poll);
		return;
	}
	s->pages[s->n_pages] = malloc(len);
	if (s->pages[s->n_pages] == NULL) {
		search_drop_pages(s);
		search_schedule(s, x_interval_ms(&ch->cfg), search_poll);
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
			.timeout_ms = (long)ch->cfg.timeout_ms,
			.insecure_skip_verify = !ch->cfg.tls_verify,
		};
		rc = ch->host->http_request(ch->inst, &call, search_answered, s);
	}
	free(url);
	x_free_secret(auth_header);
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
		search_schedule(s, x_interval_ms(&s->ch->cfg), search_poll);
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
		search_schedule(s, x_interval_ms(&ch->cfg), search_load);
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

int x_search_start(x_channel *ch, const char *const *queries, size_t n)
{
	ch->searches = calloc(n, sizeof(*ch->searches));
	if (ch->searches == NULL)
		return -1;
	ch->n_searches = n;
	for (size_t i = 0; i < ch->n_searches; i++) {
		x_search *s = &ch->searches[i];
		s->ch = ch;
		s->index = i;
		s->query = pu_strdup(queries[i]);
		if (s->query == NULL)
			return -1;
		state_key_for(s->query, s->state_key);
	}
	for (size_t i = 0; i < ch->n_searches; i++)
		search_load(&ch->searches[i]);
	return 0;
}

void x_search_stop(x_channel *ch)
{
	ch->stopped = 1;
	for (size_t i = 0; i < ch->n_searches; i++) {
		if (ch->searches[i].timer != NULL) {
			ch->host->timer_cancel(ch->searches[i].timer);
			ch->searches[i].timer = NULL;
		}
	}
}

void x_search_free(x_channel *ch)
{
	/* No timer is cancelled here: stop() cancelled ours, and any the core
	 * still held when it shut down it freed itself. */
	for (size_t i = 0; i < ch->n_searches; i++) {
		x_search *s = &ch->searches[i];
		search_drop_pages(s);
		free(s->query);
	}
	free(ch->searches);
	ch->searches = NULL;
	ch->n_searches = 0;
}
