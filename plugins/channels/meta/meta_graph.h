/* meta_graph.h - the pure outbound half of the meta channel: the connected
 * assets and their tokens, which Graph API request a send becomes (with the
 * messaging windows checked first), and what an answer means.
 *
 * No host calls: the unit tests check each request byte for byte and each
 * answer's outcome. meta.c does the HTTP call. */
#ifndef PARLEY_META_GRAPH_H
#define PARLEY_META_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parley/parley.h"
#include "meta_parse.h"

#define META_HOUR_MS ((int64_t)3600 * 1000)
#define META_DAY_MS (24 * META_HOUR_MS)
#define META_MAX_RESPONSE_BYTES (256 * 1024)   /* larger answers are not parsed */
#define META_REASON_BYTES 512

/* ------------------------------------------------------------------------ */
/* Connected assets                                                         */
/* ------------------------------------------------------------------------ */

typedef struct meta_asset {
	char *id;       /* owned: Page id, IG account id or phone number id */
	char *token;    /* owned, secret: wiped before it is freed */
} meta_asset;

typedef struct meta_asset_list {
	meta_asset *items;   /* owned */
	size_t n;
} meta_asset_list;

/* Parse a config list such as [{"id":"1","access_token":"t"}] into *out
 * (owned by the caller: meta_assets_free). json: the config value's text
 * (borrowed) or NULL for an empty list. id_key: "id" or "phone_number_id".
 * False with a reason in err (no secret in it) for anything else: not an
 * array, an entry without a string id or token, an id with characters other
 * than [0-9A-Za-z_.-], a token that could break a header, a duplicate id. */
META_INTERNAL bool meta_assets_parse(const char *json, const char *id_key,
                                     meta_asset_list *out, char *err, size_t errlen);
META_INTERNAL void meta_assets_free(meta_asset_list *list);
/* The token of asset `id`, or NULL. Borrowed from list. */
META_INTERNAL const char *meta_assets_token(const meta_asset_list *list, const char *id);

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct meta_send_options {
	const char *graph_url;          /* e.g. "https://graph.facebook.com"; trailing '/' dropped */
	const char *graph_version;      /* e.g. "v21.0" */
	int human_agent_tag;            /* Messenger: HUMAN_AGENT tag between 24 h and 7 days */
	const char *template_name;      /* WhatsApp template outside the window, or NULL */
	const char *template_language;  /* its language code, e.g. "en_US" */
	int64_t now_ms;
} meta_send_options;

/* How the answer names what was created. */
typedef enum meta_answer_shape {
	META_ANSWER_MESSAGE = 1,   /* {"recipient_id","message_id"}: Send API */
	META_ANSWER_COMMENT = 2,   /* {"id"}: a public comment reply */
	META_ANSWER_WHATSAPP = 3   /* {"messages":[{"id"}]} */
} meta_answer_shape;

typedef struct meta_plan {
	meta_thread thread;        /* the conversation the send belongs to */
	const char *asset_id;      /* points into thread: whose token to use */
	char *url;                 /* owned */
	char *body;                /* owned: compact JSON */
	meta_answer_shape shape;
	int template_sent;         /* WhatsApp outside the window: the template went */
	int tagged;                /* Messenger: sent with the HUMAN_AGENT tag */
	char reason[META_REASON_BYTES];   /* a refusal, for the operator */
	const char *rule;          /* a refusal's rule (META_RULE_*), or NULL when none
	                              (out of memory: it may work later) */
} meta_plan;

/* The rules a refused plan names (check_send's answer, the API's error code). */
#define META_RULE_WINDOW "window_closed"                       /* Messenger, Instagram, WhatsApp */
#define META_RULE_PRIVATE_REPLY_WINDOW "private_reply_window_closed"   /* 7 days after the comment */
#define META_RULE_NO_PRIVATE_REPLY "private_reply_not_possible"  /* not a comment thread */
#define META_RULE_NOT_CONFIGURED "not_configured"              /* no token for the asset */
#define META_RULE_NOT_SENDABLE "not_sendable"                  /* no thread, no text, bad id */

/* Turn one outbound message into a Graph API request. msg: borrowed
 * (kind / last_inbound_ms are read only when its size covers them). *out:
 * owned by the caller, free with meta_plan_free whatever the result.
 * Returns false when the send must not be attempted (outside a messaging
 * window, a thread id this channel did not make, a private reply outside a
 * comment thread): out->reason says why, as a sentence, and out->rule names
 * the rule (NULL when out of memory). */
META_INTERNAL bool meta_plan_send(const meta_send_options *opt,
                                  const parley_outbound_message *msg, meta_plan *out);
META_INTERNAL void meta_plan_free(meta_plan *plan);

/* The private chat a private reply opened, as the inbound parser names it:
 * "messenger:<page>:<PSID>" or "instagram:<account>:<IGSID>". recipient:
 * the recipient_id Meta answered (borrowed). False if it cannot be made. */
META_INTERNAL bool meta_private_thread(const meta_plan *plan, const char *recipient,
                                       char *out, size_t outlen);

/* ------------------------------------------------------------------------ */
/* Answers                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct meta_answer {
	long status;                   /* HTTP status; 0 = transport error */
	const char *transport_error;   /* when status is 0, or NULL */
	const unsigned char *body;     /* may be NULL */
	size_t body_len;
	const char *retry_after;       /* Retry-After header, or NULL */
	const char *buc_usage;         /* X-Business-Use-Case-Usage header, or NULL */
	int64_t now_ms;
} meta_answer;

typedef struct meta_result {
	parley_outcome outcome;
	int64_t retry_at_ms;                  /* 0 = the core's backoff */
	char reason[META_REASON_BYTES];       /* empty on OK */
	char external_id[META_MAX_ID_BYTES + 1];   /* empty when the answer has none */
	char recipient_id[META_MAX_ID_BYTES + 1];  /* Send API answers only */
} meta_result;

/* Classify a Graph API answer (every pointer borrowed):
 *   2xx -> OK with the created id; transport errors, 5xx, 429 and the
 *   throttling errors (HTTP 400 with error.code 4, 17, 32, 613,
 *   80001..80009, WhatsApp's 130429 / 131056, or is_transient) -> RETRY,
 *   at Retry-After or the Business Use Case header's
 *   estimated_time_to_regain_access when given; any other 4xx -> FAIL
 *   with Meta's error message. */
META_INTERNAL void meta_classify(const meta_answer *a, meta_answer_shape shape,
                                 meta_result *out);

#endif
