/* mix.h - the event mix of the ingest benchmark, shared by loadgen (which
 * posts it as signed webhook requests) and dbdrive (which hands the same
 * events straight to the database function the daemon calls).
 *
 * The mix is a pure function of its options and seed: the n-th event of two
 * runs with the same options is the same event. Per event, in order:
 *   - with probability replay_share, an exact replay of an earlier event
 *     (same body, so the same dedupe key);
 *   - with probability edit_share, an edit of an earlier message (a new event
 *     with its own created_at, so its own dedupe key);
 *   - otherwise a new message from a customer drawn from a pool of
 *     `customers` ids: with probability regular_share one of the regulars
 *     (the first regulars * customers ids), else anyone in the pool; public
 *     on one of `posts` thread roots with probability public_share, private
 *     otherwise.
 *
 * Header-only (static functions) because two programs use it and neither
 * links anything but its own source file. */
#ifndef PARLEY_BENCH_MIX_H
#define PARLEY_BENCH_MIX_H

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>

/* 2026-01-01T00:00:00Z: platform times are this plus the event's number in
 * milliseconds, so bodies do not depend on the clock of the run. */
#define MIX_EPOCH_MS 1767225600000LL

/* Earlier events a replay or an edit may pick from (a ring each). */
#define MIX_HISTORY 65536

#define MIX_ID_MAX 96       /* "<prefix>-<number>" */
#define MIX_TIME_MAX 80     /* "2026-01-01T00:00:00.000Z"; room for any int */
#define MIX_PREFIX_MAX 48

/* Message texts: a part before and after a number, the number being the
 * author's own order number, case number or e-mail address (what case
 * linking looks for), or none. Per customer, so references link a
 * customer's conversations to their own case and no row becomes a hot spot
 * that every batch waits for. Case numbers are far above what the case
 * sequence reaches in a run: they are looked up and not found. Some texts
 * are not ASCII, some need JSON escaping. */
typedef enum mix_number { MIX_NUM_NONE, MIX_NUM_ORDER, MIX_NUM_CASE, MIX_NUM_EMAIL } mix_number;

typedef struct mix_text {
	const char *before;
	mix_number number;
	const char *after;
} mix_text;

static const mix_text mix_texts[] = {
	{ "Hi, my order #", MIX_NUM_ORDER, " never arrived. Can you check?" },
	{ "Where is my parcel? Tracking says delivered but nothing here.", MIX_NUM_NONE, "" },
	{ "I was charged twice for order ", MIX_NUM_ORDER, ", please refund one of them" },
	{ "Your app crashes every time I open the basket", MIX_NUM_NONE, "" },
	{ "Thanks, that worked!", MIX_NUM_NONE, "" },
	{ "Still waiting for an answer about PC-", MIX_NUM_CASE, " ..." },
	{ "Please reply to c", MIX_NUM_EMAIL, "@example.com, I rarely check this account" },
	{ "Meine Bestellung ist nicht angekommen \xF0\x9F\x98\x9E", MIX_NUM_NONE, "" },
	{ "\xC2\xBF" "D\xC3\xB3nde est\xC3\xA1 mi pedido? Lo ped\xC3\xAD hace dos semanas.",
	  MIX_NUM_NONE, "" },
	{ "Can I change the delivery address of order #", MIX_NUM_ORDER,
	  " to \"Hauptstra\xC3\x9F" "e 5\"?" },
	{ "ok", MIX_NUM_NONE, "" },
	{ "The discount code SPRING24 does not work at checkout. I tried it three times with "
	  "different browsers and always get \"code expired\" although the mail says it is valid "
	  "until the end of the month. Could you look into it or give me another code?",
	  MIX_NUM_NONE, "" },
};
#define MIX_N_TEXTS (sizeof(mix_texts) / sizeof(mix_texts[0]))

typedef struct mix_opts {
	uint64_t seed;
	uint32_t customers;     /* distinct customer ids */
	uint32_t posts;         /* distinct public thread roots */
	double regulars;        /* share of the pool that writes often */
	double regular_share;   /* share of new messages the regulars write */
	double public_share;
	double edit_share;
	double replay_share;
	char prefix[MIX_PREFIX_MAX];   /* message ids are "<prefix>-<number>" */
} mix_opts;

typedef enum mix_kind { MIX_MESSAGE, MIX_EDIT } mix_kind;

typedef struct mix_event {
	mix_kind kind;
	bool replay;            /* a copy of an earlier event, sent again */
	uint64_t seq;           /* this event's number: its created_at */
	uint64_t msg_seq;       /* number of the message it creates or edits */
	uint32_t customer;
	int32_t post;           /* thread root number, or -1 for a private message */
	uint32_t text;          /* index into mix_texts */
} mix_event;

typedef struct mix_ring {
	mix_event *ev;          /* owned */
	size_t n, next;
} mix_ring;

typedef struct mix_state {
	mix_opts o;
	uint64_t rng;
	uint64_t next_seq;
	mix_ring history;       /* every non-replay event (replays pick here) */
	mix_ring messages;      /* new messages only (edits pick here) */
} mix_state;

/* Command-line numbers: the whole string, within [lo, hi]. */
static inline bool mix_parse_double(const char *s, double lo, double hi, double *out)
{
	char *end = NULL;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
		return false;
	*out = v;
	return true;
}

static inline bool mix_parse_u64(const char *s, uint64_t hi, uint64_t *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > hi)
		return false;
	*out = v;
	return true;
}

static inline void mix_default_opts(mix_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->seed = 1;
	o->customers = 200000;
	o->posts = 2000;
	o->regulars = 0.01;
	o->regular_share = 0.20;
	o->public_share = 0.30;
	o->edit_share = 0.03;
	o->replay_share = 0.02;
	snprintf(o->prefix, sizeof(o->prefix), "bench");
}

/* Ids go into JSON and header-free places unescaped (loadgen's fast path),
 * so the prefix is restricted to characters that never need escaping. */
/* The mix's command-line options, shared by loadgen and dbdrive: put
 * MIX_LONGOPTS in the getopt_long table and hand each option to
 * mix_parse_option first. */
#define MIX_LONGOPTS \
	{ "seed", required_argument, NULL, 's' }, \
	{ "prefix", required_argument, NULL, 'p' }, \
	{ "customers", required_argument, NULL, 'C' }, \
	{ "posts", required_argument, NULL, 'P' }, \
	{ "regulars", required_argument, NULL, 'R' }, \
	{ "regular-share", required_argument, NULL, 'G' }, \
	{ "public", required_argument, NULL, 'b' }, \
	{ "edits", required_argument, NULL, 'e' }, \
	{ "replays", required_argument, NULL, 'y' }

/* Option c (a MIX_LONGOPTS one) with its argument into o: true when c is
 * one of them, with *ok saying whether the value was valid. */
static inline bool mix_parse_option(int c, const char *arg, mix_opts *o, bool *ok)
{
	uint64_t u = 0;
	double d = 0;
	switch (c) {
	case 's': *ok = mix_parse_u64(arg, UINT64_MAX, &o->seed); return true;
	case 'p':
		*ok = strlen(arg) < sizeof(o->prefix);
		if (*ok)
			snprintf(o->prefix, sizeof(o->prefix), "%s", arg);
		return true;
	case 'C': *ok = mix_parse_u64(arg, UINT32_MAX, &u); o->customers = (uint32_t)u; return true;
	case 'P': *ok = mix_parse_u64(arg, INT32_MAX, &u); o->posts = (uint32_t)u; return true;
	case 'R': *ok = mix_parse_double(arg, 1e-9, 1, &o->regulars); return true;
	case 'G': *ok = mix_parse_double(arg, 0, 1, &o->regular_share); return true;
	case 'b': *ok = mix_parse_double(arg, 0, 1, &d); o->public_share = d; return true;
	case 'e': *ok = mix_parse_double(arg, 0, 1, &d); o->edit_share = d; return true;
	case 'y': *ok = mix_parse_double(arg, 0, 1, &d); o->replay_share = d; return true;
	}
	return false;
}

static inline bool mix_prefix_ok(const char *p)
{
	size_t n = strlen(p);
	if (n == 0 || n >= MIX_PREFIX_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

/* Check the options; false with a reason in err. */
static inline bool mix_opts_check(const mix_opts *o, char *err, size_t errlen)
{
	if (o->customers < 1 || o->posts < 1) {
		snprintf(err, errlen, "customers and posts must be at least 1");
		return false;
	}
	if (!(o->regulars > 0 && o->regulars <= 1 && o->regular_share >= 0 &&
	      o->regular_share <= 1)) {
		snprintf(err, errlen, "regulars must be in (0, 1], regular-share in [0, 1]");
		return false;
	}
	if (!(o->public_share >= 0 && o->public_share <= 1 && o->edit_share >= 0 &&
	      o->replay_share >= 0 && o->edit_share + o->replay_share <= 1)) {
		snprintf(err, errlen, "shares must be between 0 and 1 (edits + replays at most 1)");
		return false;
	}
	if (!mix_prefix_ok(o->prefix)) {
		snprintf(err, errlen, "prefix must be 1..%d characters of [A-Za-z0-9._-]",
		         MIX_PREFIX_MAX - 1);
		return false;
	}
	return true;
}

/* splitmix64: small, fast and good enough for a workload; reproducible. */
static inline uint64_t mix_rand(mix_state *s)
{
	uint64_t z = (s->rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline double mix_uniform(mix_state *s)
{
	return (double)(mix_rand(s) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n), n >= 1 (the modulo bias is irrelevant here). */
static inline uint64_t mix_below(mix_state *s, uint64_t n)
{
	return mix_rand(s) % n;
}

/* Set up a state (s is owned by the caller); false when out of memory. */
static inline bool mix_init(mix_state *s, const mix_opts *o)
{
	memset(s, 0, sizeof(*s));
	s->o = *o;
	s->rng = o->seed;
	s->next_seq = 1;
	s->history.ev = calloc(MIX_HISTORY, sizeof(mix_event));
	s->messages.ev = calloc(MIX_HISTORY, sizeof(mix_event));
	if (s->history.ev == NULL || s->messages.ev == NULL) {
		free(s->history.ev);
		free(s->messages.ev);
		s->history.ev = s->messages.ev = NULL;
		return false;
	}
	return true;
}

static inline void mix_free(mix_state *s)
{
	free(s->history.ev);
	free(s->messages.ev);
	s->history.ev = s->messages.ev = NULL;
}

static inline void mix_ring_push(mix_ring *r, const mix_event *ev)
{
	r->ev[r->next] = *ev;
	r->next = (r->next + 1) % MIX_HISTORY;
	if (r->n < MIX_HISTORY)
		r->n++;
}

static inline const mix_event *mix_ring_pick(mix_state *s, const mix_ring *r)
{
	return &r->ev[mix_below(s, r->n)];
}

/* The next event of the mix into *ev. */
static inline void mix_next(mix_state *s, mix_event *ev)
{
	double r = mix_uniform(s);

	if (r < s->o.replay_share && s->history.n > 0) {
		*ev = *mix_ring_pick(s, &s->history);
		ev->replay = true;
		return;
	}
	memset(ev, 0, sizeof(*ev));
	ev->seq = s->next_seq++;
	ev->text = (uint32_t)mix_below(s, MIX_N_TEXTS);
	if (r < s->o.replay_share + s->o.edit_share && s->messages.n > 0) {
		const mix_event *m = mix_ring_pick(s, &s->messages);
		ev->kind = MIX_EDIT;
		ev->msg_seq = m->msg_seq;
		ev->customer = m->customer;
		ev->post = m->post;
	} else {
		/* Regulars write often: by default a fifth of the messages come
		 * from 1% of the customers. Within each group the draw is uniform,
		 * so no single author is in every batch: a handful of customers
		 * writing a large share of all traffic would be a bot, not a
		 * customer base. */
		uint32_t regulars = (uint32_t)(s->o.regulars * s->o.customers);
		if (regulars < 1)
			regulars = 1;
		ev->kind = MIX_MESSAGE;
		ev->msg_seq = ev->seq;
		ev->customer = mix_uniform(s) < s->o.regular_share ? (uint32_t)mix_below(s, regulars)
		                                                   : (uint32_t)mix_below(s, s->o.customers);
		ev->post = mix_uniform(s) < s->o.public_share ? (int32_t)mix_below(s, s->o.posts) : -1;
		mix_ring_push(&s->messages, ev);
	}
	mix_ring_push(&s->history, ev);
}

/* "<prefix>-<msg_seq>": the message's platform id. */
static inline void mix_message_id(const mix_state *s, const mix_event *ev, char out[MIX_ID_MAX])
{
	snprintf(out, MIX_ID_MAX, "%s-%llu", s->o.prefix, (unsigned long long)ev->msg_seq);
}

static inline int64_t mix_time_ms(const mix_event *ev)
{
	return MIX_EPOCH_MS + (int64_t)ev->seq;
}

/* RFC 3339 UTC with milliseconds, e.g. 2026-01-01T00:00:01.234Z. */
static inline void mix_created_at(const mix_event *ev, char out[MIX_TIME_MAX])
{
	int64_t ms = mix_time_ms(ev);
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	snprintf(out, MIX_TIME_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* The number in ev's text as a string ("" for none). */
static inline void mix_text_number(const mix_event *ev, char out[16])
{
	switch (mix_texts[ev->text].number) {
	case MIX_NUM_ORDER:
		snprintf(out, 16, "%u", 100000u + (ev->customer * 7919u) % 900000u);
		break;
	case MIX_NUM_CASE:
		snprintf(out, 16, "%u", 50000000u + ev->customer);
		break;
	case MIX_NUM_EMAIL:
		snprintf(out, 16, "%u", ev->customer);
		break;
	case MIX_NUM_NONE:
		out[0] = '\0';
		break;
	}
}

/* ev's text, for the reference rendering. */
static inline void mix_text_of(const mix_event *ev, char *out, size_t cap)
{
	char num[16];
	mix_text_number(ev, num);
	snprintf(out, cap, "%s%s%s", mix_texts[ev->text].before, num, mix_texts[ev->text].after);
}

/* The parts of ev's JSON that are not the text: ids, names, thread and keys.
 * All are made of the prefix ([A-Za-z0-9._-]), digits and fixed ASCII, so
 * none ever needs JSON escaping (the fast renderers rely on that). */
typedef struct mix_parts {
	char id[MIX_ID_MAX];            /* the message's platform id */
	char at[MIX_TIME_MAX];          /* this event's created_at */
	char cid[32], cname[40];        /* author id and name */
	char thread[40];                /* the normalized thread id */
	char dedupe[200];               /* the normalized dedupe key */
} mix_parts;

static inline void mix_parts_of(const mix_state *s, const mix_event *ev, mix_parts *p)
{
	mix_message_id(s, ev, p->id);
	mix_created_at(ev, p->at);
	snprintf(p->cid, sizeof(p->cid), "cust-%u", ev->customer);
	snprintf(p->cname, sizeof(p->cname), "Customer %u", ev->customer);
	/* The channel's threading: a private message goes to the author's one
	 * chat ("dm:<author>"), a public one to its thread root. An edit only
	 * carries the thread the item names (public ones). */
	if (ev->post >= 0)
		snprintf(p->thread, sizeof(p->thread), "post-%d", ev->post);
	else
		snprintf(p->thread, sizeof(p->thread), "dm:%s", p->cid);
	/* An edit's key is "edit:<id>:<created_at>", a message's its id. */
	if (ev->kind == MIX_EDIT)
		snprintf(p->dedupe, sizeof(p->dedupe), "edit:%s:%s", p->id, p->at);
	else
		snprintf(p->dedupe, sizeof(p->dedupe), "%s", p->id);
}

static inline const char *mix_type_name(const mix_event *ev)
{
	return ev->kind == MIX_EDIT ? "message_edited" : "message_created";
}

static inline bool mix_has_thread(const mix_event *ev)
{
	return ev->kind == MIX_MESSAGE || ev->post >= 0;
}

/* ------------------------------------------------ reference rendering (jansson) */

/* Set key to a new string; false when jansson refuses (out of memory). */
static inline bool mix_set_str(json_t *o, const char *key, const char *value)
{
	return json_object_set_new(o, key, json_string(value)) == 0;
}

/* The webhook channel's item for ev (README.md "The webhook channel"), as a
 * new JSON object owned by the caller; NULL when out of memory. */
static inline json_t *mix_item_json(const mix_state *s, const mix_event *ev)
{
	mix_parts p;
	char thread[24], text[1024];
	json_t *item = json_object(), *author = json_object();

	mix_parts_of(s, ev, &p);
	mix_text_of(ev, text, sizeof(text));
	snprintf(thread, sizeof(thread), "post-%d", ev->post);
	if (item == NULL || author == NULL || !mix_set_str(author, "id", p.cid) ||
	    !mix_set_str(author, "name", p.cname) || !mix_set_str(item, "id", p.id) ||
	    (ev->kind == MIX_EDIT && !mix_set_str(item, "type", "edit")) ||
	    json_object_set(item, "author", author) != 0 ||
	    !mix_set_str(item, "text", text) ||
	    !mix_set_str(item, "visibility", ev->post >= 0 ? "public" : "private") ||
	    (ev->post >= 0 && !mix_set_str(item, "thread", thread)) ||
	    !mix_set_str(item, "created_at", p.at)) {
		json_decref(author);
		json_decref(item);
		return NULL;
	}
	json_decref(author);
	return item;
}

/* The normalized event the daemon makes of ev's webhook item (what the
 * webhook channel emits and core/ingest.c turns into JSON), as a new object
 * owned by the caller; NULL when out of memory. */
static inline json_t *mix_event_json(const mix_state *s, const mix_event *ev)
{
	mix_parts p;
	char text[1024];
	json_t *e = json_object(), *author = json_object();

	mix_parts_of(s, ev, &p);
	mix_text_of(ev, text, sizeof(text));
	if (e == NULL || author == NULL || !mix_set_str(e, "type", mix_type_name(ev)) ||
	    !mix_set_str(e, "dedupe_key", p.dedupe) || !mix_set_str(e, "external_id", p.id) ||
	    !mix_set_str(e, "text", text) ||
	    (mix_has_thread(ev) && !mix_set_str(e, "thread_id", p.thread)) ||
	    !mix_set_str(author, "external_id", p.cid) ||
	    !mix_set_str(author, "display_name", p.cname) ||
	    json_object_set(e, "author", author) != 0 ||
	    !mix_set_str(e, "visibility", ev->post >= 0 ? "public" : "private") ||
	    json_object_set_new(e, "from_brand", json_false()) != 0 ||
	    json_object_set_new(e, "platform_time_ms", json_integer(mix_time_ms(ev))) != 0) {
		json_decref(author);
		json_decref(e);
		return NULL;
	}
	json_decref(author);
	return e;
}

/* ----------------------------------------------------------- fast rendering */

/* The parts of the texts, escaped once by jansson: with the parts above,
 * which need no escaping, bodies can be put together with snprintf at a
 * fraction of the cost of building and dumping a jansson tree per event.
 * mix_self_check proves both renderings say the same. */
typedef struct mix_render {
	char *before[MIX_N_TEXTS];      /* owned: escaped, without the quotes */
	char *after[MIX_N_TEXTS];       /* owned: likewise */
} mix_render;

static inline void mix_render_free(mix_render *r)
{
	for (size_t i = 0; i < MIX_N_TEXTS; i++) {
		free(r->before[i]);
		free(r->after[i]);
		r->before[i] = r->after[i] = NULL;
	}
}

/* A JSON string literal of s, escaped by jansson (owned by the caller);
 * NULL when out of memory or s is not UTF-8. */
static inline char *mix_json_quote(const char *s)
{
	json_t *v = json_string(s);
	char *q = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
	json_decref(v);
	return q;
}

/* s escaped for the inside of a JSON string (owned by the caller). JSON
 * escapes character by character, so escaped parts concatenate to the
 * escaped whole. */
static inline char *mix_json_inner(const char *s)
{
	char *q = mix_json_quote(s);
	size_t n = q ? strlen(q) : 0;
	if (n < 2) {
		free(q);
		return NULL;
	}
	memmove(q, q + 1, n - 2);
	q[n - 2] = '\0';
	return q;
}

static inline bool mix_render_init(mix_render *r)
{
	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < MIX_N_TEXTS; i++) {
		r->before[i] = mix_json_inner(mix_texts[i].before);
		r->after[i] = mix_json_inner(mix_texts[i].after);
		if (r->before[i] == NULL || r->after[i] == NULL) {
			mix_render_free(r);
			return false;
		}
	}
	return true;
}

/* snprintf's result as a length; false when it did not fit in cap. */
static inline bool mix_fits(int n, size_t cap, size_t *len)
{
	if (n < 0 || (size_t)n >= cap)
		return false;
	*len = (size_t)n;
	return true;
}

/* The webhook item of ev (what mix_item_json says) into out. */
static inline bool mix_render_item(const mix_state *s, const mix_render *r, const mix_event *ev,
                                   char *out, size_t cap, size_t *len)
{
	mix_parts p;
	char thread[32] = "", num[16];

	mix_parts_of(s, ev, &p);
	mix_text_number(ev, num);
	if (ev->post >= 0)
		snprintf(thread, sizeof(thread), ",\"thread\":\"post-%d\"", ev->post);
	return mix_fits(snprintf(out, cap,
	                         "{\"id\":\"%s\",%s\"author\":{\"id\":\"%s\",\"name\":\"%s\"},"
	                         "\"text\":\"%s%s%s\",\"visibility\":\"%s\"%s,\"created_at\":\"%s\"}",
	                         p.id, ev->kind == MIX_EDIT ? "\"type\":\"edit\"," : "", p.cid,
	                         p.cname, r->before[ev->text], num, r->after[ev->text],
	                         ev->post >= 0 ? "public" : "private", thread, p.at),
	                cap, len);
}

/* The normalized event of ev (what mix_event_json says) into out. */
static inline bool mix_render_event(const mix_state *s, const mix_render *r, const mix_event *ev,
                                    char *out, size_t cap, size_t *len)
{
	mix_parts p;
	char thread[64] = "", num[16];

	mix_parts_of(s, ev, &p);
	mix_text_number(ev, num);
	if (mix_has_thread(ev))
		snprintf(thread, sizeof(thread), "\"thread_id\":\"%s\",", p.thread);
	return mix_fits(snprintf(out, cap,
	                         "{\"type\":\"%s\",\"dedupe_key\":\"%s\",\"external_id\":\"%s\","
	                         "\"text\":\"%s%s%s\",%s\"author\":{\"external_id\":\"%s\","
	                         "\"display_name\":\"%s\"},\"visibility\":\"%s\","
	                         "\"from_brand\":false,\"platform_time_ms\":%lld}",
	                         mix_type_name(ev), p.dedupe, p.id, r->before[ev->text], num,
	                         r->after[ev->text], thread, p.cid, p.cname,
	                         ev->post >= 0 ? "public" : "private", (long long)mix_time_ms(ev)),
	                cap, len);
}

/* Does the text in buf parse (jansson) to exactly `want`? Consumes want. */
static inline bool mix_same_json(const char *buf, size_t len, json_t *want)
{
	json_error_t jerr;
	json_t *got = want ? json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	bool same = got != NULL && json_equal(got, want);
	json_decref(got);
	json_decref(want);
	return same;
}

/* Render the first n events of the mix o both ways and compare; false with
 * the offending body in err. */
static inline bool mix_self_check(const mix_opts *o, const mix_render *r, int n, char *err,
                                  size_t errlen)
{
	mix_state s;
	char buf[4096];
	size_t len = 0;
	bool ok = true;

	if (!mix_init(&s, o)) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	for (int i = 0; i < n && ok; i++) {
		mix_event ev;
		mix_next(&s, &ev);
		ok = mix_render_item(&s, r, &ev, buf, sizeof(buf), &len) &&
		     mix_same_json(buf, len, mix_item_json(&s, &ev));
		if (ok)
			ok = mix_render_event(&s, r, &ev, buf, sizeof(buf), &len) &&
			     mix_same_json(buf, len, mix_event_json(&s, &ev));
		if (!ok)
			snprintf(err, errlen, "event %d renders differently than with jansson: %.200s", i,
			         buf);
	}
	mix_free(&s);
	return ok;
}

/* Percentile p (0..100) of n sorted values (nearest rank); 0 when n == 0. */
static inline double mix_percentile(const double *sorted, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t rank = (size_t)ceil(p / 100.0 * (double)n);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

static inline int mix_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

#endif
