/* test_telegram_channel.c - the telegram channel's wire format: the webhook
 * secret, Update objects to events, getUpdates answers and their offsets,
 * the sendMessage request byte for byte and the classification of its
 * answers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "../../plugins/channels/telegram/telegram_parse.h"

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                 */
/* ------------------------------------------------------------------------ */

/* What the parser handed out, copied (the event's strings are borrowed). */
typedef struct seen_event {
	parley_event_type type;
	char *dedupe_key, *external_id, *text, *thread_id, *in_reply_to, *raw_json;
	char *author_id, *author_name, *author_handle, *profile;
	int from_brand;
	parley_visibility visibility;
	int64_t time_ms;
	uint32_t size;
} seen_event;

typedef struct capture {
	seen_event ev[8];
	size_t n;
	int refuse;   /* nonzero: refuse every event */
} capture;

static int collect(void *arg, const parley_event *ev)
{
	capture *c = arg;
	seen_event *s;

	if (c->refuse)
		return -1;
	assert_true(c->n < 8);
	s = &c->ev[c->n++];
	memset(s, 0, sizeof(*s));
	s->size = ev->size;
	s->type = ev->type;
	s->dedupe_key = xstrdup(ev->dedupe_key);
	s->external_id = xstrdup(ev->external_id);
	s->text = xstrdup(ev->text);
	s->thread_id = xstrdup(ev->thread_id);
	s->in_reply_to = xstrdup(ev->in_reply_to);
	assert_non_null(ev->raw_json);
	assert_int_equal(strlen(ev->raw_json), ev->raw_json_len);
	s->raw_json = xstrdup(ev->raw_json);
	s->author_id = xstrdup(ev->author.external_id);
	s->author_name = xstrdup(ev->author.display_name);
	s->author_handle = xstrdup(ev->author.handle);
	s->profile = xstrdup(ev->author.profile_json);
	s->from_brand = ev->from_brand;
	s->visibility = ev->visibility;
	s->time_ms = ev->platform_time_ms;
	return 0;
}

static void capture_free(capture *c)
{
	for (size_t i = 0; i < c->n; i++) {
		seen_event *s = &c->ev[i];
		free(s->dedupe_key); free(s->external_id); free(s->text); free(s->thread_id);
		free(s->in_reply_to); free(s->raw_json); free(s->author_id); free(s->author_name);
		free(s->author_handle); free(s->profile);
	}
	memset(c, 0, sizeof(*c));
}

static const telegram_parse_opts no_channels = { 0 };
static const telegram_parse_opts with_channels = { 1 };

static telegram_parse_result parse_with(const char *body, const telegram_parse_opts *opts,
                                        capture *c, char *why, int64_t *uid)
{
	memset(c, 0, sizeof(*c));
	why[0] = '\0';
	return telegram_parse_update(body, strlen(body), opts, collect, c, uid, why, 200);
}

/* The body must become exactly one event; *c holds it. */
static void parse_one(const char *body, const telegram_parse_opts *opts, capture *c)
{
	char why[200];
	int64_t uid;

	assert_int_equal(parse_with(body, opts, c, why, &uid), TELEGRAM_PARSE_EMITTED);
	assert_int_equal(c->n, 1);
	assert_int_equal(c->ev[0].size, sizeof(parley_event));
}

/* The body must be ignored (200, nothing emitted). */
static void assert_ignored(const char *body, const telegram_parse_opts *opts, const char *why_part)
{
	capture c;
	char why[200];
	int64_t uid;

	assert_int_equal(parse_with(body, opts, &c, why, &uid), TELEGRAM_PARSE_IGNORED);
	assert_int_equal(c.n, 0);
	assert_non_null(strstr(why, why_part));
}

/* The body must be refused as invalid, nothing emitted. */
static void assert_invalid(const char *body, const char *why_part)
{
	capture c;
	char why[200];
	int64_t uid;

	assert_int_equal(parse_with(body, &no_channels, &c, why, &uid), TELEGRAM_PARSE_INVALID);
	assert_int_equal(c.n, 0);
	if (why_part != NULL && strstr(why, why_part) == NULL)
		fail_msg("why \"%s\" does not contain \"%s\"", why, why_part);
}

/* The modern private message of the shared reference (section 7.2). */
static const char private_message[] =
	"{\"update_id\":10001,\"message\":{\"message_id\":1366,"
	"\"from\":{\"id\":1111111,\"is_bot\":false,\"first_name\":\"Test\",\"last_name\":\"Test Lastname\","
	"\"username\":\"Test\",\"language_code\":\"en\"},"
	"\"chat\":{\"id\":1111111,\"first_name\":\"Test\",\"last_name\":\"Test Lastname\","
	"\"username\":\"Test\",\"type\":\"private\"},\"date\":1441645532,\"text\":\"Hello\"}}";

/* ------------------------------------------------------------------------ */
/* Secret header                                                            */
/* ------------------------------------------------------------------------ */

static void test_secret_header(void **state)
{
	static const char secret[] = "s3cr3t_Token-1";
	(void)state;
	assert_int_equal(telegram_check_secret("s3cr3t_Token-1", secret, strlen(secret),
	                                       util_secure_equals), TELEGRAM_SECRET_OK);
	assert_int_equal(telegram_check_secret(NULL, secret, strlen(secret), util_secure_equals),
	                 TELEGRAM_SECRET_MISSING);
	assert_int_equal(telegram_check_secret("", secret, strlen(secret), util_secure_equals),
	                 TELEGRAM_SECRET_BAD);
	assert_int_equal(telegram_check_secret("s3cr3t_Token-2", secret, strlen(secret),
	                                       util_secure_equals), TELEGRAM_SECRET_BAD);
	assert_int_equal(telegram_check_secret("s3cr3t_Token-1x", secret, strlen(secret),
	                                       util_secure_equals), TELEGRAM_SECRET_BAD);
	assert_int_equal(telegram_check_secret("S3CR3T_TOKEN-1", secret, strlen(secret),
	                                       util_secure_equals), TELEGRAM_SECRET_BAD);
}

static void test_secret_and_token_shapes(void **state)
{
	char long_secret[258];
	(void)state;
	assert_true(telegram_secret_is_valid("a"));
	assert_true(telegram_secret_is_valid("A-z_09"));
	assert_false(telegram_secret_is_valid(""));
	assert_false(telegram_secret_is_valid("has space"));
	assert_false(telegram_secret_is_valid("semi;colon"));
	memset(long_secret, 'a', 256);
	long_secret[256] = '\0';
	assert_true(telegram_secret_is_valid(long_secret));
	long_secret[256] = 'a';
	long_secret[257] = '\0';
	assert_false(telegram_secret_is_valid(long_secret));

	assert_true(telegram_token_is_valid("123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"));
	assert_false(telegram_token_is_valid("123456"));
	assert_false(telegram_token_is_valid(":abc"));
	assert_false(telegram_token_is_valid("123456:"));
	assert_false(telegram_token_is_valid("123456:abc/../x"));
	assert_false(telegram_token_is_valid("123456:abc\r\nX: y"));
	assert_false(telegram_token_is_valid("abc:def"));
}

/* ------------------------------------------------------------------------ */
/* Updates                                                                  */
/* ------------------------------------------------------------------------ */

static void test_private_message(void **state)
{
	capture c;
	(void)state;
	parse_one(private_message, &no_channels, &c);
	seen_event *e = &c.ev[0];
	assert_int_equal(e->type, PARLEY_EVENT_MESSAGE_CREATED);
	assert_string_equal(e->dedupe_key, "u:10001");
	assert_string_equal(e->external_id, "1111111:1366");
	assert_string_equal(e->author_id, "1111111");
	assert_string_equal(e->author_name, "Test Test Lastname");
	assert_string_equal(e->author_handle, "Test");
	assert_string_equal(e->profile, "{\"language_code\":\"en\",\"is_bot\":false}");
	assert_string_equal(e->text, "Hello");
	assert_int_equal(e->visibility, PARLEY_VISIBILITY_PRIVATE);
	assert_string_equal(e->thread_id, "1111111");
	assert_null(e->in_reply_to);
	assert_int_equal(e->time_ms, 1441645532000LL);
	assert_int_equal(e->from_brand, 0);
	/* The whole update is the evidence. */
	assert_non_null(strstr(e->raw_json, "\"update_id\":10001"));
	assert_non_null(strstr(e->raw_json, "\"text\":\"Hello\""));
	capture_free(&c);
}

/* The documentation's own example predates chat.type: a positive chat id is
 * a private chat. */
static void test_doc_example_without_chat_type(void **state)
{
	static const char body[] =
		"{\n\"update_id\":10000,\n\"message\":{\n  \"date\":1441645532,\n  \"chat\":{\n"
		"     \"last_name\":\"Test Lastname\",\n     \"id\":1111111,\n     \"first_name\":\"Test\",\n"
		"     \"username\":\"Test\"\n  },\n  \"message_id\":1365,\n  \"from\":{\n"
		"     \"last_name\":\"Test Lastname\",\n     \"id\":1111111,\n     \"first_name\":\"Test\",\n"
		"     \"username\":\"Test\"\n  },\n  \"text\":\"/start\"\n}\n}";
	capture c;
	(void)state;
	parse_one(body, &no_channels, &c);
	assert_string_equal(c.ev[0].dedupe_key, "u:10000");
	assert_string_equal(c.ev[0].external_id, "1111111:1365");
	assert_string_equal(c.ev[0].text, "/start");
	assert_int_equal(c.ev[0].visibility, PARLEY_VISIBILITY_PRIVATE);
	assert_null(c.ev[0].profile);
	capture_free(&c);
}

/* A supergroup id has 13 digits and a minus; the thread is the chat, the
 * reply points at a message of the same chat. */
static void test_group_message_is_public_in_the_chat_thread(void **state)
{
	static const char body[] =
		"{\"update_id\":20001,\"message\":{\"message_id\":77,"
		"\"from\":{\"id\":222,\"is_bot\":false,\"first_name\":\"Ann\"},"
		"\"chat\":{\"id\":-1001234567890,\"title\":\"Acme users\",\"type\":\"supergroup\"},"
		"\"date\":1700000000,\"text\":\"@acme_bot my parcel?\","
		"\"reply_to_message\":{\"message_id\":70,\"from\":{\"id\":333,\"is_bot\":false,"
		"\"first_name\":\"Bob\"},\"chat\":{\"id\":-1001234567890,\"type\":\"supergroup\"},"
		"\"date\":1699999990,\"text\":\"same\"}}}";
	capture c;
	(void)state;
	parse_one(body, &no_channels, &c);
	seen_event *e = &c.ev[0];
	assert_int_equal(e->visibility, PARLEY_VISIBILITY_PUBLIC);
	assert_string_equal(e->thread_id, "-1001234567890");
	assert_string_equal(e->external_id, "-1001234567890:77");
	assert_string_equal(e->in_reply_to, "-1001234567890:70");
	assert_string_equal(e->author_id, "222");
	assert_string_equal(e->author_name, "Ann");
	assert_null(e->author_handle);
	capture_free(&c);
}

static void test_edited_message_is_an_edit_of_the_same_message(void **state)
{
	static const char body[] =
		"{\"update_id\":10002,\"edited_message\":{\"message_id\":1366,"
		"\"from\":{\"id\":1111111,\"is_bot\":false,\"first_name\":\"Test\",\"username\":\"Test\"},"
		"\"chat\":{\"id\":1111111,\"first_name\":\"Test\",\"username\":\"Test\",\"type\":\"private\"},"
		"\"date\":1441645532,\"edit_date\":1441645600,\"text\":\"Hello (edited)\"}}";
	capture c;
	(void)state;
	parse_one(body, &no_channels, &c);
	seen_event *e = &c.ev[0];
	assert_int_equal(e->type, PARLEY_EVENT_MESSAGE_EDITED);
	assert_string_equal(e->dedupe_key, "u:10002");
	assert_string_equal(e->external_id, "1111111:1366");
	assert_string_equal(e->text, "Hello (edited)");
	assert_int_equal(e->time_ms, 1441645600000LL);   /* edit_date, not date */
	capture_free(&c);
}

/* A "date" no clock can show (found by the fuzzer: 1441645531441645600 * 1000
 * overflowed) is unknown, so the core stamps the arrival time; the message
 * itself is still taken in. */
static void test_impossible_date_is_unknown_not_an_overflow(void **state)
{
	static const char body[] =
		"{\"update_id\":10003,\"message\":{\"message_id\":1367,"
		"\"from\":{\"id\":1111111,\"is_bot\":false,\"first_name\":\"Test\"},"
		"\"chat\":{\"id\":1111111,\"type\":\"private\"},"
		"\"date\":1441645531441645600,\"text\":\"Hello\"}}";
	static const char last_second[] =
		"{\"update_id\":10004,\"edited_message\":{\"message_id\":1367,"
		"\"from\":{\"id\":1111111,\"is_bot\":false,\"first_name\":\"Test\"},"
		"\"chat\":{\"id\":1111111,\"type\":\"private\"},"
		"\"date\":-5,\"edit_date\":253402300799,\"text\":\"Hello!\"}}";
	capture c;
	(void)state;
	parse_one(body, &no_channels, &c);
	assert_string_equal(c.ev[0].text, "Hello");
	assert_int_equal(c.ev[0].time_ms, 0);
	capture_free(&c);
	parse_one(last_second, &no_channels, &c);
	assert_int_equal(c.ev[0].time_ms, 253402300799000LL);
	capture_free(&c);
}

static void test_caption_is_the_text_of_media(void **state)
{
	static const char created[] =
		"{\"update_id\":5,\"message\":{\"message_id\":9,\"from\":{\"id\":7,\"first_name\":\"A\"},"
		"\"chat\":{\"id\":7,\"type\":\"private\"},\"date\":1,"
		"\"photo\":[{\"file_id\":\"x\",\"file_unique_id\":\"y\",\"width\":1,\"height\":1}],"
		"\"caption\":\"broken box\"}}";
	static const char edited[] =
		"{\"update_id\":6,\"edited_message\":{\"message_id\":9,\"from\":{\"id\":7,\"first_name\":\"A\"},"
		"\"chat\":{\"id\":7,\"type\":\"private\"},\"date\":1,\"edit_date\":2,"
		"\"photo\":[{\"file_id\":\"x\",\"file_unique_id\":\"y\",\"width\":1,\"height\":1}],"
		"\"caption\":\"broken box!\"}}";
	static const char sticker[] =
		"{\"update_id\":7,\"message\":{\"message_id\":10,\"from\":{\"id\":7,\"first_name\":\"A\"},"
		"\"chat\":{\"id\":7,\"type\":\"private\"},\"date\":1,\"sticker\":{\"file_id\":\"s\"}}}";
	capture c;
	(void)state;
	parse_one(created, &no_channels, &c);
	assert_string_equal(c.ev[0].text, "broken box");
	capture_free(&c);
	parse_one(edited, &no_channels, &c);
	assert_int_equal(c.ev[0].type, PARLEY_EVENT_MESSAGE_EDITED);
	assert_string_equal(c.ev[0].text, "broken box!");
	capture_free(&c);
	/* Media without a caption is still a message (its content is in raw). */
	parse_one(sticker, &no_channels, &c);
	assert_null(c.ev[0].text);
	capture_free(&c);
}

static const char channel_post[] =
	"{\"update_id\":30001,\"channel_post\":{\"message_id\":5,"
	"\"sender_chat\":{\"id\":-1009876543210,\"title\":\"Acme news\",\"type\":\"channel\"},"
	"\"chat\":{\"id\":-1009876543210,\"title\":\"Acme news\",\"type\":\"channel\"},"
	"\"date\":1700000100,\"text\":\"We are live\"}}";

static void test_channel_posts_only_when_configured(void **state)
{
	static const char edited_post[] =
		"{\"update_id\":30002,\"edited_channel_post\":{\"message_id\":5,"
		"\"chat\":{\"id\":-1009876543210,\"title\":\"Acme news\",\"type\":\"channel\"},"
		"\"date\":1700000100,\"edit_date\":1700000200,\"text\":\"We are live!\"}}";
	capture c;
	(void)state;
	assert_ignored(channel_post, &no_channels, "channel_posts is false");
	assert_ignored(edited_post, &no_channels, "channel_posts is false");

	parse_one(channel_post, &with_channels, &c);
	assert_int_equal(c.ev[0].visibility, PARLEY_VISIBILITY_PUBLIC);
	assert_string_equal(c.ev[0].author_id, "-1009876543210");
	assert_string_equal(c.ev[0].author_name, "Acme news");
	assert_string_equal(c.ev[0].thread_id, "-1009876543210");
	capture_free(&c);
	/* Without sender_chat the channel itself is the author. */
	parse_one(edited_post, &with_channels, &c);
	assert_int_equal(c.ev[0].type, PARLEY_EVENT_MESSAGE_EDITED);
	assert_string_equal(c.ev[0].author_id, "-1009876543210");
	assert_int_equal(c.ev[0].time_ms, 1700000200000LL);
	capture_free(&c);
}

/* An anonymous group admin posts as the group: sender_chat is the author,
 * not the placeholder bot user in from. */
static void test_sender_chat_is_the_author(void **state)
{
	static const char body[] =
		"{\"update_id\":40,\"message\":{\"message_id\":3,"
		"\"from\":{\"id\":1087968824,\"is_bot\":true,\"first_name\":\"Group\",\"username\":\"GroupAnonymousBot\"},"
		"\"sender_chat\":{\"id\":-1001111111111,\"title\":\"Acme users\",\"type\":\"supergroup\"},"
		"\"chat\":{\"id\":-1001111111111,\"title\":\"Acme users\",\"type\":\"supergroup\"},"
		"\"date\":1,\"text\":\"pinned rules\"}}";
	capture c;
	(void)state;
	parse_one(body, &no_channels, &c);
	assert_string_equal(c.ev[0].author_id, "-1001111111111");
	assert_string_equal(c.ev[0].author_name, "Acme users");
	capture_free(&c);
}

static void test_unknown_and_service_updates_are_ignored(void **state)
{
	(void)state;
	assert_ignored("{\"update_id\":1,\"callback_query\":{\"id\":\"4382bfdwdsb323b2d9\","
	               "\"from\":{\"id\":1,\"first_name\":\"A\"},\"data\":\"x\"}}",
	               &no_channels, "callback_query");
	assert_ignored("{\"update_id\":2,\"my_chat_member\":{}}", &no_channels, "my_chat_member");
	assert_ignored("{\"update_id\":3}", &no_channels, "without content");
	/* Someone joined a group: a service message, not a customer's. */
	assert_ignored("{\"update_id\":4,\"message\":{\"message_id\":1,\"from\":{\"id\":5},"
	               "\"chat\":{\"id\":-5,\"type\":\"group\"},\"date\":1,"
	               "\"new_chat_members\":[{\"id\":5,\"is_bot\":false,\"first_name\":\"N\"}]}}",
	               &no_channels, "service message");
	/* A live location moving: an edit without text. */
	assert_ignored("{\"update_id\":5,\"edited_message\":{\"message_id\":1,\"from\":{\"id\":5},"
	               "\"chat\":{\"id\":5,\"type\":\"private\"},\"date\":1,\"edit_date\":2,"
	               "\"location\":{\"latitude\":1.5,\"longitude\":2.5}}}",
	               &no_channels, "no text");
}

static void test_unicode_escapes_and_surrogate_pairs(void **state)
{
	static const char body[] =
		"{\"update_id\":8,\"message\":{\"message_id\":1,\"from\":{\"id\":5,\"first_name\":\"J\\u00f6rg\"},"
		"\"chat\":{\"id\":5,\"type\":\"private\"},\"date\":1,"
		"\"text\":\"caf\\u00e9 \\ud83d\\ude00\"}}";
	capture c;
	(void)state;
	parse_one(body, &no_channels, &c);
	assert_string_equal(c.ev[0].text, "caf\xC3\xA9 \xF0\x9F\x98\x80");
	assert_string_equal(c.ev[0].author_name, "J\xC3\xB6rg");
	capture_free(&c);
}

/* Ids beyond 2^53 must not pass through a double. */
static void test_big_ids_are_exact(void **state)
{
	static const char body[] =
		"{\"update_id\":9007199254740993,\"message\":{\"message_id\":9007199254740995,"
		"\"from\":{\"id\":1234567890123456789,\"first_name\":\"Big\"},"
		"\"chat\":{\"id\":-1001234567890123456,\"type\":\"supergroup\"},\"date\":1,\"text\":\"x\"}}";
	capture c;
	(void)state;
	parse_one(body, &no_channels, &c);
	assert_string_equal(c.ev[0].dedupe_key, "u:9007199254740993");
	assert_string_equal(c.ev[0].external_id, "-1001234567890123456:9007199254740995");
	assert_string_equal(c.ev[0].author_id, "1234567890123456789");
	capture_free(&c);
}

static void test_replay_has_the_same_dedupe_key(void **state)
{
	capture a, b;
	(void)state;
	parse_one(private_message, &no_channels, &a);
	parse_one(private_message, &no_channels, &b);
	assert_string_equal(a.ev[0].dedupe_key, b.ev[0].dedupe_key);
	capture_free(&a);
	capture_free(&b);
}

static void test_malformed_updates_are_invalid(void **state)
{
	char truncated[sizeof(private_message)];
	(void)state;
	memcpy(truncated, private_message, sizeof(private_message));
	truncated[sizeof(private_message) / 2] = '\0';
	assert_invalid(truncated, "line 1");
	assert_invalid("", NULL);
	assert_invalid("[]", "JSON object");
	assert_invalid("\"x\"", NULL);
	assert_invalid("{\"update_id\":1,\"update_id\":2,\"message\":{}}", "duplicate");
	assert_invalid("{\"message\":{}}", "update_id");
	assert_invalid("{\"update_id\":\"1\",\"message\":{}}", "update_id");
	assert_invalid("{\"update_id\":-1,\"message\":{}}", "update_id");
	assert_invalid("{\"update_id\":1.5,\"message\":{}}", "update_id");
	assert_invalid("{\"update_id\":1,\"message\":[]}", "message: expected an object");
	assert_invalid("{\"update_id\":1,\"message\":{\"chat\":{\"id\":1},\"from\":{\"id\":1},"
	               "\"text\":\"x\"}}", "message.message_id");
	assert_invalid("{\"update_id\":1,\"message\":{\"message_id\":1,\"from\":{\"id\":1},"
	               "\"text\":\"x\"}}", "message.chat.id");
	assert_invalid("{\"update_id\":1,\"message\":{\"message_id\":1,\"chat\":{\"id\":\"1\"},"
	               "\"from\":{\"id\":1},\"text\":\"x\"}}", "message.chat.id");
	assert_invalid("{\"update_id\":1,\"message\":{\"message_id\":1,\"chat\":{\"id\":1,"
	               "\"type\":\"private\"},\"text\":\"x\"}}", "message.from.id");
	assert_invalid("{\"update_id\":1,\"message\":{\"message_id\":1,\"chat\":{\"id\":1},"
	               "\"from\":{\"id\":1e3},\"text\":\"x\"}}", "message.from.id");
	/* 2^63 does not fit. */
	assert_invalid("{\"update_id\":9223372036854775808,\"message\":{}}", NULL);
}

static void test_refusal_by_the_callback(void **state)
{
	capture c;
	char why[200];
	int64_t uid;
	(void)state;
	memset(&c, 0, sizeof(c));
	c.refuse = 1;
	assert_int_equal(telegram_parse_update(private_message, strlen(private_message), &no_channels,
	                                       collect, &c, &uid, why, sizeof(why)),
	                 TELEGRAM_PARSE_REFUSED);
	assert_int_equal(uid, 10001);
}

static void test_body_need_not_be_nul_terminated(void **state)
{
	size_t len = strlen(private_message);
	char *copy = malloc(len);
	capture c;
	char why[200];
	int64_t uid;
	(void)state;
	memcpy(copy, private_message, len);
	memset(&c, 0, sizeof(c));
	assert_int_equal(telegram_parse_update(copy, len, &no_channels, collect, &c, &uid, why,
	                                       sizeof(why)), TELEGRAM_PARSE_EMITTED);
	free(copy);
	capture_free(&c);
}

/* ------------------------------------------------------------------------ */
/* getUpdates                                                               */
/* ------------------------------------------------------------------------ */

static void test_get_updates_page(void **state)
{
	static const char body[] =
		"{\"ok\":true,\"result\":["
		"{\"update_id\":500,\"message\":{\"message_id\":1,\"from\":{\"id\":9,\"first_name\":\"A\"},"
		"\"chat\":{\"id\":9,\"type\":\"private\"},\"date\":1,\"text\":\"one\"}},"
		"{\"update_id\":501,\"callback_query\":{\"id\":\"q\"}},"
		"{\"update_id\":502,\"message\":{\"message_id\":2}},"
		"{\"update_id\":503,\"edited_message\":{\"message_id\":1,\"from\":{\"id\":9},"
		"\"chat\":{\"id\":9,\"type\":\"private\"},\"date\":1,\"edit_date\":3,\"text\":\"one!\"}}]}";
	telegram_poll_summary sum;
	capture c;
	char why[200];
	(void)state;
	memset(&c, 0, sizeof(c));
	assert_true(telegram_parse_updates(body, strlen(body), 500, &no_channels, collect, &c, &sum,
	                                   why, sizeof(why)));
	assert_int_equal(sum.updates, 4);
	assert_int_equal(sum.emitted, 2);
	assert_int_equal(sum.ignored, 1);
	assert_int_equal(sum.skipped, 1);   /* 502 is unusable but does not block the stream */
	assert_int_equal(sum.next_offset, 504);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.ev[0].dedupe_key, "u:500");
	assert_string_equal(c.ev[1].dedupe_key, "u:503");
	assert_int_equal(c.ev[1].type, PARLEY_EVENT_MESSAGE_EDITED);
	/* Each event's evidence is its own update, not the page. */
	assert_null(strstr(c.ev[0].raw_json, "callback_query"));
	capture_free(&c);
}

static void test_get_updates_empty_and_errors(void **state)
{
	static const char conflict[] =
		"{\"ok\":false,\"error_code\":409,\"description\":\"Conflict: can't use getUpdates method "
		"while webhook is active; use deleteWebhook to delete the webhook first\"}";
	telegram_poll_summary sum;
	capture c;
	char why[200];
	(void)state;
	memset(&c, 0, sizeof(c));
	assert_true(telegram_parse_updates("{\"ok\":true,\"result\":[]}", 23, 77, &no_channels,
	                                   collect, &c, &sum, why, sizeof(why)));
	assert_int_equal(sum.updates, 0);
	assert_int_equal(sum.next_offset, 77);

	assert_false(telegram_parse_updates(conflict, strlen(conflict), 77, &no_channels, collect, &c,
	                                     &sum, why, sizeof(why)));
	assert_string_equal(why, "Conflict: can't use getUpdates method while webhook is active; "
	                         "use deleteWebhook to delete the webhook first");
	assert_false(telegram_parse_updates("{\"ok\":true,\"result\":[", 22, 77, &no_channels,
	                                    collect, &c, &sum, why, sizeof(why)));
	assert_false(telegram_parse_updates("{\"ok\":true}", 11, 77, &no_channels, collect, &c,
	                                    &sum, why, sizeof(why)));
	assert_false(telegram_parse_updates("", 0, 77, &no_channels, collect, &c, &sum, why,
	                                    sizeof(why)));
	assert_int_equal(c.n, 0);
	assert_int_equal(sum.next_offset, 77);
}

/* An update already below the offset does not move it back. */
static void test_get_updates_offset_never_goes_back(void **state)
{
	static const char body[] = "{\"ok\":true,\"result\":[{\"update_id\":3,\"poll\":{}}]}";
	telegram_poll_summary sum;
	capture c;
	char why[200];
	(void)state;
	memset(&c, 0, sizeof(c));
	assert_true(telegram_parse_updates(body, strlen(body), 10, &no_channels, collect, &c, &sum,
	                                   why, sizeof(why)));
	assert_int_equal(sum.next_offset, 10);
}

static void test_get_updates_request_body(void **state)
{
	char *b;
	(void)state;
	b = telegram_get_updates_body(0, 25, &no_channels);
	assert_string_equal(b, "{\"timeout\":25,\"limit\":100,"
	                       "\"allowed_updates\":[\"message\",\"edited_message\"]}");
	free(b);
	b = telegram_get_updates_body(504, 0, &with_channels);
	assert_string_equal(b, "{\"offset\":504,\"timeout\":0,\"limit\":100,\"allowed_updates\":"
	                       "[\"message\",\"edited_message\",\"channel_post\",\"edited_channel_post\"]}");
	free(b);
}

/* ------------------------------------------------------------------------ */
/* sendMessage                                                              */
/* ------------------------------------------------------------------------ */

static void test_method_url(void **state)
{
	char *u;
	(void)state;
	u = telegram_method_url("https://api.telegram.org", "123:abc", "sendMessage");
	assert_string_equal(u, "https://api.telegram.org/bot123:abc/sendMessage");
	free(u);
}

static void assert_body(const telegram_send_in *in, const char *expected)
{
	char *body = NULL, why[200];

	assert_true(telegram_send_body(in, &body, why, sizeof(why)));
	assert_string_equal(body, expected);
	free(body);
}

static void assert_no_body(const telegram_send_in *in, const char *expected_why)
{
	char *body = NULL, why[200];

	assert_false(telegram_send_body(in, &body, why, sizeof(why)));
	assert_null(body);
	assert_string_equal(why, expected_why);
}

static void test_send_bodies(void **state)
{
	(void)state;
	/* A private chat: chat_id is the thread, a reply to the customer's message. */
	telegram_send_in dm = { PARLEY_SEND_MESSAGE, "1111111", "1111111", "1111111:1366",
	                        "Thanks \xF0\x9F\x98\x80 \"quoted\"" };
	assert_body(&dm, "{\"chat_id\":1111111,\"text\":\"Thanks \xF0\x9F\x98\x80 \\\"quoted\\\"\","
	                 "\"reply_parameters\":{\"message_id\":1366,"
	                 "\"allow_sending_without_reply\":true}}");
	/* A group: the group's chat, not the author's. */
	telegram_send_in group = { PARLEY_SEND_MESSAGE, "222", "-1001234567890",
	                           "-1001234567890:77", "On it" };
	assert_body(&group, "{\"chat_id\":-1001234567890,\"text\":\"On it\",\"reply_parameters\":"
	                    "{\"message_id\":77,\"allow_sending_without_reply\":true}}");
	/* No message to answer, or one in another chat: a plain message. */
	telegram_send_in first = { PARLEY_SEND_MESSAGE, "5", "5", NULL, "Hi" };
	assert_body(&first, "{\"chat_id\":5,\"text\":\"Hi\"}");
	telegram_send_in other = { PARLEY_SEND_MESSAGE, "5", "5", "6:1", "Hi" };
	assert_body(&other, "{\"chat_id\":5,\"text\":\"Hi\"}");
	telegram_send_in junk = { PARLEY_SEND_MESSAGE, "5", "5", "5:x", "Hi" };
	assert_body(&junk, "{\"chat_id\":5,\"text\":\"Hi\"}");
	/* No thread: the recipient's private chat. */
	telegram_send_in nothread = { PARLEY_SEND_MESSAGE, "5", NULL, NULL, "Hi" };
	assert_body(&nothread, "{\"chat_id\":5,\"text\":\"Hi\"}");
	/* Move to private: to the author, never a reply across chats. */
	telegram_send_in priv = { PARLEY_SEND_PRIVATE_REPLY, "222", "-1001234567890",
	                          "-1001234567890:77", "Let's talk here" };
	assert_body(&priv, "{\"chat_id\":222,\"text\":\"Let's talk here\"}");
	/* 19-digit ids stay exact. */
	telegram_send_in big = { PARLEY_SEND_MESSAGE, "1", "-1001234567890123456",
	                         "-1001234567890123456:9007199254740995", "x" };
	assert_body(&big, "{\"chat_id\":-1001234567890123456,\"text\":\"x\",\"reply_parameters\":"
	                  "{\"message_id\":9007199254740995,\"allow_sending_without_reply\":true}}");
}

static void test_send_bodies_refused(void **state)
{
	(void)state;
	telegram_send_in nochat = { PARLEY_SEND_MESSAGE, NULL, NULL, NULL, "Hi" };
	assert_no_body(&nochat, "the conversation has no Telegram chat id");
	telegram_send_in badchat = { PARLEY_SEND_MESSAGE, "5", "dm:5", NULL, "Hi" };
	assert_no_body(&badchat, "the conversation has no Telegram chat id");
	telegram_send_in toolong = { PARLEY_SEND_MESSAGE, "5", "99999999999999999999", NULL, "Hi" };
	assert_no_body(&toolong, "the conversation has no Telegram chat id");
	telegram_send_in noauthor = { PARLEY_SEND_PRIVATE_REPLY, NULL, "-100", NULL, "Hi" };
	assert_no_body(&noauthor, "the customer has no Telegram user id");
	telegram_send_in empty = { PARLEY_SEND_MESSAGE, "5", "5", NULL, "" };
	assert_no_body(&empty, "Telegram cannot send an empty message");
	telegram_send_in badutf8 = { PARLEY_SEND_MESSAGE, "5", "5", NULL, "\xC3(" };
	assert_no_body(&badutf8, "the text is not valid UTF-8");
}

static void classify(long status, const char *body, const char *retry_after,
                     telegram_send_result *r)
{
	telegram_classify_send(status, status == 0 ? "Connection refused" : NULL, body,
	                       body != NULL ? strlen(body) : 0, retry_after, 1000000, r);
}

static void test_classify_success(void **state)
{
	static const char ok[] =
		"{\"ok\":true,\"result\":{\"message_id\":1367,\"from\":{\"id\":42,\"is_bot\":true,"
		"\"first_name\":\"Acme\",\"username\":\"acme_bot\"},\"chat\":{\"id\":1111111,"
		"\"first_name\":\"Test\",\"type\":\"private\"},\"date\":1441645600,\"text\":\"Thanks\"}}";
	telegram_send_result r;
	(void)state;
	classify(200, ok, NULL, &r);
	assert_int_equal(r.outcome, PARLEY_OK);
	assert_string_equal(r.external_id, "1111111:1367");
	assert_string_equal(r.chat_id, "1111111");
	assert_string_equal(r.reason, "");
	/* ok:true without a message: sent, id unknown. */
	classify(200, "{\"ok\":true,\"result\":true}", NULL, &r);
	assert_int_equal(r.outcome, PARLEY_OK);
	assert_string_equal(r.external_id, "");
	/* A 200 that is not the Bot API's answer. */
	classify(200, "<html>portal</html>", NULL, &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_string_equal(r.reason, "Telegram answered 200 without a result: <html>portal</html>");
}

static void test_classify_rate_limits(void **state)
{
	telegram_send_result r;
	(void)state;
	classify(429, "{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests: retry "
	              "after 35\",\"parameters\":{\"retry_after\":35}}", NULL, &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_int_equal(r.retry_at_ms, 1000000 + 35000);
	assert_string_equal(r.reason, "Telegram rate limit (429): Too Many Requests: retry after 35");
	/* Only the description says how long. */
	classify(429, "{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests: retry "
	              "after 7\"}", NULL, &r);
	assert_int_equal(r.retry_at_ms, 1000000 + 7000);
	/* parameters win over the text. */
	classify(429, "{\"ok\":false,\"description\":\"Too Many Requests: retry after 9\","
	              "\"parameters\":{\"retry_after\":3}}", NULL, &r);
	assert_int_equal(r.retry_at_ms, 1000000 + 3000);
	/* Only a header. */
	classify(429, "busy", "12", &r);
	assert_int_equal(r.retry_at_ms, 1000000 + 12000);
	/* Nothing said: the core's backoff. */
	classify(429, NULL, NULL, &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_int_equal(r.retry_at_ms, 0);
	/* Absurd waits are capped at a day. */
	classify(429, "{\"ok\":false,\"parameters\":{\"retry_after\":99999999}}", NULL, &r);
	assert_int_equal(r.retry_at_ms, 1000000 + 86400000LL);
}

static void test_classify_transient_and_permanent(void **state)
{
	telegram_send_result r;
	(void)state;
	classify(0, NULL, NULL, &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_string_equal(r.reason, "sendMessage failed: Connection refused");
	classify(500, "{\"ok\":false,\"error_code\":500,\"description\":\"Internal Server Error\"}",
	         NULL, &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_int_equal(r.retry_at_ms, 0);
	assert_string_equal(r.reason, "Telegram answered 500: Internal Server Error");
	classify(502, "<html>\r\nBad gateway\xff</html>", NULL, &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_string_equal(r.reason, "Telegram answered 502: <html>  Bad gateway?</html>");
	classify(408, NULL, NULL, &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_string_equal(r.reason, "Telegram answered 408");

	classify(403, "{\"ok\":false,\"error_code\":403,\"description\":\"Forbidden: bot was blocked "
	              "by the user\"}", NULL, &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_string_equal(r.reason, "Telegram answered 403: Forbidden: bot was blocked by the user");
	classify(403, "{\"ok\":false,\"error_code\":403,\"description\":\"Forbidden: bot can't "
	              "initiate conversation with a user\"}", NULL, &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_string_equal(r.reason,
	                    "Telegram answered 403: Forbidden: bot can't initiate conversation with a user");
	classify(400, "{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: chat not found\"}",
	         NULL, &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_string_equal(r.reason, "Telegram answered 400: Bad Request: chat not found");
	classify(401, "{\"ok\":false,\"error_code\":401,\"description\":\"Unauthorized\"}", NULL, &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_string_equal(r.reason, "Telegram answered 401: Unauthorized");
}

static void test_describe_keeps_reasons_short_and_clean(void **state)
{
	char big[2000], out[64];
	(void)state;
	/* A long description is cut on a character boundary. */
	strcpy(big, "{\"description\":\"");
	for (int i = 0; i < 100; i++)
		strcat(big, "\xC3\xA9");
	strcat(big, "\"}");
	telegram_describe(big, strlen(big), out, sizeof(out));
	assert_int_equal(strlen(out), 62);
	telegram_describe("{\"description\":\"a\\nb\"}", 22, out, sizeof(out));
	assert_string_equal(out, "a b");
	telegram_describe(NULL, 0, out, sizeof(out));
	assert_string_equal(out, "");
}

static void test_scrub_masks_the_token(void **state)
{
	char s[80], tight[24];
	(void)state;
	strcpy(s, "Could not connect to http://x/bot1:abc/sendMessage or bot1:abc");
	telegram_scrub(s, sizeof(s), "1:abc");
	assert_string_equal(s, "Could not connect to http://x/bot<bot_token>/sendMessage or bot<bot_token>");
	/* No room for the mask: the text ends before the token. */
	strcpy(tight, "error at /bot1:abc/x");
	telegram_scrub(tight, sizeof(tight), "1:abc");
	assert_string_equal(tight, "error at /bot");
	/* Cut short before it was scrubbed: the token's beginning goes too. */
	strcpy(s, "failed: http://x/bot123456:AAHd");
	telegram_scrub(s, sizeof(s), "123456:AAHdqTcvCH1");
	assert_string_equal(s, "failed: http://x/bot");
	strcpy(s, "Too Many Requests: retry after 123456");
	telegram_scrub(s, sizeof(s), "123456:AAHdqTcvCH1");
	assert_string_equal(s, "Too Many Requests: retry after 123456");
	strcpy(s, "nothing here");
	telegram_scrub(s, sizeof(s), "1:abc");
	assert_string_equal(s, "nothing here");
	telegram_scrub(s, sizeof(s), "");
	telegram_scrub(s, sizeof(s), NULL);
	assert_string_equal(s, "nothing here");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_secret_header),
		cmocka_unit_test(test_secret_and_token_shapes),
		cmocka_unit_test(test_private_message),
		cmocka_unit_test(test_doc_example_without_chat_type),
		cmocka_unit_test(test_group_message_is_public_in_the_chat_thread),
		cmocka_unit_test(test_edited_message_is_an_edit_of_the_same_message),
		cmocka_unit_test(test_impossible_date_is_unknown_not_an_overflow),
		cmocka_unit_test(test_caption_is_the_text_of_media),
		cmocka_unit_test(test_channel_posts_only_when_configured),
		cmocka_unit_test(test_sender_chat_is_the_author),
		cmocka_unit_test(test_unknown_and_service_updates_are_ignored),
		cmocka_unit_test(test_unicode_escapes_and_surrogate_pairs),
		cmocka_unit_test(test_big_ids_are_exact),
		cmocka_unit_test(test_replay_has_the_same_dedupe_key),
		cmocka_unit_test(test_malformed_updates_are_invalid),
		cmocka_unit_test(test_refusal_by_the_callback),
		cmocka_unit_test(test_body_need_not_be_nul_terminated),
		cmocka_unit_test(test_get_updates_page),
		cmocka_unit_test(test_get_updates_empty_and_errors),
		cmocka_unit_test(test_get_updates_offset_never_goes_back),
		cmocka_unit_test(test_get_updates_request_body),
		cmocka_unit_test(test_method_url),
		cmocka_unit_test(test_send_bodies),
		cmocka_unit_test(test_send_bodies_refused),
		cmocka_unit_test(test_classify_success),
		cmocka_unit_test(test_classify_rate_limits),
		cmocka_unit_test(test_classify_transient_and_permanent),
		cmocka_unit_test(test_describe_keeps_reasons_short_and_clean),
		cmocka_unit_test(test_scrub_masks_the_token),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
