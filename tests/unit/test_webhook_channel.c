/* test_webhook_channel.c - the webhook channel's wire format: signatures on
 * raw bytes, body validation with exact error paths, the events each item
 * becomes, and RFC 3339 times. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "../../plugins/common/plugin_util.h"
#include "../../plugins/channels/webhook/webhook_parse.h"

/* ------------------------------------------------------------------------ */
/* Test fixtures                                                            */
/* ------------------------------------------------------------------------ */

static const char secret[] = "s3cret";

/* "sha256=<hex>" of HMAC(secret, body), computed independently of the code
 * under test (util_hex over libcrypto's HMAC). */
static void expected_header(const char *body, size_t len, char out[80])
{
	unsigned char mac[32];
	char hex[65];

	util_hmac_sha256(secret, strlen(secret), body, len, mac);
	util_hex(mac, sizeof(mac), hex);
	snprintf(out, 80, "sha256=%s", hex);
}

static webhook_sig_result verify(const char *header, const char *body)
{
	return webhook_verify_signature(header, secret, strlen(secret), body, strlen(body),
	                                util_hmac_sha256, util_secure_equals);
}

/* What the parser handed out, copied (the event's strings are borrowed). */
typedef struct seen_event {
	size_t index;
	parley_event_type type;
	char *dedupe_key, *external_id, *text, *thread_id, *in_reply_to, *raw_json;
	char *author_id, *author_name, *author_handle, *author_email, *author_phone;
	int email_verified, phone_verified, from_brand;
	parley_visibility visibility;
	int64_t time_ms;
	size_t raw_json_len;
	uint32_t size;
} seen_event;

typedef struct capture {
	seen_event *ev;
	size_t n;
	size_t refuse_at;   /* refuse the item with this index; SIZE_MAX: none */
} capture;

static bool collect(void *arg, size_t index, const parley_event *ev)
{
	capture *c = arg;
	seen_event *s;

	if (index == c->refuse_at)
		return false;
	c->ev = realloc(c->ev, (c->n + 1) * sizeof(*c->ev));
	s = &c->ev[c->n++];
	memset(s, 0, sizeof(*s));
	s->index = index;
	s->size = ev->size;
	s->type = ev->type;
	s->dedupe_key = xstrdup(ev->dedupe_key);
	s->external_id = xstrdup(ev->external_id);
	s->text = xstrdup(ev->text);
	s->thread_id = xstrdup(ev->thread_id);
	s->in_reply_to = xstrdup(ev->in_reply_to);
	s->raw_json = xstrdup(ev->raw_json);
	s->raw_json_len = ev->raw_json_len;
	s->author_id = xstrdup(ev->author.external_id);
	s->author_name = xstrdup(ev->author.display_name);
	s->author_handle = xstrdup(ev->author.handle);
	s->author_email = xstrdup(ev->author.email);
	s->author_phone = xstrdup(ev->author.phone);
	s->email_verified = ev->author.email_verified;
	s->phone_verified = ev->author.phone_verified;
	s->from_brand = ev->from_brand;
	s->visibility = ev->visibility;
	s->time_ms = ev->platform_time_ms;
	return true;
}

static void capture_free(capture *c)
{
	for (size_t i = 0; i < c->n; i++) {
		seen_event *s = &c->ev[i];
		free(s->dedupe_key); free(s->external_id); free(s->text); free(s->thread_id);
		free(s->in_reply_to); free(s->raw_json); free(s->author_id); free(s->author_name);
		free(s->author_handle); free(s->author_email); free(s->author_phone);
	}
	free(c->ev);
	memset(c, 0, sizeof(*c));
}

/* Parse body; *c receives the events (free with capture_free). */
static bool parse(const char *body, capture *c, webhook_error *err, size_t *n)
{
	memset(c, 0, sizeof(*c));
	c->refuse_at = SIZE_MAX;
	memset(err, 0, sizeof(*err));
	return webhook_parse(body, strlen(body), collect, c, n, err);
}

/* The body must be refused with exactly this status, code and detail, and
 * nothing may have been handed out. */
static void assert_refused(const char *body, int status, const char *code, const char *detail)
{
	capture c;
	webhook_error err;
	size_t n = 99;

	if (parse(body, &c, &err, &n)) {
		fail_msg("accepted: %s", body);
	}
	assert_int_equal(err.http_status, status);
	assert_string_equal(err.code, code);
	if (detail != NULL)
		assert_string_equal(err.detail, detail);
	assert_int_equal(c.n, 0);
	assert_int_equal(n, 0);
	capture_free(&c);
}

/* A minimal valid message object with one field spliced in (or "" for none). */
static char *message_with(const char *extra)
{
	char *s = xmalloc(strlen(extra) + 128);
	sprintf(s, "{\"id\":\"m1\",\"author\":{\"id\":\"u1\"},\"text\":\"hi\"%s%s}",
	        extra[0] != '\0' ? "," : "", extra);
	return s;
}

/* ------------------------------------------------------------------------ */
/* Signatures                                                               */
/* ------------------------------------------------------------------------ */

static void test_signature_good_lowercase_hex_is_accepted(void **state)
{
	const char *body = "{\"id\":\"m1\"}";
	char header[80];

	expected_header(body, strlen(body), header);
	assert_int_equal(verify(header, body), WEBHOOK_SIG_OK);
}

static void test_signature_uppercase_hex_is_accepted(void **state)
{
	const char *body = "{\"id\":\"m1\"}";
	char header[80];

	expected_header(body, strlen(body), header);
	for (char *p = header + 7; *p != '\0'; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	assert_int_equal(verify(header, body), WEBHOOK_SIG_OK);
}

static void test_signature_absent_header_is_missing(void **state)
{
	assert_int_equal(verify(NULL, "{}"), WEBHOOK_SIG_MISSING);
}

static void test_signature_without_prefix_is_bad(void **state)
{
	const char *body = "{}";
	char header[80];

	expected_header(body, strlen(body), header);
	assert_int_equal(verify(header + strlen("sha256="), body), WEBHOOK_SIG_BAD);
	memcpy(header, "sha1=xx", 7);
	assert_int_equal(verify(header, body), WEBHOOK_SIG_BAD);
	memcpy(header, "SHA256=", 7);   /* the prefix is lowercase, as documented */
	assert_int_equal(verify(header, body), WEBHOOK_SIG_BAD);
}

static void test_signature_of_other_bytes_is_bad(void **state)
{
	char header[80];

	expected_header("{\"id\":\"m2\"}", 11, header);
	assert_int_equal(verify(header, "{\"id\":\"m1\"}"), WEBHOOK_SIG_BAD);
}

static void test_signature_with_another_secret_is_bad(void **state)
{
	const char *body = "{}";
	unsigned char mac[32];
	char hex[65], header[80];

	util_hmac_sha256("other", 5, body, 2, mac);
	util_hex(mac, sizeof(mac), hex);
	snprintf(header, sizeof(header), "sha256=%s", hex);
	assert_int_equal(verify(header, body), WEBHOOK_SIG_BAD);
}

static void test_signature_of_wrong_length_is_bad(void **state)
{
	const char *body = "{}";
	char header[80], longer[82];

	expected_header(body, strlen(body), header);
	snprintf(longer, sizeof(longer), "%s00", header);
	assert_int_equal(verify(longer, body), WEBHOOK_SIG_BAD);
	header[strlen(header) - 2] = '\0';   /* one byte short */
	assert_int_equal(verify(header, body), WEBHOOK_SIG_BAD);
	assert_int_equal(verify("sha256=", body), WEBHOOK_SIG_BAD);
	assert_int_equal(verify("", body), WEBHOOK_SIG_BAD);
}

static void test_signature_with_non_hex_digit_is_bad(void **state)
{
	const char *body = "{}";
	char header[80];

	expected_header(body, strlen(body), header);
	header[20] = 'g';
	assert_int_equal(verify(header, body), WEBHOOK_SIG_BAD);
}

static void test_sign_matches_rfc4231_vector(void **state)
{
	/* RFC 4231, test case 2. */
	char out[WEBHOOK_SIGNATURE_LEN + 1];

	webhook_sign("Jefe", 4, "what do ya want for nothing?", 28, util_hmac_sha256, out);
	assert_string_equal(out, "sha256=5bdcc146bf60754e6a042426089575c7"
	                         "5a003f089d2739839dec58b964ec3843");
}

static void test_signature_is_over_raw_bytes_not_the_json_value(void **state)
{
	/* Same JSON value, different bytes: "\u00e9" escaped vs a raw UTF-8 é. */
	const char *escaped = "{\"id\":\"m1\",\"author\":{\"id\":\"u\"},\"text\":\"caf\\u00e9\"}";
	const char *raw = "{\"id\":\"m1\",\"author\":{\"id\":\"u\"},\"text\":\"caf\xc3\xa9\"}";
	char sig_escaped[80], sig_raw[80];
	capture a, b;
	webhook_error err;
	size_t n;

	expected_header(escaped, strlen(escaped), sig_escaped);
	expected_header(raw, strlen(raw), sig_raw);
	assert_string_not_equal(sig_escaped, sig_raw);
	assert_int_equal(verify(sig_escaped, escaped), WEBHOOK_SIG_OK);
	assert_int_equal(verify(sig_escaped, raw), WEBHOOK_SIG_BAD);
	assert_int_equal(verify(sig_raw, raw), WEBHOOK_SIG_OK);

	/* ...although both say the same thing. */
	assert_true(parse(escaped, &a, &err, &n));
	assert_true(parse(raw, &b, &err, &n));
	assert_string_equal(a.ev[0].text, "caf\xc3\xa9");
	assert_string_equal(a.ev[0].text, b.ev[0].text);
	capture_free(&a);
	capture_free(&b);
}

/* ------------------------------------------------------------------------ */
/* Accepted bodies                                                          */
/* ------------------------------------------------------------------------ */

static void test_single_object_becomes_one_created_event(void **state)
{
	const char *body =
		"{\"id\":\"m-42\",\"author\":{\"id\":\"cust-7\",\"name\":\"Ana Lopez\","
		"\"handle\":\"ana\",\"email\":\"ana@example.com\",\"phone\":\"+34600000000\","
		"\"email_verified\":true},\"text\":\"Where is my order?\",\"visibility\":\"private\","
		"\"in_reply_to\":\"m-41\",\"created_at\":\"2026-11-23T10:00:00Z\"}";
	capture c;
	webhook_error err;
	size_t n;

	assert_true(parse(body, &c, &err, &n));
	assert_int_equal(n, 1);
	assert_int_equal(c.n, 1);
	seen_event *e = &c.ev[0];
	assert_int_equal(e->size, sizeof(parley_event));
	assert_int_equal(e->index, 0);
	assert_int_equal(e->type, PARLEY_EVENT_MESSAGE_CREATED);
	assert_string_equal(e->dedupe_key, "m-42");
	assert_string_equal(e->external_id, "m-42");
	assert_string_equal(e->author_id, "cust-7");
	assert_string_equal(e->author_name, "Ana Lopez");
	assert_string_equal(e->author_handle, "ana");
	assert_string_equal(e->author_email, "ana@example.com");
	assert_string_equal(e->author_phone, "+34600000000");
	assert_int_equal(e->email_verified, 1);
	assert_int_equal(e->phone_verified, 0);   /* unless the site vouches for it */
	assert_string_equal(e->text, "Where is my order?");
	assert_int_equal(e->visibility, PARLEY_VISIBILITY_PRIVATE);
	assert_string_equal(e->in_reply_to, "m-41");
	assert_int_equal(e->time_ms, INT64_C(1795428000000));
	assert_int_equal(e->from_brand, 0);
	/* The evidence is the item re-serialized compactly. */
	assert_string_equal(e->raw_json, body);
	assert_int_equal(e->raw_json_len, strlen(body));
	capture_free(&c);
}

static void test_raw_json_is_compact_reserialization_of_item(void **state)
{
	capture c;
	webhook_error err;
	size_t n;

	assert_true(parse("[ {\"id\" : \"a\",\n \"author\": {\"id\": \"u\"},\t\"text\": \"x\"} ]",
	                  &c, &err, &n));
	assert_string_equal(c.ev[0].raw_json, "{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"x\"}");
	capture_free(&c);
}

static void test_batch_of_three_in_order(void **state)
{
	const char *body =
		"[{\"id\":\"a\",\"author\":{\"id\":\"u1\"},\"text\":\"one\"},"
		" {\"id\":\"b\",\"author\":{\"id\":\"u2\"},\"text\":\"two\",\"visibility\":\"public\"},"
		" {\"id\":\"c\",\"type\":\"delete\",\"created_at\":\"2026-11-23T10:05:00Z\"}]";
	capture c;
	webhook_error err;
	size_t n;

	assert_true(parse(body, &c, &err, &n));
	assert_int_equal(n, 3);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.ev[0].index, 0);
	assert_string_equal(c.ev[0].external_id, "a");
	assert_string_equal(c.ev[0].text, "one");
	assert_int_equal(c.ev[1].index, 1);
	assert_string_equal(c.ev[1].external_id, "b");
	assert_int_equal(c.ev[1].visibility, PARLEY_VISIBILITY_PUBLIC);
	assert_int_equal(c.ev[2].index, 2);
	assert_int_equal(c.ev[2].type, PARLEY_EVENT_MESSAGE_DELETED);
	assert_string_equal(c.ev[2].raw_json,
	                    "{\"id\":\"c\",\"type\":\"delete\",\"created_at\":\"2026-11-23T10:05:00Z\"}");
	capture_free(&c);
}

static void test_unknown_fields_are_ignored(void **state)
{
	char *body = message_with("\"attachments\":[{\"url\":\"x\"}],\"future\":{\"a\":1},\"n\":3");
	capture c;
	webhook_error err;
	size_t n;

	assert_true(parse(body, &c, &err, &n));
	assert_int_equal(n, 1);
	/* ...but kept as evidence. */
	assert_non_null(strstr(c.ev[0].raw_json, "\"future\":{\"a\":1}"));
	capture_free(&c);
	free(body);
}

static void test_null_counts_as_absent(void **state)
{
	char *body = message_with("\"in_reply_to\":null,\"thread\":null,\"type\":null");
	capture c;
	webhook_error err;
	size_t n;

	assert_true(parse(body, &c, &err, &n));
	assert_int_equal(c.ev[0].type, PARLEY_EVENT_MESSAGE_CREATED);
	assert_null(c.ev[0].in_reply_to);
	assert_string_equal(c.ev[0].thread_id, "dm:u1");
	capture_free(&c);
	free(body);
}

static void test_from_brand_marks_an_echo(void **state)
{
	char *body = message_with("\"from_brand\":true");
	capture c;
	webhook_error err;
	size_t n;

	assert_true(parse(body, &c, &err, &n));
	assert_int_equal(c.ev[0].from_brand, 1);
	capture_free(&c);
	free(body);
}

static void test_default_thread_ids(void **state)
{
	capture c;
	webhook_error err;
	size_t n;
	char *private_default = message_with("");
	char *public_default = message_with("\"visibility\":\"public\"");
	char *given = message_with("\"visibility\":\"public\",\"thread\":\"post-9\"");
	char *given_private = message_with("\"thread\":\"chat-3\"");

	/* Private: the author's one direct conversation. */
	assert_true(parse(private_default, &c, &err, &n));
	assert_string_equal(c.ev[0].thread_id, "dm:u1");
	capture_free(&c);
	/* Public without a thread: the message starts its own. */
	assert_true(parse(public_default, &c, &err, &n));
	assert_string_equal(c.ev[0].thread_id, "m1");
	capture_free(&c);
	/* A given thread always wins. */
	assert_true(parse(given, &c, &err, &n));
	assert_string_equal(c.ev[0].thread_id, "post-9");
	capture_free(&c);
	assert_true(parse(given_private, &c, &err, &n));
	assert_string_equal(c.ev[0].thread_id, "chat-3");
	capture_free(&c);
	free(private_default);
	free(public_default);
	free(given);
	free(given_private);
}

static void test_edit_and_delete_dedupe_keys(void **state)
{
	const char *body =
		"[{\"id\":\"m1\",\"type\":\"edit\",\"text\":\"fixed typo\","
		"\"created_at\":\"2026-11-23T10:01:00Z\"},"
		" {\"id\":\"m1\",\"type\":\"edit\",\"text\":\"again\","
		"\"created_at\":\"2026-11-23T10:02:00.5+01:00\"},"
		" {\"id\":\"m1\",\"type\":\"delete\",\"created_at\":\"2026-11-23T10:03:00Z\"}]";
	capture c;
	webhook_error err;
	size_t n;

	assert_true(parse(body, &c, &err, &n));
	assert_int_equal(n, 3);
	assert_int_equal(c.ev[0].type, PARLEY_EVENT_MESSAGE_EDITED);
	assert_string_equal(c.ev[0].dedupe_key, "edit:m1:2026-11-23T10:01:00Z");
	assert_string_equal(c.ev[0].external_id, "m1");
	assert_string_equal(c.ev[0].text, "fixed typo");
	assert_int_equal(c.ev[0].time_ms, INT64_C(1795428060000));
	/* A later edit of the same message is a different event. */
	assert_string_equal(c.ev[1].dedupe_key, "edit:m1:2026-11-23T10:02:00.5+01:00");
	assert_int_equal(c.ev[1].time_ms, INT64_C(1795424520500));
	assert_int_equal(c.ev[2].type, PARLEY_EVENT_MESSAGE_DELETED);
	assert_string_equal(c.ev[2].dedupe_key, "delete:m1:2026-11-23T10:03:00Z");
	assert_string_equal(c.ev[2].external_id, "m1");
	assert_null(c.ev[2].text);
	/* Edits and deletions need no author; without a thread they carry none. */
	assert_null(c.ev[0].author_id);
	assert_null(c.ev[2].thread_id);
	capture_free(&c);
}

static void test_missing_created_at_means_unknown_time(void **state)
{
	char *body = message_with("");
	capture c;
	webhook_error err;
	size_t n;

	assert_true(parse(body, &c, &err, &n));
	assert_int_equal(c.ev[0].time_ms, 0);
	capture_free(&c);
	free(body);
}

static void test_limits_are_inclusive(void **state)
{
	/* id of exactly 256 bytes and text of exactly 64 KiB are fine. */
	size_t len = 65536 + 512;
	char *body = xmalloc(len), *p = body;
	capture c;
	webhook_error err;
	size_t n;

	p += sprintf(p, "{\"id\":\"");
	memset(p, 'i', 256); p += 256;
	p += sprintf(p, "\",\"author\":{\"id\":\"u\"},\"text\":\"");
	memset(p, 't', 65536); p += 65536;
	strcpy(p, "\"}");
	assert_true(parse(body, &c, &err, &n));
	assert_int_equal(strlen(c.ev[0].text), 65536);
	capture_free(&c);
	free(body);
}

static void test_thousand_items_are_accepted(void **state)
{
	size_t item = strlen("{\"id\":\"0000\",\"author\":{\"id\":\"u\"},\"text\":\"t\"},");
	char *body = xmalloc(1000 * item + 3), *p = body;
	capture c;
	webhook_error err;
	size_t n;

	*p++ = '[';
	for (int i = 0; i < 1000; i++)
		p += sprintf(p, "%s{\"id\":\"%04d\",\"author\":{\"id\":\"u\"},\"text\":\"t\"}",
		             i ? "," : "", i);
	strcpy(p, "]");
	assert_true(parse(body, &c, &err, &n));
	assert_int_equal(n, 1000);
	assert_string_equal(c.ev[999].external_id, "0999");
	capture_free(&c);
	free(body);
}

/* ------------------------------------------------------------------------ */
/* Refused bodies                                                           */
/* ------------------------------------------------------------------------ */

static void test_1001_items_are_too_large(void **state)
{
	char *body = xmalloc(1001 * 3 + 3), *p = body;

	*p++ = '[';
	for (int i = 0; i < 1001; i++) {
		if (i)
			*p++ = ',';
		*p++ = '{';
		*p++ = '}';
	}
	strcpy(p, "]");
	assert_refused(body, 413, "batch_too_large", "1001 items; at most 1000 per request");
	free(body);
}

static void test_empty_array_is_an_empty_batch(void **state)
{
	assert_refused("[]", 400, "empty_batch", "the array has no items");
	assert_refused(" [ ] ", 400, "empty_batch", "the array has no items");
}

static void test_invalid_json_reports_line_and_column(void **state)
{
	assert_refused("{\n  \"id\": \"a\",\n  oops\n}", 400, "invalid_json",
	               "line 3 column 6: string or '}' expected near 'oops'");
	assert_refused("", 400, "invalid_json",
	               "line 1 column 0: '[' or '{' expected near end of file");
	assert_refused("\"just a string\"", 400, "invalid_json", NULL);
}

static void test_duplicate_keys_are_invalid_json(void **state)
{
	/* Two readers of one signed body must not disagree on what it says. */
	const char *body = "{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"x\",\"id\":\"b\"}";
	capture c;
	webhook_error err;
	size_t n;

	assert_false(parse(body, &c, &err, &n));
	assert_int_equal(err.http_status, 400);
	assert_string_equal(err.code, "invalid_json");
	assert_non_null(strstr(err.detail, "duplicate object key"));
	assert_int_equal(c.n, 0);
	capture_free(&c);
}

static void test_body_need_not_be_nul_terminated(void **state)
{
	/* The core hands raw bytes with a length; the parser must stop there. */
	const char body[] = "{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"x\"}GARBAGE";
	capture c = { .refuse_at = SIZE_MAX };
	webhook_error err;
	size_t n;

	assert_true(webhook_parse(body, strlen(body) - strlen("GARBAGE"), collect, &c, &n, &err));
	assert_int_equal(n, 1);
	capture_free(&c);
}

typedef struct field_case {
	const char *body;
	const char *detail;
} field_case;

static void test_every_field_error_names_its_path(void **state)
{
	char id257[300], text_too_long[65536 + 200], *p;
	static const field_case cases[] = {
		{ "{\"author\":{\"id\":\"u\"},\"text\":\"x\"}", "id: required" },
		{ "{\"id\":7,\"author\":{\"id\":\"u\"},\"text\":\"x\"}", "id: expected a string" },
		{ "{\"id\":\"\",\"author\":{\"id\":\"u\"},\"text\":\"x\"}", "id: must not be empty" },
		{ "{\"id\":\"a\",\"type\":\"like\",\"author\":{\"id\":\"u\"},\"text\":\"x\"}",
		  "type: must be \"message\", \"edit\" or \"delete\"" },
		{ "{\"id\":\"a\",\"type\":1,\"author\":{\"id\":\"u\"},\"text\":\"x\"}",
		  "type: expected a string" },
		{ "{\"id\":\"a\",\"text\":\"x\"}", "author: required" },
		{ "{\"id\":\"a\",\"author\":\"u\",\"text\":\"x\"}", "author: expected an object" },
		{ "{\"id\":\"a\",\"author\":{},\"text\":\"x\"}", "author.id: required" },
		{ "{\"id\":\"a\",\"author\":{\"id\":1},\"text\":\"x\"}", "author.id: expected a string" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"\"},\"text\":\"x\"}",
		  "author.id: must not be empty" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\",\"name\":[]},\"text\":\"x\"}",
		  "author.name: expected a string" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\",\"handle\":{}},\"text\":\"x\"}",
		  "author.handle: expected a string" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\",\"email\":true},\"text\":\"x\"}",
		  "author.email: expected a string" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\",\"phone\":34600},\"text\":\"x\"}",
		  "author.phone: expected a string" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\",\"email_verified\":\"yes\"},\"text\":\"x\"}",
		  "author.email_verified: expected a boolean" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\",\"phone_verified\":1},\"text\":\"x\"}",
		  "author.phone_verified: expected a boolean" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\"}}", "text: required" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":5}", "text: expected a string" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"x\",\"visibility\":\"secret\"}",
		  "visibility: must be \"public\" or \"private\"" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"x\",\"visibility\":false}",
		  "visibility: expected a string" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"x\",\"thread\":9}",
		  "thread: expected a string" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"x\",\"thread\":\"\"}",
		  "thread: must not be empty" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"x\",\"in_reply_to\":9}",
		  "in_reply_to: expected a string" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"x\",\"created_at\":1795428000}",
		  "created_at: expected a string" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"x\",\"created_at\":\"yesterday\"}",
		  "created_at: not an RFC 3339 date-time (e.g. 2026-11-23T10:00:00Z)" },
		{ "{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"x\",\"from_brand\":\"no\"}",
		  "from_brand: expected a boolean" },
		{ "{\"id\":\"a\",\"type\":\"edit\",\"created_at\":\"2026-11-23T10:00:00Z\"}",
		  "text: required" },
		{ "{\"id\":\"a\",\"type\":\"edit\",\"text\":\"x\"}", "created_at: required" },
		{ "{\"id\":\"a\",\"type\":\"delete\"}", "created_at: required" },
		{ "{\"id\":\"a\",\"type\":\"delete\",\"created_at\":\"2026-11-23T10:00:00Z\","
		  "\"author\":{}}", "author.id: required" },
		/* In an array the path starts with the item's index. */
		{ "[{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"x\"},"
		  " {\"id\":\"b\",\"author\":{\"id\":\"u\"},\"text\":\"x\"},"
		  " {\"id\":\"c\",\"author\":{\"id\":\"u\"},\"text\":\"x\"},"
		  " {\"id\":\"d\",\"author\":{\"name\":\"no id\"},\"text\":\"x\"}]",
		  "[3].author.id: required" },
		{ "[{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":null}]", "[0].text: required" },
		{ "[{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"x\"}, 42]",
		  "[1]: expected an object" },
		{ "[[]]", "[0]: expected an object" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_refused(cases[i].body, 400, "invalid_field", cases[i].detail);

	/* Size limits. */
	p = id257 + sprintf(id257, "{\"id\":\"");
	memset(p, 'i', 257);
	p += 257;
	strcpy(p, "\",\"author\":{\"id\":\"u\"},\"text\":\"x\"}");
	assert_refused(id257, 400, "invalid_field", "id: longer than 256 bytes");

	p = text_too_long + sprintf(text_too_long, "{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"");
	memset(p, 't', 65537);
	p += 65537;
	strcpy(p, "\"}");
	assert_refused(text_too_long, 400, "invalid_field", "text: longer than 65536 bytes");
}

static void test_one_bad_item_rejects_the_whole_batch(void **state)
{
	/* Items 0 and 1 are valid, but nothing may be handed out. */
	assert_refused("[{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"x\"},"
	               " {\"id\":\"b\",\"author\":{\"id\":\"u\"},\"text\":\"x\"},"
	               " {\"id\":\"c\",\"author\":{\"id\":\"u\"}}]",
	               400, "invalid_field", "[2].text: required");
}

static void test_refusal_by_the_callback_stops_with_event_rejected(void **state)
{
	const char *body =
		"[{\"id\":\"a\",\"author\":{\"id\":\"u\"},\"text\":\"x\"},"
		" {\"id\":\"b\",\"author\":{\"id\":\"u\"},\"text\":\"x\"},"
		" {\"id\":\"c\",\"author\":{\"id\":\"u\"},\"text\":\"x\"}]";
	capture c = { .refuse_at = 1 };
	webhook_error err;
	size_t n = 99;

	assert_false(webhook_parse(body, strlen(body), collect, &c, &n, &err));
	assert_int_equal(err.http_status, 400);
	assert_string_equal(err.code, "event_rejected");
	assert_string_equal(err.detail, "item 1 was refused by the core");
	assert_int_equal(c.n, 1);   /* item 2 was never offered */
	assert_int_equal(n, 0);
	capture_free(&c);
}

/* ------------------------------------------------------------------------ */
/* Excerpts for operator-facing reasons                                     */
/* ------------------------------------------------------------------------ */

static void test_excerpt_keeps_text_and_masks_control_bytes(void **state)
{
	char out[32];

	pu_excerpt("bad\r\nrequest\x01\x7f", 14, 200, out, sizeof(out));
	assert_string_equal(out, "bad??request??");
	pu_excerpt("caf\xc3\xa9", 5, 200, out, sizeof(out));
	assert_string_equal(out, "caf\xc3\xa9");
	pu_excerpt("a\xff" "b\xc3", 4, 200, out, sizeof(out));
	assert_string_equal(out, "a?b?");
	pu_excerpt("abc\0def", 7, 200, out, sizeof(out));
	assert_string_equal(out, "abc?def");
}

static void test_excerpt_stops_at_the_limit_without_splitting_characters(void **state)
{
	char out[32];

	pu_excerpt("abcdefgh", 8, 5, out, sizeof(out));
	assert_string_equal(out, "abcde");
	/* "ab" + "é" (2 bytes) would make 4 > 3: the é is left out whole. */
	pu_excerpt("ab\xc3\xa9z", 5, 3, out, sizeof(out));
	assert_string_equal(out, "ab");
	/* The output buffer is a limit too. */
	pu_excerpt("abcdefgh", 8, 200, out, 4);
	assert_string_equal(out, "abc");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signature_good_lowercase_hex_is_accepted),
		cmocka_unit_test(test_signature_uppercase_hex_is_accepted),
		cmocka_unit_test(test_signature_absent_header_is_missing),
		cmocka_unit_test(test_signature_without_prefix_is_bad),
		cmocka_unit_test(test_signature_of_other_bytes_is_bad),
		cmocka_unit_test(test_signature_with_another_secret_is_bad),
		cmocka_unit_test(test_signature_of_wrong_length_is_bad),
		cmocka_unit_test(test_signature_with_non_hex_digit_is_bad),
		cmocka_unit_test(test_sign_matches_rfc4231_vector),
		cmocka_unit_test(test_signature_is_over_raw_bytes_not_the_json_value),
		cmocka_unit_test(test_single_object_becomes_one_created_event),
		cmocka_unit_test(test_raw_json_is_compact_reserialization_of_item),
		cmocka_unit_test(test_batch_of_three_in_order),
		cmocka_unit_test(test_unknown_fields_are_ignored),
		cmocka_unit_test(test_null_counts_as_absent),
		cmocka_unit_test(test_from_brand_marks_an_echo),
		cmocka_unit_test(test_default_thread_ids),
		cmocka_unit_test(test_edit_and_delete_dedupe_keys),
		cmocka_unit_test(test_missing_created_at_means_unknown_time),
		cmocka_unit_test(test_limits_are_inclusive),
		cmocka_unit_test(test_thousand_items_are_accepted),
		cmocka_unit_test(test_1001_items_are_too_large),
		cmocka_unit_test(test_empty_array_is_an_empty_batch),
		cmocka_unit_test(test_invalid_json_reports_line_and_column),
		cmocka_unit_test(test_duplicate_keys_are_invalid_json),
		cmocka_unit_test(test_body_need_not_be_nul_terminated),
		cmocka_unit_test(test_every_field_error_names_its_path),
		cmocka_unit_test(test_one_bad_item_rejects_the_whole_batch),
		cmocka_unit_test(test_refusal_by_the_callback_stops_with_event_rejected),
		cmocka_unit_test(test_excerpt_keeps_text_and_masks_control_bytes),
		cmocka_unit_test(test_excerpt_stops_at_the_limit_without_splitting_characters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
