/* policy.c - the cluster policy on a running node.
 *
 * At start (policy_start, blocking, before the loop) the node stores its
 * file's cluster keys as version 1 if no version exists, then takes the
 * version in force. On the loop it LISTENs on channel parley_policy (the
 * shared db_listen client), which parley_policy_apply notifies in the
 * transaction that stores a version; on every notification, and whenever
 * the LISTEN is (re)established (notifications sent while it was away
 * reached no one), it asks the pool, never blocking, for a newer version
 * (one cheap indexed query). A new version is
 * validated like a policy file, its values are copied into the running
 * configuration, and main reconfigures ingest and the job runner.
 *
 * Disagreement is reported, never resolved by the node: a file whose
 * cluster keys differ from the version in force is logged once per version
 * (naming the keys), shown in /readyz and in parley_policy_file_differs;
 * instance names the policy uses that this node does not load are logged
 * and shown the same way. */
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "db.h"
#include "db_listen.h"
#include "log.h"
#include "metrics.h"
#include "policy_store.h"
#include "util.h"

#define LOG_AREA "policy"
#define PATHS_MAX 512

static struct {
	struct event_base *base;
	db_listen *listen;          /* parley_policy notifications */
	cfg **node;                 /* borrowed: main's running configuration */
	policy_applied_fn applied;
	long long version;          /* in force here; 0: none known */
	json_t *body;               /* its canonical body; NULL when none */
	cfg *policy;                /* its values, parsed */
	json_t *file_body;          /* the node file's own cluster part */
	long long warned;           /* the version the disagreement was logged for */
	long long refused;          /* a version this binary could not read (logged once) */
	char differing[PATHS_MAX];  /* file keys that differ ("" = none) */
	char unknown[PATHS_MAX];    /* names this node does not load ("" = none) */
	char unrouted[PATHS_MAX];   /* sinks this node loads that the policy routes nowhere */
	bool checking, publishing;
} P;

static const char *file_of(void)
{
	return P.node != NULL && *P.node != NULL ? (*P.node)->file : "the node's file";
}

/* Compare the file and the policy with this node's instances; log once per version. */
static void assess(const cfg *node)
{
	P.differing[0] = P.unknown[0] = P.unrouted[0] = '\0';
	if (P.body == NULL)
		return;
	/* A file without cluster keys leaves them to the policy: it cannot differ. */
	if (node->writes_cluster_keys)
		cfg_cluster_differences(P.file_body, P.body, P.differing, sizeof(P.differing));
	cfg_policy_unknown_names(node, P.policy, P.unknown, sizeof(P.unknown));
	cfg_policy_unrouted_sinks(node, P.policy, P.unrouted, sizeof(P.unrouted));
	if (P.warned == P.version)
		return;
	P.warned = P.version;
	if (P.differing[0] != '\0')
		log_warn(LOG_AREA, "%s differs from cluster policy version %lld in %s; the policy applies "
		         "(parleyd --show-policy prints it)", node->file, P.version, P.differing);
	if (P.unknown[0] != '\0')
		log_warn(LOG_AREA, "cluster policy version %lld names instances this node does not load: %s",
		         P.version, P.unknown);
	if (P.unrouted[0] != '\0')
		log_warn(LOG_AREA, "cluster policy version %lld has no route for sinks %s: they take no "
		         "conversations", P.version, P.unrouted);
}

/* Make `body` (version `version`) the policy in force and copy its values
 * into node. On a body this binary cannot read, keeps the previous one. */
static bool adopt(long long version, json_t *body, cfg *node)
{
	char what[64], err[1024];
	snprintf(what, sizeof(what), "cluster policy version %lld", version);
	cfg *policy = NULL;
	if (!cfg_policy_parse(body, what, &policy, err, sizeof(err))) {
		if (P.refused != version)
			log_error(LOG_AREA, "%s is not applied, version %lld stays in force: %s", what,
			          P.version, err);
		P.refused = version;
		json_decref(body);
		return false;
	}
	cfg_free(P.policy);
	json_decref(P.body);
	P.policy = policy;
	/* Canonical again, so a body stored by another release compares by value. */
	P.body = cfg_cluster_json(policy);
	json_decref(body);
	P.version = version;
	cfg_take_cluster(node, policy);
	assess(node);
	return true;
}

void policy_start(const char *dsn, cfg *node)
{
	char err[1024] = "no version stored", by[300];
	json_decref(P.file_body);
	P.file_body = cfg_cluster_json(node);
	snprintf(by, sizeof(by), "first start with %s", node->file);
	policy_applied a = { 0 };
	if (policy_store_apply(dsn, P.file_body, -1, true, by, &a, err, sizeof(err)) != POLICY_DONE) {
		log_error(LOG_AREA, "no cluster policy: %s; this node uses its file's cluster keys", err);
		return;
	}
	if (a.changed)
		log_info(LOG_AREA, "cluster policy version %lld stored from %s (no version existed)",
		         a.version, node->file);
	long long version = 0;
	json_t *body = NULL;
	if (!policy_store_current(dsn, &version, &body, NULL, 0, err, sizeof(err)) || body == NULL) {
		log_error(LOG_AREA, "cannot read the cluster policy: %s; this node uses its file's "
		          "cluster keys", err);
		return;
	}
	if (adopt(version, body, node))
		log_info(LOG_AREA, "cluster policy version %lld in force", version);
}

/* ------------------------------------------------------------ watching */

static void newer_done(db_batch *b, bool ok, const char *error, void *arg)
{
	(void)arg;
	P.checking = false;
	if (!ok) {
		log_debug(LOG_AREA, "looking for a new cluster policy: %s", error ? error : "?");
		return;
	}
	PGresult *r = db_batch_result(b, 0);
	if (r == NULL || PQntuples(r) != 1 || P.node == NULL || *P.node == NULL)
		return;
	long long version = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	json_t *body = json_loads(PQgetvalue(r, 0, 1), 0, NULL);
	long long was = P.version;
	if (body == NULL || !adopt(version, body, *P.node))
		return;
	log_info(LOG_AREA, "cluster policy version %lld applied (was %lld)", version, was);
	if (P.applied != NULL)
		P.applied();
}

static void check_now(void)
{
	if (P.checking)
		return;
	/* A version refused once is not fetched again; a newer one is. */
	char after[24];
	snprintf(after, sizeof(after), "%lld", P.refused > P.version ? P.refused : P.version);
	const char *params[] = { after };
	db_batch *b = db_batch_new();
	db_batch_add(b, POLICY_NEWER_SQL, 1, params);
	db_batch_set_background(b);
	P.checking = true;
	db_batch_submit(b, newer_done, NULL);
}

static void on_notify(void *arg, const char *channel, const char *payload)
{
	(void)arg, (void)channel, (void)payload;
	check_now();
}

static void on_listening(void *arg, bool again)
{
	(void)arg, (void)again;
	check_now();   /* a version stored before the LISTEN took effect */
}

static void collect(void *arg)
{
	(void)arg;
	metrics_gauge_set("parley_policy_version", "Cluster policy version in force on this node "
	                  "(0: none)", NULL, (double)P.version);
	metrics_gauge_set("parley_policy_file_differs", "1 if this node's file has cluster keys that "
	                  "differ from the policy in force", NULL, P.differing[0] != '\0' ? 1 : 0);
}

bool policy_watch(struct event_base *base, cfg **node_ref, policy_applied_fn applied)
{
	P.base = base;
	P.node = node_ref;
	P.applied = applied;
	metrics_add_collector(collect, NULL);
	const cfg *c = *node_ref;
	db_listen_options lo = {
		.dsn = c->database.dsn, .connect_timeout_ms = c->database.connect_timeout_ms,
		.application_name = "parleyd-policy", .log_component = LOG_AREA,
		.what = "the policy LISTEN connection",
	};
	char why[256];
	P.listen = db_listen_new(base, &lo, why, sizeof(why));
	if (P.listen == NULL || !db_listen_subscribe(P.listen, "parley_policy", on_notify,
	                                             on_listening, NULL)) {
		/* The DSN parsed at start already; only a broken build gets here. */
		log_error(LOG_AREA, "cannot listen for new cluster policy versions: %s",
		          P.listen == NULL ? why : "bad channel");
		return false;
	}
	db_listen_start(P.listen);
	return true;
}

/* ------------------------------------------------------------- reloads */

static void published(db_batch *b, bool ok, const char *error, void *arg)
{
	(void)arg;
	P.publishing = false;
	if (ok) {
		PGresult *r = db_batch_result(b, 0);
		if (r != NULL && PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 2), "t") == 0)
			log_info(LOG_AREA, "reload: the cluster keys of %s stored as cluster policy "
			         "version %s", file_of(), PQgetvalue(r, 0, 0));
		check_now();
		return;
	}
	log_warn(LOG_AREA, "reload: the cluster keys of %s are not stored: %s", file_of(),
	         error ? error : "?");
}

/* The file agreed with the policy in force and now says something else:
 * store it as the next version, refused if another version came first. */
static void publish(const json_t *file_body, long long expect)
{
	char *text = policy_body_text(file_body);
	char expect_s[24], by[300];
	snprintf(expect_s, sizeof(expect_s), "%lld", expect);
	snprintf(by, sizeof(by), "reload of %s", file_of());
	const char *params[] = { text, expect_s, "false", by };
	db_batch *b = db_batch_new();
	db_batch_add(b, POLICY_APPLY_SQL, 4, params);
	free(text);
	P.publishing = true;
	db_batch_submit(b, published, NULL);
}

void policy_node_reloaded(cfg *next)
{
	json_t *file_body = cfg_cluster_json(next);
	bool changed = P.file_body == NULL || !json_equal(file_body, P.file_body);
	bool agreed = P.body != NULL && P.file_body != NULL && json_equal(P.file_body, P.body);
	json_decref(P.file_body);
	P.file_body = file_body;
	if (P.policy == NULL)
		return;   /* no policy known: the node runs on its file */
	cfg_take_cluster(next, P.policy);
	/* The file changed: say again whether it differs, unless it is being
	 * stored (then the new version says). */
	bool store = changed && agreed && !P.publishing;
	P.warned = store ? P.version : 0;
	if (store)
		publish(file_body, P.version);
	assess(next);
}

char *policy_status_json(void)
{
	json_t *o = json_pack("{s:I, s:b}", "version", (json_int_t)P.version, "file_differs",
	                      P.differing[0] != '\0');
	if (P.differing[0] != '\0')
		json_object_set_new(o, "differing_keys", json_string(P.differing));
	if (P.unknown[0] != '\0')
		json_object_set_new(o, "unknown_instances", json_string(P.unknown));
	if (P.unrouted[0] != '\0')
		json_object_set_new(o, "unrouted_sinks", json_string(P.unrouted));
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (text == NULL)
		abort();
	return text;
}

void policy_stop(void)
{
	if (P.listen != NULL)
		db_listen_stop(P.listen);
}

void policy_free(void)
{
	db_listen_free(P.listen);
	cfg_free(P.policy);
	json_decref(P.body);
	json_decref(P.file_body);
	memset(&P, 0, sizeof(P));
}
