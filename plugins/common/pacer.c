/* pacer.c - token bucket, queue and 429 pause for outbound requests.
 *
 * The bucket is kept in thousandths of a request so that low rates (one
 * request a minute) and high ones (a thousand a second) both refill without
 * floating point. A 429 leaves one token at the end of the pause and the
 * bucket does not fill during it: the platform counts differently than we
 * did (other API clients, endpoint limits), so no burst follows a pause. */
#include "pacer.h"

#include <string.h>

#define PACER_MIN_DEFAULT_PAUSE_MS 1000

static bool rate_ok(const pu_pacer_rate *r)
{
	/* The bounds keep elapsed * 1000 * tokens far from overflowing. */
	return r->tokens >= 1 && r->tokens <= 1000000 && r->period_ms >= 1 &&
	       r->period_ms <= 86400000 && r->burst >= 1 && r->burst <= 1000000 &&
	       r->max_in_flight >= 0 && r->max_wait_ms >= 0;
}

static int64_t capacity_milli(const pu_pacer *p)
{
	return p->rate.burst * 1000;
}

/* Bring the bucket up to now (nothing accrues before refilled_ms, which a
 * pause may put in the future). */
static void refill(pu_pacer *p, int64_t now)
{
	if (now <= p->refilled_ms)
		return;
	p->tokens_milli += (now - p->refilled_ms) * 1000 * p->rate.tokens / p->rate.period_ms;
	if (p->tokens_milli > capacity_milli(p))
		p->tokens_milli = capacity_milli(p);
	p->refilled_ms = now;
}

/* How long from now until `needed` more requests may start. */
static int64_t wait_ms(pu_pacer *p, int64_t now, int64_t needed)
{
	int64_t deficit, wait = 0;

	refill(p, now);
	if (p->refilled_ms > now)
		wait = p->refilled_ms - now;
	deficit = needed * 1000 - p->tokens_milli;
	if (deficit > 0)
		wait += (deficit * p->rate.period_ms + 1000 * p->rate.tokens - 1) /
		        (1000 * p->rate.tokens);
	if (p->paused_until_ms - now > wait)
		wait = p->paused_until_ms - now;
	return wait;
}

bool pu_pacer_init(pu_pacer *p, const parley_host *host, parley_instance *inst,
                   const pu_pacer_rate *rate, void *owner, pu_pacer_start_fn start,
                   pu_pacer_back_fn back, const char *pause_reason)
{
	memset(p, 0, sizeof(*p));
	if (!rate_ok(rate))
		return false;
	p->host = host;
	p->inst = inst;
	p->rate = *rate;
	p->owner = owner;
	p->start = start;
	p->back = back;
	p->pause_reason = pause_reason;
	p->refilled_ms = host->now_ms();
	p->tokens_milli = capacity_milli(p);
	return true;
}

bool pu_pacer_set_rate(pu_pacer *p, const pu_pacer_rate *rate)
{
	if (!rate_ok(rate))
		return false;
	refill(p, p->host->now_ms());
	p->rate = *rate;
	if (p->tokens_milli > capacity_milli(p))
		p->tokens_milli = capacity_milli(p);
	return true;
}

void pu_queue_push(pu_queue *q, pu_pacer_item *item, bool front)
{
	item->next = NULL;
	if (q->head == NULL) {
		q->head = q->tail = item;
	} else if (front) {
		item->next = q->head;
		q->head = item;
	} else {
		q->tail->next = item;
		q->tail = item;
	}
	q->count++;
}

pu_pacer_item *pu_queue_pop(pu_queue *q)
{
	pu_pacer_item *item = q->head;

	if (item == NULL)
		return NULL;
	q->head = item->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->count--;
	item->next = NULL;
	return item;
}

void pu_pacer_push(pu_pacer *p, pu_pacer_item *item, bool front)
{
	pu_queue_push(&p->waiting, item, front);
}

pu_pacer_item *pu_pacer_take(pu_pacer *p)
{
	return pu_queue_pop(&p->waiting);
}

bool pu_pacer_would_hand_back(pu_pacer *p, int64_t *retry_at_ms)
{
	int64_t now = p->host->now_ms();
	int64_t wait = wait_ms(p, now, (int64_t)p->waiting.count + 1);

	if (wait > p->rate.max_wait_ms) {
		*retry_at_ms = now + wait;
		return true;
	}
	return false;
}

bool pu_pacer_submit(pu_pacer *p, pu_pacer_item *item, int64_t *retry_at_ms)
{
	if (pu_pacer_would_hand_back(p, retry_at_ms))
		return false;
	pu_pacer_push(p, item, false);
	return true;
}

/* Every waiting item back to the core. reason: borrowed. */
static void hand_back(pu_pacer *p, int64_t retry_at_ms, const char *reason)
{
	pu_pacer_item *item;

	while ((item = pu_pacer_take(p)) != NULL)
		p->back(p->owner, item, retry_at_ms, reason);
}

/* The pacing timer: the core freed it on firing. arg: the pacer. */
static void timer_fired(void *arg)
{
	pu_pacer *p = arg;

	p->timer = NULL;
	pu_pacer_kick(p);
}

void pu_pacer_kick(pu_pacer *p)
{
	while (!p->stopped && p->timer == NULL && p->waiting.head != NULL) {
		int64_t now, wait;

		if (p->rate.max_in_flight > 0 && p->in_flight >= p->rate.max_in_flight)
			return;
		now = p->host->now_ms();
		if (p->paused_until_ms - now > p->rate.max_wait_ms) {
			/* A long pause: the jobs come back after it rather than
			 * being held past their lease. */
			hand_back(p, p->paused_until_ms, p->pause_reason);
			return;
		}
		wait = wait_ms(p, now, 1);
		if (wait > 0) {
			p->timer = p->host->timer_start(p->inst, (uint64_t)wait, timer_fired, p);
			if (p->timer == NULL)
				hand_back(p, 0, "could not start a timer");
			return;
		}
		p->tokens_milli -= 1000;
		if (p->start(p->owner, pu_pacer_take(p)))
			p->in_flight++;
	}
}

void pu_pacer_done(pu_pacer *p)
{
	if (p->in_flight > 0)
		p->in_flight--;
	pu_pacer_kick(p);
}

void pu_pacer_pause(pu_pacer *p, int64_t until_ms)
{
	if (until_ms <= p->paused_until_ms)
		return;
	refill(p, p->host->now_ms());
	p->paused_until_ms = until_ms;
	p->tokens_milli = 1000;
	p->refilled_ms = until_ms;
}

int64_t pu_pacer_default_pause_ms(const pu_pacer *p)
{
	int64_t interval = p->rate.period_ms / p->rate.tokens;

	return interval > PACER_MIN_DEFAULT_PAUSE_MS ? interval : PACER_MIN_DEFAULT_PAUSE_MS;
}

void pu_pacer_stop(pu_pacer *p, const char *reason)
{
	p->stopped = true;
	if (p->timer != NULL) {
		p->host->timer_cancel(p->timer);
		p->timer = NULL;
	}
	hand_back(p, 0, reason);
}

void pu_pacer_destroy(pu_pacer *p, void (*free_item)(pu_pacer_item *item))
{
	pu_pacer_item *item;

	if (p->timer != NULL) {
		p->host->timer_cancel(p->timer);
		p->timer = NULL;
	}
	while ((item = pu_pacer_take(p)) != NULL)
		free_item(item);
}
