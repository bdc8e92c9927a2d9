/* slack.c - the "slack" notifier: notices for people, posted to a Slack
 * incoming webhook.
 *
 * Slack accepts about one message a second per webhook, so posts are paced:
 * at most one POST per min_interval_ms, and never two at once. Notices wait
 * in a queue (each holds its delivery). When the queue holds no more than
 * coalesce_after notices, the oldest is posted on its own; when it holds
 * more, one summary message covers all of them, and that one answer
 * completes every delivery it covers. Nothing is dropped.
 *
 * The webhook URL is the credential (Slack has no other authentication): it
 * is never logged and never put into a delivery's reason.
 *
 * Like any third-party plugin it uses only parley/parley.h and jansson. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

#include "parley/parley.h"
#include "../../common/plugin_util.h"
#include "../../common/instance.h"
#include "../../common/pacer.h"
#include "../../common/utf8.h"

#define SLACK_VERSION "0.1.0"
#define SLACK_MAX_INTERVAL_MS 600000
#define SLACK_MAX_COALESCE 10000
#define SLACK_MAX_TIMEOUT_MS 600000
#define SLACK_MAX_RETRY_AFTER_S 86400   /* a larger Retry-After is capped */
#define SLACK_HOLD_MAX_MS 5000          /* longer rate-limit pauses hand jobs back */
#define SLACK_REASON_BODY_BYTES 200     /* body excerpt in a reason */
#define SLACK_TITLE_BYTES 300           /* a title is one line */
#define SLACK_TEXT_BYTES 3000           /* a notice's text in a single post */
#define SLACK_SUMMARY_GROUPS 5          /* "12 conversation.created on x" lines */
#define SLACK_SUMMARY_TITLES 5          /* titles listed in a summary */
#define SLACK_SUMMARY_TITLE_BYTES 150

/* One instance's settings, filled and checked by the core from the table
 * below (ABI 1.3). Every field is owned by the core; a reload replaces the
 * struct as a whole. */
typedef struct slack_settings {
	const char *webhook_url;    /* a secret; the core wipes it when freed */
	const char *username;       /* NULL: the webhook's default */
	const char *icon_emoji;     /* NULL: the webhook's default */
	int64_t min_interval_ms;
	int64_t coalesce_after;
	int64_t timeout_ms;
} slack_settings;

/* A notice waiting for its post: copies of what the message needs. */
typedef struct slack_item {
	pu_pacer_item link;         /* in the pacer's queue, then in its post's */
	parley_delivery *d;         /* owned by the core until delivery_complete */
	char *kind;                 /* owned */
	char *title;                /* owned */
	char *text;                 /* owned */
	char *url;                  /* owned; NULL if none */
	char *channel_instance;     /* owned; NULL if none */
} slack_item;

typedef struct slack_notifier {
	const parley_host *host;    /* owned by the core; valid until destroy */
	parley_instance *inst;      /* owned by the core; valid until destroy */
	slack_settings cfg;         /* the core's struct, copied by the skeleton; its
	                             * strings stay the core's until the next reload */
	pu_pacer pacer;             /* notices not posted yet; one post at a time */
	int stopped;                /* stop() ran: post nothing new */
} slack_notifier;

/* One POST waiting for its answer; owns the items it covers. */
typedef struct slack_post {
	slack_notifier *sn;         /* borrowed: the core runs no callback after destroy */
	pu_queue items;          /* owned; completed by the answer */
	int summary;
} slack_post;

#define SS(field) offsetof(slack_settings, field)
#define SLACK_RELOAD PARLEY_SETTING_FLAG_RELOADABLE

/* Every setting is reloadable: a reload swaps the struct and gives the
 * pacer the new interval; the next post uses the rest. */
static const parley_setting slack_settings_table[] = {
	{ .name = "webhook_url", .type = PARLEY_SETTING_URL,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | PARLEY_SETTING_FLAG_SECRET | SLACK_RELOAD,
	  .offset = SS(webhook_url),
	  .description = "the Slack incoming webhook URL (it is the credential)" },
	{ .name = "min_interval_ms", .type = PARLEY_SETTING_INTEGER, .flags = SLACK_RELOAD,
	  .default_value = "1000", .min = 0, .max = SLACK_MAX_INTERVAL_MS,
	  .offset = SS(min_interval_ms), .description = "at most one post per this many ms" },
	{ .name = "coalesce_after", .type = PARLEY_SETTING_INTEGER, .flags = SLACK_RELOAD,
	  .default_value = "3", .min = 1, .max = SLACK_MAX_COALESCE,
	  .offset = SS(coalesce_after),
	  .description = "more notices than this waiting: post one summary" },
	{ .name = "timeout_ms", .type = PARLEY_SETTING_INTEGER, .flags = SLACK_RELOAD,
	  .default_value = "10000", .min = 1, .max = SLACK_MAX_TIMEOUT_MS,
	  .offset = SS(timeout_ms), .description = "whole-request limit for a post" },
	{ .name = "username", .type = PARLEY_SETTING_STRING, .flags = SLACK_RELOAD,
	  .min = 1, .max = INT64_MAX, .offset = SS(username),
	  .description = "name to post as, if the webhook allows it" },
	{ .name = "icon_emoji", .type = PARLEY_SETTING_STRING, .flags = SLACK_RELOAD,
	  .min = 1, .max = INT64_MAX, .offset = SS(icon_emoji),
	  .description = "icon to post with, e.g. :bell:" },
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

/* Append up to max bytes of s with Slack's three control characters
 * escaped, so a customer's "<!channel>" cannot ping anyone. Newlines become
 * spaces when one_line. s: borrowed, valid UTF-8. */
static void buf_escaped(pu_buf *b, const char *s, size_t max, int one_line)
{
	size_t len = pu_utf8_cut(s, strlen(s), max);

	for (size_t i = 0; i < len; i++) {
		switch (s[i]) {
		case '&': pu_buf_str(b, "&amp;"); break;
		case '<': pu_buf_str(b, "&lt;"); break;
		case '>': pu_buf_str(b, "&gt;"); break;
		case '\r':
		case '\n':
			pu_buf_str(b, one_line ? " " : "\n");
			break;
		default:
			pu_buf_add(b, s + i, 1);
		}
	}
	if (len < strlen(s))
		pu_buf_str(b, "\xE2\x80\xA6");   /* U+2026: it was cut */
}

static void buf_printf(pu_buf *b, const char *fmt, ...) PARLEY_PRINTF(2, 3);

static void buf_printf(pu_buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	pu_buf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* ------------------------------------------------------------------------ */
/* The queue                                                                */
/* ------------------------------------------------------------------------ */

static void item_free(slack_item *it)
{
	free(it->kind);
	free(it->title);
	free(it->text);
	free(it->url);
	free(it->channel_instance);
	free(it);
}

/* Complete every delivery in q with one outcome and free the items. */
static void queue_complete(slack_notifier *sn, pu_queue *q, parley_outcome outcome,
                           int64_t retry_at_ms, const char *reason)
{
	static const char *const counters[] = {
		[PARLEY_OK] = "slack_delivered_total",
		[PARLEY_RETRY] = "slack_retried_total",
		[PARLEY_FAIL] = "slack_failed_total",
	};
	uint64_t n = q->count;
	pu_pacer_item *l;

	while ((l = pu_queue_pop(q)) != NULL) {
		slack_item *it = PU_PACER_OWNER(l, slack_item, link);
		sn->host->delivery_complete(it->d, outcome, retry_at_ms, reason);
		item_free(it);
	}
	if (n > 0)
		sn->host->counter_add(sn->inst, counters[outcome], n);
}

/* ------------------------------------------------------------------------ */
/* Settings                                                                 */
/* ------------------------------------------------------------------------ */

static void settings_announce(void *self)
{
	const slack_notifier *sn = self;
	/* The URL itself is never logged: it is the credential. */
	sn->host->log(sn->inst, PARLEY_LOG_INFO,
	              "posting to the configured webhook_url: at most one post per %lld ms, "
	              "a summary when more than %lld notices wait",
	              (long long)sn->cfg.min_interval_ms, (long long)sn->cfg.coalesce_after);
}

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

/* "<title>\n<text>[\n<url>]" for one notice, escaped. Owned by the caller;
 * NULL when out of memory. */
static char *single_text(const slack_item *it)
{
	pu_buf b = { 0 };

	buf_escaped(&b, it->title, SLACK_TITLE_BYTES, 1);
	if (it->text[0] != '\0') {
		pu_buf_str(&b, "\n");
		buf_escaped(&b, it->text, SLACK_TEXT_BYTES, 0);
	}
	if (it->url != NULL) {
		pu_buf_str(&b, "\n");
		buf_escaped(&b, it->url, SLACK_TITLE_BYTES, 1);
	}
	if (b.failed) {
		free(b.data);
		return NULL;
	}
	return b.data;
}

/* How many items of q share one kind and channel instance. */
typedef struct slack_group {
	const slack_item *first;    /* borrowed from the queue */
	size_t count;
} slack_group;

static int same_group(const slack_item *a, const slack_item *b)
{
	if (strcmp(a->kind, b->kind) != 0)
		return 0;
	if (a->channel_instance == NULL || b->channel_instance == NULL)
		return a->channel_instance == b->channel_instance;
	return strcmp(a->channel_instance, b->channel_instance) == 0;
}

/* The groups of q in order of first appearance, owned by the caller (NULL
 * when out of memory); *n_out receives their number. */
static slack_group *group_items(const pu_queue *q, size_t *n_out)
{
	slack_group *groups = calloc(q->count, sizeof(*groups));
	size_t n = 0;

	if (groups == NULL)
		return NULL;
	for (pu_pacer_item *l = q->head; l != NULL; l = l->next) {
		const slack_item *it = PU_PACER_OWNER(l, slack_item, link);
		size_t g = 0;
		while (g < n && !same_group(groups[g].first, it))
			g++;
		if (g == n)
			groups[n++].first = it;
		groups[g].count++;
	}
	*n_out = n;
	return groups;
}

/* One summary covering every item of q:
 *   14 new notices: 12 conversation.created on facebook-main, 2 delivery.failed
 *   • <first title>            (a link when the notice has a URL)
 *   … and 9 more
 * Bounded: at most SLACK_SUMMARY_GROUPS groups and SLACK_SUMMARY_TITLES
 * titles. Owned by the caller; NULL when out of memory. */
static char *summary_text(const pu_queue *q)
{
	pu_buf b = { 0 };
	size_t n_groups = 0, listed = 0, other = 0;
	slack_group *groups = group_items(q, &n_groups);

	if (groups == NULL)
		return NULL;
	buf_printf(&b, "%zu new notices: ", q->count);
	for (size_t g = 0; g < n_groups; g++) {
		if (g >= SLACK_SUMMARY_GROUPS) {
			other += groups[g].count;
			continue;
		}
		buf_printf(&b, "%s%zu ", g > 0 ? ", " : "", groups[g].count);
		buf_escaped(&b, groups[g].first->kind, 100, 1);
		if (groups[g].first->channel_instance != NULL) {
			pu_buf_str(&b, " on ");
			buf_escaped(&b, groups[g].first->channel_instance, 100, 1);
		}
	}
	if (other > 0)
		buf_printf(&b, ", %zu other", other);
	free(groups);

	for (pu_pacer_item *l = q->head; l != NULL && listed < SLACK_SUMMARY_TITLES;
	     l = l->next, listed++) {
		const slack_item *it = PU_PACER_OWNER(l, slack_item, link);
		/* A link only for a URL that cannot break Slack's <url|text> form. */
		int link = it->url != NULL && strpbrk(it->url, "|<> ") == NULL;
		pu_buf_str(&b, "\n\xE2\x80\xA2 ");   /* U+2022 bullet */
		if (link) {
			pu_buf_str(&b, "<");
			buf_escaped(&b, it->url, 1000, 1);
			pu_buf_str(&b, "|");
		}
		buf_escaped(&b, it->title, SLACK_SUMMARY_TITLE_BYTES, 1);
		if (link)
			pu_buf_str(&b, ">");
	}
	if (q->count > listed)
		buf_printf(&b, "\n\xE2\x80\xA6 and %zu more", q->count - listed);
	if (b.failed) {
		free(b.data);
		return NULL;
	}
	return b.data;
}

/* The JSON body for text (borrowed), owned by the caller; NULL on failure. */
static char *message_body(const slack_notifier *sn, const char *text)
{
	json_t *payload = json_pack("{s:s, s:s?, s:s?}", "text", text,
	                            "username", sn->cfg.username,
	                            "icon_emoji", sn->cfg.icon_emoji);
	char *body;

	if (payload == NULL)
		return NULL;
	/* "s?" writes null for an absent option; Slack wants it left out. */
	if (sn->cfg.username == NULL)
		json_object_del(payload, "username");
	if (sn->cfg.icon_emoji == NULL)
		json_object_del(payload, "icon_emoji");
	body = json_dumps(payload, JSON_COMPACT);
	json_decref(payload);
	return body;
}

/* ------------------------------------------------------------------------ */
/* Pacing and posting                                                       */
/* ------------------------------------------------------------------------ */

/* min_interval_ms between posts (0: none, a millisecond for the bucket),
 * never two at once. */
static pu_pacer_rate pacer_rate(const void *settings)
{
	const slack_settings *cfg = settings;
	int64_t interval = cfg->min_interval_ms > 0 ? cfg->min_interval_ms : 1;

	return (pu_pacer_rate){ .tokens = 1, .period_ms = interval, .burst = 1,
	                        .max_in_flight = 1, .max_wait_ms = SLACK_HOLD_MAX_MS };
}

/* Map Slack's answer to one outcome for every delivery the post covers.
 * response: borrowed. The reason never contains the URL. */
static void post_done(void *arg, const parley_http_response *response)
{
	slack_post *post = arg;
	slack_notifier *sn = post->sn;
	const parley_host *host = sn->host;
	long status = host->http_response_status(response);
	const unsigned char *body;
	size_t len = 0;
	char text[SLACK_REASON_BODY_BYTES + 1];
	char reason[512];

	body = host->http_response_body(response, &len);
	while (body != NULL && len > 0 && body[len - 1] <= 0x20)
		len--;   /* "ok\n" is still ok */
	pu_excerpt(body, len, SLACK_REASON_BODY_BYTES, text, sizeof(text));

	if (status == 200 && strcmp(text, "ok") == 0) {
		queue_complete(sn, &post->items, PARLEY_OK, 0, NULL);
	} else if (status == 0) {
		const char *error = host->http_response_error(response);
		snprintf(reason, sizeof(reason), "Slack post failed: %s",
		         error != NULL ? error : "transport error");
		queue_complete(sn, &post->items, PARLEY_RETRY, 0, reason);
	} else if (status == 429) {
		int64_t wait_s = pu_retry_after_seconds(
			host->http_response_header(response, "Retry-After"), SLACK_MAX_RETRY_AFTER_S);
		int64_t now = host->now_ms();
		int64_t retry_at = wait_s > 0 ? now + wait_s * 1000 : 0;
		/* Without Retry-After, pause one interval (at least a second):
		 * Slack's limit is about one message a second. */
		int64_t pause = wait_s > 0 ? wait_s * 1000 : pu_pacer_default_pause_ms(&sn->pacer);
		host->counter_add(sn->inst, "slack_rate_limited_total", 1);
		pu_pacer_pause(&sn->pacer, now + pause);
		snprintf(reason, sizeof(reason), "Slack answered 429 (rate limited%s)",
		         wait_s > 0 ? ", honouring Retry-After" : "");
		queue_complete(sn, &post->items, PARLEY_RETRY, retry_at, reason);
	} else if (status == 408 || status >= 500 || status == 200) {
		snprintf(reason, sizeof(reason), "Slack answered %ld%s%s", status,
		         text[0] != '\0' ? ": " : "", text);
		queue_complete(sn, &post->items, PARLEY_RETRY, 0, reason);
	} else {
		/* 400 (bad payload), 403 (refused), 404/410 (webhook revoked,
		 * channel gone): no retry will help; an operator must act. */
		snprintf(reason, sizeof(reason), "Slack answered %ld%s%s", status,
		         text[0] != '\0' ? ": " : "", text);
		if (status == 403 || status == 404 || status == 410)
			host->log(sn->inst, PARLEY_LOG_WARN, "%s: check the webhook_url and its channel",
			          reason);
		queue_complete(sn, &post->items, PARLEY_FAIL, 0, reason);
	}
	free(post);
	pu_pacer_done(&sn->pacer);
}

/* Start one POST of body (borrowed; the core copies the call). post: on 0
 * owned by post_done, else still the caller's. */
static int start_post(slack_notifier *sn, const char *body, slack_post *post)
{
	const char *headers[] = {
		"Content-Type: application/json",
		"User-Agent: parley-slack/" SLACK_VERSION,
		NULL
	};
	parley_http_call call = {
		.size = sizeof(call),
		.method = "POST",
		.url = sn->cfg.webhook_url,
		.headers = headers,
		.body = body,
		.body_len = strlen(body),
		.timeout_ms = sn->cfg.timeout_ms,
	};
	return sn->host->http_request(sn->inst, &call, post_done, post);
}

/* Give one item back to the core (a long pause, stop, no memory). */
static void hand_back(void *owner, pu_pacer_item *item, int64_t retry_at_ms, const char *reason)
{
	slack_notifier *sn = owner;
	pu_queue one = { 0 };

	pu_queue_push(&one, item, false);
	queue_complete(sn, &one, PARLEY_RETRY, retry_at_ms, reason);
}

/* The pacer's turn for first (the oldest waiting item): POST it alone, or
 * when more than coalesce_after wait, one summary covering all of them.
 * false when nothing was started (the items are completed then). */
static bool post_next(void *owner, pu_pacer_item *first)
{
	slack_notifier *sn = owner;
	slack_post *post = calloc(1, sizeof(*post));
	char *text = NULL, *body = NULL;
	bool started = false;

	if (post == NULL) {
		hand_back(sn, first, 0, "out of memory");
		return false;
	}
	post->sn = sn;
	pu_queue_push(&post->items, first, false);
	if ((int64_t)sn->pacer.waiting.count + 1 > sn->cfg.coalesce_after) {
		while ((first = pu_pacer_take(&sn->pacer)) != NULL)
			pu_queue_push(&post->items, first, false);
		post->summary = 1;
		text = summary_text(&post->items);
	} else {
		text = single_text(PU_PACER_OWNER(post->items.head, slack_item, link));
	}
	body = text != NULL ? message_body(sn, text) : NULL;
	if (body == NULL) {
		queue_complete(sn, &post->items, PARLEY_RETRY, 0, "out of memory building the message");
		free(post);
	} else {
		/* Counted before starting: once started, post belongs to post_done. */
		sn->host->counter_add(sn->inst, "slack_posts_total", 1);
		if (post->summary)
			sn->host->counter_add(sn->inst, "slack_summaries_total", 1);
		started = start_post(sn, body, post) == 0;
		if (!started) {
			queue_complete(sn, &post->items, PARLEY_RETRY, 0,
			               "could not start the Slack request");
			free(post);
		}
	}
	free(body);
	free(text);
	return started;
}

static void item_link_free(pu_pacer_item *item)
{
	item_free(PU_PACER_OWNER(item, slack_item, link));
}

/* ------------------------------------------------------------------------ */
/* Operations                                                               */
/* ------------------------------------------------------------------------ */

/* A copy of what the messages need from n (borrowed); NULL when out of
 * memory. *bad is set when a field is not valid UTF-8. */
static slack_item *item_from_notice(const parley_notice *n, int *bad)
{
	const char *ci = NULL;
	slack_item *it;

	*bad = 0;
	if (n->conversation != NULL)
		ci = n->conversation->channel_instance;
	if ((n->kind != NULL && !pu_utf8_valid(n->kind)) || (n->title != NULL && !pu_utf8_valid(n->title)) ||
	    (n->text != NULL && !pu_utf8_valid(n->text)) || (n->url != NULL && !pu_utf8_valid(n->url)) ||
	    (ci != NULL && !pu_utf8_valid(ci))) {
		*bad = 1;
		return NULL;
	}
	it = calloc(1, sizeof(*it));
	if (it == NULL)
		return NULL;
	it->kind = pu_strdup(n->kind != NULL ? n->kind : "notice");
	it->title = pu_strdup(n->title != NULL ? n->title : "");
	it->text = pu_strdup(n->text != NULL ? n->text : "");
	it->url = n->url != NULL && n->url[0] != '\0' ? pu_strdup(n->url) : NULL;
	it->channel_instance = pu_strdup(ci);
	if (it->kind == NULL || it->title == NULL || it->text == NULL ||
	    (n->url != NULL && n->url[0] != '\0' && it->url == NULL) ||
	    (ci != NULL && it->channel_instance == NULL)) {
		item_free(it);
		return NULL;
	}
	return it;
}

/* n: borrowed for the call. d: owned by the core until delivery_complete,
 * which runs exactly once: here, from post_done, or from stop. */
static void slack_deliver(void *self, const parley_notice *n, parley_delivery *d)
{
	slack_notifier *sn = self;
	slack_item *it;
	int bad;

	if (sn->stopped) {
		sn->host->delivery_complete(d, PARLEY_RETRY, 0, "shutting down");
		return;
	}
	it = item_from_notice(n, &bad);
	if (it == NULL) {
		sn->host->delivery_complete(d, bad ? PARLEY_FAIL : PARLEY_RETRY, 0,
		                            bad ? "the notice is not valid UTF-8" : "out of memory");
		return;
	}
	it->d = d;
	pu_pacer_push(&sn->pacer, &it->link, false);
	pu_pacer_kick(&sn->pacer);
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

static const pu_instance_class slack_class = {
	PU_INSTANCE_LAYOUT(slack_notifier, cfg),
	.host_needs = PU_HOST_NEEDS(config_settings),
	.too_old = "this parleyd is too old for the slack plugin",
	/* The core fills and checks the settings from the table above. A
	 * reload takes effect at the next post: a post in flight holds no
	 * pointer into the settings (the core copied the call). */
	.pace = pacer_rate,
	PU_INSTANCE_PACER(slack_notifier, pacer),
	.pace_start = post_next,
	.pace_back = hand_back,
	.pace_free = item_link_free,
	.pace_pause_reason = "Slack rate limit: waiting for Retry-After",
	.announce = settings_announce,
};

PU_INSTANCE_FUNCTIONS(slack, slack_class)

/* Post nothing new: waiting notices go back to the core to run again later.
 * A post in flight still completes its deliveries from post_done. */
static void slack_stop(void *self)
{
	slack_notifier *sn = self;

	sn->stopped = 1;
	pu_pacer_stop(&sn->pacer, "shutting down");
}

/* ------------------------------------------------------------------------ */
/* Descriptor                                                               */
/* ------------------------------------------------------------------------ */

static const parley_notifier_ops slack_ops = {
	.size = sizeof(parley_notifier_ops),
	.deliver = slack_deliver,
};

static const parley_plugin_descriptor slack_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_NOTIFIER,
	.name = "slack",
	.version = SLACK_VERSION,
	.description = "notices to a Slack incoming webhook, paced, bursts summarized",
	.create = slack_create,
	.reload = slack_reload,
	.stop = slack_stop,
	.destroy = slack_destroy,
	.notifier = &slack_ops,
	PARLEY_SETTINGS(slack_settings_table, slack_settings),
};

PARLEY_PLUGIN_ENTRY(&slack_descriptor)
