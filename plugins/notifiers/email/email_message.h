/* email_message.h - the "email" notifier's pure part: address checks, the
 * RFC 5322 message built from a notice, and the meaning of an SMTP reply
 * code. No I/O and no parley_host calls, so the unit tests check every byte. */
#ifndef PARLEY_EMAIL_MESSAGE_H
#define PARLEY_EMAIL_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parley/parley.h"

/* Longest address accepted (RFC 5321: 64 + 1 + 255, and a path of 256). */
#define EMAIL_ADDRESS_MAX 254
/* A Subject longer than this (bytes of the notice's title) is cut. */
#define EMAIL_SUBJECT_BYTES 200

/* What one message is made of. Everything borrowed for the call. */
typedef struct email_message_input {
	const char *from;              /* a valid address (email_address_valid) */
	const char *const *to;         /* valid addresses, NULL-terminated, at least one */
	const char *message_id_left;   /* the part before '@' of Message-ID: only
	                                  [A-Za-z0-9.-], not empty */
	int64_t date_ms;               /* Unix ms for the Date header */
	const char *kind;              /* the notice's kind, may be NULL */
	const char *title;             /* the Subject, may be NULL */
	const char *text;              /* the body, may be NULL */
	const char *url;               /* appended to the body, may be NULL */
} email_message_input;

/* True for a plain addr-spec "local@domain" this plugin can put into both
 * the SMTP envelope and the headers as it is: a dot-atom local part (at most
 * 64 bytes) and a host name domain (letters, digits, '-', '.'), nothing
 * else (no display name, no quoted local part, no IP literal). addr:
 * borrowed, may be NULL. */
bool email_address_valid(const char *addr);

/* The domain of a valid address: a pointer into addr (borrowed). */
const char *email_address_domain(const char *addr);

/* "Mon, 23 Nov 2026 15:45:56 +0000" for Unix ms (UTC), into out (at least
 * 32 bytes). False when the time cannot be represented. */
bool email_format_date(int64_t ms, char *out, size_t outlen);

/* Build the whole message: headers, blank line, body in quoted-printable
 * UTF-8, every line ending in CRLF, none longer than 78 bytes. No byte of
 * the notice can end a header line early (header injection): control
 * characters in the title become spaces, a title that is not plain short
 * ASCII is sent as RFC 2047 encoded-words. The body is NOT dot-stuffed: the
 * SMTP client (libcurl) does that on the wire; a '.' starting a line is
 * encoded as =2E all the same, so no relay can mistake it.
 * On true, *out (owned by the caller, free()) holds *out_len bytes plus a
 * terminating NUL. False when out of memory or the input is unusable
 * (invalid from/to/message_id_left). */
bool email_message_build(const email_message_input *in, char **out, size_t *out_len);

/* What an SMTP reply code means for the delivery: 2xx OK, 4xx (and 0, a
 * transport failure) RETRY, anything else FAIL. */
parley_outcome email_reply_outcome(long code);

#endif
