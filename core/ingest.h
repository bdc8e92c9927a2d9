/* ingest.h - durable intake of the events a channel emits for one request.
 *
 * Events are validated and copied as they are emitted; ingest_batch_enqueue
 * (ingest_batch.h) takes the finished set to the batcher, which commits it
 * together with the sets of other requests in one transaction (a replay, same
 * dedupe key on the same instance, is a no-op). This file knows nothing of
 * the batcher: the set is the batcher's input, not its client. The caller answers the platform 2xx only when the
 * commit callback says ok. */
#ifndef PARLEY_CORE_INGEST_H
#define PARLEY_CORE_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include "parley/parley.h"

typedef struct ingest_set ingest_set;

/* instance: the channel instance name; channel: its plugin's name (both copied). */
ingest_set *ingest_set_new(const char *instance, const char *channel);
/* Validate and copy one event. false (with a reason) if it is invalid. */
PARLEY_MUSTCHECK
bool ingest_set_add(ingest_set *s, const parley_event *ev, char *err, size_t errlen);
/* Validate and copy one ticket event (a sink's webhook). false with a reason. */
PARLEY_MUSTCHECK
bool ingest_set_add_ticket_event(ingest_set *s, const parley_ticket_event *ev, char *err,
                                 size_t errlen);
size_t ingest_set_count(const ingest_set *s);
/* For the batcher: item i as JSON text, borrowed from s. */
const char *ingest_set_item(const ingest_set *s, size_t i);

/* A plugin_state value written in the set's transaction (a polling cursor
 * moves exactly when the events it produced are stored). Copied; replaces
 * an earlier one. */
void ingest_set_set_state(ingest_set *s, const char *key, const char *value);
/* The state to write, or false. Borrowed from s. */
bool ingest_set_state(const ingest_set *s, const char **instance, const char **key,
                      const char **value);

/* The outcome of committing a set: ok once the transaction holding it
 * committed, or false with a reason. Called exactly once, from the loop. */
typedef void (*ingest_done_fn)(void *arg, bool ok, const char *error);
void ingest_set_free(ingest_set *s);

#endif
