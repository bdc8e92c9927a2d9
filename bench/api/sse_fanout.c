/* sse_fanout.c - how fast live events reach many connected streams, and
 * what each stream costs the daemon.
 *
 *   sse_fanout --url http://127.0.0.1:8080 --token-prefix PREFIX --tokens 50 \
 *              --dsn 'host=... dbname=...' --clients 500 --events 300 --rate 20 \
 *              --pid PARLEYD_PID [--instance site] [--payload 800]
 *
 * Opens --clients streams (GET /api/v1/events, libevent, one loop), the
 * i-th with the token PREFIX<i mod tokens> read from nowhere but the
 * command line (throwaway bench tokens), and waits for every 'ready'. Then a
 * producer thread commits --events events at --rate per second, each its
 * own transaction through libpq (SELECT parley_live_event('bench',
 * instance, ...), a payload of about --payload bytes carrying its number),
 * noting when each commit returned. Every stream notes when it read each
 * event; the latency of a delivery is that moment minus the commit's.
 * parleyd's resident memory (VmRSS of --pid) is read before the streams
 * open, once they are all ready, and after the events: the growth per
 * stream is what one costs.
 *
 * Prints one JSON object. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <libpq-fe.h>

#include "../ingest/measure.h"

typedef struct stream {
	struct bufferevent *bev;
	bool ready, closed;
	long received;
} stream;

static struct {
	const char *host, *dsn, *token_prefix, *instance;
	int port, clients, tokens, events, rate, payload;
	long pid;
	struct event_base *base;
	stream *streams;
	int ready, closed;
	int64_t *commit_ns;            /* per event; 0 until its commit returned */
	int64_t *before_ns;            /* per event: before its statement was sent */
	double *lat;                   /* delivery latencies, ms */
	size_t n_lat, cap_lat;
	long early;                    /* read before the producer saw its commit return */
	long unknown;
	volatile int produced;         /* events committed so far */
	volatile bool producer_done;
	char producer_error[256];
} B;

static long rss_kib(long pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	FILE *f = fopen(path, "r");
	long kib = -1;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0)
			kib = atol(line + 6);
	fclose(f);
	return kib;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double p)
{
	if (B.n_lat == 0)
		return 0;
	size_t i = (size_t)(p * (double)(B.n_lat - 1) + 0.5);
	return B.lat[i];
}

/* A data line of a 'bench' event: {"pad": "...", "seq": N}. */
static void on_data_line(stream *s, const char *line, int64_t now)
{
	const char *p = strstr(line, "\"seq\": ");
	if (p == NULL)
		return;
	long seq = atol(p + 7);
	if (seq < 0 || seq >= B.events) {
		B.unknown++;
		return;
	}
	int64_t at = __atomic_load_n(&B.commit_ns[seq], __ATOMIC_ACQUIRE);
	if (at == 0) {
		/* The delivery overtook the commit's answer to the producer: count
		 * from before the statement went out (an upper bound). */
		at = B.before_ns[seq];
		B.early++;
	}
	s->received++;
	bench_record_latency(&B.lat, &B.n_lat, &B.cap_lat, (double)(now - at) / 1e6);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	stream *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	int64_t now = bench_now_ns();
	char *line;
	size_t len;
	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		if (!s->ready && strncmp(line, "event: ready", 12) == 0) {
			s->ready = true;
			B.ready++;
		} else if (strncmp(line, "data: ", 6) == 0) {
			on_data_line(s, line, now);
		}
		free(line);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	stream *s = arg;
	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (!s->closed) {
			s->closed = true;
			B.closed++;
		}
		bufferevent_disable(bev, EV_READ | EV_WRITE);
	}
}

static bool open_stream(int i)
{
	stream *s = &B.streams[i];
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)B.port) };
	if (inet_pton(AF_INET, B.host, &sin.sin_addr) != 1)
		return false;
	s->bev = bufferevent_socket_new(B.base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL)
		return false;
	bufferevent_setcb(s->bev, on_read, NULL, on_event, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&sin, sizeof(sin)) != 0)
		return false;
	evbuffer_add_printf(bufferevent_get_output(s->bev),
	                    "GET /api/v1/events HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
	                    "Authorization: Bearer %s%d\r\n\r\n",
	                    B.host, B.port, B.token_prefix, i % B.tokens);
	return true;
}

/* Run the loop until `done()` or `ms` passed. */
static void run_until(bool (*done)(void), int ms)
{
	int64_t end = bench_now_ns() + (int64_t)ms * 1000000;
	while (!done() && bench_now_ns() < end) {
		struct timeval tv = { 0, 10000 };
		event_base_loopexit(B.base, &tv);
		event_base_dispatch(B.base);
	}
}

static bool all_ready(void)
{
	return B.ready + B.closed >= B.clients;
}

static bool never(void)
{
	return false;
}

static bool all_delivered(void)
{
	return B.producer_done && B.n_lat >= (size_t)B.events * (size_t)(B.clients - B.closed);
}

static void *producer(void *arg)
{
	(void)arg;
	PGconn *pg = PQconnectdb(B.dsn);
	if (PQstatus(pg) != CONNECTION_OK) {
		snprintf(B.producer_error, sizeof(B.producer_error), "producer: %s", PQerrorMessage(pg));
		PQfinish(pg);
		B.producer_done = true;
		return NULL;
	}
	char *pad = malloc((size_t)B.payload + 1);
	memset(pad, 'p', (size_t)B.payload);
	pad[B.payload] = '\0';
	int64_t start = bench_now_ns(), step = 1000000000LL / B.rate;
	for (int i = 0; i < B.events; i++) {
		int64_t due = start + step * i;
		int64_t now = bench_now_ns();
		if (due > now) {
			struct timespec ts = { (time_t)((due - now) / 1000000000LL), (long)((due - now) % 1000000000LL) };
			nanosleep(&ts, NULL);
		}
		char seq[16];
		snprintf(seq, sizeof(seq), "%d", i);
		const char *params[] = { B.instance, pad, seq };
		B.before_ns[i] = bench_now_ns();
		PGresult *r = PQexecParams(pg, "SELECT parley_live_event('bench', $1, NULL, NULL, "
		                               "jsonb_build_object('pad', $2::text, 'seq', $3::int))",
		                           3, NULL, params, NULL, NULL, 0);
		int64_t committed = bench_now_ns();
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			snprintf(B.producer_error, sizeof(B.producer_error), "producer: %s", PQresultErrorMessage(r));
			PQclear(r);
			break;
		}
		PQclear(r);
		__atomic_store_n(&B.commit_ns[i], committed, __ATOMIC_RELEASE);
		B.produced = i + 1;
	}
	free(pad);
	PQfinish(pg);
	B.producer_done = true;
	return NULL;
}

static void usage(void)
{
	fputs("usage: sse_fanout --url http://HOST:PORT --token-prefix P --tokens N --dsn DSN\n"
	      "       [--clients 500] [--events 300] [--rate 20] [--payload 800] [--instance site]\n"
	      "       [--pid PARLEYD_PID]\n", stderr);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "url", required_argument, NULL, 'u' }, { "token-prefix", required_argument, NULL, 't' },
		{ "tokens", required_argument, NULL, 'T' }, { "dsn", required_argument, NULL, 'd' },
		{ "clients", required_argument, NULL, 'c' }, { "events", required_argument, NULL, 'e' },
		{ "rate", required_argument, NULL, 'r' }, { "payload", required_argument, NULL, 'p' },
		{ "instance", required_argument, NULL, 'i' }, { "pid", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	static char host[64];
	B.clients = 500;
	B.events = 300;
	B.rate = 20;
	B.payload = 800;
	B.tokens = 1;
	B.instance = "site";
	const char *url = NULL;
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'u': url = optarg; break;
		case 't': B.token_prefix = optarg; break;
		case 'T': B.tokens = atoi(optarg); break;
		case 'd': B.dsn = optarg; break;
		case 'c': B.clients = atoi(optarg); break;
		case 'e': B.events = atoi(optarg); break;
		case 'r': B.rate = atoi(optarg); break;
		case 'p': B.payload = atoi(optarg); break;
		case 'i': B.instance = optarg; break;
		case 'P': B.pid = atol(optarg); break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
	}
	if (url == NULL || B.token_prefix == NULL || B.dsn == NULL || B.clients < 1 || B.events < 1 ||
	    B.rate < 1 || B.tokens < 1 || B.payload < 0 ||
	    sscanf(url, "http://%63[0-9.]:%d", host, &B.port) != 2) {
		usage();
		return 2;
	}
	B.host = host;
	B.base = event_base_new();
	B.streams = calloc((size_t)B.clients, sizeof(stream));
	B.commit_ns = calloc((size_t)B.events, sizeof(int64_t));
	B.before_ns = calloc((size_t)B.events, sizeof(int64_t));
	if (B.base == NULL || B.streams == NULL || B.commit_ns == NULL || B.before_ns == NULL)
		return 1;

	long rss_before = B.pid ? rss_kib(B.pid) : -1;
	int64_t t0 = bench_now_ns();
	for (int i = 0; i < B.clients; i++) {
		if (!open_stream(i)) {
			fprintf(stderr, "sse_fanout: cannot open stream %d: %s\n", i, strerror(errno));
			return 1;
		}
		if (i % 50 == 49)
			run_until(never, 20);   /* let the daemon take them in */
	}
	run_until(all_ready, 30000);
	double connect_s = (double)(bench_now_ns() - t0) / 1e9;
	run_until(never, 1000);
	long rss_connected = B.pid ? rss_kib(B.pid) : -1;
	int ready = B.ready;

	pthread_t th;
	if (pthread_create(&th, NULL, producer, NULL) != 0)
		return 1;
	run_until(all_delivered, (int)((int64_t)B.events * 1000 / B.rate) + 10000);
	pthread_join(th, NULL);
	run_until(all_delivered, 2000);
	long rss_after = B.pid ? rss_kib(B.pid) : -1;

	qsort(B.lat, B.n_lat, sizeof(double), cmp_double);
	long peak = rss_after > rss_connected ? rss_after : rss_connected;
	printf("{\"clients\": %d, \"ready\": %d, \"closed\": %d, \"connect_s\": %.2f, "
	       "\"events\": %d, \"produced\": %d, \"rate\": %d, \"payload_bytes\": %d, "
	       "\"deliveries\": %zu, \"expected\": %ld, \"early\": %ld, \"unknown\": %ld, "
	       "\"latency_ms\": {\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"max\": %.1f}, "
	       "\"rss_kib\": {\"before\": %ld, \"connected\": %ld, \"after_events\": %ld}, "
	       "\"per_client_kib\": %.1f, \"producer_error\": \"%s\"}\n",
	       B.clients, ready, B.closed, connect_s, B.events, B.produced, B.rate, B.payload, B.n_lat,
	       (long)B.events * (long)(ready - B.closed), B.early, B.unknown, pct(0.5), pct(0.9),
	       pct(0.99), B.n_lat ? B.lat[B.n_lat - 1] : 0.0, rss_before, rss_connected, rss_after,
	       B.pid && ready > 0 ? (double)(peak - rss_before) / ready : 0.0, B.producer_error);
	for (int i = 0; i < B.clients; i++)
		if (B.streams[i].bev != NULL)
			bufferevent_free(B.streams[i].bev);
	event_base_free(B.base);
	free(B.streams);
	free(B.commit_ns);
	free(B.before_ns);
	free(B.lat);
	return B.producer_error[0] ? 1 : 0;
}
