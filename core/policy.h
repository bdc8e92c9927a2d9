/* policy.h - a node and the cluster policy: which version is in force here,
 * taking a new one without a restart, and saying when the node's own file
 * disagrees.
 *
 * The cluster-scoped settings (config.h: cfg_cluster_json) come from the
 * policy stored in PostgreSQL (policy_store.h), never from the node's file,
 * so every node applies the same rules. The file's cluster keys only seed
 * version 1 when none exists yet; while the file agrees with the version in
 * force, a SIGHUP that changes them stores them as the next version. */
#ifndef PARLEY_CORE_POLICY_H
#define PARLEY_CORE_POLICY_H

#include <event2/event.h>

#include "config.h"
#include "parley/parley.h"  /* PARLEY_MUSTCHECK */

/* Called after new cluster values were taken into the running configuration. */
typedef void (*policy_applied_fn)(void);

/* Before the loop (blocking): store version 1 from node's file if none
 * exists, load the version in force and take its values into node (in
 * place). A database without the policy table yet is logged, and the node
 * runs on its file's values until a version appears. */
void policy_start(const char *dsn, cfg *node);
/* On the loop: LISTEN for new versions (a connection of its own, through
 * db_listen). node_ref: borrowed, main's pointer to the running
 * configuration (a SIGHUP replaces it). false (logged) if the listener
 * cannot be set up. */
PARLEY_MUSTCHECK bool policy_watch(struct event_base *base, cfg **node_ref,
                                   policy_applied_fn applied);
/* SIGHUP: `next` is about to replace the running configuration. Takes the
 * policy's values into next; stores the file's cluster keys as the next
 * version if they changed and the file agreed with the version in force. */
void policy_node_reloaded(cfg *next);
/* For /readyz: {"version", "file_differs", "differing_keys"?,
 * "unknown_instances"?, "unrouted_sinks"?} as JSON text, owned by the caller. */
char *policy_status_json(void);
/* Stop listening for new versions (shutdown: no new database work). */
void policy_stop(void);
/* Free the listener and state (after the loop). */
void policy_free(void);

#endif
