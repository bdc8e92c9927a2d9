/* db_listen.c - LISTEN subscriptions on a non-blocking connection of their
 * own, reconnecting with backoff.
 *
 * States: DOWN (closed; a timer reconnects), CONNECTING (PQconnectPoll on
 * socket events, bounded by a timer), SUBSCRIBING (one "LISTEN a; LISTEN b"
 * sent, waiting for one result per channel), READY (notifications arrive on
 * the socket). Any failure goes back to DOWN. */
#include "db_listen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libpq-fe.h>

#include "log.h"
#include "util.h"

#define LISTEN_BACKOFF_MIN_MS 100
#define LISTEN_BACKOFF_MAX_MS 5000
#define LISTEN_CHANNEL_MAX 63        /* PostgreSQL's identifier length */

typedef enum listen_state {
	LISTEN_DOWN,
	LISTEN_CONNECTING,
	LISTEN_SUBSCRIBING,
	LISTEN_READY
} listen_state;

typedef struct subscription {
	char channel[LISTEN_CHANNEL_MAX + 1];
	db_listen_notify_fn notify;
	db_listen_ready_fn ready;
	void *arg;
} subscription;

struct db_listen {
	struct event_base *base;      /* borrowed */
	char *dsn;                    /* owned; never logged */
	char *app_name, *component, *what;  /* owned */
	int connect_timeout_ms;
	subscription *subs;           /* owned */
	size_t n_subs;
	bool running;
	listen_state state;
	PGconn *pg;                   /* owned while not DOWN */
	struct event *io;             /* owned; re-created when the socket or interest changes */
	evutil_socket_t io_fd;
	short io_what;
	struct event *timer;          /* owned. DOWN: reconnect; CONNECTING: connect timeout */
	int backoff_ms;
	size_t results;               /* SUBSCRIBING: LISTEN results received */
	bool outage;                  /* a failure was logged; say when it is back */
	bool ever_ready;
	char fatal[512];              /* the FATAL the server sent before hanging up */
	uint64_t rng;
};

static void listen_connect(db_listen *l);
static void io_cb(evutil_socket_t fd, short what, void *arg);

static uint64_t jitter(db_listen *l)
{
	/* xorshift64*: only so that daemons do not reconnect in step. */
	if (l->rng == 0)
		l->rng = util_mono_us() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
	l->rng ^= l->rng >> 12;
	l->rng ^= l->rng << 25;
	l->rng ^= l->rng >> 27;
	return l->rng * 2685821657736338717ull;
}

static struct timeval ms_tv(int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	return tv;
}

/* Watch the socket for `what`; libpq may replace the socket while
 * connecting, so `force` re-registers even when the number is the same. */
static bool watch(db_listen *l, short what, bool force)
{
	evutil_socket_t fd = PQsocket(l->pg);
	if (fd < 0)
		return false;
	if (l->io != NULL && !force && fd == l->io_fd && what == l->io_what)
		return true;
	if (l->io != NULL) {
		event_free(l->io);
		l->io = NULL;
	}
	l->io = event_new(l->base, fd, what, io_cb, l);
	if (l->io == NULL)
		return false;
	if (event_add(l->io, NULL) != 0) {
		event_free(l->io);
		l->io = NULL;
		return false;
	}
	l->io_fd = fd;
	l->io_what = what;
	return true;
}

static void close_connection(db_listen *l)
{
	if (l->io != NULL) {
		event_free(l->io);
		l->io = NULL;
	}
	if (l->pg != NULL) {
		PQfinish(l->pg);
		l->pg = NULL;
	}
	if (l->timer != NULL)
		evtimer_del(l->timer);
	l->io_fd = -1;
	l->io_what = 0;
	l->fatal[0] = '\0';
	l->state = LISTEN_DOWN;
}

/* Close and reconnect after a backoff drawn from the upper half of the
 * step. `doing` says what failed ("lost", "cannot connect"); detail, if
 * given, says why better than libpq. */
static void failed(db_listen *l, const char *doing, const char *detail)
{
	char msg[512];
	if (detail != NULL)
		snprintf(msg, sizeof(msg), "%s", detail);
	else if (l->fatal[0] != '\0')
		snprintf(msg, sizeof(msg), "%s", l->fatal);
	else
		util_one_line(l->pg ? PQerrorMessage(l->pg) : "out of memory", msg, sizeof(msg));
	if (!l->outage) {
		log_warn(l->component, "%s %s: %s; reconnecting with backoff", doing, l->what,
		         msg[0] ? msg : "unknown error");
		l->outage = true;
	} else {
		log_debug(l->component, "%s %s: %s", doing, l->what, msg);
	}
	close_connection(l);
	if (!l->running)
		return;
	if (l->backoff_ms == 0)
		l->backoff_ms = LISTEN_BACKOFF_MIN_MS;
	else
		l->backoff_ms = l->backoff_ms * 2 > LISTEN_BACKOFF_MAX_MS ? LISTEN_BACKOFF_MAX_MS
		                                                          : l->backoff_ms * 2;
	int half = l->backoff_ms / 2;
	struct timeval tv = ms_tv(half + (int)(jitter(l) % (uint64_t)(half + 1)));
	evtimer_add(l->timer, &tv);
}

/* Notices, and the FATAL a server sends before it hangs up (which says why
 * better than libpq's "server closed the connection"). */
static void on_notice(void *arg, const PGresult *res)
{
	db_listen *l = arg;
	const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	char msg[512];
	util_one_line(primary ? primary : PQresultErrorMessage(res), msg, sizeof(msg));
	if (severity != NULL && (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0))
		snprintf(l->fatal, sizeof(l->fatal), "%s", msg);
	log_debug(l->component, "server %s on %s: %s", severity ? severity : "notice", l->what, msg);
}

/* Connected: send one LISTEN per channel (names were checked, so they need
 * no quoting beyond the double quotes). */
static void established(db_listen *l)
{
	char sql[(LISTEN_CHANNEL_MAX + 12) * 16];
	size_t off = 0;
	evtimer_del(l->timer);
	for (size_t i = 0; i < l->n_subs && off < sizeof(sql); i++)
		off += (size_t)snprintf(sql + off, sizeof(sql) - off, "LISTEN \"%s\";", l->subs[i].channel);
	if (off >= sizeof(sql) || PQsetnonblocking(l->pg, 1) != 0 || PQsendQuery(l->pg, sql) != 1) {
		failed(l, "cannot LISTEN on", NULL);
		return;
	}
	int flushed = PQflush(l->pg);
	if (flushed < 0 || !watch(l, EV_READ | EV_PERSIST | (flushed == 1 ? EV_WRITE : 0), true)) {
		failed(l, "cannot LISTEN on", NULL);
		return;
	}
	l->results = 0;
	l->state = LISTEN_SUBSCRIBING;
}

static void subscribed(db_listen *l)
{
	bool again = l->ever_ready;
	l->state = LISTEN_READY;
	l->backoff_ms = 0;
	l->outage = false;
	l->ever_ready = true;
	for (size_t i = 0; i < l->n_subs && l->state == LISTEN_READY; i++)
		if (l->subs[i].ready != NULL)
			l->subs[i].ready(l->subs[i].arg, again);
}

static void connect_step(db_listen *l)
{
	switch (PQconnectPoll(l->pg)) {
	case PGRES_POLLING_OK:
		established(l);
		return;
	case PGRES_POLLING_READING:
		if (!watch(l, EV_READ, true))
			failed(l, "cannot connect", NULL);
		return;
	case PGRES_POLLING_WRITING:
		if (!watch(l, EV_WRITE, true))
			failed(l, "cannot connect", NULL);
		return;
	default:
		failed(l, "cannot connect", NULL);
		return;
	}
}

static void dispatch(db_listen *l, const PGnotify *n)
{
	for (size_t i = 0; i < l->n_subs; i++)
		if (strcmp(l->subs[i].channel, n->relname) == 0)
			l->subs[i].notify(l->subs[i].arg, n->relname, n->extra ? n->extra : "");
}

/* Input on an established connection: the LISTEN results, then notifications. */
static void input(db_listen *l, short what)
{
	PGconn *pg = l->pg;
	if ((what & EV_WRITE) != 0) {
		int flushed = PQflush(pg);
		if (flushed < 0 || !watch(l, EV_READ | EV_PERSIST | (flushed == 1 ? EV_WRITE : 0), false)) {
			failed(l, "lost", NULL);
			return;
		}
	}
	if (PQconsumeInput(pg) != 1 || PQstatus(pg) == CONNECTION_BAD) {
		failed(l, "lost", NULL);
		return;
	}
	while (!PQisBusy(pg)) {
		PGresult *r = PQgetResult(pg);
		if (r == NULL) {
			if (l->state == LISTEN_SUBSCRIBING && l->results == l->n_subs) {
				subscribed(l);
				if (l->state != LISTEN_READY || l->pg != pg)
					return;   /* a callback stopped the listener */
			}
			break;
		}
		ExecStatusType st = PQresultStatus(r);
		PQclear(r);
		if (st != PGRES_COMMAND_OK) {
			failed(l, "cannot LISTEN on", NULL);
			return;
		}
		l->results++;
	}
	PGnotify *n;
	while (l->pg == pg && (n = PQnotifies(pg)) != NULL) {
		dispatch(l, n);
		PQfreemem(n);
	}
}

static void io_cb(evutil_socket_t fd, short what, void *arg)
{
	db_listen *l = arg;
	switch (l->state) {
	case LISTEN_CONNECTING:
		connect_step(l);
		return;
	case LISTEN_SUBSCRIBING:
	case LISTEN_READY:
		input(l, what);
		return;
	case LISTEN_DOWN:
		return;
	}
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	db_listen *l = arg;
	if (l->state == LISTEN_DOWN) {
		listen_connect(l);
	} else if (l->state == LISTEN_CONNECTING) {
		char why[64];
		snprintf(why, sizeof(why), "no connection within %d ms", l->connect_timeout_ms);
		failed(l, "cannot connect", why);
	}
}

static void listen_connect(db_listen *l)
{
	/* Like the pool: the DSN as "dbname" with expand_dbname, so a key=value
	 * string and a URI both work. */
	static const char *const keys[] = { "fallback_application_name", "dbname", NULL };
	const char *values[] = { l->app_name, l->dsn, NULL };

	if (!l->running)
		return;
	l->pg = PQconnectStartParams(keys, values, 1);
	if (l->pg == NULL || PQstatus(l->pg) == CONNECTION_BAD) {
		failed(l, "cannot connect", NULL);
		return;
	}
	PQsetNoticeReceiver(l->pg, on_notice, l);
	l->state = LISTEN_CONNECTING;
	if (l->connect_timeout_ms > 0) {
		struct timeval tv = ms_tv(l->connect_timeout_ms);
		evtimer_add(l->timer, &tv);
	}
	/* Before the first PQconnectPoll, libpq says to wait for writability. */
	if (!watch(l, EV_WRITE, true))
		failed(l, "cannot connect", NULL);
}

/* ----------------------------------------------------------------- API */

db_listen *db_listen_new(struct event_base *base, const db_listen_options *o, char *err,
                         size_t errlen)
{
	if (base == NULL || o == NULL || o->dsn == NULL) {
		util_set_err(err, errlen, "no database connection string");
		return NULL;
	}
	if (o->connect_timeout_ms < 0) {
		util_set_err(err, errlen, "connect_timeout_ms must not be negative");
		return NULL;
	}
	/* Like the pool, never repeat libpq's parse error: it may quote a password. */
	char *perr = NULL;
	PQconninfoOption *parsed = PQconninfoParse(o->dsn, &perr);
	if (parsed == NULL) {
		PQfreemem(perr);
		util_set_err(err, errlen, "invalid database connection string (not shown: it may hold "
		             "a password)");
		return NULL;
	}
	PQconninfoFree(parsed);
	db_listen *l = xcalloc(1, sizeof(*l));
	l->base = base;
	l->dsn = xstrdup(o->dsn);
	l->app_name = xstrdup(o->application_name ? o->application_name : "parleyd");
	l->component = xstrdup(o->log_component ? o->log_component : "db_listen");
	l->what = xstrdup(o->what ? o->what : "the LISTEN connection");
	l->connect_timeout_ms = o->connect_timeout_ms;
	l->io_fd = -1;
	l->timer = evtimer_new(base, timer_cb, l);
	if (l->timer == NULL) {
		fputs("parleyd: out of memory\n", stderr);
		abort();
	}
	return l;
}

static bool channel_ok(const char *c)
{
	size_t n = c ? strlen(c) : 0;
	if (n == 0 || n > LISTEN_CHANNEL_MAX)
		return false;
	for (; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
			return false;
	return true;
}

bool db_listen_subscribe(db_listen *l, const char *channel, db_listen_notify_fn notify,
                         db_listen_ready_fn ready, void *arg)
{
	if (l == NULL || l->running || notify == NULL || !channel_ok(channel) || l->n_subs >= 16)
		return false;
	l->subs = xrealloc(l->subs, (l->n_subs + 1) * sizeof(*l->subs));
	subscription *s = &l->subs[l->n_subs++];
	snprintf(s->channel, sizeof(s->channel), "%s", channel);
	s->notify = notify;
	s->ready = ready;
	s->arg = arg;
	return true;
}

void db_listen_start(db_listen *l)
{
	if (l == NULL || l->running || l->n_subs == 0)
		return;
	l->running = true;
	listen_connect(l);
}

void db_listen_stop(db_listen *l)
{
	if (l == NULL)
		return;
	l->running = false;
	close_connection(l);
}

bool db_listen_is_ready(const db_listen *l)
{
	return l != NULL && l->state == LISTEN_READY;
}

void db_listen_free(db_listen *l)
{
	if (l == NULL)
		return;
	db_listen_stop(l);
	event_free(l->timer);
	free(l->subs);
	free(l->dsn);
	free(l->app_name);
	free(l->component);
	free(l->what);
	free(l);
}
