/* ingest_batch.h - group commit of inbound events across requests.
 *
 * Requests hand their validated event sets here. The batcher gathers the sets
 * of concurrent requests and writes them in one transaction, one statement:
 * SELECT parley_ingest_batch(items, opts) — raw events, identities,
 * customers, conversations, messages, revisions, case references. A batch
 * is flushed when it holds batch_max_events events or batch_max_delay_ms
 * after its first set arrived, whichever comes first, with at most
 * max_inflight_batches being committed at once. Every request of a batch is
 * answered only after the commit; when a batch of several requests fails while
 * the database is up, each request is retried alone so one bad request cannot
 * fail its neighbours. */
#ifndef PARLEY_CORE_INGEST_BATCH_H
#define PARLEY_CORE_INGEST_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <event2/event.h>

#include "config.h"
#include "ingest.h"

/* Apply the ingest settings of `c` (at start and on SIGHUP). base: borrowed,
 * the loop; c: borrowed for the call. */
void ingest_batch_configure(struct event_base *base, const cfg *c);
/* Takes ownership of s; done(arg, ok, error) runs exactly once, from the loop. */
void ingest_batch_enqueue(ingest_set *s, ingest_done_fn done, void *arg);
/* Sets waiting or being committed. */
size_t ingest_batch_pending(void);
/* At exit, after the loop drained and before requests are freed: answer
 * sets still waiting (503) and free the settings. */
void ingest_batch_free(void);

#endif
