/* meta_body.h - what the meta channel's webhook body parsers share: the
 * parse context, the JSON helpers (meta_parse.c) and one entry point per
 * product (meta_messenger.c, meta_whatsapp.c). Not part of any ABI. */
#ifndef PARLEY_META_BODY_H
#define PARLEY_META_BODY_H

#include <stdint.h>
#include <jansson.h>

#include "meta_parse.h"

#define NUM_BUF 24                     /* an int64 in decimal, sign and NUL */
#define DEDUPE_BYTES (48 + 2 * META_MAX_ID_BYTES)
#define PLACEHOLDER_BYTES 48

typedef struct parse_ctx {
	meta_emit_fn emit;
	meta_note_fn note;
	void *arg;
	meta_parse_stats *stats;
} parse_ctx;

/* Record a skipped item; the text is bounded and holds only names Meta sent
 * (object, field, type, verb), never message content. */
META_INTERNAL void mp_note(parse_ctx *pc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A name for notes (an object, field, type or verb Meta sent): printable
 * ASCII only, at most 40 bytes. v: borrowed. out: caller's buffer. */
META_INTERNAL const char *mp_name_of(json_t *v, char out[41]);
/* An id as text: a non-empty string of at most META_MAX_ID_BYTES without
 * control characters, or a JSON integer printed exactly. v: borrowed; buf:
 * caller's, for the integer case. NULL for anything else. */
META_INTERNAL const char *mp_id_of(json_t *v, char buf[NUM_BUF]);
/* Unix ms from a JSON integer or a string of digits, in seconds or ms. 0
 * when absent or invalid. */
META_INTERNAL int64_t mp_time_ms(json_t *v);
/* Hand one event to the callback with the item as raw_json. ev: filled by
 * the caller except size and raw_json. */
META_INTERNAL void mp_deliver(parse_ctx *pc, parley_event *ev, json_t *item);

/* A text field: a string (jansson has combined surrogate pairs into UTF-8
 * and refuses \u0000), or NULL. v: borrowed. */
static inline const char *mp_text_of(json_t *v)
{
	return json_string_value(v);
}

/* Pages and Instagram (meta_messenger.c). Items and values: borrowed. */
META_INTERNAL void mp_messaging_item(parse_ctx *pc, meta_thread_kind kind, const char *asset,
                                     json_t *item);
META_INTERNAL void mp_feed_change(parse_ctx *pc, const char *page, json_t *value);
META_INTERNAL void mp_ig_comment(parse_ctx *pc, const char *account, int64_t entry_ms,
                                 json_t *value);
/* WhatsApp (meta_whatsapp.c): one changes[].value. */
META_INTERNAL void mp_wa_change(parse_ctx *pc, json_t *value);

#endif
