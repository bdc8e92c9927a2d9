/* x_channel.h - the x channel's instance: its settings, its search pollers
 * and what x.c (the host glue, webhooks and sends) and x_search.c (the
 * recent-search listening) share. Not part of any ABI. */
#ifndef PARLEY_X_CHANNEL_H
#define PARLEY_X_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "parley/parley.h"
#include "x_parse.h"

#define X_VERSION "0.1.0"
#define X_SEARCH_MAX_PAGES 5        /* pages fetched per poll before committing */
#define X_MAX_SEARCH_BODY (4u << 20)
#define X_USER_AGENT "User-Agent: parley-x/" X_VERSION

/* One instance's settings, filled and checked by the core from the table
 * in x.c (ABI 1.3); every field is owned by the core (which wipes the
 * secrets) and replaced as a whole on reload. */
typedef struct x_settings {
	const char *consumer_key;          /* secret-ish: never logged */
	const char *consumer_secret;
	const char *access_token;
	const char *access_token_secret;
	const char *bearer_token;          /* NULL without search */
	const char *user_id;               /* the brand's account id (x_check) */
	const char *api_url;               /* trailing slashes are dropped when URLs are built */
	const char *const *queries;        /* NULL-terminated; NULL: none */
	int64_t search_interval_s;
	int64_t timeout_ms;
	int tls_verify;
} x_settings;

typedef struct x_channel x_channel;

/* One search query's poller. Lives from start() to destroy(). */
typedef struct x_search {
	x_channel *ch;               /* borrowed: owns this */
	size_t index;
	char *query;                 /* owned copy (the settings may be reloaded) */
	char state_key[48];          /* "search:<sha256 prefix of the query>" */
	char since_id[X_MAX_ID_LEN + 1];      /* the committed cursor; "" = none */
	char newest_id[X_MAX_ID_LEN + 1];     /* of the poll in progress */
	parley_timer *timer;         /* owned by the core while pending */
	char *pages[X_SEARCH_MAX_PAGES];      /* owned answer bodies of this poll */
	size_t page_lens[X_SEARCH_MAX_PAGES];
	size_t n_pages;
	int loaded;                  /* the cursor was read */
} x_search;

struct x_channel {
	const parley_host *host;     /* owned by the core; valid until destroy */
	parley_instance *inst;       /* owned by the core; valid until destroy */
	x_settings cfg;
	x_search *searches;          /* owned; one per query of cfg after start */
	size_t n_searches;
	int stopped;                 /* stop() ran: start nothing new */
};

static inline int64_t x_interval_ms(const x_settings *s)
{
	return s->search_interval_s * 1000;
}

/* Overwrite and free a secret of our own (an Authorization header). s:
 * owned, may be NULL. */
X_INTERNAL void x_free_secret(char *s);
/* Log what a parse skipped or did not know. st: borrowed. */
X_INTERNAL void x_log_stats(x_channel *ch, const x_parse_stats *st, const char *source);

/* Start one poller per query (queries: borrowed, n of them; each copied):
 * read its stored cursor, then poll every search_interval_s. 0, or -1 when
 * out of memory (x_search_free still frees what was set up). */
X_INTERNAL int x_search_start(x_channel *ch, const char *const *queries, size_t n);
/* Start nothing new and cancel the pending timers. */
X_INTERNAL void x_search_stop(x_channel *ch);
/* Free the pollers (after x_search_stop). */
X_INTERNAL void x_search_free(x_channel *ch);

#endif
