/* pacer.h - outbound request pacing shared by the shipped plugins.
 *
 * A platform with a request budget (Zendesk, Freshdesk, Slack) wants a
 * backlog to drain at its rate, not in 429 storms. The pacer is a token
 * bucket (rate tokens per period, holding at most `burst`), a FIFO of work
 * waiting for its token, a pause every request obeys after a 429's
 * Retry-After, and an optional limit of requests in flight. Work that would
 * wait longer than `max_wait_ms` goes back to its owner with the time its
 * turn comes, so no job is held past its lease.
 *
 * Work items are the owner's structs with a pu_pacer_item as a member; the
 * pacer links them and never frees them except through the owner's
 * callbacks. It uses only the public ABI (timers, now_ms). Compiled into
 * each plugin like plugin_util.c. */
#ifndef PARLEY_PLUGIN_PACER_H
#define PARLEY_PLUGIN_PACER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parley/parley.h"
#include "plugin_util.h"

/* Put one in the struct of each piece of work; convert back with
 * PU_PACER_OWNER. */
typedef struct pu_pacer_item {
	struct pu_pacer_item *next;
} pu_pacer_item;

/* A FIFO of items: the pacer's waiting work, and any list an owner keeps
 * of items that left the pacer (an item is in one list at a time). */
typedef struct pu_queue {
	pu_pacer_item *head, *tail;
	size_t count;
} pu_queue;

/* Add item (ownership stays the caller's) at the back, or the front. */
PU_INTERNAL void pu_queue_push(pu_queue *q, pu_pacer_item *item, bool front);
/* The oldest item, unlinked; NULL when q is empty. */
PU_INTERNAL pu_pacer_item *pu_queue_pop(pu_queue *q);

/* The struct of type `type` whose member `member` is the item at p. */
#define PU_PACER_OWNER(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

/* Start item's request now: the item's token is taken. Return true when a
 * request is in flight (the owner calls pu_pacer_done when it ends), false
 * when the item was finished on the spot (e.g. the request could not start).
 * May call pu_pacer_take to add more waiting items to the same request. */
typedef bool (*pu_pacer_start_fn)(void *owner, pu_pacer_item *item);
/* Give item back to the core: complete it as a retry at retry_at_ms (0: the
 * core's backoff) with reason (borrowed), and free it. */
typedef void (*pu_pacer_back_fn)(void *owner, pu_pacer_item *item, int64_t retry_at_ms,
                                 const char *reason);

typedef struct pu_pacer_rate {
	int64_t tokens;             /* this many requests ... (>= 1) */
	int64_t period_ms;          /* ... per this many ms (>= 1) */
	int64_t burst;              /* the bucket holds at most this many (>= 1) */
	int64_t max_in_flight;      /* 0: no limit */
	int64_t max_wait_ms;        /* a longer wait hands work back */
} pu_pacer_rate;

typedef struct pu_pacer {
	const parley_host *host;    /* owned by the core; valid until destroy */
	parley_instance *inst;      /* owned by the core; valid until destroy */
	void *owner;                /* borrowed: the callbacks' first argument */
	pu_pacer_start_fn start;
	pu_pacer_back_fn back;
	const char *pause_reason;   /* static: why work goes back during a long pause */
	pu_pacer_rate rate;
	pu_queue waiting;           /* items owned by the owner */
	int64_t in_flight;
	int64_t tokens_milli;       /* the bucket, in thousandths of a request */
	int64_t refilled_ms;        /* when tokens_milli was last brought up to date */
	int64_t paused_until_ms;    /* a 429 pauses every request until then */
	parley_timer *timer;        /* owned by the core; NULL when none is pending */
	bool stopped;
} pu_pacer;

/* Set p up with a full bucket. host, inst: the instance's; owner, start,
 * back: the callbacks and their argument; pause_reason: a static string.
 * Returns false when rate is out of range. */
PU_INTERNAL bool pu_pacer_init(pu_pacer *p, const parley_host *host, parley_instance *inst,
                               const pu_pacer_rate *rate, void *owner, pu_pacer_start_fn start,
                               pu_pacer_back_fn back, const char *pause_reason);

/* New settings (a reload); the bucket keeps its tokens up to the new burst.
 * Returns false (and keeps the old rate) when rate is out of range. */
PU_INTERNAL bool pu_pacer_set_rate(pu_pacer *p, const pu_pacer_rate *rate);

/* Queue new work, unless its turn behind everything waiting is further than
 * max_wait_ms away: then false, *retry_at_ms is when it would come, and the
 * item stays the caller's. Call pu_pacer_kick to start what may start. */
PU_INTERNAL bool pu_pacer_submit(pu_pacer *p, pu_pacer_item *item, int64_t *retry_at_ms);
/* Would pu_pacer_submit hand new work back now? Then true with *retry_at_ms
 * (for work that must do something first, e.g. record what it will post,
 * only when it will really be queued). */
PU_INTERNAL bool pu_pacer_would_hand_back(pu_pacer *p, int64_t *retry_at_ms);

/* Queue work without the wait check: at the front for the next step of
 * work already under way (finishing started work first), else at the back. */
PU_INTERNAL void pu_pacer_push(pu_pacer *p, pu_pacer_item *item, bool front);

/* The oldest waiting item, now the caller's; NULL when none waits. For a
 * start callback that puts several items into one request. */
PU_INTERNAL pu_pacer_item *pu_pacer_take(pu_pacer *p);

/* Start what the bucket allows now; otherwise make sure a timer comes back.
 * A pause longer than max_wait_ms hands every waiting item back. */
PU_INTERNAL void pu_pacer_kick(pu_pacer *p);

/* A request that start reported in flight has ended; kicks. */
PU_INTERNAL void pu_pacer_done(pu_pacer *p);

/* The platform said to wait (a 429) until until_ms: no request starts
 * before then, and no burst follows it. */
PU_INTERNAL void pu_pacer_pause(pu_pacer *p, int64_t until_ms);

/* The pause to use when a 429 names no Retry-After: one request's interval,
 * at least a second. */
PU_INTERNAL int64_t pu_pacer_default_pause_ms(const pu_pacer *p);

/* Start nothing more; every waiting item goes back with reason (borrowed). */
PU_INTERNAL void pu_pacer_stop(pu_pacer *p, const char *reason);

/* Cancel the timer and free every waiting item with free_item (no outcome:
 * the core has given up on them). */
PU_INTERNAL void pu_pacer_destroy(pu_pacer *p, void (*free_item)(pu_pacer_item *item));

#endif
