/* policy_store.h - the cluster policy in PostgreSQL, from the command line
 * and at start (blocking; never on the daemon's loop).
 *
 * Table cluster_policy and function parley_policy_apply are in
 * sql/008_cluster_policy.sql; the daemon's loop uses the same SQL through
 * the pool (policy.c). */
#ifndef PARLEY_CORE_POLICY_STORE_H
#define PARLEY_CORE_POLICY_STORE_H

#include "parley/parley.h"  /* PARLEY_MUSTCHECK */

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

/* $1 body, $2 expected version (NULL: any), $3 only if none exists, $4 who. */
#define POLICY_APPLY_SQL \
	"SELECT version, previous, changed FROM parley_policy_apply($1::jsonb, $2::bigint, $3::boolean, $4)"
/* The SQLSTATE of a refused stale expected version. */
#define POLICY_STALE_SQLSTATE "PY001"
/* The current version if newer than $1: version, body. */
#define POLICY_NEWER_SQL \
	"SELECT version, body::text FROM cluster_policy WHERE version > $1::bigint " \
	"ORDER BY version DESC LIMIT 1"

typedef enum policy_status {
	POLICY_DONE,     /* stored, or unchanged */
	POLICY_STALE,    /* the expected version was not the current one: nothing stored */
	POLICY_FAILED,   /* the database refused or was not reached */
} policy_status;

typedef struct policy_applied {
	long long version;   /* in force after the call */
	long long previous;  /* in force before it (0: none) */
	bool changed;        /* a new version was stored */
} policy_applied;

/* Store `body` (a canonical cluster JSON, cfg_cluster_json) as the next
 * version. expect: the version the caller knows, or -1 for any; if_none:
 * store only when no version exists yet. err gets PostgreSQL's reason. */
policy_status policy_store_apply(const char *dsn, const json_t *body, long long expect,
                                 bool if_none, const char *by, policy_applied *out, char *err,
                                 size_t errlen);

/* The version in force: *version 0 and *body NULL when none is stored.
 * applied: "AT by WHO" (may be NULL). *body is owned by the caller. */
PARLEY_MUSTCHECK
bool policy_store_current(const char *dsn, long long *version, json_t **body, char *applied,
                          size_t alen, char *err, size_t errlen);

/* A body as the statements take it (compact, sorted keys); owned by the caller. */
char *policy_body_text(const json_t *body);

#endif
