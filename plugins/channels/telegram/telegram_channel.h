/* telegram_channel.h - the telegram channel's instance: its settings, the
 * calls it has in flight and the state of its getUpdates poller. Shared by
 * telegram.c (the host glue, webhooks and sends) and telegram_poll.c
 * (polling); not part of any ABI. */
#ifndef PARLEY_TELEGRAM_CHANNEL_H
#define PARLEY_TELEGRAM_CHANNEL_H

#include <stdint.h>
#include <string.h>

#include "parley/parley.h"
#include "telegram_parse.h"

#define TELEGRAM_VERSION "0.1.0"
#define TELEGRAM_POLL_BACKOFF_MAX_MS 60000   /* errors back off up to this */
#define TELEGRAM_OFFSET_KEY "offset"         /* plugin_state key of the cursor */

/* One instance's settings, filled and checked by the core from the table
 * in telegram.c (ABI 1.3); every field is owned by the core and replaced as a whole
 * on reload. */
typedef struct tg_settings {
	const char *token;         /* secret; its format is checked in telegram_check */
	const char *mode;          /* "webhook" or "polling" (telegram_check) */
	const char *secret;        /* secret; NULL only in polling mode */
	const char *api_url;       /* trailing slashes are dropped when URLs are built */
	int channel_posts;
	int64_t poll_timeout_s;
	int64_t poll_retry_ms;
	int64_t timeout_ms;
} tg_settings;

typedef struct telegram_channel telegram_channel;

typedef enum tg_call_kind {
	TG_CALL_SEND = 1,          /* sendMessage */
	TG_CALL_LOAD = 2,          /* state_get of the offset */
	TG_CALL_POLL = 3,          /* getUpdates */
	TG_CALL_COMMIT = 4         /* emit_commit of a page of updates */
} tg_call_kind;

/* Something in flight: a callback will run exactly once with it. */
typedef struct tg_call {
	struct tg_call *prev, *next;   /* the channel's list of calls in flight */
	telegram_channel *ch;          /* borrowed; NULL once the channel is destroyed */
	tg_call_kind kind;
	parley_delivery *d;            /* SEND: owned by the core until completed */
	int private_reply;             /* SEND: a PARLEY_SEND_PRIVATE_REPLY */
	char recipient[TELEGRAM_ID_BYTES];  /* SEND: the private reply's user id */
	int64_t next_offset;           /* COMMIT: the offset being committed */
} tg_call;

struct telegram_channel {
	const parley_host *host;   /* owned by the core; valid until destroy */
	parley_instance *inst;     /* owned by the core; valid until destroy */
	tg_settings cfg;
	tg_call *calls;            /* owned: everything in flight */
	parley_timer *timer;       /* owned by the core; NULL when none is pending */
	int stopping;              /* stop() ran: start nothing new */
	int offset_known;          /* the stored offset has been read */
	int64_t offset;            /* next getUpdates offset; 0: none yet */
	int64_t backoff_ms;        /* current poll error backoff; 0 after a success */
};

static inline int tg_polling(const tg_settings *s)
{
	return strcmp(s->mode, "polling") == 0;
}

static inline telegram_parse_opts tg_parse_opts(const tg_settings *s)
{
	telegram_parse_opts opts = { .channel_posts = s->channel_posts };
	return opts;
}

/* Mask the token in s (caller's buffer of size bytes): reasons and log
 * lines carry texts from other libraries (libcurl errors) that could quote
 * a URL. */
static inline void tg_scrub_token(const telegram_channel *ch, char *s, size_t size)
{
	telegram_scrub(s, size, ch->cfg.token);
}

/* A new call linked into ch's list (owned by the list until tg_call_finish),
 * or NULL when out of memory. */
TELEGRAM_INTERNAL tg_call *tg_call_new(telegram_channel *ch, tg_call_kind kind);
/* Unlink c (when its channel still exists) and free it. */
TELEGRAM_INTERNAL void tg_call_finish(tg_call *c);

/* Polling mode, at start: read the stored offset, then poll getUpdates
 * until stop (telegram_poll.c). */
TELEGRAM_INTERNAL void tg_poll_start(telegram_channel *ch);

#endif
