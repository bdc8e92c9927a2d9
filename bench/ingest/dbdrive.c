/* dbdrive.c - the database ceiling of ingest: the SQL the daemon runs per
 * batch, driven straight from libpq with nothing else in the way.
 *
 * Batches of --batch items of the benchmark mix (mix.h, the same events
 * loadgen posts) go over --connections connections in pipeline mode, each
 * keeping --depth batches in flight so no connection waits for the client.
 * Per batch, one of:
 *   function  SELECT parley_ingest_batch($1::jsonb, $2::jsonb): what the
 *             batching daemon sends, one transaction per batch;
 *   insert    one INSERT INTO inbound_event per item (the statement of the
 *             daemon that commits each request alone), all items of a batch
 *             in one transaction; --batch 1 is exactly that daemon's work.
 * --sql auto (the default) takes the function when the database has it.
 *
 * Batches started during --warmup are not counted; the figures cover those
 * started in the following --duration seconds, each followed to its commit.
 * One JSON object goes to stdout. The daemon's own work (HTTP, JSON, the
 * batcher) is not here; that is the point of the comparison. Items are put
 * together with snprintf from parts that need no escaping and texts escaped
 * once by jansson (mix.h); a self-check at start compares them with
 * jansson's rendering, so the client spends its time waiting, not building.
 *
 * Usage: dbdrive --dsn DSN [options]   (--help lists them). Exit status: 0,
 * 3 when some measured batches failed (the first errors go to stderr), 1 on
 * an error, 2 on a bad command line, 130 when interrupted. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include <libpq-fe.h>

#include "measure.h"
#include "mix.h"

#define DD_MAX_DEPTH 16
#define DD_MAX_CONNS 256
#define DD_MAX_ERRORS_SHOWN 5
#define DD_ITEM_MAX 4096
#define DD_SELF_CHECK 5000          /* events compared with jansson at start */

#define DD_SQL_FUNCTION "SELECT parley_ingest_batch($1::jsonb, $2::jsonb)"
/* The statement of core/ingest.c before batching, parameter for parameter. */
#define DD_SQL_INSERT                                                                        \
	"INSERT INTO inbound_event (channel_instance, dedupe_key, event_type, external_id, "     \
	"author_external_id, event, raw, platform_time) "                                        \
	"VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, to_timestamp($8::bigint / 1000.0)) " \
	"ON CONFLICT ON CONSTRAINT inbound_event_dedupe DO NOTHING"

typedef enum dd_sql { DD_AUTO, DD_FUNCTION, DD_INSERT } dd_sql;

typedef struct dd_opts {
	const char *dsn;
	const char *instance, *channel, *opts_json;
	int connections, batch, depth;
	double duration, warmup, drain;
	dd_sql sql;
	mix_opts mix;
} dd_opts;

/* A batch in flight: what it carries and what came back so far. */
typedef struct dd_flight {
	int64_t start_ns;
	int items;
	bool measured;
	bool failed;
	int64_t inserted, replays;
} dd_flight;

typedef struct dd_conn {
	PGconn *pg;                     /* owned */
	dd_flight fifo[DD_MAX_DEPTH];   /* oldest first from head */
	int head, n;
	bool flushing;                  /* output not yet all sent: wait for POLLOUT */
} dd_conn;

typedef struct dd_counts {
	uint64_t batches, failed, items, inserted, replays;
} dd_counts;

typedef struct dd_buf {
	char *data;                     /* owned */
	size_t len, cap;
} dd_buf;

typedef struct dd {
	dd_opts o;
	mix_state mix;                  /* owned */
	mix_render render;              /* owned */
	char *instance_json, *channel_json;   /* owned: the names as JSON strings */
	dd_buf buf;                     /* owned: the batch being built */
	dd_conn *conns;                 /* owned, o.connections */
	int64_t t0, warm_end, end;
	bool stopping, timed_out;
	dd_counts warm, meas;
	double *lat_ms;                 /* owned: measured batch latencies */
	size_t n_lat, cap_lat;
	int64_t first_start_ns, last_done_ns;
	int64_t build_ns;
	uint64_t items_built;
	int errors_shown;
} dd;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* ------------------------------------------------------------------ setup */

static void usage(FILE *out)
{
	fputs("Usage: dbdrive --dsn DSN [options]\n"
	      "  --connections K     database connections (default 4)\n"
	      "  --batch B           items per batch (default 100)\n"
	      "  --depth D           batches in flight per connection, 1..16 (default 2)\n"
	      "  --sql auto|function|insert   what each batch runs (default auto)\n"
	      "  --duration S        seconds measured (default 10)\n"
	      "  --warmup S          seconds before, not measured (default 2)\n"
	      "  --drain S           seconds to wait for batches in flight (default 60)\n"
	      "  --instance NAME     channel instance of the items (default web)\n"
	      "  --channel NAME      channel plugin of the items (default webhook)\n"
	      "  --opts JSON         second argument of parley_ingest_batch (default {})\n"
	      "  --seed N, --prefix P, --customers N, --posts N, --regulars X,\n"
	      "  --regular-share X,\n"
	      "  --public X, --edits X, --replays X   the mix, as in loadgen\n",
	      out);
}

static bool parse_sql(const char *s, dd_sql *out)
{
	if (strcmp(s, "auto") == 0)
		*out = DD_AUTO;
	else if (strcmp(s, "function") == 0)
		*out = DD_FUNCTION;
	else if (strcmp(s, "insert") == 0)
		*out = DD_INSERT;
	else
		return false;
	return true;
}

/* Fill o from argv; false (after a message) on a bad command line. */
static bool parse_args(int argc, char **argv, dd_opts *o)
{
	static const struct option longopts[] = {
		{ "dsn", required_argument, NULL, 'd' },
		{ "connections", required_argument, NULL, 'c' },
		{ "batch", required_argument, NULL, 'B' },
		{ "depth", required_argument, NULL, 'q' },
		{ "sql", required_argument, NULL, 'Q' },
		{ "duration", required_argument, NULL, 'T' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "drain", required_argument, NULL, 'D' },
		{ "instance", required_argument, NULL, 'i' },
		{ "channel", required_argument, NULL, 'n' },
		{ "opts", required_argument, NULL, 'o' },
		MIX_LONGOPTS,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t u;
	int c, idx = 0;

	memset(o, 0, sizeof(*o));
	o->instance = "web";
	o->channel = "webhook";
	o->opts_json = "{}";
	o->connections = 4;
	o->batch = 100;
	o->depth = 2;
	o->duration = 10;
	o->warmup = 2;
	o->drain = 60;
	o->sql = DD_AUTO;
	mix_default_opts(&o->mix);
	while ((c = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
		bool ok = true;
		/* The event mix's own options first (mix.h). */
		if (!mix_parse_option(c, optarg, &o->mix, &ok)) switch (c) {
		case 'd': o->dsn = optarg; break;
		case 'c': ok = mix_parse_u64(optarg, DD_MAX_CONNS, &u) && u >= 1; o->connections = (int)u; break;
		case 'B': ok = mix_parse_u64(optarg, 100000, &u) && u >= 1; o->batch = (int)u; break;
		case 'q': ok = mix_parse_u64(optarg, DD_MAX_DEPTH, &u) && u >= 1; o->depth = (int)u; break;
		case 'Q': ok = parse_sql(optarg, &o->sql); break;
		case 'T': ok = mix_parse_double(optarg, 0.1, 86400, &o->duration); break;
		case 'w': ok = mix_parse_double(optarg, 0, 86400, &o->warmup); break;
		case 'D': ok = mix_parse_double(optarg, 0, 86400, &o->drain); break;
		case 'i': o->instance = optarg; break;
		case 'n': o->channel = optarg; break;
		case 'o': o->opts_json = optarg; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return false;
		}
		if (!ok) {
			fprintf(stderr, "dbdrive: bad value for --%s: %s\n", longopts[idx].name, optarg);
			return false;
		}
	}
	if (optind != argc || o->dsn == NULL) {
		usage(stderr);
		return false;
	}
	char err[160];
	if (!mix_opts_check(&o->mix, err, sizeof(err))) {
		fprintf(stderr, "dbdrive: %s\n", err);
		return false;
	}
	json_t *opts = json_loads(o->opts_json, 0, NULL);
	bool opts_ok = json_is_object(opts);
	json_decref(opts);
	if (!opts_ok) {
		fprintf(stderr, "dbdrive: --opts must be a JSON object\n");
		return false;
	}
	return true;
}

/* Does the database have parley_ingest_batch(jsonb, jsonb)? -1 on error. */
static int has_function(PGconn *pg)
{
	PGresult *r = PQexec(pg, "SELECT to_regprocedure('parley_ingest_batch(jsonb,jsonb)') IS NOT NULL");
	int v = -1;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		v = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	else
		fprintf(stderr, "dbdrive: %s", PQerrorMessage(pg));
	PQclear(r);
	return v;
}

/* Open every connection in non-blocking pipeline mode; false after a message. */
static bool connect_all(dd *g)
{
	g->conns = calloc((size_t)g->o.connections, sizeof(*g->conns));
	if (g->conns == NULL) {
		fprintf(stderr, "dbdrive: out of memory\n");
		return false;
	}
	for (int i = 0; i < g->o.connections; i++) {
		PGconn *pg = PQconnectdb(g->o.dsn);
		g->conns[i].pg = pg;
		if (PQstatus(pg) != CONNECTION_OK) {
			fprintf(stderr, "dbdrive: cannot connect: %s", PQerrorMessage(pg));
			return false;
		}
		if (i == 0 && g->o.sql != DD_INSERT) {
			int f = has_function(pg);
			if (f < 0)
				return false;
			if (!f && g->o.sql == DD_FUNCTION) {
				fprintf(stderr, "dbdrive: the database has no parley_ingest_batch(jsonb, jsonb)\n");
				return false;
			}
			g->o.sql = f ? DD_FUNCTION : DD_INSERT;
		}
		if (PQsetnonblocking(pg, 1) != 0 || PQenterPipelineMode(pg) != 1) {
			fprintf(stderr, "dbdrive: cannot enter pipeline mode: %s", PQerrorMessage(pg));
			return false;
		}
	}
	return true;
}

/* ---------------------------------------------------------------- batches */

/* Append len bytes to the growing buffer; false when out of memory. */
static bool buf_add(dd_buf *b, const char *s, size_t len)
{
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 65536;
		while (b->len + len + 1 > cap)
			cap *= 2;
		char *p = realloc(b->data, cap);
		if (p == NULL)
			return false;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, len);
	b->len += len;
	b->data[b->len] = '\0';
	return true;
}

/* One batch item as the daemon builds it (core/ingest.c):
 * {"instance":..,"channel":..,"event":<normalized event>,"raw":<webhook item>}. */
static bool add_item(dd *g, const mix_event *ev, bool first)
{
	char event[DD_ITEM_MAX], raw[DD_ITEM_MAX], head[256];
	size_t elen, rlen;
	int n = snprintf(head, sizeof(head), "%s{\"instance\":%s,\"channel\":%s,\"event\":",
	                 first ? "" : ",", g->instance_json, g->channel_json);

	return n > 0 && (size_t)n < sizeof(head) &&
	       mix_render_event(&g->mix, &g->render, ev, event, sizeof(event), &elen) &&
	       mix_render_item(&g->mix, &g->render, ev, raw, sizeof(raw), &rlen) &&
	       buf_add(&g->buf, head, (size_t)n) && buf_add(&g->buf, event, elen) &&
	       buf_add(&g->buf, ",\"raw\":", 7) && buf_add(&g->buf, raw, rlen) &&
	       buf_add(&g->buf, "}", 1);
}

/* Queue one parley_ingest_batch call with the next B events. */
static bool send_function_batch(dd *g, PGconn *pg)
{
	g->buf.len = 0;
	if (!buf_add(&g->buf, "[", 1))
		return false;
	for (int i = 0; i < g->o.batch; i++) {
		mix_event ev;
		mix_next(&g->mix, &ev);
		if (!add_item(g, &ev, i == 0))
			return false;
	}
	if (!buf_add(&g->buf, "]", 1))
		return false;
	const char *params[2] = { g->buf.data, g->o.opts_json };
	return PQsendQueryParams(pg, DD_SQL_FUNCTION, 2, NULL, params, NULL, NULL, 0) == 1;
}

/* Queue B inserts into inbound_event (one transaction with the sync). */
static bool send_insert_batch(dd *g, PGconn *pg)
{
	char event[DD_ITEM_MAX], raw[DD_ITEM_MAX], ptime[24];
	size_t elen, rlen;

	for (int i = 0; i < g->o.batch; i++) {
		mix_event ev;
		mix_parts p;
		mix_next(&g->mix, &ev);
		mix_parts_of(&g->mix, &ev, &p);
		snprintf(ptime, sizeof(ptime), "%lld", (long long)mix_time_ms(&ev));
		if (!mix_render_event(&g->mix, &g->render, &ev, event, sizeof(event), &elen) ||
		    !mix_render_item(&g->mix, &g->render, &ev, raw, sizeof(raw), &rlen))
			return false;
		const char *params[8] = {
			g->o.instance, p.dedupe, mix_type_name(&ev), p.id, p.cid, event, raw, ptime,
		};
		if (PQsendQueryParams(pg, DD_SQL_INSERT, 8, NULL, params, NULL, NULL, 0) != 1)
			return false;
	}
	return true;
}

/* Build and queue one batch on c, then flush what the socket takes. */
static bool send_batch(dd *g, dd_conn *c)
{
	int64_t t = bench_now_ns();
	bool ok = g->o.sql == DD_FUNCTION ? send_function_batch(g, c->pg) : send_insert_batch(g, c->pg);
	int64_t built = bench_now_ns();

	if (!ok || PQpipelineSync(c->pg) != 1) {
		/* Rendering fails only when out of memory; libpq says why otherwise. */
		fprintf(stderr, "dbdrive: cannot send a batch: %s\n",
		        PQstatus(c->pg) == CONNECTION_OK ? "out of memory" : PQerrorMessage(c->pg));
		return false;
	}
	g->build_ns += built - t;
	g->items_built += (uint64_t)g->o.batch;

	/* A batch's latency counts from when it was ready to go. */
	dd_flight *f = &c->fifo[(c->head + c->n) % DD_MAX_DEPTH];
	memset(f, 0, sizeof(*f));
	f->start_ns = built;
	f->items = g->o.batch;
	f->measured = built >= g->warm_end && built < g->end;
	if (f->measured && g->first_start_ns == 0)
		g->first_start_ns = built;
	c->n++;

	int fl = PQflush(c->pg);
	if (fl < 0) {
		fprintf(stderr, "dbdrive: cannot send a batch: %s", PQerrorMessage(c->pg));
		return false;
	}
	c->flushing = fl == 1;
	return true;
}

static void show_error(dd *g, const PGresult *r)
{
	if (g->errors_shown++ < DD_MAX_ERRORS_SHOWN)
		fprintf(stderr, "dbdrive: batch failed: %s", PQresultErrorMessage(r));
}

/* The answer of parley_ingest_batch: {"inserted":N,"replays":M,...}. */
static void read_function_result(dd *g, dd_flight *f, const PGresult *r)
{
	json_t *o = PQntuples(r) == 1 ? json_loads(PQgetvalue(r, 0, 0), 0, NULL) : NULL;
	json_t *ins = json_object_get(o, "inserted"), *rep = json_object_get(o, "replays");
	if (!json_is_integer(ins) || !json_is_integer(rep)) {
		if (g->errors_shown++ < DD_MAX_ERRORS_SHOWN)
			fprintf(stderr, "dbdrive: unexpected answer of parley_ingest_batch: %.200s\n",
			        PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "(no row)");
		f->failed = true;
	} else {
		f->inserted += json_integer_value(ins);
		f->replays += json_integer_value(rep);
	}
	json_decref(o);
}

/* The oldest batch of c is committed (or failed): count it. */
static bool complete_batch(dd *g, dd_conn *c)
{
	dd_flight *f = &c->fifo[c->head];
	int64_t done = bench_now_ns();
	dd_counts *k = f->measured ? &g->meas : &g->warm;

	c->head = (c->head + 1) % DD_MAX_DEPTH;
	c->n--;
	if (f->failed) {
		k->failed++;
		return true;
	}
	k->batches++;
	k->items += (uint64_t)f->items;
	k->inserted += (uint64_t)f->inserted;
	k->replays += (uint64_t)f->replays;
	if (f->measured) {
		if (done > g->last_done_ns)
			g->last_done_ns = done;
		return bench_record_latency(&g->lat_ms, &g->n_lat, &g->cap_lat, (double)(done - f->start_ns) / 1e6);
	}
	return true;
}

/* Read whatever results c has; false on a broken connection. */
static bool read_results(dd *g, dd_conn *c)
{
	if (PQconsumeInput(c->pg) != 1) {
		fprintf(stderr, "dbdrive: connection lost: %s", PQerrorMessage(c->pg));
		return false;
	}
	while (c->n > 0 && !PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);
		if (r == NULL)
			continue;   /* the end of one statement's results */
		dd_flight *f = &c->fifo[c->head];
		switch (PQresultStatus(r)) {
		case PGRES_PIPELINE_SYNC:
			if (!complete_batch(g, c)) {
				PQclear(r);
				fprintf(stderr, "dbdrive: out of memory\n");
				return false;
			}
			break;
		case PGRES_TUPLES_OK:
			read_function_result(g, f, r);
			break;
		case PGRES_COMMAND_OK: {
			long n = strtol(PQcmdTuples(r), NULL, 10);
			f->inserted += n;
			f->replays += 1 - n;
			break;
		}
		case PGRES_PIPELINE_ABORTED:
			break;   /* a statement after the one that failed */
		default:
			show_error(g, r);
			f->failed = true;
			break;
		}
		PQclear(r);
	}
	return true;
}

/* --------------------------------------------------------------- the run */

static bool run(dd *g)
{
	struct pollfd *fds = calloc((size_t)g->o.connections, sizeof(*fds));
	bool ok = fds != NULL;

	g->t0 = bench_now_ns();
	g->warm_end = g->t0 + (int64_t)(g->o.warmup * 1e9);
	g->end = g->warm_end + (int64_t)(g->o.duration * 1e9);
	while (ok) {
		int64_t now = bench_now_ns();
		bool busy = false;
		if (now >= g->end || interrupted)
			g->stopping = true;
		for (int i = 0; i < g->o.connections && ok; i++) {
			dd_conn *c = &g->conns[i];
			while (ok && !g->stopping && c->n < g->o.depth)
				ok = send_batch(g, c);
			busy = busy || c->n > 0;
		}
		if (!ok || (g->stopping && !busy))
			break;
		if (g->stopping && now - g->end > (int64_t)(g->o.drain * 1e9)) {
			g->timed_out = true;
			break;
		}

		for (int i = 0; i < g->o.connections; i++) {
			fds[i].fd = PQsocket(g->conns[i].pg);
			fds[i].events = POLLIN | (g->conns[i].flushing ? POLLOUT : 0);
			fds[i].revents = 0;
		}
		if (poll(fds, (nfds_t)g->o.connections, 50) < 0 && errno != EINTR) {
			fprintf(stderr, "dbdrive: poll: %s\n", strerror(errno));
			ok = false;
			break;
		}
		for (int i = 0; i < g->o.connections && ok; i++) {
			dd_conn *c = &g->conns[i];
			if (fds[i].revents & POLLOUT) {
				int fl = PQflush(c->pg);
				ok = fl >= 0;
				c->flushing = fl == 1;
			}
			if (ok && (fds[i].revents & (POLLIN | POLLERR | POLLHUP)))
				ok = read_results(g, c);
		}
	}
	free(fds);
	return ok;
}

/* ------------------------------------------------------------------ report */

static bool report(dd *g, double cpu, double wall)
{
	const dd_counts *m = &g->meas;
	double elapsed = 0;
	if (m->batches > 0 && g->last_done_ns > g->first_start_ns)
		elapsed = (double)(g->last_done_ns - g->first_start_ns) / 1e9;

	if (g->n_lat > 0)   /* qsort wants a valid pointer even for nothing */
		qsort(g->lat_ms, g->n_lat, sizeof(double), mix_cmp_double);
	json_t *out = json_pack(
		"{s:s, s:s, s:i, s:i, s:i, s:f, s:f, s:s, s:I,"
		" s:{s:I, s:I}, s:I, s:I, s:I, s:f, s:f, s:f,"
		" s:{s:f, s:f, s:f, s:f},"
		" s:{s:I, s:I},"
		" s:{s:f, s:f, s:f, s:f},"
		" s:b, s:b}",
		"tool", "dbdrive",
		"sql", g->o.sql == DD_FUNCTION ? "parley_ingest_batch" : "inbound_event insert",
		"connections", g->o.connections,
		"batch", g->o.batch,
		"depth", g->o.depth,
		"duration_s", g->o.duration,
		"warmup_s", g->o.warmup,
		"prefix", g->o.mix.prefix,
		"seed", (json_int_t)g->o.mix.seed,
		"batches", "committed", (json_int_t)m->batches, "failed", (json_int_t)m->failed,
		"items", (json_int_t)m->items,
		"inserted", (json_int_t)m->inserted,
		"replays", (json_int_t)m->replays,
		"elapsed_s", elapsed,
		"items_per_s", elapsed > 0 ? (double)m->items / elapsed : 0.0,
		"inserted_per_s", elapsed > 0 ? (double)m->inserted / elapsed : 0.0,
		"batch_latency_ms",
		"p50", mix_percentile(g->lat_ms, g->n_lat, 50),
		"p90", mix_percentile(g->lat_ms, g->n_lat, 90),
		"p99", mix_percentile(g->lat_ms, g->n_lat, 99),
		"max", g->n_lat ? g->lat_ms[g->n_lat - 1] : 0.0,
		"warmup", "committed", (json_int_t)g->warm.batches, "failed", (json_int_t)g->warm.failed,
		"client",
		"cpu_s", cpu, "wall_s", wall, "cpu_share", wall > 0 ? cpu / wall : 0.0,
		"build_us_per_item",
		g->items_built ? (double)g->build_ns / (double)g->items_built / 1e3 : 0.0,
		"drain_timed_out", g->timed_out, "interrupted", (bool)interrupted);
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

static void teardown(dd *g)
{
	if (g->conns) {
		for (int i = 0; i < g->o.connections; i++)
			PQfinish(g->conns[i].pg);   /* NULL is fine */
	}
	free(g->conns);
	free(g->lat_ms);
	free(g->buf.data);
	free(g->instance_json);
	free(g->channel_json);
	mix_render_free(&g->render);
	mix_free(&g->mix);
}

int main(int argc, char **argv)
{
	static dd g;
	int rc = 1;

	if (!parse_args(argc, argv, &g.o))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	char err[300];
	g.instance_json = mix_json_quote(g.o.instance);
	g.channel_json = mix_json_quote(g.o.channel);
	if (!mix_init(&g.mix, &g.o.mix) || !mix_render_init(&g.render) || g.instance_json == NULL ||
	    g.channel_json == NULL) {
		fprintf(stderr, "dbdrive: out of memory or names not valid UTF-8\n");
		goto out;
	}
	if (!mix_self_check(&g.o.mix, &g.render, DD_SELF_CHECK, err, sizeof(err))) {
		fprintf(stderr, "dbdrive: self-check: %s\n", err);
		goto out;
	}
	if (!connect_all(&g))
		goto out;

	double cpu0 = bench_cpu_seconds();
	int64_t w0 = bench_now_ns();
	bool ok = run(&g);
	double cpu = bench_cpu_seconds() - cpu0, wall = (double)(bench_now_ns() - w0) / 1e9;
	if (report(&g, cpu, wall) && ok)
		rc = interrupted ? 130 : g.meas.failed > 0 ? 3 : 0;
out:
	teardown(&g);
	return rc;
}
