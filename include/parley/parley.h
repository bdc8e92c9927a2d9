/*
 * parley.h - the Parley plugin ABI, version 1.
 *
 * This is the only header a plugin includes. A plugin is a shared object that
 * exports exactly one symbol, PARLEY_PLUGIN_ENTRY_SYMBOL ("parley_plugin_entry"),
 * a function returning a pointer to a const parley_plugin_descriptor. It never
 * links against the daemon: everything it may ask of the core goes through the
 * parley_host function table handed to create().
 *
 * Compatibility rules
 *   - The major version changes only for a break; the core refuses a plugin
 *     whose major differs from its own.
 *   - The minor version grows when something is appended. Structs only ever
 *     gain fields at their end; each versioned struct starts with a `size`
 *     field so either side can tell which fields the other one knows.
 *     Read a field only if `size` covers it (PARLEY_HAS_FIELD). Rows of an
 *     array (parley_setting) carry no size of their own: the struct that
 *     points at the array gives it (setting_size).
 *
 * Ownership conventions (written on every prototype below)
 *   - "borrowed": valid only for the duration of the call; copy what you keep.
 *   - "owned by the core" / "owned by the plugin": who frees it and when.
 *   - Every callback runs on the core's single event loop thread and must not
 *     block: no sleeping, no blocking sockets, no synchronous HTTP or SQL.
 *
 * Integer conventions (each prototype below says which one it follows)
 *   - Status: an operation returns 0 when it did what it says and -1 when it
 *     did not, after saying why (log, config_error, http_response_error, a
 *     returned reason). create, start, reload, request_emit, http_request,
 *     smtp_send, emit_* and the like. Such functions are PARLEY_MUSTCHECK:
 *     a status nobody reads is a failure nobody sees.
 *   - Predicate: a question returns 1 for yes and 0 for no, never -1:
 *     secure_equals ("equal?"), config_integer/config_boolean ("present and
 *     of that type?").
 *   - Flag fields in structs (inbound, is_public, email_verified, ...): zero
 *     is no, any other value is yes.
 *   - Counts and sizes are size_t; times are int64_t milliseconds since the
 *     Unix epoch (*_ms) unless the name says otherwise.
 *
 * See docs/PLUGINS.md for the author guide and plugins/examples/ for a
 * complete minimal sink.
 */
#ifndef PARLEY_PARLEY_H
#define PARLEY_PARLEY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PARLEY_ABI_MAJOR 1
#define PARLEY_ABI_MINOR 4

#define PARLEY_PLUGIN_ENTRY_SYMBOL "parley_plugin_entry"

/* True when a struct whose first member is `uint32_t size` is large enough to
 * contain `field`. Use it before reading fields added in later minor versions. */
#define PARLEY_HAS_FIELD(ptr, type, field) \
	((ptr)->size >= offsetof(type, field) + sizeof(((type *)0)->field))

#if defined(__GNUC__)
#define PARLEY_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define PARLEY_EXPORT __attribute__((visibility("default")))
/* A status (0/-1) or bool result the caller must look at. */
#define PARLEY_MUSTCHECK __attribute__((warn_unused_result))
#else
#define PARLEY_PRINTF(fmt, args)
#define PARLEY_EXPORT
#define PARLEY_MUSTCHECK
#endif

/* ------------------------------------------------------------------------ */
/* Basic types                                                              */
/* ------------------------------------------------------------------------ */

typedef enum parley_kind {
	PARLEY_KIND_CHANNEL = 1,  /* talks to a platform: webhooks in, messages out */
	PARLEY_KIND_SINK = 2,     /* a ticket system: tickets out, agent events in */
	PARLEY_KIND_NOTIFIER = 3  /* tells people: Slack, e-mail, webhooks */
} parley_kind;

typedef enum parley_log_level {
	PARLEY_LOG_ERROR = 0,
	PARLEY_LOG_WARN = 1,
	PARLEY_LOG_INFO = 2,
	PARLEY_LOG_DEBUG = 3
} parley_log_level;

/* How a delivery (send, open ticket, append, notify) ended. The core owns
 * retries, backoff with jitter, dead-lettering and their persistence: a plugin
 * only says what happened. */
typedef enum parley_outcome {
	PARLEY_OK = 0,     /* done; never repeat it */
	PARLEY_RETRY = 1,  /* transient (timeout, 5xx, rate limit); try again later */
	PARLEY_FAIL = 2    /* permanent (validation error, refused); do not retry */
} parley_outcome;

typedef enum parley_visibility {
	PARLEY_VISIBILITY_PUBLIC = 1,   /* a post, comment, mention: everyone sees it */
	PARLEY_VISIBILITY_PRIVATE = 2   /* a DM, chat, e-mail */
} parley_visibility;

/* Opaque handles, owned by the core. */
typedef struct parley_instance parley_instance;   /* one configured instance */
typedef struct parley_config parley_config;       /* its validated config */
typedef struct parley_request parley_request;     /* an inbound HTTP request */
typedef struct parley_delivery parley_delivery;   /* one outbound unit of work */
typedef struct parley_timer parley_timer;
typedef struct parley_http_response parley_http_response;
typedef struct parley_emit_batch parley_emit_batch; /* events without a request (1.1) */

/* ------------------------------------------------------------------------ */
/* Configuration schema                                                      */
/* ------------------------------------------------------------------------ */

/* A plugin declares the keys of its instance's "config" object. The core
 * validates every instance against this list before create() is called:
 * unknown keys, wrong types and missing required keys are config errors that
 * name the file and the JSON path (channels[2].config.app_secret) and stop
 * the daemon from starting. "$env:NAME" and "$file:PATH" references are
 * resolved by the core before the plugin sees a value. */
typedef enum parley_config_type {
	PARLEY_CONFIG_STRING = 1,
	PARLEY_CONFIG_INTEGER = 2,
	PARLEY_CONFIG_BOOLEAN = 3,
	PARLEY_CONFIG_JSON = 4     /* any JSON value; read it as text and parse it */
} parley_config_type;

#define PARLEY_CONFIG_REQUIRED 0x1u  /* the key must be present */
#define PARLEY_CONFIG_SECRET 0x2u    /* never logged or echoed by the core */

typedef struct parley_config_key {
	const char *name;           /* NULL name terminates the array */
	parley_config_type type;
	unsigned flags;             /* PARLEY_CONFIG_* bits */
	const char *description;    /* one line, shown by parleyd --list-plugins -v */
} parley_config_key;

/* ABI 1.3: a settings table. Instead of declaring keys (above) and reading
 * them one by one in create()/reload(), a plugin declares each setting's
 * type, default, range and where it goes in a struct of its own. The core
 * refuses unknown keys, checks types and ranges, applies defaults, resolves
 * "$env:"/"$file:" references, fills a struct of `settings_size` bytes and
 * hands it to create() and reload() through host->config_settings(cfg).
 * The plugin keeps only the checks that involve more than one setting.
 *
 * A plugin with a settings table leaves config_keys NULL. Declare it in the
 * descriptor with PARLEY_SETTINGS(table, struct type). */
typedef enum parley_setting_type {
	/* Field type in the plugin's struct (owned by the core, see
	 * host->config_settings) / what the config must hold. */
	PARLEY_SETTING_STRING = 1,      /* const char *: a string; min/max bound its length in bytes */
	PARLEY_SETTING_SECRET = 2,      /* const char *: a string that is never printed (implies
	                                   PARLEY_SETTING_FLAG_SECRET); length as STRING */
	PARLEY_SETTING_INTEGER = 3,     /* int64_t: an integer in [min, max] */
	PARLEY_SETTING_BOOLEAN = 4,     /* int: 1 for true, 0 for false */
	PARLEY_SETTING_URL = 5,         /* const char *: an http:// or https:// URL; length as STRING */
	PARLEY_SETTING_STRING_LIST = 6, /* const char *const *: an array of strings, NULL-terminated;
	                                   min/max bound each element's length */
	PARLEY_SETTING_JSON = 7         /* const char *: any JSON value, serialized compactly */
} parley_setting_type;

#define PARLEY_SETTING_FLAG_REQUIRED 0x1u   /* the key must be written; no default */
#define PARLEY_SETTING_FLAG_SECRET 0x2u     /* never printed (neither value nor default) */
#define PARLEY_SETTING_FLAG_RELOADABLE 0x4u /* SIGHUP may change it; without this flag a
                                               changed value is held until a restart and
                                               the daemon names it in its log */
#define PARLEY_SETTING_FLAG_PRINTABLE 0x8u  /* strings (and list elements): no control
                                               characters, e.g. a token sent in a header */

/* One row. All pointers are owned by the plugin and must stay valid while
 * the plugin is loaded (static tables). The core reads a row only as far as
 * the descriptor's `setting_size` says, so later minors can append fields. */
typedef struct parley_setting {
	const char *name;           /* the key in "config"; a dotted name ("auth.token")
	                               is a key of a nested object {"auth": {"token": ...}} */
	parley_setting_type type;
	unsigned flags;             /* PARLEY_SETTING_FLAG_* bits */
	/* The value used when the key is absent, as it would be written in the
	 * config: plain text for STRING, SECRET and URL ("https://api.example.com");
	 * JSON text for the others ("10000", "true", "[\"a\", \"b\"]"). NULL = no
	 * default: the field stays NULL / 0. Checked like a written value when the
	 * plugin is loaded. */
	const char *default_value;
	/* INTEGER: the allowed values; STRING, SECRET, URL, STRING_LIST (each
	 * element): the length in bytes. min = max = 0: no bounds. */
	int64_t min, max;
	size_t offset;              /* offsetof(the plugin's settings struct, field) */
	const char *description;    /* one line, shown by parleyd --list-plugins -v */
} parley_setting;

/* ------------------------------------------------------------------------ */
/* Normalized inbound events (emitted by channels)                          */
/* ------------------------------------------------------------------------ */

typedef enum parley_event_type {
	PARLEY_EVENT_MESSAGE_CREATED = 1,  /* a new post, comment, DM, mail */
	PARLEY_EVENT_MESSAGE_EDITED = 2,   /* new text for an existing message */
	PARLEY_EVENT_MESSAGE_DELETED = 3,  /* the author removed it (keep evidence) */
	PARLEY_EVENT_DELIVERY_STATUS = 4   /* sent/delivered/read/failed for our message */
} parley_event_type;

typedef enum parley_delivery_status {
	PARLEY_DELIVERY_NONE = 0,
	PARLEY_DELIVERY_SENT = 1,
	PARLEY_DELIVERY_DELIVERED = 2,
	PARLEY_DELIVERY_READ = 3,
	PARLEY_DELIVERY_FAILED = 4
} parley_delivery_status;

/* Who wrote something, as the platform knows them. All strings borrowed. */
typedef struct parley_identity {
	const char *external_id;   /* platform user id, as text (ids exceed doubles) */
	const char *handle;        /* @name, may be NULL */
	const char *display_name;  /* may be NULL */
	const char *email;         /* may be NULL */
	const char *phone;         /* E.164 where known, may be NULL */
	int email_verified;        /* nonzero: the platform vouches for it */
	int phone_verified;
	const char *profile_json;  /* extra profile as a JSON object text, may be NULL
	                              (follower count goes here: information only) */
} parley_identity;

typedef struct parley_event {
	uint32_t size;                  /* sizeof(parley_event) as the plugin knows it */
	parley_event_type type;
	const char *dedupe_key;         /* required: equal keys on one instance are
	                                   the same event; replays change nothing */
	const char *external_id;        /* the message's platform id (required for
	                                   CREATED/EDITED/DELETED/DELIVERY_STATUS) */
	parley_identity author;         /* required for CREATED (external_id at least) */
	const char *text;               /* CREATED/EDITED: the text; may be NULL */
	parley_visibility visibility;   /* CREATED: public or private (required) */
	const char *thread_id;          /* public: the root post/tweet id;
	                                   private: the chat/conversation id */
	const char *in_reply_to;        /* external id of the parent message, or NULL */
	int64_t platform_time_ms;       /* when the platform says it happened, Unix ms;
	                                   0 = unknown */
	int from_brand;                 /* nonzero: written by the brand's own account
	                                   (an echo); recorded as outbound */
	parley_delivery_status delivery_status;  /* DELIVERY_STATUS only */
	const char *detail;             /* DELIVERY_STATUS failed: the reason; else NULL */
	const char *raw_json;           /* the platform's JSON for this item (kept as
	                                   evidence); may be NULL */
	size_t raw_json_len;
} parley_event;

/* ------------------------------------------------------------------------ */
/* Outbound units of work                                                   */
/* ------------------------------------------------------------------------ */

/* What a send is (ABI 1.1; a 1.0 core never sets it, which reads as MESSAGE). */
typedef enum parley_send_kind {
	/* A message in the conversation itself: a public reply in the thread
	 * (answering in_reply_to), or a private message in the chat. */
	PARLEY_SEND_MESSAGE = 0,
	/* "Move to private": a private message to the author of the public
	 * message in_reply_to (a comment's private reply, a DM to the tweet's
	 * author, ...). The conversation is a new private one whose chat is not
	 * known yet: report it with delivery_set_thread_id, as the thread_id the
	 * channel's inbound events of that chat will carry. */
	PARLEY_SEND_PRIVATE_REPLY = 1
} parley_send_kind;

/* A reply or message a channel must send. All strings borrowed for the call. */
typedef struct parley_outbound_message {
	uint32_t size;
	const char *idempotency_key;    /* stable across retries of this one send */
	const char *conversation_id;    /* Parley's id, as text */
	parley_visibility visibility;   /* public reply or private message */
	const char *recipient_id;       /* platform user id of the customer */
	const char *thread_id;          /* thread root / chat id on the platform */
	const char *in_reply_to;        /* platform id of the message answered, or NULL */
	const char *text;
	/* --- ABI 1.1 (check with PARLEY_HAS_FIELD) --- */
	parley_send_kind kind;          /* see parley_send_kind */
	int64_t last_inbound_ms;        /* when the customer last wrote in this
	                                   conversation (for PRIVATE_REPLY: the public
	                                   message answered), Unix ms; 0 = unknown.
	                                   Messaging windows are checked against it. */
	const char *message_id;         /* Parley's id of the outbound message, or NULL */
} parley_outbound_message;

/* What a sink or notifier knows of a customer. Strings borrowed. */
typedef struct parley_customer_info {
	uint32_t size;
	const char *customer_id;        /* Parley's id, as text */
	const char *display_name;
	const char *email;
	const char *phone;
	const char *external_id;        /* the identity's platform id */
	const char *handle;
} parley_customer_info;

/* A conversation as handed to sinks and notifiers. Strings borrowed. */
typedef struct parley_conversation_info {
	uint32_t size;
	const char *conversation_id;
	const char *case_number;        /* e.g. "PC-10234", or NULL */
	const char *channel_instance;   /* instance name, e.g. "facebook-main" */
	const char *channel_kind;       /* plugin name, e.g. "meta" */
	parley_visibility visibility;
	const char *category;           /* may be NULL */
	const char *status;             /* open, pending, resolved, closed */
	const parley_customer_info *customer;
} parley_conversation_info;

typedef struct parley_message_info {
	uint32_t size;
	const char *message_id;         /* Parley's id, as text */
	const char *external_id;        /* platform id, may be NULL */
	const char *author_name;
	const char *text;
	parley_visibility visibility;
	int inbound;                    /* nonzero: from the customer */
	int64_t created_ms;
} parley_message_info;

/* Open a ticket for a conversation (first routed message). */
typedef struct parley_ticket_request {
	uint32_t size;
	const char *idempotency_key;
	const parley_conversation_info *conversation;
	const parley_message_info *first_message;
	const char *follow_up_of;       /* external ticket id this one follows, or NULL */
} parley_ticket_request;

/* Append a message to an existing ticket. */
typedef struct parley_ticket_append {
	uint32_t size;
	const char *idempotency_key;
	const char *external_ticket_id;
	const parley_conversation_info *conversation;
	const parley_message_info *message;
} parley_ticket_append;

/* What a ticket system reports about a ticket (ABI 1.2): a sink's
 * handle_request turns the ticket system's webhook into these and emits them
 * with request_emit_ticket_event. All strings borrowed for the call. */
typedef enum parley_ticket_event_type {
	PARLEY_TICKET_COMMENT = 1,      /* a comment was added to the ticket */
	PARLEY_TICKET_STATUS = 2        /* the ticket's status changed */
} parley_ticket_event_type;

typedef enum parley_ticket_status {
	PARLEY_TICKET_OPEN = 1,         /* new or open: an agent works on it (reopens) */
	PARLEY_TICKET_PENDING = 2,      /* waiting on the customer */
	PARLEY_TICKET_SOLVED = 3,       /* solved / resolved: the conversation is resolved */
	PARLEY_TICKET_CLOSED = 4        /* closed for good: a later message opens a follow-up */
} parley_ticket_status;

typedef struct parley_ticket_event {
	uint32_t size;                  /* sizeof(parley_ticket_event) */
	parley_ticket_event_type type;
	const char *dedupe_key;         /* required: equal keys on one instance are the
	                                   same event; replays change nothing */
	const char *external_ticket_id; /* required: the ticket's id in the ticket system */
	const char *comment_id;         /* COMMENT (required): the comment's id there */
	int is_public;                  /* COMMENT: nonzero: a public reply for the
	                                   customer, sent on the conversation's channel;
	                                   0: an internal note, kept internal */
	int from_parley;                /* COMMENT: nonzero when the plugin knows Parley
	                                   posted it (e.g. written by the API user): never
	                                   sent back. The core also skips comments whose
	                                   id an append_message reported. */
	const char *author_name;        /* COMMENT: the agent, may be NULL */
	const char *text;               /* COMMENT: plain text (required) */
	parley_ticket_status status;    /* STATUS */
	int64_t time_ms;                /* when it happened, Unix ms; 0 = unknown */
	const char *raw_json;           /* the ticket system's JSON (evidence), may be NULL */
	size_t raw_json_len;
} parley_ticket_event;

/* Mail through SMTP (ABI 1.2), on the core's libcurl multi like HTTP. */
typedef struct parley_smtp_call {
	uint32_t size;                  /* sizeof(parley_smtp_call) */
	const char *url;                /* smtp://host[:port] (STARTTLS) or smtps://host[:port] */
	const char *username;           /* may be NULL: no AUTH */
	const char *password;           /* may be NULL */
	const char *mail_from;          /* envelope sender, e.g. "parley@example.com" */
	const char *const *rcpt_to;     /* envelope recipients, NULL-terminated, at least one */
	const void *message;            /* the whole RFC 5322 message: headers, blank line,
	                                   body; lines end in CRLF */
	size_t message_len;
	int require_tls;                /* nonzero: an smtp:// server must offer STARTTLS */
	long timeout_ms;                /* whole-transfer limit; 0 = core default */
	int insecure_skip_verify;       /* nonzero disables TLS verification (tests only) */
} parley_smtp_call;

/* A notice for people. */
typedef struct parley_notice {
	uint32_t size;
	const char *idempotency_key;
	const char *kind;               /* e.g. "conversation.created" */
	const char *title;              /* one line */
	const char *text;               /* a few lines of plain text */
	const char *url;                /* where to look, may be NULL */
	const parley_conversation_info *conversation;  /* may be NULL */
	const char *payload_json;       /* the notice as a JSON object text */
} parley_notice;

/* ------------------------------------------------------------------------ */
/* Outbound HTTP (libcurl on the core loop)                                 */
/* ------------------------------------------------------------------------ */

typedef struct parley_http_call {
	uint32_t size;
	const char *method;             /* "GET", "POST", ... */
	const char *url;
	const char *const *headers;     /* "Name: value" strings, NULL-terminated; may be NULL */
	const void *body;               /* may be NULL */
	size_t body_len;
	long timeout_ms;                /* whole-transfer limit; 0 = core default */
	int insecure_skip_verify;       /* nonzero disables TLS verification (tests only) */
} parley_http_call;

/* Called exactly once, on the loop, when the call ends. `response` is
 * borrowed for the duration of the callback. A transport failure (DNS,
 * connect, timeout, TLS) has status 0 and an error text. */
typedef void (*parley_http_done_fn)(void *arg, const parley_http_response *response);

/* ------------------------------------------------------------------------ */
/* The host function table                                                  */
/* ------------------------------------------------------------------------ */

typedef void (*parley_timer_fn)(void *arg);
typedef void (*parley_state_get_fn)(void *arg, int ok, const char *value /* borrowed; NULL if absent */);
typedef void (*parley_state_put_fn)(void *arg, int ok);

typedef struct parley_host {
	uint32_t size;                  /* sizeof(parley_host) as the core knows it */
	uint16_t abi_major;
	uint16_t abi_minor;

	/* --- logging: one line per call, tagged with the instance --- */
	void (*log)(parley_instance *inst, parley_log_level level, const char *fmt, ...)
		PARLEY_PRINTF(3, 4);
	/* The instance's configured name. Owned by the core; valid until destroy. */
	const char *(*instance_name)(parley_instance *inst);

	/* --- configuration (validated against the plugin's config_keys, or its
	 * settings table: then config_settings below is simpler) ---
	 * Returned strings are owned by the core and valid until the config
	 * handle is released (after create() or reload() returns): copy them. */
	const char *(*config_string)(const parley_config *cfg, const char *key);   /* NULL if absent */
	int (*config_integer)(const parley_config *cfg, const char *key, int64_t *out); /* 1 if present */
	int (*config_boolean)(const parley_config *cfg, const char *key, int *out);     /* 1 if present */
	/* A JSON value serialized compactly; NULL if absent. */
	const char *(*config_json)(const parley_config *cfg, const char *key);
	/* Report a semantic config problem from create()/reload(); the core prints
	 * it with the file and JSON path of `key` and refuses the config. Never put
	 * a secret's value in `reason`. */
	void (*config_error)(parley_instance *inst, const char *key, const char *reason);

	/* --- inbound HTTP requests (channel and sink handle_request) ---
	 * All returned pointers are borrowed: valid until the request is answered. */
	const char *(*request_method)(const parley_request *req);
	/* Path below the instance's mount point, e.g. "" or "/status". */
	const char *(*request_subpath)(const parley_request *req);
	/* A decoded query parameter, or NULL. */
	const char *(*request_query)(const parley_request *req, const char *name);
	/* A header (case-insensitive name), or NULL. */
	const char *(*request_header)(const parley_request *req, const char *name);
	/* The raw body bytes exactly as received (verify signatures on these). */
	const unsigned char *(*request_body)(const parley_request *req, size_t *len);
	/* Queue an event carried by this request. The event is copied; it is
	 * committed to PostgreSQL before the request is answered with a 2xx.
	 * Returns 0, or -1 when the event is invalid (then answer 400). */
	PARLEY_MUSTCHECK int (*request_emit)(parley_request *req, const parley_event *event);
	/* Answer the request. Exactly one of respond/respond_error per request,
	 * now or later from a callback. For a 2xx the core first commits every
	 * emitted event in one transaction; if that fails the client gets 503
	 * with Retry-After instead, so a 2xx always means committed. For any
	 * other status the emitted events are discarded. `body` is copied. */
	void (*respond)(parley_request *req, int status, const char *content_type,
	                const void *body, size_t len);
	/* Answer with the core's JSON error shape: {"error":code,"detail":detail}. */
	void (*respond_error)(parley_request *req, int status, const char *code,
	                      const char *detail);

	/* --- deliveries (send, open_ticket, append, notify) ---
	 * Before completing, a sink may attach the ticket's id. */
	void (*delivery_set_external_id)(parley_delivery *d, const char *external_id);
	/* Finish a delivery. Exactly once per delivery. retry_at_ms: Unix ms not
	 * before which to retry (0 = the core's backoff). `reason` is copied and
	 * shown to operators: never include a secret. The delivery handle is
	 * invalid after this call. */
	void (*delivery_complete)(parley_delivery *d, parley_outcome outcome,
	                          int64_t retry_at_ms, const char *reason);

	/* --- outbound HTTP on the core loop (libcurl multi) ---
	 * Everything in `call` is copied. Returns 0 if started (the callback will
	 * run exactly once), -1 if it could not be started (no callback). */
	PARLEY_MUSTCHECK int (*http_request)(parley_instance *inst, const parley_http_call *call,
	                    parley_http_done_fn done, void *arg);
	long (*http_response_status)(const parley_http_response *r);  /* 0 = transport error */
	const char *(*http_response_error)(const parley_http_response *r); /* NULL if none */
	const char *(*http_response_header)(const parley_http_response *r, const char *name);
	const unsigned char *(*http_response_body)(const parley_http_response *r, size_t *len);

	/* --- timers: one-shot, on the loop; owned by the core --- */
	parley_timer *(*timer_start)(parley_instance *inst, uint64_t delay_ms,
	                             parley_timer_fn fn, void *arg);
	/* Cancel a timer that has not fired yet; a fired timer is already freed,
	 * do not cancel it. */
	void (*timer_cancel)(parley_timer *t);

	/* --- small durable per-instance state (e.g. a polling cursor) --- */
	void (*state_get)(parley_instance *inst, const char *key,
	                  parley_state_get_fn done, void *arg);
	void (*state_put)(parley_instance *inst, const char *key, const char *value,
	                  parley_state_put_fn done, void *arg);

	/* --- metrics: exported as parley_plugin_<name>{instance="..."} --- */
	void (*counter_add)(parley_instance *inst, const char *name, uint64_t delta);

	/* --- crypto helpers (libcrypto) --- */
	/* HMAC-SHA256 of data with key into out (32 bytes). */
	void (*hmac_sha256)(const void *key, size_t key_len, const void *data, size_t len,
	                    unsigned char out[32]);
	/* Constant-time comparison: 1 when equal (lengths are not secret). */
	int (*secure_equals)(const void *a, size_t a_len, const void *b, size_t b_len);
	/* Current wall-clock time, Unix milliseconds. */
	int64_t (*now_ms)(void);

	/* --- ABI 1.1: check PARLEY_HAS_FIELD(host, parley_host, emit_begin) --- */

	/* Events that do not come with a request (polling a platform's API):
	 * begin a batch, emit events into it, then commit. The events and, when
	 * state_key is not NULL, the state value (a polling cursor) are written
	 * in ONE transaction, so a cursor never moves past events that were not
	 * stored, and events are never stored without their cursor moving.
	 * Returns a batch owned by the core until emit_commit/emit_abort. */
	parley_emit_batch *(*emit_begin)(parley_instance *inst);
	/* Queue an event (copied). 0, or -1 when the event is invalid (the
	 * batch stays usable; the reason is logged). */
	PARLEY_MUSTCHECK int (*emit_event)(parley_emit_batch *b, const parley_event *event);
	/* Commit; done(arg, ok) runs exactly once, on the loop, never inside
	 * this call. ok = 0: nothing was written (retry later). `b` is consumed.
	 * state_key/state_value: borrowed for the call; may be NULL. */
	void (*emit_commit)(parley_emit_batch *b, const char *state_key, const char *state_value,
	                    parley_state_put_fn done, void *arg);
	/* Drop an uncommitted batch. */
	void (*emit_abort)(parley_emit_batch *b);

	/* For a PARLEY_SEND_PRIVATE_REPLY send, before completing it OK: the
	 * thread_id of the private chat it opened (copied). */
	void (*delivery_set_thread_id)(parley_delivery *d, const char *thread_id);
	/* For a PARLEY_SEND_PRIVATE_REPLY send, before completing it OK: the
	 * customer's platform id in that chat (copied), when it differs from
	 * their id in public (a Facebook comment's author vs. the Messenger
	 * user); the core records it as the same customer's identity. */
	void (*delivery_set_recipient_id)(parley_delivery *d, const char *recipient_id);

	/* --- ABI 1.2: check PARLEY_HAS_FIELD(host, parley_host, smtp_send) --- */

	/* A sink's handle_request: queue one ticket event carried by this request
	 * (copied; committed with the request's other events before a 2xx, like
	 * request_emit). Returns 0, or -1 when it is invalid (then answer 400). */
	PARLEY_MUSTCHECK int (*request_emit_ticket_event)(parley_request *req,
	                                                   const parley_ticket_event *event);
	/* Send one mail. Everything in `call` is copied. Returns 0 if started (the
	 * callback runs exactly once, on the loop: http_response_status is the
	 * SMTP server's last reply code, e.g. 250, or 0 for a transport failure
	 * with http_response_error saying why), -1 if it could not be started. */
	PARLEY_MUSTCHECK int (*smtp_send)(parley_instance *inst, const parley_smtp_call *call,
	                 parley_http_done_fn done, void *arg);

	/* --- ABI 1.3: check PARLEY_HAS_FIELD(host, parley_host, config_settings) --- */

	/* The plugin's settings struct, filled and validated by the core from
	 * the descriptor's settings table; NULL for a plugin without one.
	 * Owned by the core, read-only for the plugin. The struct handed to
	 * create() stays valid until destroy() returns or a reload() that
	 * returned 0 has handed a new one (keep the pointer; no need to copy).
	 * A struct handed to a reload() that returns -1 is freed when that
	 * reload() returns, and the previous one stays valid. Secrets in it are
	 * overwritten before the core frees them. */
	const void *(*config_settings)(const parley_config *cfg);
} parley_host;

/* ------------------------------------------------------------------------ */
/* Operations per kind                                                      */
/* ------------------------------------------------------------------------ */

typedef struct parley_channel_ops {
	uint32_t size;
	/* Mandatory. Handle GET|POST /webhooks/{instance}[/...]: handshake,
	 * signature check on the raw body, parse, request_emit per event, then
	 * respond (or respond_error). `req` is owned by the core. */
	void (*handle_request)(void *self, parley_request *req);
	/* Mandatory. Send a message; finish with delivery_complete, now or later.
	 * `msg` is borrowed for the call; `d` stays valid until completed. */
	void (*send)(void *self, const parley_outbound_message *msg, parley_delivery *d);
	/* --- ABI 1.4 (the core checks PARLEY_HAS_FIELD) ---
	 * Optional. Would send() refuse `msg` at once, by a rule of the platform
	 * (a messaging window, a private reply too late) or of this instance (no
	 * token for the asset), without calling the platform? The core asks
	 * before it stores an agent's reply, so the agent hears of the rule when
	 * answering instead of seeing the send fail later. Answer as send()
	 * would now; do no I/O and keep no state. `msg` is borrowed for the call
	 * (its idempotency_key and message_id are placeholders). Returns NULL
	 * when send() would try; otherwise the rule's name, a static string of
	 * [a-z][a-z0-9_]* ("window_closed"), with reason[0..reason_len) holding
	 * the sentence send() would fail with. */
	const char *(*check_send)(void *self, const parley_outbound_message *msg, char *reason,
	                          size_t reason_len);
} parley_channel_ops;

typedef struct parley_sink_ops {
	uint32_t size;
	/* Mandatory. Create a ticket; set its id with delivery_set_external_id. */
	void (*open_ticket)(void *self, const parley_ticket_request *t, parley_delivery *d);
	/* Mandatory. Add a message to an existing ticket. */
	void (*append_message)(void *self, const parley_ticket_append *a, parley_delivery *d);
	/* Optional. The ticket system's webhooks: POST /sinks/{instance}/events. */
	void (*handle_request)(void *self, parley_request *req);
} parley_sink_ops;

typedef struct parley_notifier_ops {
	uint32_t size;
	/* Mandatory. Deliver one notice. */
	void (*deliver)(void *self, const parley_notice *n, parley_delivery *d);
} parley_notifier_ops;

/* ------------------------------------------------------------------------ */
/* The descriptor                                                           */
/* ------------------------------------------------------------------------ */

typedef struct parley_plugin_descriptor {
	uint32_t size;                  /* sizeof(parley_plugin_descriptor) */
	uint16_t abi_major;             /* PARLEY_ABI_MAJOR the plugin was built with */
	uint16_t abi_minor;
	parley_kind kind;
	const char *name;               /* what "plugin": names in the config */
	const char *version;            /* the plugin's own version */
	const char *description;        /* one line */
	const parley_config_key *config_keys;  /* NULL-name terminated; may be NULL.
	                                          Ignored when a 1.3 settings table is set. */

	/* Lifecycle. create is mandatory, the rest optional.
	 * create: make one instance. `host` and `inst` stay valid until destroy.
	 *   `cfg` is borrowed for the call. Store the instance's state in *self.
	 *   Return 0, or -1 after config_error/log saying why.
	 * start: begin work (timers, polling) once every instance is created.
	 * reload: SIGHUP with a new validated config for this instance; return -1
	 *   to keep the old one (say why).
	 * stop: stop starting new work; in-flight deliveries still complete.
	 * destroy: free everything; no callbacks run after it. */
	PARLEY_MUSTCHECK int (*create)(const parley_host *host, parley_instance *inst,
	              const parley_config *cfg, void **self);
	PARLEY_MUSTCHECK int (*start)(void *self);
	PARLEY_MUSTCHECK int (*reload)(void *self, const parley_config *cfg);
	void (*stop)(void *self);
	void (*destroy)(void *self);

	/* Exactly the one matching `kind` is non-NULL. */
	const parley_channel_ops *channel;
	const parley_sink_ops *sink;
	const parley_notifier_ops *notifier;

	/* --- ABI 1.3: the settings table (the core checks PARLEY_HAS_FIELD) ---
	 * All owned by the plugin (static). settings NULL: config_keys as before. */
	const parley_setting *settings;     /* n_settings rows of setting_size bytes */
	size_t n_settings;
	size_t setting_size;                /* sizeof(parley_setting) the plugin was built with */
	size_t settings_size;               /* sizeof the plugin's settings struct */
} parley_plugin_descriptor;

/* In a descriptor initializer: the settings table `rows` (an array) filling
 * a struct of type `type`. */
#define PARLEY_SETTINGS(rows, type) \
	.settings = (rows), .n_settings = sizeof(rows) / sizeof((rows)[0]), \
	.setting_size = sizeof(parley_setting), .settings_size = sizeof(type)

/* The one symbol a plugin exports. */
typedef const parley_plugin_descriptor *(*parley_plugin_entry_fn)(void);

/* Declare it in a plugin as:
 *   PARLEY_PLUGIN_ENTRY(&my_descriptor)
 */
#define PARLEY_PLUGIN_ENTRY(desc_ptr) \
	PARLEY_EXPORT const parley_plugin_descriptor *parley_plugin_entry(void); \
	PARLEY_EXPORT const parley_plugin_descriptor *parley_plugin_entry(void) { return (desc_ptr); }

#ifdef __cplusplus
}
#endif
#endif /* PARLEY_PARLEY_H */
