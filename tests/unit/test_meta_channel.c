/* test_meta_channel.c - the meta channel's wire formats: the handshake,
 * X-Hub-Signature-256 on raw bytes (reference vectors V1-V3), every webhook
 * event shape it maps, batches and replays, thread ids, and each Graph API
 * request byte for byte with the messaging windows and answer outcomes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "../../plugins/channels/meta/meta_parse.h"
#include "../../plugins/channels/meta/meta_graph.h"

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                 */
/* ------------------------------------------------------------------------ */

static const char app_secret[] = "test_app_secret";

/* Reference V1 (ASCII), V2 (unicode escaped as Meta sends it) and V3 (the
 * same JSON re-serialized with raw UTF-8). */
static const char v1_body[] =
	"{\"object\":\"page\",\"entry\":[{\"id\":\"PAGE_ID\",\"time\":1458692752478,\"messaging\":"
	"[{\"sender\":{\"id\":\"PSID\"},\"recipient\":{\"id\":\"PAGE_ID\"},\"timestamp\":1458692752478,"
	"\"message\":{\"mid\":\"mid.1457764197618:41d102a3e1ae206a38\",\"text\":\"hello, world!\"}}]}]}";
static const char v1_sig[] =
	"sha256=eec1906d2e5dc1a43a1014f196b421cf9d7b6696ead890eadf906dbbfe03f791";
static const char v2_body[] =
	"{\"object\":\"page\",\"entry\":[{\"id\":\"PAGE_ID\",\"time\":1458692752478,\"messaging\":"
	"[{\"sender\":{\"id\":\"PSID\"},\"recipient\":{\"id\":\"PAGE_ID\"},\"timestamp\":1458692752478,"
	"\"message\":{\"mid\":\"m_1\",\"text\":\"\\u00e4\\u00f6\\u00e5\"}}]}]}";
static const char v2_sig[] =
	"sha256=2158cdb96faeb2e6b120b89985a39c0026b52d193a94ac4f7204bf4d42029fd3";
static const char v3_body[] =
	"{\"object\":\"page\",\"entry\":[{\"id\":\"PAGE_ID\",\"time\":1458692752478,\"messaging\":"
	"[{\"sender\":{\"id\":\"PSID\"},\"recipient\":{\"id\":\"PAGE_ID\"},\"timestamp\":1458692752478,"
	"\"message\":{\"mid\":\"m_1\",\"text\":\"\xc3\xa4\xc3\xb6\xc3\xa5\"}}]}]}";
static const char v3_sig[] =
	"sha256=6a3a90a3399d1766811dad5d0f386ff2f388919f1a09aca22185dc157006e3b5";

static meta_sig_result verify(const char *header, const char *body)
{
	return meta_verify_signature(header, app_secret, strlen(app_secret), body, strlen(body),
	                             util_hmac_sha256, util_secure_equals);
}

/* What the parser handed out, copied (the event's strings are borrowed). */
typedef struct seen {
	parley_event_type type;
	char *dedupe, *ext, *text, *thread, *reply_to, *raw, *author, *name, *handle, *phone,
	     *detail;
	int phone_verified, from_brand;
	parley_visibility vis;
	parley_delivery_status status;
	int64_t ms;
	uint32_t size;
} seen;

typedef struct capture {
	seen ev[64];
	size_t n;
	char notes[16][160];
	size_t n_notes;
	int refuse_all;
	meta_parse_stats stats;
	char err[256];
} capture;

static int collect(void *arg, const parley_event *e)
{
	capture *c = arg;
	seen *s;

	if (c->refuse_all)
		return -1;
	assert_true(c->n < 64);
	s = &c->ev[c->n++];
	s->type = e->type;
	s->size = e->size;
	s->dedupe = xstrdup(e->dedupe_key);
	s->ext = xstrdup(e->external_id);
	s->text = xstrdup(e->text);
	s->thread = xstrdup(e->thread_id);
	s->reply_to = xstrdup(e->in_reply_to);
	s->raw = e->raw_json != NULL ? xstrndup(e->raw_json, e->raw_json_len) : NULL;
	s->author = xstrdup(e->author.external_id);
	s->name = xstrdup(e->author.display_name);
	s->handle = xstrdup(e->author.handle);
	s->phone = xstrdup(e->author.phone);
	s->detail = xstrdup(e->detail);
	s->phone_verified = e->author.phone_verified;
	s->from_brand = e->from_brand;
	s->vis = e->visibility;
	s->status = e->delivery_status;
	s->ms = e->platform_time_ms;
	return 0;
}

static void take_note(void *arg, const char *what)
{
	capture *c = arg;

	if (c->n_notes < 16)
		snprintf(c->notes[c->n_notes++], 160, "%s", what);
}

static void capture_free(capture *c)
{
	for (size_t i = 0; i < c->n; i++) {
		seen *s = &c->ev[i];
		free(s->dedupe); free(s->ext); free(s->text); free(s->thread); free(s->reply_to);
		free(s->raw); free(s->author); free(s->name); free(s->handle); free(s->phone);
		free(s->detail);
	}
	c->n = 0;
}

/* Parse body into a fresh *c (free with capture_free). */
static bool parse(const char *body, capture *c)
{
	memset(c, 0, sizeof(*c));
	return meta_parse(body, strlen(body), collect, take_note, c, &c->stats, c->err,
	                  sizeof(c->err));
}

/* Parse a body that must be accepted with exactly `n` events. */
static void parse_ok(const char *body, capture *c, size_t n)
{
	if (!parse(body, c))
		fail_msg("refused: %s", c->err);
	if (c->n != n)
		fail_msg("%zu events, expected %zu (first note: %s)", c->n, n,
		         c->n_notes > 0 ? c->notes[0] : "-");
}

#define PAGE_ENTRY(msgs) \
	"{\"object\":\"page\",\"entry\":[{\"id\":\"111\",\"time\":1700000000000,\"messaging\":[" msgs "]}]}"
#define IG_ENTRY(msgs) \
	"{\"object\":\"instagram\",\"entry\":[{\"id\":\"178414\",\"time\":1700000000000,\"messaging\":[" msgs "]}]}"
#define FEED(value) \
	"{\"object\":\"page\",\"entry\":[{\"id\":\"111\",\"time\":1703332800,\"changes\":[{\"field\":\"feed\",\"value\":" value "}]}]}"
#define WA(value) \
	"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"102290129340398\",\"changes\":[{\"field\":\"messages\",\"value\":" value "}]}]}"

/* ------------------------------------------------------------------------ */
/* Signatures                                                               */
/* ------------------------------------------------------------------------ */

static void test_v1_ascii_body_is_accepted(void **state)
{
	(void)state;
	assert_int_equal(strlen(v1_body), 239);
	assert_int_equal(verify(v1_sig, v1_body), META_SIG_OK);
}

static void test_v2_escaped_accepted_v3_reserialized_refused(void **state)
{
	(void)state;
	assert_int_equal(strlen(v2_body), 211);
	assert_int_equal(strlen(v3_body), 199);
	assert_int_equal(verify(v2_sig, v2_body), META_SIG_OK);
	/* Same JSON value, other bytes: the raw-bytes rule. */
	assert_int_equal(verify(v2_sig, v3_body), META_SIG_BAD);
	assert_int_equal(verify(v3_sig, v3_body), META_SIG_OK);
}

static void test_signature_uppercase_hex_is_accepted(void **state)
{
	char upper[sizeof(v1_sig)];

	(void)state;
	strcpy(upper, v1_sig);
	for (char *p = upper + 7; *p != '\0'; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	assert_int_equal(verify(upper, v1_body), META_SIG_OK);
}

static void test_signature_missing_or_malformed(void **state)
{
	char wrong[sizeof(v1_sig)];

	(void)state;
	assert_int_equal(verify(NULL, v1_body), META_SIG_MISSING);
	assert_int_equal(verify("", v1_body), META_SIG_BAD);
	assert_int_equal(verify("sha1=0600f7e1796ae99ceee406bc24742ed367d67a2a", v1_body), META_SIG_BAD);
	assert_int_equal(verify(v1_sig + 7, v1_body), META_SIG_BAD);           /* no prefix */
	assert_int_equal(verify("sha256=eec1906d", v1_body), META_SIG_BAD);    /* short */
	strcpy(wrong, v1_sig);
	wrong[20] = 'g';
	assert_int_equal(verify(wrong, v1_body), META_SIG_BAD);                /* non-hex */
	strcpy(wrong, v1_sig);
	wrong[sizeof(wrong) - 2] = wrong[sizeof(wrong) - 2] == '1' ? '2' : '1';
	assert_int_equal(verify(wrong, v1_body), META_SIG_BAD);                /* last digit */
	assert_int_equal(meta_verify_signature(v1_sig, "other", 5, v1_body, strlen(v1_body),
	                                       util_hmac_sha256, util_secure_equals), META_SIG_BAD);
}

/* ------------------------------------------------------------------------ */
/* Handshake and thread ids                                                 */
/* ------------------------------------------------------------------------ */

static meta_handshake_result hs(const char *mode, const char *token, const char *challenge)
{
	return meta_check_handshake(mode, token, challenge, "meatyhamhock", util_secure_equals);
}

static void test_handshake(void **state)
{
	(void)state;
	assert_int_equal(hs("subscribe", "meatyhamhock", "1158201444"), META_HANDSHAKE_OK);
	assert_int_equal(hs("subscribe", "meatyhamhocks", "1158201444"), META_HANDSHAKE_FORBIDDEN);
	assert_int_equal(hs("subscribe", "", "1158201444"), META_HANDSHAKE_FORBIDDEN);
	assert_int_equal(hs("subscribe", NULL, "1158201444"), META_HANDSHAKE_FORBIDDEN);
	assert_int_equal(hs(NULL, "meatyhamhock", "1158201444"), META_HANDSHAKE_BAD_REQUEST);
	assert_int_equal(hs("unsubscribe", "meatyhamhock", "1"), META_HANDSHAKE_BAD_REQUEST);
	assert_int_equal(hs("subscribe", "meatyhamhock", NULL), META_HANDSHAKE_BAD_REQUEST);
	assert_int_equal(hs("subscribe", "meatyhamhock", ""), META_HANDSHAKE_BAD_REQUEST);
}

static void test_thread_ids_round_trip(void **state)
{
	char buf[META_MAX_THREAD_BYTES];
	meta_thread t;

	(void)state;
	assert_true(meta_thread_format(META_THREAD_WHATSAPP, "106540352242922", "US.1349:x", buf,
	                               sizeof(buf)));
	assert_string_equal(buf, "whatsapp:106540352242922:US.1349:x");
	assert_true(meta_thread_parse(buf, &t));
	assert_int_equal(t.kind, META_THREAD_WHATSAPP);
	assert_string_equal(t.asset, "106540352242922");
	assert_string_equal(t.peer, "US.1349:x");   /* the peer may hold ':' */
	assert_true(meta_thread_parse("instagram_media:1784:1817", &t));
	assert_int_equal(t.kind, META_THREAD_INSTAGRAM_MEDIA);
	assert_true(meta_thread_parse("instagram:1784:99", &t));
	assert_int_equal(t.kind, META_THREAD_INSTAGRAM_DM);
	assert_false(meta_thread_parse("tweet:1:2", &t));
	assert_false(meta_thread_parse("messenger:1", &t));
	assert_false(meta_thread_parse("messenger::2", &t));
	assert_false(meta_thread_parse("messenger:1:", &t));
	assert_false(meta_thread_parse(NULL, &t));
	assert_false(meta_thread_format(META_THREAD_MESSENGER, "a:b", "c", buf, sizeof(buf)));
	assert_false(meta_thread_format(META_THREAD_MESSENGER, "1", "", buf, sizeof(buf)));
	assert_false(meta_thread_format(META_THREAD_MESSENGER, "1", "2", buf, 5));
}

/* ------------------------------------------------------------------------ */
/* Messenger and Instagram DMs                                              */
/* ------------------------------------------------------------------------ */

static void test_messenger_text_message(void **state)
{
	capture c;

	(void)state;
	parse_ok(v1_body, &c, 1);
	assert_int_equal(c.ev[0].size, sizeof(parley_event));
	assert_int_equal(c.ev[0].type, PARLEY_EVENT_MESSAGE_CREATED);
	assert_string_equal(c.ev[0].dedupe, "mid:mid.1457764197618:41d102a3e1ae206a38");
	assert_string_equal(c.ev[0].ext, "mid.1457764197618:41d102a3e1ae206a38");
	assert_string_equal(c.ev[0].text, "hello, world!");
	assert_string_equal(c.ev[0].author, "PSID");
	assert_string_equal(c.ev[0].thread, "messenger:PAGE_ID:PSID");
	assert_int_equal(c.ev[0].vis, PARLEY_VISIBILITY_PRIVATE);
	assert_int_equal(c.ev[0].from_brand, 0);
	assert_int_equal(c.ev[0].ms, 1458692752478LL);
	assert_null(c.ev[0].reply_to);
	/* raw_json is the messaging item itself. */
	assert_non_null(strstr(c.ev[0].raw, "\"sender\":{\"id\":\"PSID\"}"));
	assert_null(strstr(c.ev[0].raw, "\"object\""));
	capture_free(&c);
}

static void test_unicode_escapes_and_surrogate_pairs_decode(void **state)
{
	capture c;

	(void)state;
	parse_ok(v2_body, &c, 1);
	assert_string_equal(c.ev[0].text, "\xc3\xa4\xc3\xb6\xc3\xa5");
	capture_free(&c);
	parse_ok(PAGE_ENTRY("{\"sender\":{\"id\":\"9\"},\"recipient\":{\"id\":\"111\"},\"timestamp\":1,"
	                    "\"message\":{\"mid\":\"m_e\",\"text\":\"ok \\ud83d\\ude00 \\/x\"}}"), &c, 1);
	assert_string_equal(c.ev[0].text, "ok \xf0\x9f\x98\x80 /x");
	capture_free(&c);
}

static void test_reply_to_and_attachment_placeholder(void **state)
{
	capture c;

	(void)state;
	parse_ok(PAGE_ENTRY("{\"sender\":{\"id\":\"9\"},\"recipient\":{\"id\":\"111\"},\"timestamp\":1700000000001,"
	                    "\"message\":{\"mid\":\"m_2\",\"text\":\"this one\",\"reply_to\":{\"mid\":\"m_1\"}}},"
	                    "{\"sender\":{\"id\":\"9\"},\"recipient\":{\"id\":\"111\"},\"timestamp\":1700000000002,"
	                    "\"message\":{\"mid\":\"m_3\",\"attachments\":[{\"type\":\"image\",\"payload\":{\"url\":\"https:\\/\\/x\"}}]}}"),
	         &c, 2);
	assert_string_equal(c.ev[0].reply_to, "m_1");
	assert_string_equal(c.ev[1].text, "[image]");
	capture_free(&c);
}

static void test_messenger_echo_is_from_brand(void **state)
{
	capture c;

	(void)state;
	parse_ok(PAGE_ENTRY("{\"sender\":{\"id\":\"111\"},\"recipient\":{\"id\":\"9\"},\"timestamp\":1700000000000,"
	                    "\"message\":{\"is_echo\":true,\"app_id\":1517,\"mid\":\"m_echo\",\"text\":\"We are on it\"}}"),
	         &c, 1);
	assert_int_equal(c.ev[0].type, PARLEY_EVENT_MESSAGE_CREATED);
	assert_int_equal(c.ev[0].from_brand, 1);
	assert_string_equal(c.ev[0].author, "111");
	/* The customer's chat, as for their own messages. */
	assert_string_equal(c.ev[0].thread, "messenger:111:9");
	assert_string_equal(c.ev[0].ext, "m_echo");
	capture_free(&c);
}

static void test_message_edit(void **state)
{
	capture c;

	(void)state;
	parse_ok(PAGE_ENTRY("{\"sender\":{\"id\":\"9\"},\"recipient\":{\"id\":\"111\"},\"timestamp\":1458668856463,"
	                    "\"message_edit\":{\"mid\":\"m_1\",\"text\":\"new text\",\"num_edit\":2}}"), &c, 1);
	assert_int_equal(c.ev[0].type, PARLEY_EVENT_MESSAGE_EDITED);
	assert_string_equal(c.ev[0].ext, "m_1");
	assert_string_equal(c.ev[0].text, "new text");
	assert_string_equal(c.ev[0].dedupe, "edit:m_1:2");
	assert_int_equal(c.ev[0].ms, 1458668856463LL);
	capture_free(&c);
}

static void test_deliveries_and_reads(void **state)
{
	capture c;

	(void)state;
	parse_ok(PAGE_ENTRY("{\"sender\":{\"id\":\"9\"},\"recipient\":{\"id\":\"111\"},"
	                    "\"delivery\":{\"mids\":[\"m_a\",\"m_b\"],\"watermark\":1458668856253}},"
	                    "{\"sender\":{\"id\":\"9\"},\"recipient\":{\"id\":\"111\"},\"timestamp\":1458668856463,"
	                    "\"read\":{\"watermark\":1458668856253}},"
	                    "{\"sender\":{\"id\":\"9\"},\"recipient\":{\"id\":\"111\"},"
	                    "\"delivery\":{\"watermark\":1458668856253}}"), &c, 2);
	assert_int_equal(c.ev[0].type, PARLEY_EVENT_DELIVERY_STATUS);
	assert_int_equal(c.ev[0].status, PARLEY_DELIVERY_DELIVERED);
	assert_string_equal(c.ev[0].ext, "m_a");
	assert_string_equal(c.ev[0].dedupe, "delivered:m_a");
	assert_string_equal(c.ev[1].ext, "m_b");
	/* Watermark-only reads and deliveries name no message: accepted, noted. */
	assert_int_equal(c.stats.ignored, 2);
	assert_int_equal(c.n_notes, 2);
	capture_free(&c);

	/* Instagram's messaging_seen names the message. */
	parse_ok(IG_ENTRY("{\"sender\":{\"id\":\"55\"},\"recipient\":{\"id\":\"178414\"},\"timestamp\":1700000000000,"
	                  "\"read\":{\"mid\":\"aWdfZAG1\"}}"), &c, 1);
	assert_int_equal(c.ev[0].status, PARLEY_DELIVERY_READ);
	assert_string_equal(c.ev[0].dedupe, "read:aWdfZAG1");
	capture_free(&c);
}

static void test_instagram_dm_echo_and_unsend(void **state)
{
	capture c;

	(void)state;
	parse_ok(IG_ENTRY("{\"sender\":{\"id\":\"55\"},\"recipient\":{\"id\":\"178414\"},\"timestamp\":1569262485349,"
	                  "\"message\":{\"mid\":\"ig_m1\",\"text\":\"hi\"}},"
	                  /* no is_echo flag, but sent by the account itself */
	                  "{\"sender\":{\"id\":\"178414\"},\"recipient\":{\"id\":\"55\"},\"timestamp\":1569262485350,"
	                  "\"message\":{\"mid\":\"ig_m2\",\"text\":\"hello\"}},"
	                  "{\"sender\":{\"id\":\"55\"},\"recipient\":{\"id\":\"178414\"},\"timestamp\":1569262485351,"
	                  "\"message\":{\"mid\":\"ig_m1\",\"is_deleted\":true}}"), &c, 3);
	assert_string_equal(c.ev[0].thread, "instagram:178414:55");
	assert_int_equal(c.ev[0].from_brand, 0);
	assert_int_equal(c.ev[1].from_brand, 1);
	assert_string_equal(c.ev[1].thread, "instagram:178414:55");
	assert_int_equal(c.ev[2].type, PARLEY_EVENT_MESSAGE_DELETED);
	assert_string_equal(c.ev[2].ext, "ig_m1");
	assert_string_equal(c.ev[2].dedupe, "unsend:ig_m1");
	capture_free(&c);
}

/* ------------------------------------------------------------------------ */
/* Page feed and Instagram comments                                         */
/* ------------------------------------------------------------------------ */

static void test_feed_comment_verbs(void **state)
{
	capture c;

	(void)state;
	parse_ok(FEED("{\"from\":{\"id\":\"987654321\",\"name\":\"Nguy\\u1ec5n V\\u0103n A\"},"
	              "\"post_id\":\"111_222\",\"comment_id\":\"222_333\",\"parent_id\":\"111_222\","
	              "\"created_time\":1703332800,\"item\":\"comment\",\"verb\":\"add\",\"message\":\"Xin ch\\u00e0o\"}"),
	         &c, 1);
	assert_int_equal(c.ev[0].type, PARLEY_EVENT_MESSAGE_CREATED);
	assert_int_equal(c.ev[0].vis, PARLEY_VISIBILITY_PUBLIC);
	assert_string_equal(c.ev[0].thread, "facebook:111:111_222");
	assert_string_equal(c.ev[0].ext, "222_333");
	assert_string_equal(c.ev[0].reply_to, "111_222");
	assert_string_equal(c.ev[0].author, "987654321");
	assert_string_equal(c.ev[0].name, "Nguy\xe1\xbb\x85n V\xc4\x83n A");
	assert_string_equal(c.ev[0].text, "Xin ch\xc3\xa0o");
	assert_string_equal(c.ev[0].dedupe, "comment:222_333:add:1703332800");
	assert_int_equal(c.ev[0].ms, 1703332800000LL);
	assert_int_equal(c.ev[0].from_brand, 0);
	capture_free(&c);

	/* The legacy shape: sender_id as a number, edited. */
	parse_ok(FEED("{\"item\":\"comment\",\"sender_name\":\"Carol Kim\",\"comment_id\":\"288731331545014_288738774877603\","
	              "\"sender_id\":1914154345481707,\"post_id\":\"286247441793403_288731331545014\",\"verb\":\"edited\","
	              "\"parent_id\":\"286247441793403_288731331545014\",\"created_time\":1489998692,\"message\":\"I don't\"}"),
	         &c, 1);
	assert_int_equal(c.ev[0].type, PARLEY_EVENT_MESSAGE_EDITED);
	assert_string_equal(c.ev[0].ext, "288731331545014_288738774877603");
	assert_string_equal(c.ev[0].author, "1914154345481707");
	assert_string_equal(c.ev[0].text, "I don't");
	assert_string_equal(c.ev[0].dedupe, "comment:288731331545014_288738774877603:edited:1489998692");
	capture_free(&c);

	/* remove without message, hide, and an unknown verb. */
	parse_ok("{\"object\":\"page\",\"entry\":[{\"id\":\"111\",\"changes\":["
	         "{\"field\":\"feed\",\"value\":{\"from\":{\"id\":\"9\"},\"post_id\":\"111_2\",\"comment_id\":\"2_3\","
	         "\"created_time\":1703332900,\"item\":\"comment\",\"verb\":\"remove\"}},"
	         "{\"field\":\"feed\",\"value\":{\"from\":{\"id\":\"9\"},\"post_id\":\"111_2\",\"comment_id\":\"2_4\","
	         "\"created_time\":1703332901,\"item\":\"comment\",\"verb\":\"hide\"}},"
	         "{\"field\":\"feed\",\"value\":{\"from\":{\"id\":\"9\"},\"post_id\":\"111_2\",\"comment_id\":\"2_5\","
	         "\"created_time\":1703332902,\"item\":\"comment\",\"verb\":\"unblock\"}},"
	         "{\"field\":\"feed\",\"value\":{\"from\":{\"id\":\"9\"},\"post_id\":\"111_2\","
	         "\"created_time\":1703332903,\"item\":\"reaction\",\"verb\":\"add\",\"reaction_type\":\"like\"}}]}]}",
	         &c, 2);
	assert_int_equal(c.ev[0].type, PARLEY_EVENT_MESSAGE_DELETED);
	assert_string_equal(c.ev[0].ext, "2_3");
	assert_string_equal(c.ev[0].dedupe, "comment:2_3:remove:1703332900");
	assert_int_equal(c.ev[1].type, PARLEY_EVENT_MESSAGE_DELETED);
	assert_string_equal(c.ev[1].dedupe, "comment:2_4:hide:1703332901");
	assert_int_equal(c.stats.ignored, 2);
	capture_free(&c);
}

static void test_page_own_comment_is_from_brand(void **state)
{
	capture c;

	(void)state;
	parse_ok(FEED("{\"from\":{\"id\":\"111\",\"name\":\"Shop\"},\"post_id\":\"111_222\",\"comment_id\":\"222_444\","
	              "\"parent_id\":\"222_333\",\"created_time\":1703332810,\"item\":\"comment\",\"verb\":\"add\","
	              "\"message\":\"Thanks!\"}"), &c, 1);
	assert_int_equal(c.ev[0].from_brand, 1);
	assert_string_equal(c.ev[0].thread, "facebook:111:111_222");
	assert_string_equal(c.ev[0].reply_to, "222_333");
	capture_free(&c);
}

static void test_instagram_comments(void **state)
{
	capture c;

	(void)state;
	parse_ok("{\"entry\":[{\"id\":\"17841474524784050\",\"time\":1755779280,\"changes\":["
	         "{\"value\":{\"from\":{\"id\":\"17841400000000001\",\"username\":\"ann\",\"self_ig_scoped_id\":\"21\"},"
	         "\"media\":{\"id\":\"18172143295349192\",\"media_product_type\":\"FEED\"},"
	         "\"id\":\"17919697626119712\",\"text\":\"Love it \\ud83d\\ude00\"},\"field\":\"comments\"},"
	         "{\"value\":{\"from\":{\"id\":\"17841474524784050\",\"username\":\"shop\"},"
	         "\"media\":{\"id\":\"18172143295349192\"},\"id\":\"17919697626119713\","
	         "\"parent_id\":\"17919697626119712\",\"text\":\"Thank you\"},\"field\":\"comments\"}]}],"
	         "\"object\":\"instagram\"}", &c, 2);
	assert_int_equal(c.ev[0].type, PARLEY_EVENT_MESSAGE_CREATED);
	assert_int_equal(c.ev[0].vis, PARLEY_VISIBILITY_PUBLIC);
	assert_string_equal(c.ev[0].thread, "instagram_media:17841474524784050:18172143295349192");
	assert_string_equal(c.ev[0].author, "17841400000000001");
	assert_string_equal(c.ev[0].handle, "ann");
	assert_string_equal(c.ev[0].text, "Love it \xf0\x9f\x98\x80");
	assert_string_equal(c.ev[0].dedupe, "igcomment:17919697626119712:add");
	assert_int_equal(c.ev[0].ms, 1755779280000LL);
	assert_null(c.ev[0].reply_to);
	assert_int_equal(c.ev[0].from_brand, 0);
	assert_int_equal(c.ev[1].from_brand, 1);
	assert_string_equal(c.ev[1].reply_to, "17919697626119712");
	capture_free(&c);
}

/* ------------------------------------------------------------------------ */
/* WhatsApp                                                                 */
/* ------------------------------------------------------------------------ */

static void test_whatsapp_text_message(void **state)
{
	capture c;

	(void)state;
	parse_ok(WA("{\"messaging_product\":\"whatsapp\",\"metadata\":{\"display_phone_number\":\"15550783881\","
	            "\"phone_number_id\":\"106540352242922\"},\"contacts\":[{\"profile\":{\"name\":\"Sheena Nelson\"},"
	            "\"wa_id\":\"16505551234\"}],\"messages\":[{\"from\":\"16505551234\","
	            "\"id\":\"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=\",\"timestamp\":\"1749416383\","
	            "\"type\":\"text\",\"text\":{\"body\":\"Does it come in another color?\"},"
	            "\"context\":{\"from\":\"15550783881\",\"id\":\"wamid.PREV\"}}]}"), &c, 1);
	assert_int_equal(c.ev[0].type, PARLEY_EVENT_MESSAGE_CREATED);
	assert_string_equal(c.ev[0].ext, "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=");
	assert_string_equal(c.ev[0].dedupe, "wamid:wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=");
	assert_string_equal(c.ev[0].thread, "whatsapp:106540352242922:16505551234");
	assert_string_equal(c.ev[0].author, "16505551234");
	assert_string_equal(c.ev[0].name, "Sheena Nelson");
	assert_string_equal(c.ev[0].phone, "+16505551234");
	assert_int_equal(c.ev[0].phone_verified, 1);
	assert_string_equal(c.ev[0].text, "Does it come in another color?");
	assert_string_equal(c.ev[0].reply_to, "wamid.PREV");
	assert_int_equal(c.ev[0].ms, 1749416383000LL);
	assert_int_equal(c.ev[0].vis, PARLEY_VISIBILITY_PRIVATE);
	capture_free(&c);
}

static void test_whatsapp_business_scoped_user_without_phone(void **state)
{
	capture c;

	(void)state;
	parse_ok(WA("{\"messaging_product\":\"whatsapp\",\"metadata\":{\"phone_number_id\":\"106540352242922\"},"
	            "\"contacts\":[{\"profile\":{\"name\":\"Kim\",\"username\":\"kim.w\"},\"user_id\":\"US.13491208655302741918\"}],"
	            "\"messages\":[{\"from_user_id\":\"US.13491208655302741918\",\"id\":\"wamid.B1\",\"timestamp\":\"1749416390\","
	            "\"type\":\"image\",\"image\":{\"id\":\"77\",\"mime_type\":\"image/jpeg\",\"caption\":\"broken\"}}]}"),
	         &c, 1);
	assert_string_equal(c.ev[0].author, "US.13491208655302741918");
	assert_null(c.ev[0].phone);
	assert_string_equal(c.ev[0].name, "Kim");
	assert_string_equal(c.ev[0].handle, "kim.w");
	assert_string_equal(c.ev[0].thread, "whatsapp:106540352242922:US.13491208655302741918");
	assert_string_equal(c.ev[0].text, "broken");
	capture_free(&c);
}

static void test_whatsapp_statuses_only_and_out_of_order(void **state)
{
	capture c;

	(void)state;
	parse_ok(WA("{\"messaging_product\":\"whatsapp\",\"metadata\":{\"phone_number_id\":\"421395191063010\"},"
	            "\"statuses\":[{\"id\":\"wamid.S1\",\"status\":\"read\",\"timestamp\":\"1733170080\",\"recipient_id\":\"9188\"},"
	            "{\"id\":\"wamid.S1\",\"status\":\"delivered\",\"timestamp\":\"1733170072\",\"recipient_id\":\"9188\","
	            "\"pricing\":{\"billable\":true}},"
	            "{\"id\":\"wamid.S2\",\"status\":\"failed\",\"timestamp\":\"1733170090\",\"recipient_id\":\"9188\","
	            "\"errors\":[{\"code\":131026,\"title\":\"Message undeliverable\"}]},"
	            "{\"id\":\"wamid.S3\",\"status\":\"played\",\"timestamp\":\"1733170091\"}]}"), &c, 3);
	assert_int_equal(c.ev[0].type, PARLEY_EVENT_DELIVERY_STATUS);
	assert_int_equal(c.ev[0].status, PARLEY_DELIVERY_READ);
	assert_string_equal(c.ev[0].dedupe, "status:wamid.S1:read");
	assert_int_equal(c.ev[1].status, PARLEY_DELIVERY_DELIVERED);
	assert_string_equal(c.ev[1].dedupe, "status:wamid.S1:delivered");
	assert_int_equal(c.ev[1].ms, 1733170072000LL);
	assert_int_equal(c.ev[2].status, PARLEY_DELIVERY_FAILED);
	assert_string_equal(c.ev[2].detail, "Message undeliverable (code 131026)");
	assert_int_equal(c.stats.ignored, 1);   /* "played" */
	capture_free(&c);
}

/* ------------------------------------------------------------------------ */
/* Batches, replays, ids, unknowns, malformed bodies                        */
/* ------------------------------------------------------------------------ */

static const char batch_body[] =
	"{\"object\":\"page\",\"entry\":["
	"{\"id\":\"111\",\"time\":1700000000000,\"messaging\":["
	"{\"sender\":{\"id\":\"9\"},\"recipient\":{\"id\":\"111\"},\"timestamp\":1,\"message\":{\"mid\":\"m_1\",\"text\":\"a\"}},"
	"{\"sender\":{\"id\":\"8\"},\"recipient\":{\"id\":\"111\"},\"timestamp\":2,\"message\":{\"mid\":\"m_2\",\"text\":\"b\"}}]},"
	"{\"id\":\"222\",\"time\":1700000000000,\"changes\":["
	"{\"field\":\"feed\",\"value\":{\"from\":{\"id\":\"7\"},\"post_id\":\"222_1\",\"comment_id\":\"1_1\","
	"\"created_time\":1700000000,\"item\":\"comment\",\"verb\":\"add\",\"message\":\"c\"}},"
	"{\"field\":\"feed\",\"value\":{\"from\":{\"id\":\"7\"},\"post_id\":\"222_1\",\"comment_id\":\"1_1\","
	"\"created_time\":1700000100,\"item\":\"comment\",\"verb\":\"edited\",\"message\":\"c2\"}}]}]}";

static void test_batch_of_two_entries_for_two_pages(void **state)
{
	capture c, again;

	(void)state;
	parse_ok(batch_body, &c, 4);
	assert_string_equal(c.ev[0].thread, "messenger:111:9");
	assert_string_equal(c.ev[1].thread, "messenger:111:8");
	assert_string_equal(c.ev[2].thread, "facebook:222:222_1");
	assert_int_equal(c.ev[3].type, PARLEY_EVENT_MESSAGE_EDITED);
	/* A replay yields the same dedupe keys: the core stores nothing new. */
	parse_ok(batch_body, &again, 4);
	for (size_t i = 0; i < 4; i++)
		assert_string_equal(c.ev[i].dedupe, again.ev[i].dedupe);
	for (size_t i = 0; i < 4; i++)
		for (size_t j = i + 1; j < 4; j++)
			assert_string_not_equal(c.ev[i].dedupe, c.ev[j].dedupe);
	capture_free(&c);
	capture_free(&again);
}

static void test_nineteen_digit_ids_are_exact(void **state)
{
	capture c;

	(void)state;
	parse_ok("{\"object\":\"page\",\"entry\":[{\"id\":1205348660982083584,\"messaging\":["
	         "{\"sender\":{\"id\":9223372036854775807},\"recipient\":{\"id\":1205348660982083584},"
	         "\"timestamp\":1700000000000,\"message\":{\"mid\":\"m_big\",\"text\":\"x\"}}]}]}", &c, 1);
	assert_string_equal(c.ev[0].author, "9223372036854775807");
	assert_string_equal(c.ev[0].thread, "messenger:1205348660982083584:9223372036854775807");
	capture_free(&c);
}

static void test_unknown_shapes_are_accepted_and_noted(void **state)
{
	capture c;

	(void)state;
	/* The App Dashboard's test button. */
	parse_ok("{\"field\":\"messages\",\"value\":{\"sender\":{\"id\":\"1\"},\"timestamp\":\"1527459824\"}}", &c, 0);
	assert_int_equal(c.n_notes, 1);
	assert_non_null(strstr(c.notes[0], "dashboard test"));
	parse_ok("{\"object\":\"user\",\"entry\":[{\"id\":\"1\",\"changes\":[{\"field\":\"email\"}]}]}", &c, 0);
	assert_non_null(strstr(c.notes[0], "object user"));
	parse_ok("{\"object\":\"page\",\"entry\":[{\"id\":\"1\",\"changes\":[{\"field\":\"ratings\",\"value\":{}}]}]}",
	         &c, 0);
	assert_string_equal(c.notes[0], "field ratings accepted and ignored");
	parse_ok(PAGE_ENTRY("{\"sender\":{\"id\":\"9\"},\"recipient\":{\"id\":\"111\"},\"timestamp\":1,"
	                    "\"reaction\":{\"reaction\":\"love\",\"action\":\"react\",\"mid\":\"m_1\"}},"
	                    "{\"sender\":{\"id\":\"9\"},\"recipient\":{\"id\":\"111\"},\"timestamp\":1,\"brand_new\":{}},"
	                    "{\"recipient\":{\"id\":\"111\"},\"message\":{\"mid\":\"m_x\"}}, 42, null"), &c, 0);
	assert_int_equal(c.stats.ignored, 5);
	assert_string_equal(c.notes[0], "messaging event reaction accepted and ignored");
	parse_ok("{\"object\":\"page\"}", &c, 0);
	parse_ok("{\"object\":\"page\",\"entry\":[{\"id\":\"1\",\"standby\":[{}]}]}", &c, 0);
	parse_ok(WA("{\"metadata\":{\"phone_number_id\":\"1\"},\"messages\":[{\"from\":\"1\",\"id\":\"w\","
	            "\"type\":\"reaction\",\"reaction\":{\"message_id\":\"x\",\"emoji\":\"\\u2764\"}}]}"), &c, 0);
	parse_ok(WA("{\"metadata\":{}}"), &c, 0);
}

static void test_malformed_bodies_are_refused(void **state)
{
	static const char *const bad[] = {
		"", "{", "{\"object\":\"page\",\"entry\":[{\"id\":\"1\"", "[{\"object\":\"page\",\"entry\":[]}]",
		"\"page\"", "{\"object\":\"page\",\"entry\":{}}", "{\"object\":7,\"entry\":[]}",
		"{\"object\":\"page\",\"object\":\"instagram\",\"entry\":[]}",   /* duplicate key */
		"{\"object\":\"page\",\"entry\":[{\"id\":\"1\",\"messaging\":[{\"message\":{\"text\":\"\\u0000\"}}]}]}",
	};
	capture c;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], &c))
			fail_msg("accepted: %s", bad[i]);
		assert_int_equal(c.n, 0);
		assert_true(c.err[0] != '\0');
	}
	assert_false(parse("{\"object\":\"page\",\"entry\":7}", &c));
	assert_string_equal(c.err, "entry must be an array");
}

static void test_body_need_not_be_nul_terminated(void **state)
{
	char *copy = malloc(strlen(v1_body));
	capture c;

	(void)state;
	memcpy(copy, v1_body, strlen(v1_body));
	memset(&c, 0, sizeof(c));
	assert_true(meta_parse(copy, strlen(v1_body), collect, NULL, &c, &c.stats, c.err, sizeof(c.err)));
	assert_int_equal(c.n, 1);
	capture_free(&c);
	free(copy);
}

static void test_refused_events_are_counted_and_the_rest_goes_on(void **state)
{
	capture c;

	(void)state;
	memset(&c, 0, sizeof(c));
	c.refuse_all = 1;
	assert_true(meta_parse(batch_body, strlen(batch_body), collect, NULL, &c, &c.stats,
	                       c.err, sizeof(c.err)));
	assert_int_equal(c.stats.refused, 4);
	assert_int_equal(c.stats.events, 0);
}

/* ------------------------------------------------------------------------ */
/* Assets                                                                   */
/* ------------------------------------------------------------------------ */

static void test_assets(void **state)
{
	meta_asset_list l;
	char err[256];

	(void)state;
	assert_true(meta_assets_parse("[{\"id\":\"111\",\"access_token\":\"EAAB\"},"
	                              "{\"id\":\"222\",\"access_token\":\"EAAC\"}]", "id", &l, err, sizeof(err)));
	assert_int_equal(l.n, 2);
	assert_string_equal(meta_assets_token(&l, "222"), "EAAC");
	assert_null(meta_assets_token(&l, "333"));
	meta_assets_free(&l);
	assert_true(meta_assets_parse(NULL, "id", &l, err, sizeof(err)));
	assert_int_equal(l.n, 0);

	assert_false(meta_assets_parse("{}", "id", &l, err, sizeof(err)));
	assert_string_equal(err, "must be an array of objects");
	assert_false(meta_assets_parse("[{\"id\":\"1\"}]", "id", &l, err, sizeof(err)));
	assert_string_equal(err, "[0] must be an object with string \"id\" and \"access_token\"");
	assert_false(meta_assets_parse("[{\"phone_number_id\":\"1/2\",\"access_token\":\"t\"}]",
	                               "phone_number_id", &l, err, sizeof(err)));
	assert_string_equal(err, "[0].phone_number_id must be a Meta id (digits, letters, '_', '.', '-')");
	assert_false(meta_assets_parse("[{\"id\":\"1\",\"access_token\":\"a b\"}]", "id", &l, err, sizeof(err)));
	assert_string_equal(err, "[0].access_token must be a non-empty token without spaces");
	assert_null(strstr(err, "a b"));
	assert_false(meta_assets_parse("[{\"id\":\"1\",\"access_token\":\"a\"},{\"id\":\"1\",\"access_token\":\"b\"}]",
	                               "id", &l, err, sizeof(err)));
	assert_string_equal(err, "[1].id: 1 is listed twice");
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

#define NOW 1800000000000LL

static meta_send_options options(void)
{
	meta_send_options o = { "https://graph.example", "v21.0", 0, NULL, NULL, NOW };
	return o;
}

static parley_outbound_message message(const char *thread, const char *reply_to,
                                       parley_send_kind kind, int64_t hours_ago)
{
	parley_outbound_message m;

	memset(&m, 0, sizeof(m));
	m.size = sizeof(m);
	m.idempotency_key = "k1";
	m.conversation_id = "7";
	m.visibility = PARLEY_VISIBILITY_PRIVATE;
	m.recipient_id = "9";
	m.thread_id = thread;
	m.in_reply_to = reply_to;
	m.text = "Hi \xc3\xa4 \"there\"";
	m.kind = kind;
	m.last_inbound_ms = hours_ago < 0 ? 0 : NOW - hours_ago * META_HOUR_MS;
	return m;
}

/* Plan and check the request byte for byte. */
static void assert_plan(const meta_send_options *o, const parley_outbound_message *m,
                        const char *url, const char *body, meta_answer_shape shape)
{
	meta_plan p;

	if (!meta_plan_send(o, m, &p))
		fail_msg("refused: %s", p.reason);
	assert_string_equal(p.url, url);
	assert_string_equal(p.body, body);
	assert_int_equal(p.shape, shape);
	meta_plan_free(&p);
}

static void assert_refusal(const meta_send_options *o, const parley_outbound_message *m,
                           const char *reason)
{
	meta_plan p;

	if (meta_plan_send(o, m, &p))
		fail_msg("planned: %s %s", p.url, p.body);
	assert_string_equal(p.reason, reason);
	assert_null(p.url);
	meta_plan_free(&p);
}

static void test_messenger_send_and_windows(void **state)
{
	meta_send_options o = options();
	parley_outbound_message m = message("messenger:111:9", "m_1", PARLEY_SEND_MESSAGE, 23);

	(void)state;
	assert_plan(&o, &m, "https://graph.example/v21.0/111/messages",
	            "{\"recipient\":{\"id\":\"9\"},\"messaging_type\":\"RESPONSE\","
	            "\"message\":{\"text\":\"Hi \xc3\xa4 \\\"there\\\"\"}}", META_ANSWER_MESSAGE);
	m = message("messenger:111:9", "m_1", PARLEY_SEND_MESSAGE, 30);
	assert_refusal(&o, &m, "outside the 24-hour messaging window: the customer last wrote 30 hours ago");
	o.human_agent_tag = 1;
	assert_plan(&o, &m, "https://graph.example/v21.0/111/messages",
	            "{\"recipient\":{\"id\":\"9\"},\"messaging_type\":\"MESSAGE_TAG\",\"tag\":\"HUMAN_AGENT\","
	            "\"message\":{\"text\":\"Hi \xc3\xa4 \\\"there\\\"\"}}", META_ANSWER_MESSAGE);
	m = message("messenger:111:9", "m_1", PARLEY_SEND_MESSAGE, 8 * 24);
	assert_refusal(&o, &m, "outside the 7-day human agent messaging window: the customer last wrote 192 hours ago");
	/* Unknown time: not refused here. */
	o.human_agent_tag = 0;
	m = message("messenger:111:9", NULL, PARLEY_SEND_MESSAGE, -1);
	assert_plan(&o, &m, "https://graph.example/v21.0/111/messages",
	            "{\"recipient\":{\"id\":\"9\"},\"messaging_type\":\"RESPONSE\","
	            "\"message\":{\"text\":\"Hi \xc3\xa4 \\\"there\\\"\"}}", META_ANSWER_MESSAGE);
}

static void test_abi_1_0_message_has_no_window(void **state)
{
	meta_send_options o = options();
	parley_outbound_message m = message("messenger:111:9", "m_1", PARLEY_SEND_PRIVATE_REPLY, 100);
	meta_plan p;

	(void)state;
	m.size = offsetof(parley_outbound_message, kind);   /* a 1.0 core */
	assert_true(meta_plan_send(&o, &m, &p));
	assert_string_equal(p.url, "https://graph.example/v21.0/111/messages");
	meta_plan_free(&p);
}

static void test_instagram_dm_send(void **state)
{
	meta_send_options o = options();
	parley_outbound_message m = message("instagram:178414:55", "ig_m1", PARLEY_SEND_MESSAGE, 1);

	(void)state;
	m.text = "ok";
	assert_plan(&o, &m, "https://graph.example/v21.0/178414/messages",
	            "{\"recipient\":{\"id\":\"55\"},\"message\":{\"text\":\"ok\"}}", META_ANSWER_MESSAGE);
	m = message("instagram:178414:55", "ig_m1", PARLEY_SEND_MESSAGE, 25);
	o.human_agent_tag = 1;   /* Messenger only */
	assert_refusal(&o, &m, "outside the 24-hour messaging window: the customer last wrote 25 hours ago");
}

static void test_whatsapp_send_template_and_refusal(void **state)
{
	meta_send_options o = options();
	parley_outbound_message m = message("whatsapp:106540352242922:16505551234", "wamid.A",
	                                    PARLEY_SEND_MESSAGE, 2);
	meta_plan p;

	(void)state;
	m.text = "Yes, in blue";
	assert_plan(&o, &m, "https://graph.example/v21.0/106540352242922/messages",
	            "{\"messaging_product\":\"whatsapp\",\"recipient_type\":\"individual\",\"to\":\"16505551234\","
	            "\"type\":\"text\",\"text\":{\"body\":\"Yes, in blue\"},\"context\":{\"message_id\":\"wamid.A\"}}",
	            META_ANSWER_WHATSAPP);
	/* A business-scoped user id goes in "recipient". */
	m.thread_id = "whatsapp:106540352242922:US.13491208655302741918";
	m.in_reply_to = NULL;
	assert_plan(&o, &m, "https://graph.example/v21.0/106540352242922/messages",
	            "{\"messaging_product\":\"whatsapp\",\"recipient_type\":\"individual\","
	            "\"recipient\":\"US.13491208655302741918\",\"type\":\"text\",\"text\":{\"body\":\"Yes, in blue\"}}",
	            META_ANSWER_WHATSAPP);
	m = message("whatsapp:106540352242922:16505551234", "wamid.A", PARLEY_SEND_MESSAGE, 25);
	assert_refusal(&o, &m, "outside the 24-hour messaging window: the customer last wrote 25 hours ago, "
	               "and no whatsapp_template is configured");
	o.template_name = "follow_up";
	o.template_language = "en_US";
	assert_true(meta_plan_send(&o, &m, &p));
	assert_int_equal(p.template_sent, 1);
	assert_string_equal(p.body, "{\"messaging_product\":\"whatsapp\",\"recipient_type\":\"individual\","
	                    "\"to\":\"16505551234\",\"type\":\"template\",\"template\":{\"name\":\"follow_up\","
	                    "\"language\":{\"code\":\"en_US\"}}}");
	meta_plan_free(&p);
}

static void test_public_comment_replies(void **state)
{
	meta_send_options o = options();
	parley_outbound_message m = message("facebook:111:111_222", "222_333", PARLEY_SEND_MESSAGE, 24 * 30);

	(void)state;
	m.visibility = PARLEY_VISIBILITY_PUBLIC;
	m.text = "We sent a DM";
	/* No window for public replies. */
	assert_plan(&o, &m, "https://graph.example/v21.0/222_333/comments",
	            "{\"message\":\"We sent a DM\"}", META_ANSWER_COMMENT);
	m.in_reply_to = NULL;
	assert_plan(&o, &m, "https://graph.example/v21.0/111_222/comments",
	            "{\"message\":\"We sent a DM\"}", META_ANSWER_COMMENT);
	m.thread_id = "instagram_media:178414:18172143295349192";
	m.in_reply_to = "17919697626119712";
	assert_plan(&o, &m, "https://graph.example/v21.0/17919697626119712/replies",
	            "{\"message\":\"We sent a DM\"}", META_ANSWER_COMMENT);
	m.in_reply_to = "../me";
	assert_refusal(&o, &m, "the id ../me cannot be used in a Graph API path");
	/* The body is built before the path is refused: nothing may leak. */
	m = message("whatsapp:1/2:16505551234", NULL, PARLEY_SEND_MESSAGE, 30);
	o.template_name = "t";
	o.template_language = "en_US";
	assert_refusal(&o, &m, "the id 1/2 cannot be used in a Graph API path");
	m = message("messenger:1/2:9", NULL, PARLEY_SEND_MESSAGE, 1);
	assert_refusal(&o, &m, "the id 1/2 cannot be used in a Graph API path");
}

static void test_private_replies(void **state)
{
	meta_send_options o = options();
	parley_outbound_message m = message("facebook:111:111_222", "222_333", PARLEY_SEND_PRIVATE_REPLY, 24 * 6);
	meta_plan p;
	char thread[META_MAX_THREAD_BYTES];

	(void)state;
	m.text = "Please send your order number";
	assert_true(meta_plan_send(&o, &m, &p));
	assert_string_equal(p.url, "https://graph.example/v21.0/111/messages");
	assert_string_equal(p.body, "{\"recipient\":{\"comment_id\":\"222_333\"},"
	                    "\"message\":{\"text\":\"Please send your order number\"}}");
	assert_int_equal(p.shape, META_ANSWER_MESSAGE);
	assert_true(meta_private_thread(&p, "24517", thread, sizeof(thread)));
	assert_string_equal(thread, "messenger:111:24517");
	meta_plan_free(&p);

	m.thread_id = "instagram_media:178414:1817";
	m.in_reply_to = "1791";
	assert_true(meta_plan_send(&o, &m, &p));
	assert_string_equal(p.url, "https://graph.example/v21.0/178414/messages");
	assert_true(meta_private_thread(&p, "55", thread, sizeof(thread)));
	assert_string_equal(thread, "instagram:178414:55");
	meta_plan_free(&p);

	m = message("facebook:111:111_222", "222_333", PARLEY_SEND_PRIVATE_REPLY, 24 * 8);
	assert_refusal(&o, &m, "outside the 7-day private reply window: the comment was written 8 days ago");
	m = message("messenger:111:9", "m_1", PARLEY_SEND_PRIVATE_REPLY, 1);
	assert_refusal(&o, &m, "a private reply answers a public Facebook or Instagram comment; "
	               "this conversation is not a comment thread");
	m = message("facebook:111:111_222", NULL, PARLEY_SEND_PRIVATE_REPLY, 1);
	assert_refusal(&o, &m, "a private reply needs the comment it answers");
	m = message("tweet:1:2", NULL, PARLEY_SEND_MESSAGE, 1);
	assert_refusal(&o, &m, "the conversation has no thread id of the meta channel");
	m = message("messenger:111:9", NULL, PARLEY_SEND_MESSAGE, 1);
	m.text = "";
	assert_refusal(&o, &m, "there is no text to send");
}

/* ------------------------------------------------------------------------ */
/* Answers                                                                  */
/* ------------------------------------------------------------------------ */

static meta_result classify(long status, const char *body, const char *retry_after,
                            const char *buc, meta_answer_shape shape)
{
	meta_answer a;
	meta_result r;

	memset(&a, 0, sizeof(a));
	a.status = status;
	a.body = (const unsigned char *)body;
	a.body_len = body != NULL ? strlen(body) : 0;
	a.retry_after = retry_after;
	a.buc_usage = buc;
	a.now_ms = NOW;
	meta_classify(&a, shape, &r);
	return r;
}

/* The rule a refusal names: what check_send answers, and the API's error. */
static const char *refusal_rule(const meta_send_options *o, const parley_outbound_message *m)
{
	meta_plan p;
	const char *rule;

	if (meta_plan_send(o, m, &p))
		fail_msg("planned: %s %s", p.url, p.body);
	rule = p.rule;
	meta_plan_free(&p);
	return rule != NULL ? rule : "(none)";
}

static void test_refusals_name_their_rule(void **state)
{
	meta_send_options o = options();
	parley_outbound_message m;
	meta_plan p;

	(void)state;
	m = message("messenger:111:9", "m_1", PARLEY_SEND_MESSAGE, 30);
	assert_string_equal(refusal_rule(&o, &m), "window_closed");
	m = message("instagram:178414:5", "m_1", PARLEY_SEND_MESSAGE, 25);
	assert_string_equal(refusal_rule(&o, &m), "window_closed");
	m = message("whatsapp:106540352242922:4912345", "wamid.1", PARLEY_SEND_MESSAGE, 25);
	assert_string_equal(refusal_rule(&o, &m), "window_closed");
	m = message("facebook:111:111_222", "222_333", PARLEY_SEND_PRIVATE_REPLY, 24 * 8);
	assert_string_equal(refusal_rule(&o, &m), "private_reply_window_closed");
	m = message("messenger:111:9", "m_1", PARLEY_SEND_PRIVATE_REPLY, 1);
	assert_string_equal(refusal_rule(&o, &m), "private_reply_not_possible");
	m = message("telegram:5", NULL, PARLEY_SEND_MESSAGE, 1);
	assert_string_equal(refusal_rule(&o, &m), "not_sendable");
	/* A plan that goes names no rule. */
	m = message("messenger:111:9", "m_1", PARLEY_SEND_MESSAGE, 1);
	assert_true(meta_plan_send(&o, &m, &p));
	assert_null(p.rule);
	meta_plan_free(&p);
}

static void test_success_answers_give_ids(void **state)
{
	meta_result r;

	(void)state;
	r = classify(200, "{\"recipient_id\":\"24517\",\"message_id\":\"m_AG5Hz2U\"}", NULL, NULL,
	             META_ANSWER_MESSAGE);
	assert_int_equal(r.outcome, PARLEY_OK);
	assert_string_equal(r.external_id, "m_AG5Hz2U");
	assert_string_equal(r.recipient_id, "24517");
	assert_string_equal(r.reason, "");
	r = classify(200, "{\"id\":\"222_555\"}", NULL, NULL, META_ANSWER_COMMENT);
	assert_string_equal(r.external_id, "222_555");
	r = classify(200, "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":\"1\",\"wa_id\":\"1\"}],"
	             "\"messages\":[{\"id\":\"wamid.OUT\"}]}", NULL, NULL, META_ANSWER_WHATSAPP);
	assert_string_equal(r.external_id, "wamid.OUT");
	r = classify(200, "not json", NULL, NULL, META_ANSWER_WHATSAPP);
	assert_int_equal(r.outcome, PARLEY_OK);
	assert_string_equal(r.external_id, "");
}

static void test_throttling_is_retried(void **state)
{
	static const int codes[] = { 4, 17, 32, 613, 80001, 80004, 80009, 130429, 131056 };
	char body[256];
	meta_result r;

	(void)state;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		snprintf(body, sizeof(body), "{\"error\":{\"message\":\"(#%d) limit reached\","
		         "\"type\":\"OAuthException\",\"code\":%d,\"fbtrace_id\":\"Ax\"}}", codes[i], codes[i]);
		r = classify(400, body, NULL, NULL, META_ANSWER_MESSAGE);
		if (r.outcome != PARLEY_RETRY)
			fail_msg("code %d not retried", codes[i]);
		assert_int_equal(r.retry_at_ms, 0);
	}
	r = classify(400, "{\"error\":{\"message\":\"(#4) Application request limit reached\",\"code\":4}}",
	             NULL, NULL, META_ANSWER_MESSAGE);
	assert_string_equal(r.reason, "Meta rate limit, will retry: (#4) Application request limit reached (code 4)");
	/* The Business Use Case header says when access comes back (minutes). */
	r = classify(400, "{\"error\":{\"message\":\"(#80001) x\",\"code\":80001}}", NULL,
	             "{\"111\":[{\"type\":\"pages\",\"call_count\":100,\"estimated_time_to_regain_access\":5},"
	             "{\"type\":\"messenger\",\"estimated_time_to_regain_access\":2}]}", META_ANSWER_MESSAGE);
	assert_int_equal(r.retry_at_ms, NOW + 5 * 60000);
	r = classify(429, "", "7", NULL, META_ANSWER_MESSAGE);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_int_equal(r.retry_at_ms, NOW + 7000);
	/* Not a throttle code: other codes 80010 and 3 fail. */
	r = classify(400, "{\"error\":{\"message\":\"x\",\"code\":80010}}", NULL, NULL, META_ANSWER_MESSAGE);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	r = classify(400, "{\"error\":{\"message\":\"Temporary\",\"code\":2,\"is_transient\":true}}", NULL, NULL,
	             META_ANSWER_MESSAGE);
	assert_int_equal(r.outcome, PARLEY_RETRY);
}

static void test_server_errors_and_timeouts_are_retried(void **state)
{
	meta_answer a;
	meta_result r;

	(void)state;
	r = classify(500, "{\"error\":{\"message\":\"An unexpected error has occurred.\",\"code\":1}}", NULL, NULL,
	             META_ANSWER_COMMENT);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_string_equal(r.reason, "Graph API answered 500: An unexpected error has occurred. (code 1)");
	r = classify(503, "<html>", NULL, NULL, META_ANSWER_COMMENT);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_string_equal(r.reason, "Graph API answered 503");
	memset(&a, 0, sizeof(a));
	a.transport_error = "Timeout was reached";
	meta_classify(&a, META_ANSWER_MESSAGE, &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_string_equal(r.reason, "Graph API call failed: Timeout was reached");
}

static void test_other_client_errors_fail_with_metas_message(void **state)
{
	meta_result r;

	(void)state;
	r = classify(400, "{\"error\":{\"message\":\"(#10) This message is sent outside of allowed window.\","
	             "\"type\":\"OAuthException\",\"code\":10,\"error_subcode\":2018278,\"fbtrace_id\":\"A\"}}",
	             NULL, NULL, META_ANSWER_MESSAGE);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_string_equal(r.reason, "Meta refused the message: (#10) This message is sent outside of "
	                    "allowed window. (code 10, subcode 2018278)");
	r = classify(400, "{\"error\":{\"message\":\"(#10900) Activity already replied to\",\"code\":10900}}",
	             NULL, NULL, META_ANSWER_MESSAGE);
	assert_string_equal(r.reason, "Meta refused the message: (#10900) Activity already replied to (code 10900)");
	r = classify(403, NULL, NULL, NULL, META_ANSWER_MESSAGE);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_string_equal(r.reason, "Meta refused the message: Graph API answered 403");
	r = classify(400, "{\"error\":{\"message\":\"line\\nbreak\",\"code\":100}}", NULL, NULL, META_ANSWER_MESSAGE);
	assert_string_equal(r.reason, "Meta refused the message: line break (code 100)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_ascii_body_is_accepted),
		cmocka_unit_test(test_v2_escaped_accepted_v3_reserialized_refused),
		cmocka_unit_test(test_signature_uppercase_hex_is_accepted),
		cmocka_unit_test(test_signature_missing_or_malformed),
		cmocka_unit_test(test_handshake),
		cmocka_unit_test(test_thread_ids_round_trip),
		cmocka_unit_test(test_messenger_text_message),
		cmocka_unit_test(test_unicode_escapes_and_surrogate_pairs_decode),
		cmocka_unit_test(test_reply_to_and_attachment_placeholder),
		cmocka_unit_test(test_messenger_echo_is_from_brand),
		cmocka_unit_test(test_message_edit),
		cmocka_unit_test(test_deliveries_and_reads),
		cmocka_unit_test(test_instagram_dm_echo_and_unsend),
		cmocka_unit_test(test_feed_comment_verbs),
		cmocka_unit_test(test_page_own_comment_is_from_brand),
		cmocka_unit_test(test_instagram_comments),
		cmocka_unit_test(test_whatsapp_text_message),
		cmocka_unit_test(test_whatsapp_business_scoped_user_without_phone),
		cmocka_unit_test(test_whatsapp_statuses_only_and_out_of_order),
		cmocka_unit_test(test_batch_of_two_entries_for_two_pages),
		cmocka_unit_test(test_nineteen_digit_ids_are_exact),
		cmocka_unit_test(test_unknown_shapes_are_accepted_and_noted),
		cmocka_unit_test(test_malformed_bodies_are_refused),
		cmocka_unit_test(test_body_need_not_be_nul_terminated),
		cmocka_unit_test(test_refused_events_are_counted_and_the_rest_goes_on),
		cmocka_unit_test(test_assets),
		cmocka_unit_test(test_messenger_send_and_windows),
		cmocka_unit_test(test_abi_1_0_message_has_no_window),
		cmocka_unit_test(test_instagram_dm_send),
		cmocka_unit_test(test_whatsapp_send_template_and_refusal),
		cmocka_unit_test(test_public_comment_replies),
		cmocka_unit_test(test_private_replies),
		cmocka_unit_test(test_refusals_name_their_rule),
		cmocka_unit_test(test_success_answers_give_ids),
		cmocka_unit_test(test_throttling_is_retried),
		cmocka_unit_test(test_server_errors_and_timeouts_are_retried),
		cmocka_unit_test(test_other_client_errors_fail_with_metas_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
