/* live_scope.c - what a stream's caller may see, kept current.
 *
 * A scope belongs to one credential (a token or a session, by the digest of
 * its secret) and is shared by every stream that credential opened, so a
 * node holds one copy of an agent's instances however many tabs they have.
 * It holds the channel instances the caller sees, sorted for lookups during
 * fan-out, or "every instance".
 *
 * Every half minute (sooner after a 'team.updated' event) one statement,
 * parley_live_scopes, authenticates every credential again with the rules
 * of any API call and recomputes its instances: a revoked token, an ended
 * session or a disabled agent ends its streams, and a team change takes
 * effect without reconnecting. */
#include "live_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "db.h"
#include "log.h"
#include "util.h"

#define SCOPE_REFRESH_MS 30000
#define SCOPE_SOON_MS 200

struct live_scope {
	live_scope *prev, *next;
	char kind[8];            /* "token" or "session" */
	char hash[65];           /* SHA-256 of the secret, hex */
	int refs;
	bool known;              /* applied at least once */
	bool valid;
	bool all;                /* sees every instance */
	char **instances;        /* sorted; n_instances of them */
	size_t n_instances;
};

static struct {
	bool started, stopping;
	bool refreshing, again;
	live_scope *head;
	size_t n;
	struct event *timer;
} S;

static void clear_instances(live_scope *s)
{
	for (size_t i = 0; i < s->n_instances; i++)
		free(s->instances[i]);
	free(s->instances);
	s->instances = NULL;
	s->n_instances = 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

live_scope *live_scope_get(const char *kind, const char *secret_hash)
{
	for (live_scope *s = S.head; s != NULL; s = s->next) {
		if (strcmp(s->kind, kind) == 0 && strcmp(s->hash, secret_hash) == 0) {
			s->refs++;
			return s;
		}
	}
	live_scope *s = xcalloc(1, sizeof(*s));
	snprintf(s->kind, sizeof(s->kind), "%s", kind);
	snprintf(s->hash, sizeof(s->hash), "%s", secret_hash);
	s->refs = 1;
	s->next = S.head;
	if (S.head != NULL)
		S.head->prev = s;
	S.head = s;
	S.n++;
	return s;
}

void live_scope_put(live_scope *s)
{
	if (s == NULL || --s->refs > 0)
		return;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		S.head = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	S.n--;
	clear_instances(s);
	free(s);
}

const char *live_scope_kind(const live_scope *s)
{
	return s->kind;
}

const char *live_scope_hash(const live_scope *s)
{
	return s->hash;
}

void live_scope_apply(live_scope *s, bool valid, const char *instances_json)
{
	clear_instances(s);
	s->known = true;
	s->valid = valid;
	s->all = false;
	if (!valid)
		return;
	if (instances_json == NULL) {
		s->all = true;
		return;
	}
	json_t *arr = json_loads(instances_json, 0, NULL);
	size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
	if (n > 0) {
		s->instances = xcalloc(n, sizeof(char *));
		for (size_t i = 0; i < n; i++) {
			const char *v = json_string_value(json_array_get(arr, i));
			if (v != NULL)
				s->instances[s->n_instances++] = xstrdup(v);
		}
		qsort(s->instances, s->n_instances, sizeof(char *), cmp_str);
	}
	json_decref(arr);
}

bool live_scope_valid(const live_scope *s)
{
	return s->known && s->valid;
}

bool live_scope_all(const live_scope *s)
{
	return s->known && s->valid && s->all;
}

bool live_scope_sees(const live_scope *s, const char *instance)
{
	if (!s->known || !s->valid)
		return false;
	if (s->all)
		return true;
	return s->n_instances > 0 &&
	       bsearch(&instance, s->instances, s->n_instances, sizeof(char *), cmp_str) != NULL;
}

/* ------------------------------------------------------------- refresh */

typedef struct refresh {
	size_t n;
	live_scope *scopes[];    /* each holding a reference while the query runs */
} refresh;

static void arm(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(S.timer, &tv);
}

static void refreshed(db_batch *b, bool ok, const char *error, void *arg)
{
	refresh *r = arg;
	S.refreshing = false;
	if (!ok) {
		log_debug(LIVE_LOG, "checking stream callers again failed: %s", error ? error : "unknown error");
	} else if (S.started && !S.stopping) {
		PGresult *res = db_batch_result(b, 0);
		for (int row = 0; row < PQntuples(res); row++) {
			long i = atol(PQgetvalue(res, row, 0)) - 1;
			if (i < 0 || (size_t)i >= r->n)
				continue;
			live_scope *s = r->scopes[i];
			bool valid = PQgetvalue(res, row, 1)[0] == 't';
			live_scope_apply(s, valid, PQgetisnull(res, row, 2) ? NULL : PQgetvalue(res, row, 2));
			if (!valid) {
				log_info(LIVE_LOG, "a stream's %s is no longer good: ending its streams", s->kind);
				live_hub_end_scope(s);
			}
		}
	}
	for (size_t i = 0; i < r->n; i++)
		live_scope_put(r->scopes[i]);
	free(r);
	if (S.started && !S.stopping)
		arm(S.again ? SCOPE_SOON_MS : SCOPE_REFRESH_MS);
	S.again = false;
}

static void refresh_all(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (S.stopping)
		return;
	if (S.refreshing) {
		S.again = true;
		return;
	}
	if (S.n == 0) {
		arm(SCOPE_REFRESH_MS);
		return;
	}
	refresh *r = xmalloc(sizeof(*r) + S.n * sizeof(live_scope *));
	r->n = 0;
	/* Array literals: kinds are words and digests hex, nothing to quote. */
	size_t cap = S.n * 80 + 8, klen = 0, hlen = 0;
	char *kinds = xmalloc(S.n * 10 + 8), *hashes = xmalloc(cap);
	kinds[klen++] = '{';
	hashes[hlen++] = '{';
	for (live_scope *s = S.head; s != NULL; s = s->next) {
		s->refs++;
		r->scopes[r->n++] = s;
		klen += (size_t)sprintf(kinds + klen, "%s%s", r->n > 1 ? "," : "", s->kind);
		hlen += (size_t)sprintf(hashes + hlen, "%s%s", r->n > 1 ? "," : "", s->hash);
	}
	kinds[klen++] = '}';
	kinds[klen] = '\0';
	hashes[hlen++] = '}';
	hashes[hlen] = '\0';
	const char *params[] = { kinds, hashes };
	db_batch *b = db_batch_new();
	db_batch_add(b, "SELECT n, valid, instances::text FROM parley_live_scopes($1::text[], $2::text[])",
	             2, params);
	free(kinds);
	free(hashes);
	S.refreshing = true;
	db_batch_submit(b, refreshed, r);
}

void live_scope_refresh_soon(void)
{
	if (!S.started || S.stopping)
		return;
	if (S.refreshing) {
		S.again = true;
		return;
	}
	arm(SCOPE_SOON_MS);
}

void live_scope_start(struct event_base *base)
{
	S.timer = evtimer_new(base, refresh_all, NULL);
	if (S.timer == NULL) {
		fputs("parleyd: out of memory\n", stderr);
		abort();
	}
	S.started = true;
	S.stopping = false;
	arm(SCOPE_REFRESH_MS);
}

void live_scope_stop(void)
{
	if (!S.started)
		return;
	S.stopping = true;
	evtimer_del(S.timer);
}

void live_scope_free(void)
{
	if (!S.started)
		return;
	event_free(S.timer);
	S.timer = NULL;
	S.started = false;
}
