/* telegram_poll.c - the telegram channel's polling mode: getUpdates long
 * polling from the stored offset. The updates of one answer and the next
 * offset are committed in one transaction (emit_begin / emit_commit), so the
 * offset moves exactly with the stored updates; errors back off from
 * poll_retry_ms, doubling up to a minute. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley/parley.h"
#include "../../common/plugin_util.h"
#include "telegram_parse.h"
#include "telegram_channel.h"

static void poll_now(telegram_channel *ch);

static void poll_timer_fired(void *arg)
{
	telegram_channel *ch = arg;

	ch->timer = NULL;   /* the core freed it */
	if (ch->stopping)
		return;
	if (ch->offset_known)
		poll_now(ch);
	else
		tg_poll_start(ch);
}

/* Try again after delay_ms. */
static void poll_later(telegram_channel *ch, int64_t delay_ms)
{
	if (ch->stopping || ch->timer != NULL)
		return;
	ch->timer = ch->host->timer_start(ch->inst, (uint64_t)delay_ms, poll_timer_fired, ch);
	if (ch->timer == NULL)
		ch->host->log(ch->inst, PARLEY_LOG_ERROR, "could not start a timer: polling stops");
}

/* After a failure: wait poll_retry_ms, doubling up to a minute. */
static void poll_backoff(telegram_channel *ch, const char *what)
{
	int64_t max = ch->cfg.poll_retry_ms > TELEGRAM_POLL_BACKOFF_MAX_MS
	              ? ch->cfg.poll_retry_ms : TELEGRAM_POLL_BACKOFF_MAX_MS;
	char line[400];

	ch->backoff_ms = ch->backoff_ms == 0 ? ch->cfg.poll_retry_ms : ch->backoff_ms * 2;
	if (ch->backoff_ms > max)
		ch->backoff_ms = max;
	snprintf(line, sizeof(line), "%s", what);
	tg_scrub_token(ch, line, sizeof(line));
	ch->host->counter_add(ch->inst, "telegram_poll_errors_total", 1);
	ch->host->log(ch->inst, PARLEY_LOG_WARN, "%s; retrying in %" PRId64 " ms", line,
	              ch->backoff_ms);
	poll_later(ch, ch->backoff_ms);
}

/* The committed page's done callback. arg: the COMMIT call, freed here. */
static void commit_done(void *arg, int ok)
{
	tg_call *c = arg;
	telegram_channel *ch = c->ch;
	int64_t next = c->next_offset;

	tg_call_finish(c);
	if (ch == NULL)
		return;
	if (!ok) {
		/* Nothing was written: poll again from the old offset. The same
		 * updates come back; their dedupe keys make that safe. */
		poll_backoff(ch, "getUpdates page not stored");
		return;
	}
	/* Only now, with the page stored, does the cursor move. */
	ch->offset = next;
	ch->backoff_ms = 0;
	if (!ch->stopping)
		poll_now(ch);
}

typedef struct tg_batch_emit {
	const parley_host *host;
	parley_emit_batch *batch;
} tg_batch_emit;

/* ev: borrowed; emit_event copies it. */
static int emit_into_batch(void *arg, const parley_event *ev)
{
	tg_batch_emit *e = arg;

	return e->host->emit_event(e->batch, ev) == 0 ? 0 : -1;
}

/* A successful getUpdates answer: store its updates and the next offset
 * together. body: borrowed. */
static void take_updates(telegram_channel *ch, const unsigned char *body, size_t len)
{
	const parley_host *host = ch->host;
	tg_batch_emit e = { host, NULL };
	telegram_parse_opts opts = tg_parse_opts(&ch->cfg);
	telegram_poll_summary sum;
	char why[300], line[360], value[32];
	tg_call *c;

	e.batch = host->emit_begin(ch->inst);
	if (e.batch == NULL) {
		poll_backoff(ch, "could not begin a batch of events");
		return;
	}
	if (!telegram_parse_updates(body, len, ch->offset, &opts, emit_into_batch, &e, &sum,
	                            why, sizeof(why))) {
		host->emit_abort(e.batch);
		snprintf(line, sizeof(line), "getUpdates failed: %s", why);
		poll_backoff(ch, line);
		return;
	}
	if (sum.skipped > 0) {
		host->counter_add(ch->inst, "telegram_rejected_total", sum.skipped);
		host->log(ch->inst, PARLEY_LOG_WARN, "getUpdates: %zu unusable update(s) skipped",
		          sum.skipped);
	}
	if (sum.ignored > 0)
		host->counter_add(ch->inst, "telegram_ignored_total", sum.ignored);
	if (sum.updates == 0 || sum.next_offset == ch->offset) {
		host->emit_abort(e.batch);
		ch->backoff_ms = 0;
		/* A long poll that came back empty waited already; a short poll
		 * (poll_timeout_s 0) waits poll_retry_ms between calls. */
		if (ch->cfg.poll_timeout_s == 0)
			poll_later(ch, ch->cfg.poll_retry_ms);
		else
			poll_now(ch);
		return;
	}
	c = tg_call_new(ch, TG_CALL_COMMIT);
	if (c == NULL) {
		host->emit_abort(e.batch);
		poll_backoff(ch, "out of memory");
		return;
	}
	c->next_offset = sum.next_offset;
	host->counter_add(ch->inst, "telegram_events_total", sum.emitted);
	snprintf(value, sizeof(value), "%" PRId64, sum.next_offset);
	host->emit_commit(e.batch, TELEGRAM_OFFSET_KEY, value, commit_done, c);
}

/* getUpdates answered. arg: the POLL call, freed here. response: borrowed. */
static void poll_done(void *arg, const parley_http_response *response)
{
	tg_call *c = arg;
	telegram_channel *ch = c->ch;
	const parley_host *host;
	const unsigned char *body;
	long status;
	size_t len = 0;
	char line[400], desc[300];

	tg_call_finish(c);
	if (ch == NULL || ch->stopping)
		return;
	host = ch->host;
	status = host->http_response_status(response);
	body = host->http_response_body(response, &len);
	if (status == 200) {
		take_updates(ch, body, len);
		return;
	}
	if (status == 0) {
		const char *err = host->http_response_error(response);
		snprintf(line, sizeof(line), "getUpdates failed: %s", err != NULL ? err : "transport error");
	} else {
		telegram_describe(body, len, desc, sizeof(desc));
		/* 409: a webhook is set, or another process polls this bot. */
		snprintf(line, sizeof(line), "getUpdates failed: Telegram answered %ld%s%s%s", status,
		         desc[0] != '\0' ? ": " : "", desc,
		         status == 401 || status == 404 ? " (check bot_token)" : "");
	}
	poll_backoff(ch, line);
}

/* One getUpdates call from the current offset. */
static void poll_now(telegram_channel *ch)
{
	telegram_parse_opts opts = tg_parse_opts(&ch->cfg);
	char *url = NULL, *body = NULL;
	tg_call *c;

	if (ch->stopping)
		return;
	url = telegram_method_url(ch->cfg.api_url, ch->cfg.token, "getUpdates");
	body = telegram_get_updates_body(ch->offset, ch->cfg.poll_timeout_s, &opts);
	c = tg_call_new(ch, TG_CALL_POLL);
	if (url == NULL || body == NULL || c == NULL) {
		if (c != NULL)
			tg_call_finish(c);
		poll_backoff(ch, "getUpdates failed: out of memory");
	} else {
		const char *headers[] = {
			"Content-Type: application/json",
			"User-Agent: parley-telegram/" TELEGRAM_VERSION,
			NULL
		};
		parley_http_call call = {
			.size = sizeof(call),
			.method = "POST",
			.url = url,
			.headers = headers,
			.body = body,
			.body_len = strlen(body),
			/* The long poll holds the answer up to poll_timeout_s: the
			 * transfer limit must exceed it. */
			.timeout_ms = (long)(ch->cfg.poll_timeout_s * 1000 + ch->cfg.timeout_ms),
		};
		if (ch->host->http_request(ch->inst, &call, poll_done, c) != 0) {
			tg_call_finish(c);
			poll_backoff(ch, "getUpdates failed: could not start the request");
		}
	}
	pu_wipe(url, url != NULL ? strlen(url) : 0);
	free(url);
	free(body);
}

/* The stored offset arrived. arg: the LOAD call, freed here. value:
 * borrowed, NULL when nothing is stored yet. */
static void offset_loaded(void *arg, int ok, const char *value)
{
	tg_call *c = arg;
	telegram_channel *ch = c->ch;
	int64_t v = 0;
	char *end = NULL;

	tg_call_finish(c);
	if (ch == NULL || ch->stopping)
		return;
	if (!ok) {
		poll_backoff(ch, "could not read the stored getUpdates offset");
		return;
	}
	if (value != NULL) {
		v = strtoll(value, &end, 10);
		if (end == value || *end != '\0' || v < 0) {
			ch->host->log(ch->inst, PARLEY_LOG_WARN,
			              "stored offset is not a number: starting from Telegram's oldest "
			              "unconfirmed update");
			v = 0;
		}
	}
	ch->offset = v;
	ch->offset_known = 1;
	ch->backoff_ms = 0;
	poll_now(ch);
}

void tg_poll_start(telegram_channel *ch)
{
	tg_call *c = tg_call_new(ch, TG_CALL_LOAD);

	if (c == NULL) {
		poll_backoff(ch, "out of memory");
		return;
	}
	ch->host->state_get(ch->inst, TELEGRAM_OFFSET_KEY, offset_loaded, c);
}
