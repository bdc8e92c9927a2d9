/* loadgen.c - HTTP load generator for the webhook channel: signed events of
 * the benchmark mix (mix.h), one per request, over keep-alive connections.
 *
 * Two modes:
 *   closed loop (default): every connection sends its next request as soon
 *     as the previous one is answered: the most the server takes;
 *   open loop (--rate R): requests are scheduled at a steady R per second
 *     whatever the answers do. A request that finds every connection busy
 *     waits in a queue, and its latency counts from its scheduled time, so
 *     a server that falls behind shows it in the percentiles instead of
 *     slowing the generator down (no coordinated omission).
 *
 * Requests scheduled during --warmup are sent but not counted; the figures
 * cover those scheduled in the following --duration seconds, each followed
 * to its answer. One JSON object goes to stdout.
 *
 * Bodies are built with snprintf from parts that need no escaping (ids,
 * numbers) and texts escaped once by jansson at start; a self-check compares
 * the first few thousand against jansson's rendering of the same event. The
 * HMAC key is set up once and each body only re-initialises the context. The
 * generator's own CPU time is part of the output, to show it was not the
 * bottleneck.
 *
 * Usage: loadgen --url http://HOST:PORT/webhooks/NAME --secret-file FILE [options]
 * (--help lists them). Exit status: 0 when the run finished (whatever the
 * answers were: they are in the output), 1 on an error, 2 on a bad command
 * line, 130 when interrupted (the output then covers what was done). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include "measure.h"
#include "mix.h"

#define LG_MAX_BODY 2048
#define LG_SIG_PREFIX "sha256="
#define LG_SIG_LEN (sizeof(LG_SIG_PREFIX) - 1 + 64)
#define LG_SECRET_MAX 4096
#define LG_SELF_CHECK 5000          /* events compared with jansson at start */
#define LG_TICK_US 1000             /* open loop: scheduling tick */
#define LG_STATUS_MAX 600

typedef struct lg_opts {
	const char *url;
	const char *secret_file;
	int connections;
	double rate;            /* 0 = closed loop */
	double duration;        /* seconds measured */
	double warmup;          /* seconds before, not measured */
	double drain;           /* seconds to wait for answers after the window */
	int timeout;            /* per request, seconds */
	mix_opts mix;
} lg_opts;

typedef struct lg lg;

typedef struct lg_slot {
	lg *g;                              /* borrowed: the run it belongs to */
	struct evhttp_connection *evcon;    /* owned */
	int64_t sched_ns;                   /* of the request in flight */
	int error;                          /* evhttp_request_error + 1, 0 = none */
} lg_slot;

typedef struct lg_counts {
	uint64_t sent, answered;
	uint64_t status[LG_STATUS_MAX];     /* [0] = no HTTP answer */
	uint64_t errors_by_kind[8];         /* evhttp_request_error of status 0 */
	uint64_t created, edits, replays, public_msgs, private_msgs;
} lg_counts;

struct lg {
	lg_opts o;
	struct event_base *base;            /* owned */
	char *path;                         /* owned: path and query of the URL */
	char host_header[300];
	char host[256];
	int port;
	EVP_MAC_CTX *mac;                   /* owned, keyed once */
	mix_state mix;                      /* owned */
	mix_render render;                  /* owned: the fast body renderer */

	lg_slot *slots;                     /* owned, o.connections of them */
	int *idle;                          /* owned: stack of idle slot indexes */
	int n_idle;

	int64_t t0, warm_end, end;          /* CLOCK_MONOTONIC ns */
	uint64_t n_scheduled;               /* open loop: requests scheduled so far */
	int64_t *pending;                   /* owned ring: scheduled, not yet sent */
	size_t pend_head, pend_n, pend_cap, backlog_max;
	bool stopping;                      /* the window is over: no new requests */
	bool timed_out, interrupted, failed;

	struct event *tick, *end_timer, *drain_timer, *sigint, *sigterm;   /* owned */

	lg_counts warm, meas;
	double *lat_ms;                     /* owned: measured latencies */
	size_t n_lat, cap_lat;
	int64_t first_sched_ns, last_done_ns;
	int64_t build_ns;                   /* time spent building and signing */
	uint64_t n_built;
};

/* ------------------------------------------------------------------ setup */

static void usage(FILE *out)
{
	fputs("Usage: loadgen --url http://HOST:PORT/PATH --secret-file FILE [options]\n"
	      "  --connections N     keep-alive connections (default 32)\n"
	      "  --rate R            open loop: R requests per second (default: closed loop)\n"
	      "  --duration S        seconds measured (default 10)\n"
	      "  --warmup S          seconds sent before, not measured (default 2)\n"
	      "  --drain S           seconds to wait for late answers (default 30)\n"
	      "  --timeout S         per request (default 30)\n"
	      "  --seed N            mix seed (default 1)\n"
	      "  --prefix P          message id prefix; make it unique per run (default bench)\n"
	      "  --customers N       distinct customers (default 200000)\n"
	      "  --posts N           distinct public thread roots (default 2000)\n"
	      "  --regulars X        share of the customers who write often (default 0.01)\n"
	      "  --regular-share X   share of new messages they write (default 0.20)\n"
	      "  --public X          share of public messages (default 0.30)\n"
	      "  --edits X           share of edits (default 0.03)\n"
	      "  --replays X         share of exact replays (default 0.02)\n",
	      out);
}

/* Fill o from argv; false (after a message) on a bad command line. */
static bool parse_args(int argc, char **argv, lg_opts *o)
{
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "secret-file", required_argument, NULL, 'k' },
		{ "connections", required_argument, NULL, 'c' },
		{ "rate", required_argument, NULL, 'r' },
		{ "duration", required_argument, NULL, 'd' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "drain", required_argument, NULL, 'D' },
		{ "timeout", required_argument, NULL, 't' },
		MIX_LONGOPTS,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t u;
	int c, idx = 0;

	memset(o, 0, sizeof(*o));
	o->connections = 32;
	o->duration = 10;
	o->warmup = 2;
	o->drain = 30;
	o->timeout = 30;
	mix_default_opts(&o->mix);
	while ((c = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
		bool ok = true;
		/* The event mix's own options first (mix.h). */
		if (!mix_parse_option(c, optarg, &o->mix, &ok)) switch (c) {
		case 'u': o->url = optarg; break;
		case 'k': o->secret_file = optarg; break;
		case 'c': ok = mix_parse_u64(optarg, 10000, &u) && u >= 1; o->connections = (int)u; break;
		case 'r': ok = mix_parse_double(optarg, 0, 1e7, &o->rate); break;
		case 'd': ok = mix_parse_double(optarg, 0.1, 86400, &o->duration); break;
		case 'w': ok = mix_parse_double(optarg, 0, 86400, &o->warmup); break;
		case 'D': ok = mix_parse_double(optarg, 0, 86400, &o->drain); break;
		case 't': ok = mix_parse_u64(optarg, 3600, &u) && u >= 1; o->timeout = (int)u; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return false;
		}
		if (!ok) {
			fprintf(stderr, "loadgen: bad value for --%s: %s\n", longopts[idx].name, optarg);
			return false;
		}
	}
	if (optind != argc || o->url == NULL || o->secret_file == NULL) {
		usage(stderr);
		return false;
	}
	char err[160];
	if (!mix_opts_check(&o->mix, err, sizeof(err))) {
		fprintf(stderr, "loadgen: %s\n", err);
		return false;
	}
	return true;
}

/* Read the secret (one final newline stripped, as parleyd's "$file:" does)
 * into buf; false after a message that does not show the secret. */
static bool read_secret(const char *path, unsigned char *buf, size_t cap, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "loadgen: cannot read %s: %s\n", path, strerror(errno));
		return false;
	}
	size_t n = fread(buf, 1, cap, f);
	bool too_long = n == cap;
	fclose(f);
	if (too_long) {
		fprintf(stderr, "loadgen: %s is longer than %zu bytes\n", path, cap - 1);
		return false;
	}
	if (n > 0 && buf[n - 1] == '\n') {
		n--;
		if (n > 0 && buf[n - 1] == '\r')
			n--;
	}
	if (n == 0) {
		fprintf(stderr, "loadgen: %s is empty\n", path);
		return false;
	}
	*len = n;
	return true;
}

/* A keyed HMAC-SHA256 context; NULL after a message. */
static EVP_MAC_CTX *mac_new(const unsigned char *key, size_t key_len)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
		OSSL_PARAM_construct_end(),
	};

	EVP_MAC_free(mac);   /* the context keeps its own reference */
	if (ctx == NULL || !EVP_MAC_init(ctx, key, key_len, params)) {
		fprintf(stderr, "loadgen: cannot set up HMAC-SHA256\n");
		EVP_MAC_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* "sha256=<hex>" of body into out. Re-initialising with a NULL key keeps the
 * key schedule computed once in mac_new (the fast path). */
static bool sign_body(EVP_MAC_CTX *ctx, const char *body, size_t len, char out[LG_SIG_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char mac[32];
	size_t mac_len = 0;
	const size_t plen = sizeof(LG_SIG_PREFIX) - 1;

	if (!EVP_MAC_init(ctx, NULL, 0, NULL) ||
	    !EVP_MAC_update(ctx, (const unsigned char *)body, len) ||
	    !EVP_MAC_final(ctx, mac, &mac_len, sizeof(mac)) || mac_len != sizeof(mac))
		return false;
	memcpy(out, LG_SIG_PREFIX, plen);
	for (size_t i = 0; i < sizeof(mac); i++) {
		out[plen + 2 * i] = digits[mac[i] >> 4];
		out[plen + 2 * i + 1] = digits[mac[i] & 0xf];
	}
	out[LG_SIG_LEN] = '\0';
	return true;
}

/* The fast paths must say what the slow ones say: the first bodies of this
 * mix what jansson makes of the same events (mix_self_check), and the
 * re-initialised HMAC context what one-shot HMAC() computes. */
static bool self_check(lg *g, const unsigned char *key, size_t key_len)
{
	static const char body[] = "{\"id\":\"self-check\"}";
	static const char digits[] = "0123456789abcdef";
	char err[300], sig[LG_SIG_LEN + 1], want[LG_SIG_LEN + 1];
	unsigned char mac[32];
	unsigned int mac_len = sizeof(mac);
	const size_t plen = sizeof(LG_SIG_PREFIX) - 1;

	if (!mix_self_check(&g->o.mix, &g->render, LG_SELF_CHECK, err, sizeof(err))) {
		fprintf(stderr, "loadgen: self-check: %s\n", err);
		return false;
	}
	/* Twice: the second run goes through the re-initialisation. */
	if (!sign_body(g->mac, body, sizeof(body) - 1, sig) ||
	    !sign_body(g->mac, body, sizeof(body) - 1, sig) ||
	    HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)body, sizeof(body) - 1,
	         mac, &mac_len) == NULL) {
		fprintf(stderr, "loadgen: self-check: HMAC failed\n");
		return false;
	}
	memcpy(want, LG_SIG_PREFIX, plen);
	for (size_t i = 0; i < sizeof(mac); i++) {
		want[plen + 2 * i] = digits[mac[i] >> 4];
		want[plen + 2 * i + 1] = digits[mac[i] & 0xf];
	}
	want[LG_SIG_LEN] = '\0';
	if (strcmp(sig, want) != 0) {
		fprintf(stderr, "loadgen: self-check: fast HMAC differs from HMAC()\n");
		return false;
	}
	return true;
}

/* Host, port and path of an http:// URL into g; false after a message. */
static bool parse_url(lg *g, const char *url)
{
	struct evhttp_uri *uri = evhttp_uri_parse(url);
	const char *scheme = uri ? evhttp_uri_get_scheme(uri) : NULL;
	const char *host = uri ? evhttp_uri_get_host(uri) : NULL;
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	bool ok = false;

	if (scheme == NULL || strcmp(scheme, "http") != 0 || host == NULL || host[0] == '\0' ||
	    strlen(host) >= sizeof(g->host)) {
		fprintf(stderr, "loadgen: --url must be http://HOST[:PORT]/PATH\n");
		goto out;
	}
	snprintf(g->host, sizeof(g->host), "%s", host);
	g->port = evhttp_uri_get_port(uri) > 0 ? evhttp_uri_get_port(uri) : 80;
	snprintf(g->host_header, sizeof(g->host_header), "%s:%d", host, g->port);
	if (path == NULL || path[0] == '\0')
		path = "/";
	size_t n = strlen(path) + (query ? strlen(query) + 1 : 0) + 1;
	g->path = malloc(n);
	if (g->path == NULL) {
		fprintf(stderr, "loadgen: out of memory\n");
		goto out;
	}
	snprintf(g->path, n, "%s%s%s", path, query ? "?" : "", query ? query : "");
	ok = true;
out:
	if (uri)
		evhttp_uri_free(uri);
	return ok;
}

/* ---------------------------------------------------------------- the run */

static bool in_window(const lg *g, int64_t sched_ns)
{
	return sched_ns >= g->warm_end && sched_ns < g->end;
}

static void finish_if_done(lg *g)
{
	if (g->stopping && g->n_idle == g->o.connections && g->pend_n == 0)
		event_base_loopexit(g->base, NULL);
}

static void fail_run(lg *g, const char *what)
{
	fprintf(stderr, "loadgen: %s\n", what);
	g->failed = true;
	event_base_loopbreak(g->base);
}

static void count_sent(lg_counts *c, const mix_event *ev)
{
	c->sent++;
	if (ev->replay)
		c->replays++;
	else if (ev->kind == MIX_EDIT)
		c->edits++;
	else
		c->created++;
	if (!ev->replay && ev->kind == MIX_MESSAGE) {
		if (ev->post >= 0)
			c->public_msgs++;
		else
			c->private_msgs++;
	}
}

static void on_answer(struct evhttp_request *req, void *arg);

static void on_request_error(enum evhttp_request_error error, void *arg)
{
	lg_slot *slot = arg;
	slot->error = (int)error + 1;
}

/* Send the next event of the mix on the idle slot; sched_ns is when it was
 * due. False when the request could not even be made. */
static bool send_next(lg *g, lg_slot *slot, int64_t sched_ns)
{
	char body[LG_MAX_BODY], sig[LG_SIG_LEN + 1];
	size_t len = 0;
	mix_event ev;
	int64_t b0 = bench_now_ns();

	mix_next(&g->mix, &ev);
	if (!mix_render_item(&g->mix, &g->render, &ev, body, sizeof(body), &len) ||
	    !sign_body(g->mac, body, len, sig))
		return false;
	g->build_ns += bench_now_ns() - b0;
	g->n_built++;

	struct evhttp_request *req = evhttp_request_new(on_answer, slot);
	if (req == NULL)
		return false;
	evhttp_request_set_error_cb(req, on_request_error);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	if (evhttp_add_header(h, "Host", g->host_header) != 0 ||
	    evhttp_add_header(h, "Content-Type", "application/json") != 0 ||
	    evhttp_add_header(h, "X-Parley-Signature", sig) != 0 ||
	    evbuffer_add(evhttp_request_get_output_buffer(req), body, len) != 0) {
		evhttp_request_free(req);
		return false;
	}
	slot->sched_ns = sched_ns;
	slot->error = 0;
	/* On failure libevent has freed req already. */
	if (evhttp_make_request(slot->evcon, req, EVHTTP_REQ_POST, g->path) != 0)
		return false;
	if (in_window(g, sched_ns)) {
		if (g->meas.sent == 0)
			g->first_sched_ns = sched_ns;
		count_sent(&g->meas, &ev);
	} else {
		count_sent(&g->warm, &ev);
	}
	return true;
}

/* Open loop: queue every request due by `upto` (and before the window ends). */
static bool schedule_due(lg *g, int64_t upto)
{
	for (;;) {
		int64_t t = g->t0 + (int64_t)((double)g->n_scheduled * 1e9 / g->o.rate);
		if (t > upto || t >= g->end)
			return true;
		if (g->pend_n == g->pend_cap) {
			size_t cap = g->pend_cap ? g->pend_cap * 2 : 4096;
			int64_t *p = malloc(cap * sizeof(*p));
			if (p == NULL)
				return false;
			for (size_t i = 0; i < g->pend_n; i++)
				p[i] = g->pending[(g->pend_head + i) % g->pend_cap];
			free(g->pending);
			g->pending = p;
			g->pend_head = 0;
			g->pend_cap = cap;
		}
		g->pending[(g->pend_head + g->pend_n) % g->pend_cap] = t;
		g->pend_n++;
		g->n_scheduled++;
		if (g->pend_n > g->backlog_max)
			g->backlog_max = g->pend_n;
	}
}

/* Open loop: hand queued requests to idle connections. */
static void dispatch_pending(lg *g)
{
	while (g->pend_n > 0 && g->n_idle > 0) {
		int64_t t = g->pending[g->pend_head];
		lg_slot *slot = &g->slots[g->idle[--g->n_idle]];
		g->pend_head = (g->pend_head + 1) % g->pend_cap;
		g->pend_n--;
		if (!send_next(g, slot, t)) {
			fail_run(g, "cannot make a request");
			return;
		}
	}
}

static void on_answer(struct evhttp_request *req, void *arg)
{
	lg_slot *slot = arg;
	lg *g = slot->g;
	int64_t done = bench_now_ns();
	int status = req ? evhttp_request_get_response_code(req) : 0;
	bool measured = in_window(g, slot->sched_ns);
	lg_counts *c = measured ? &g->meas : &g->warm;

	if (status < 0 || status >= LG_STATUS_MAX)
		status = 0;
	c->answered++;
	c->status[status]++;
	if (status == 0 && slot->error > 0 && slot->error < 8)
		c->errors_by_kind[slot->error - 1]++;
	if (measured) {
		if (!bench_record_latency(&g->lat_ms, &g->n_lat, &g->cap_lat, (double)(done - slot->sched_ns) / 1e6)) {
			fail_run(g, "out of memory");
			return;
		}
		if (done > g->last_done_ns)
			g->last_done_ns = done;
	}

	if (g->o.rate > 0) {
		g->idle[g->n_idle++] = (int)(slot - g->slots);
		dispatch_pending(g);
	} else if (!g->stopping) {
		if (!send_next(g, slot, done))
			fail_run(g, "cannot make a request");
		return;
	} else {
		g->idle[g->n_idle++] = (int)(slot - g->slots);
	}
	finish_if_done(g);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	lg *g = arg;
	(void)fd;
	(void)what;
	if (!schedule_due(g, bench_now_ns())) {
		fail_run(g, "out of memory");
		return;
	}
	dispatch_pending(g);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	lg *g = arg;
	(void)fd;
	(void)what;
	g->timed_out = true;
	event_base_loopbreak(g->base);
}

static struct timeval tv_of(double secs)
{
	struct timeval tv = { (time_t)secs, (suseconds_t)((secs - (double)(time_t)secs) * 1e6) };
	return tv;
}

/* The window is over: requests due before now are still sent (their
 * latency is part of the figures); nothing new is scheduled. */
static void on_end(evutil_socket_t fd, short what, void *arg)
{
	lg *g = arg;
	struct timeval drain = tv_of(g->o.drain);
	(void)fd;
	(void)what;
	if (g->o.rate > 0) {
		if (!schedule_due(g, g->end)) {
			fail_run(g, "out of memory");
			return;
		}
		event_del(g->tick);
		dispatch_pending(g);
	}
	g->stopping = true;
	if (event_add(g->drain_timer, &drain) != 0) {
		fail_run(g, "cannot arm the drain timer");
		return;
	}
	finish_if_done(g);
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
	lg *g = arg;
	(void)fd;
	(void)what;
	g->interrupted = true;
	event_base_loopbreak(g->base);
}

/* Create the loop, the connections and the timers; false after a message. */
static bool setup(lg *g)
{
	struct event_config *cfg = event_config_new();
	/* Millisecond timers without the coarse cached clock; and the changelist,
	 * which folds the read/write interest changes evhttp makes for every
	 * request into one epoll_ctl per loop pass (a fifth more requests per
	 * CPU second of the generator). */
	if (cfg == NULL ||
	    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER |
	                               EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST) != 0 ||
	    (g->base = event_base_new_with_config(cfg)) == NULL) {
		if (cfg)
			event_config_free(cfg);
		fprintf(stderr, "loadgen: cannot create the event loop\n");
		return false;
	}
	event_config_free(cfg);

	g->slots = calloc((size_t)g->o.connections, sizeof(*g->slots));
	g->idle = calloc((size_t)g->o.connections, sizeof(*g->idle));
	if (g->slots == NULL || g->idle == NULL) {
		fprintf(stderr, "loadgen: out of memory\n");
		return false;
	}
	for (int i = 0; i < g->o.connections; i++) {
		lg_slot *slot = &g->slots[i];
		slot->g = g;
		slot->evcon = evhttp_connection_base_new(g->base, NULL, g->host, (ev_uint16_t)g->port);
		if (slot->evcon == NULL) {
			fprintf(stderr, "loadgen: cannot create connection %d\n", i);
			return false;
		}
		evhttp_connection_set_timeout(slot->evcon, g->o.timeout);
		evhttp_connection_set_retries(slot->evcon, 0);
		g->idle[g->n_idle++] = i;
	}
	g->tick = event_new(g->base, -1, EV_PERSIST, on_tick, g);
	g->end_timer = evtimer_new(g->base, on_end, g);
	g->drain_timer = evtimer_new(g->base, on_drain_timeout, g);
	g->sigint = evsignal_new(g->base, SIGINT, on_signal, g);
	g->sigterm = evsignal_new(g->base, SIGTERM, on_signal, g);
	if (!g->tick || !g->end_timer || !g->drain_timer || !g->sigint || !g->sigterm ||
	    event_add(g->sigint, NULL) != 0 || event_add(g->sigterm, NULL) != 0) {
		fprintf(stderr, "loadgen: cannot create timers\n");
		return false;
	}
	return true;
}

/* Start sending and run until the window is over and answered. */
static bool run(lg *g)
{
	struct timeval total = tv_of(g->o.warmup + g->o.duration);

	g->t0 = bench_now_ns();
	g->warm_end = g->t0 + (int64_t)(g->o.warmup * 1e9);
	g->end = g->warm_end + (int64_t)(g->o.duration * 1e9);
	if (event_add(g->end_timer, &total) != 0)
		return false;
	if (g->o.rate > 0) {
		struct timeval tick = { 0, LG_TICK_US };
		if (event_add(g->tick, &tick) != 0)
			return false;
		on_tick(-1, 0, g);
	} else {
		while (g->n_idle > 0) {
			lg_slot *slot = &g->slots[g->idle[--g->n_idle]];
			if (!send_next(g, slot, bench_now_ns())) {
				fprintf(stderr, "loadgen: cannot make a request\n");
				return false;
			}
		}
	}
	return event_base_dispatch(g->base) >= 0 && !g->failed;
}

/* ------------------------------------------------------------------ report */

static json_t *status_json(const lg_counts *c)
{
	static const char *const kinds[] = { "timeout", "eof", "invalid_header", "buffer_error",
	                                     "cancelled", "too_long" };
	json_t *o = json_object();
	char key[16];
	for (int s = 1; s < LG_STATUS_MAX; s++) {
		if (c->status[s] == 0)
			continue;
		snprintf(key, sizeof(key), "%d", s);
		json_object_set_new(o, key, json_integer((json_int_t)c->status[s]));
	}
	if (c->status[0] > 0) {
		json_t *e = json_object();
		uint64_t known = 0;
		for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
			if (c->errors_by_kind[k] == 0)
				continue;
			json_object_set_new(e, kinds[k], json_integer((json_int_t)c->errors_by_kind[k]));
			known += c->errors_by_kind[k];
		}
		if (known < c->status[0])
			json_object_set_new(e, "connection", json_integer((json_int_t)(c->status[0] - known)));
		json_object_set_new(o, "no_answer", e);
	}
	return o;
}

static uint64_t count_2xx(const lg_counts *c)
{
	uint64_t n = 0;
	for (int s = 200; s < 300; s++)
		n += c->status[s];
	return n;
}

static bool report(lg *g, double cpu, double wall)
{
	const lg_counts *m = &g->meas;
	double elapsed = 0;
	if (g->last_done_ns > g->warm_end)
		elapsed = (double)(g->last_done_ns - g->warm_end) / 1e9;
	/* In closed loop the window starts with the first request sent in it. */
	if (g->o.rate <= 0 && m->sent > 0 && g->last_done_ns > g->first_sched_ns)
		elapsed = (double)(g->last_done_ns - g->first_sched_ns) / 1e9;

	if (g->n_lat > 0)   /* qsort wants a valid pointer even for nothing */
		qsort(g->lat_ms, g->n_lat, sizeof(double), mix_cmp_double);
	double sum = 0;
	for (size_t i = 0; i < g->n_lat; i++)
		sum += g->lat_ms[i];

	json_t *out = json_pack(
		"{s:s, s:s, s:f, s:i, s:f, s:f, s:s, s:I,"
		" s:{s:I, s:I, s:I, s:I, s:I},"
		" s:o,"
		" s:{s:f, s:f, s:f, s:f, s:f, s:f},"
		" s:f, s:f, s:f, s:I,"
		" s:{s:I, s:I, s:I, s:I, s:I},"
		" s:{s:I, s:I},"
		" s:{s:f, s:f, s:f, s:f},"
		" s:b, s:b}",
		"tool", "loadgen",
		"mode", g->o.rate > 0 ? "open" : "closed",
		"rate_target", g->o.rate,
		"connections", g->o.connections,
		"duration_s", g->o.duration,
		"warmup_s", g->o.warmup,
		"prefix", g->o.mix.prefix,
		"seed", (json_int_t)g->o.mix.seed,
		"requests",
		"sent", (json_int_t)m->sent, "answered", (json_int_t)m->answered,
		"ok_2xx", (json_int_t)count_2xx(m), "unanswered", (json_int_t)(m->sent - m->answered),
		"not_sent", (json_int_t)g->pend_n,
		"status", status_json(m),
		"latency_ms",
		"p50", mix_percentile(g->lat_ms, g->n_lat, 50),
		"p90", mix_percentile(g->lat_ms, g->n_lat, 90),
		"p99", mix_percentile(g->lat_ms, g->n_lat, 99),
		"p999", mix_percentile(g->lat_ms, g->n_lat, 99.9),
		"max", g->n_lat ? g->lat_ms[g->n_lat - 1] : 0.0,
		"mean", g->n_lat ? sum / (double)g->n_lat : 0.0,
		"elapsed_s", elapsed,
		"achieved_rps", elapsed > 0 ? (double)m->answered / elapsed : 0.0,
		"achieved_2xx_rps", elapsed > 0 ? (double)count_2xx(m) / elapsed : 0.0,
		"backlog_max", (json_int_t)g->backlog_max,
		"mix",
		"created", (json_int_t)m->created, "edits", (json_int_t)m->edits,
		"replays", (json_int_t)m->replays, "public", (json_int_t)m->public_msgs,
		"private", (json_int_t)m->private_msgs,
		"warmup", "sent", (json_int_t)g->warm.sent, "answered", (json_int_t)g->warm.answered,
		"generator",
		"cpu_s", cpu, "wall_s", wall, "cpu_share", wall > 0 ? cpu / wall : 0.0,
		"build_sign_us", g->n_built ? (double)g->build_ns / (double)g->n_built / 1e3 : 0.0,
		"drain_timed_out", g->timed_out, "interrupted", g->interrupted);
	if (out == NULL)
		return false;
	char *text = json_dumps(out, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
	json_decref(out);
	if (text == NULL)
		return false;
	puts(text);
	free(text);
	return true;
}

static void teardown(lg *g)
{
	if (g->slots) {
		for (int i = 0; i < g->o.connections; i++) {
			if (g->slots[i].evcon)
				evhttp_connection_free(g->slots[i].evcon);
		}
	}
	struct event *evs[] = { g->tick, g->end_timer, g->drain_timer, g->sigint, g->sigterm };
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
		if (evs[i])
			event_free(evs[i]);
	}
	if (g->base)
		event_base_free(g->base);
	mix_render_free(&g->render);
	EVP_MAC_CTX_free(g->mac);
	mix_free(&g->mix);
	free(g->slots);
	free(g->idle);
	free(g->pending);
	free(g->lat_ms);
	free(g->path);
}

int main(int argc, char **argv)
{
	static lg g;   /* large; zeroed */
	unsigned char key[LG_SECRET_MAX];
	size_t key_len = 0;
	int rc = 1;

	if (!parse_args(argc, argv, &g.o))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	if (!read_secret(g.o.secret_file, key, sizeof(key), &key_len))
		return 1;
	g.mac = mac_new(key, key_len);
	if (g.mac == NULL || !parse_url(&g, g.o.url)) {
		OPENSSL_cleanse(key, sizeof(key));
		goto out;
	}
	if (!mix_render_init(&g.render) || !mix_init(&g.mix, &g.o.mix)) {
		fprintf(stderr, "loadgen: out of memory\n");
		OPENSSL_cleanse(key, sizeof(key));
		goto out;
	}
	if (!self_check(&g, key, key_len)) {
		OPENSSL_cleanse(key, sizeof(key));
		goto out;
	}
	OPENSSL_cleanse(key, sizeof(key));
	if (!setup(&g))
		goto out;

	double cpu0 = bench_cpu_seconds();
	int64_t w0 = bench_now_ns();
	bool ok = run(&g);
	double cpu = bench_cpu_seconds() - cpu0, wall = (double)(bench_now_ns() - w0) / 1e9;
	if (!ok && !g.failed)
		fprintf(stderr, "loadgen: the event loop failed\n");
	if (report(&g, cpu, wall) && ok)
		rc = g.interrupted ? 130 : 0;
out:
	teardown(&g);
	return rc;
}
