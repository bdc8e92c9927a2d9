/* ingest.h - durable intake of the events a channel emits for one request.
 *
 * Events are validated and copied as they are emitted; ingest_commit writes
 * them all to inbound_event in one transaction (a replay, same dedupe key on
 * the same instance, is a no-op). The caller answers the platform 2xx only
 * when the commit callback says ok. */
#ifndef PARLEY_CORE_INGEST_H
#define PARLEY_CORE_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include "parley/parley.h"

typedef struct ingest_set ingest_set;

/* instance: the channel instance name (copied). */
ingest_set *ingest_set_new(const char *instance);
/* Validate and copy one event. false (with a reason) if it is invalid. */
bool ingest_set_add(ingest_set *s, const parley_event *ev, char *err, size_t errlen);
size_t ingest_set_count(const ingest_set *s);

typedef void (*ingest_done_fn)(void *arg, bool ok, const char *error);
/* Takes ownership of s. done runs exactly once, from the loop (an empty set
 * is an empty transaction). */
void ingest_set_commit(ingest_set *s, ingest_done_fn done, void *arg);
void ingest_set_free(ingest_set *s);

#endif
