/* test_notifiers.c - the email notifier's pure part: address checks, the
 * Date header, the whole RFC 5322 message byte for byte (headers, RFC 2047
 * Subject, quoted-printable body), header injection, and what SMTP reply
 * codes mean. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/notifiers/email/email_message.h"

/* 2026-11-22 16:00:00.123 UTC, a Sunday. */
#define SOME_SUNDAY_MS 1795363200123LL

static const char *const one_to[] = { "ops@example.com", NULL };

static email_message_input base_input(void)
{
	email_message_input in = {
		.from = "parley@mail.example.com",
		.to = one_to,
		.message_id_left = "parley.0123abcd",
		.date_ms = SOME_SUNDAY_MS,
		.kind = "conversation.created",
		.title = "New conversation with Ann",
		.text = "Parcel lost",
		.url = NULL,
	};
	return in;
}

/* The message for in, owned by the caller; fails the test when refused. */
static char *build(const email_message_input *in, size_t *len)
{
	char *msg = NULL;
	size_t n = 0;

	assert_true(email_message_build(in, &msg, &n));
	assert_non_null(msg);
	assert_int_equal(strlen(msg), n);
	if (len != NULL)
		*len = n;
	return msg;
}

/* Every line ends in CRLF, no bare CR or LF, none longer than 78 bytes
 * (quoted-printable lines: 76). */
static void assert_wire_lines(const char *msg)
{
	const char *line = msg;

	while (*line != '\0') {
		const char *crlf = strstr(line, "\r\n");
		assert_non_null(crlf);
		for (const char *p = line; p < crlf; p++)
			assert_true(*p != '\r' && *p != '\n');
		assert_true(crlf - line <= 78);
		line = crlf + 2;
	}
}

/* The body after the blank line ending the header block. */
static const char *body_of(const char *msg)
{
	const char *sep = strstr(msg, "\r\n\r\n");

	assert_non_null(sep);
	return sep + 4;
}

/* Decode quoted-printable (hard CRLF kept, soft breaks joined): what a
 * reader sees. Owned by the caller. */
static char *qp_decode(const char *s)
{
	char *out = malloc(strlen(s) + 1);
	size_t o = 0;

	assert_non_null(out);
	while (*s != '\0') {
		if (s[0] == '=' && s[1] == '\r' && s[2] == '\n') {
			s += 3;
		} else if (s[0] == '=') {
			unsigned v = 0;
			assert_int_equal(sscanf(s + 1, "%2X", &v), 1);
			out[o++] = (char)v;
			s += 3;
		} else {
			out[o++] = *s++;
		}
	}
	out[o] = '\0';
	return out;
}

/* ------------------------------------------------------------------------ */
/* Addresses and dates                                                      */
/* ------------------------------------------------------------------------ */

static void test_address_valid(void **state)
{
	(void)state;
	assert_true(email_address_valid("ops@example.com"));
	assert_true(email_address_valid("a.b+tag@mail-1.example.org"));
	assert_true(email_address_valid("root@localhost"));
	assert_true(email_address_valid("o'brien!#$%&*/=?^_`{|}~-@x.io"));

	assert_false(email_address_valid(NULL));
	assert_false(email_address_valid(""));
	assert_false(email_address_valid("ops"));
	assert_false(email_address_valid("@example.com"));
	assert_false(email_address_valid("ops@"));
	assert_false(email_address_valid("a..b@example.com"));
	assert_false(email_address_valid(".a@example.com"));
	assert_false(email_address_valid("a.@example.com"));
	assert_false(email_address_valid("a@b@example.com"));
	assert_false(email_address_valid("a b@example.com"));
	assert_false(email_address_valid("a@example..com"));
	assert_false(email_address_valid("a@example.com."));
	assert_false(email_address_valid("a@exa_mple.com"));
	assert_false(email_address_valid("Ann <a@example.com>"));
	assert_false(email_address_valid("\"a b\"@example.com"));
	assert_false(email_address_valid("a@[127.0.0.1]"));
	/* Header and SMTP command injection. */
	assert_false(email_address_valid("a@example.com\r\nBcc: x@evil.com"));
	assert_false(email_address_valid("a@example.com>\r\nRCPT TO:<x@evil.com"));
	assert_false(email_address_valid("a@ex\x7f" "ample.com"));
	assert_false(email_address_valid("\xc3\xa9@example.com"));

	char local[65];
	char addr[80];
	memset(local, 'a', 64);
	local[64] = '\0';
	snprintf(addr, sizeof(addr), "%s@x.com", local);
	assert_true(email_address_valid(addr));      /* 64-byte local part */
	snprintf(addr, sizeof(addr), "a%s@x.com", local);
	assert_false(email_address_valid(addr));     /* 65 */

	assert_string_equal(email_address_domain("ops@mail.example.com"), "mail.example.com");
}

static void test_format_date(void **state)
{
	char out[64];

	(void)state;
	assert_true(email_format_date(0, out, sizeof(out)));
	assert_string_equal(out, "Thu, 01 Jan 1970 00:00:00 +0000");
	assert_true(email_format_date(SOME_SUNDAY_MS, out, sizeof(out)));
	assert_string_equal(out, "Sun, 22 Nov 2026 16:00:00 +0000");
	/* 2024-02-29 23:59:59.999 UTC, a Thursday in a leap year. */
	assert_true(email_format_date(1709251199999LL, out, sizeof(out)));
	assert_string_equal(out, "Thu, 29 Feb 2024 23:59:59 +0000");
	assert_false(email_format_date(-1, out, sizeof(out)));
	assert_false(email_format_date(0, out, 10));
}

/* ------------------------------------------------------------------------ */
/* Whole messages                                                           */
/* ------------------------------------------------------------------------ */

static void test_plain_message_byte_for_byte(void **state)
{
	email_message_input in = base_input();
	char *msg;

	(void)state;
	in.url = "https://parley.example/c/42";
	msg = build(&in, NULL);
	assert_string_equal(msg,
		"Date: Sun, 22 Nov 2026 16:00:00 +0000\r\n"
		"From: parley@mail.example.com\r\n"
		"To: ops@example.com\r\n"
		"Subject: New conversation with Ann\r\n"
		"Message-ID: <parley.0123abcd@mail.example.com>\r\n"
		"Auto-Submitted: auto-generated\r\n"
		"X-Parley-Notice-Kind: conversation.created\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n"
		"\r\n"
		"Parcel lost\r\n"
		"\r\n"
		"https://parley.example/c/42\r\n");
	free(msg);
}

static void test_utf8_subject_and_qp_body_byte_for_byte(void **state)
{
	static const char *const two[] = { "ops@example.com", "oncall@example.org", NULL };
	email_message_input in = base_input();
	char *msg;

	(void)state;
	in.to = two;
	in.kind = "bad kind\r\nX: y";   /* not a token: no X-Parley-Notice-Kind */
	in.title = "Nouvelle conversation avec Zo\xc3\xab \xe2\x80\x93 colis perdu, merci de "
	           "r\xc3\xa9pondre vite s'il vous pla\xc3\xaet";
	in.text = "Line one\r\n.hidden\n.\nTrailing space \nx=1\ttab\t\r"
	          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	          "aaaaaaaaaaaaaaaaaaaa \xc3\xbcn\xc3\xaf" "code\n";
	in.url = "https://parley.example/c/1";
	msg = build(&in, NULL);
	assert_string_equal(msg,
		"Date: Sun, 22 Nov 2026 16:00:00 +0000\r\n"
		"From: parley@mail.example.com\r\n"
		"To: ops@example.com, oncall@example.org\r\n"
		/* Encoded-words of whole characters, at most 55 bytes of
		 * encoded text each (the first line is 76 bytes), folded
		 * between them. */
		"Subject: =?UTF-8?Q?Nouvelle_conversation_avec_Zo=C3=AB_=E2=80=93_colis_per?=\r\n"
		" =?UTF-8?Q?du=2C_merci_de_r=C3=A9pondre_vite_s=27il_vous_pla=C3=AE?=\r\n"
		" =?UTF-8?Q?t?=\r\n"
		"Message-ID: <parley.0123abcd@mail.example.com>\r\n"
		"Auto-Submitted: auto-generated\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n"
		"\r\n"
		"Line one\r\n"
		"=2Ehidden\r\n"                   /* a leading dot is never literal */
		"=2E\r\n"
		"Trailing space=20\r\n"           /* trailing white space survives */
		"x=3D1\ttab=09\r\n"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=\r\n"
		"aaaaaaaaaaaaaaaaaaaa =C3=BCn=C3=AFcode\r\n"
		"\r\n"
		"https://parley.example/c/1\r\n");
	assert_wire_lines(msg);
	free(msg);
}

static void test_header_injection_is_impossible(void **state)
{
	email_message_input in = base_input();
	char *msg;

	(void)state;
	in.title = "Hi\r\nBcc: victim@example.net\r\n\r\nforged body";
	msg = build(&in, NULL);
	/* Control characters became spaces; the title stays one header. */
	assert_non_null(strstr(msg, "\r\nSubject: Hi  Bcc: victim@example.net    forged body\r\n"));
	assert_null(strstr(msg, "\r\nBcc:"));
	assert_wire_lines(msg);
	free(msg);

	/* A title that looks like an encoded-word is encoded itself, so a
	 * reader shows it as typed. */
	in.title = "=?UTF-8?B?Zm9v?=";
	msg = build(&in, NULL);
	assert_non_null(strstr(msg, "\r\nSubject: =?UTF-8?Q?=3D=3FUTF-8=3FB=3FZm9v=3F=3D?=\r\n"));
	free(msg);

	/* A body line that is a lone dot cannot end the DATA. */
	in.title = "x";
	in.text = "a\r\n.\r\nb";
	msg = build(&in, NULL);
	assert_non_null(strstr(body_of(msg), "a\r\n=2E\r\nb\r\n"));
	assert_null(strstr(msg, "\r\n.\r\n"));
	free(msg);
}

static void test_long_ascii_subject_is_encoded_and_cut(void **state)
{
	email_message_input in = base_input();
	char title[400];
	char *msg;

	(void)state;
	/* 70 ASCII bytes: "Subject: " + 70 > 78, so it is encoded. */
	memset(title, 'A', 70);
	title[70] = '\0';
	in.title = title;
	msg = build(&in, NULL);
	assert_non_null(strstr(msg, "\r\nSubject: =?UTF-8?Q?"
	                            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA?=\r\n"
	                            " =?UTF-8?Q?AAAAAAAAAAAAAAA?=\r\n"));
	assert_wire_lines(msg);
	free(msg);

	/* 69 bytes fit on one line: 9 + 69 = 78. */
	title[69] = '\0';
	msg = build(&in, NULL);
	assert_non_null(strstr(msg, "\r\nSubject: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"));
	free(msg);

	/* Longer than EMAIL_SUBJECT_BYTES: cut at a character boundary and
	 * marked with U+2026. 199 'B' then a 2-byte character: the cut falls
	 * inside it, so it goes whole. */
	memset(title, 'B', 199);
	strcpy(title + 199, "\xc3\xa9" "CCCC");
	in.title = title;
	msg = build(&in, NULL);
	const char *subject = strstr(msg, "\r\nSubject: ");
	const char *end = strstr(subject, "\r\nMessage-ID: ");
	assert_non_null(end);
	/* The last encoded-word ends with the ellipsis, no é and no C. */
	assert_memory_equal(end - strlen("BBB=E2=80=A6?="), "BBB=E2=80=A6?=", strlen("BBB=E2=80=A6?="));
	assert_null(strstr(subject, "=C3=A9"));
	assert_wire_lines(msg);
	free(msg);
}

static void test_to_is_folded(void **state)
{
	static const char *const many[] = {
		"first.recipient@example.com", "second.recipient@example.com",
		"third.recipient@example.com", "fourth@example.com", NULL
	};
	email_message_input in = base_input();
	char *msg;

	(void)state;
	in.to = many;
	msg = build(&in, NULL);
	assert_non_null(strstr(msg, "\r\nTo: first.recipient@example.com, second.recipient@example.com,\r\n"
	                            " third.recipient@example.com, fourth@example.com\r\n"));
	assert_wire_lines(msg);
	free(msg);
}

static void test_body_round_trips(void **state)
{
	static const char *const texts[] = {
		"", "x", "line\n", "\n\n\n", "a\rb\r\nc\nd", " leading and trailing ",
		"=====", "\xf0\x9f\x98\x80 emoji \xf0\x9f\x98\x80",
		"................................................................................",
		"a sentence long enough to need a soft break somewhere after seventy-five bytes. "
		"and then some more text with = signs and \t tabs \t",
		"ends in space at the soft break boundaryxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx x",
	};
	/* The same texts with every line break as CRLF and a final CRLF. */
	static const char *const seen[] = {
		"\r\n", "x\r\n", "line\r\n", "\r\n\r\n\r\n", "a\r\nb\r\nc\r\nd\r\n",
		" leading and trailing \r\n", "=====\r\n",
		"\xf0\x9f\x98\x80 emoji \xf0\x9f\x98\x80\r\n",
		"................................................................................\r\n",
		"a sentence long enough to need a soft break somewhere after seventy-five bytes. "
		"and then some more text with = signs and \t tabs \t\r\n",
		"ends in space at the soft break boundaryxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx x\r\n",
	};
	email_message_input in = base_input();

	(void)state;
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		char *msg, *decoded;
		in.text = texts[i];
		msg = build(&in, NULL);
		assert_wire_lines(msg);
		for (const char *line = body_of(msg); *line != '\0'; line = strstr(line, "\r\n") + 2) {
			const char *crlf = strstr(line, "\r\n");
			assert_true(crlf - line <= 76);
			assert_true(line[0] != '.');
			/* No white space before a line break (hard or soft). */
			if (crlf > line)
				assert_true(crlf[-1] != ' ' && crlf[-1] != '\t');
		}
		decoded = qp_decode(body_of(msg));
		assert_string_equal(decoded, seen[i]);
		free(decoded);
		free(msg);
	}
}

static void test_unusable_input_is_refused(void **state)
{
	static const char *const bad_to[] = { "ops@example.com", "x\r\n@y", NULL };
	static const char *const no_to[] = { NULL };
	email_message_input in;
	char *msg = NULL;
	size_t len = 0;

	(void)state;
	in = base_input();
	in.from = "Parley <parley@example.com>";
	assert_false(email_message_build(&in, &msg, &len));
	in = base_input();
	in.to = bad_to;
	assert_false(email_message_build(&in, &msg, &len));
	in = base_input();
	in.to = no_to;
	assert_false(email_message_build(&in, &msg, &len));
	in = base_input();
	in.message_id_left = "a>b";
	assert_false(email_message_build(&in, &msg, &len));
	in = base_input();
	in.message_id_left = "";
	assert_false(email_message_build(&in, &msg, &len));
	assert_null(msg);

	/* Missing title: the kind stands in; missing text: an empty body. */
	in = base_input();
	in.title = NULL;
	in.text = NULL;
	msg = build(&in, NULL);
	assert_non_null(strstr(msg, "\r\nSubject: conversation.created\r\n"));
	assert_string_equal(body_of(msg), "\r\n");
	free(msg);
}

static void test_message_id_is_stable(void **state)
{
	email_message_input in = base_input();
	char *a, *b;

	(void)state;
	a = build(&in, NULL);
	in.date_ms += 60000;   /* a retry a minute later */
	b = build(&in, NULL);
	assert_non_null(strstr(a, "\r\nMessage-ID: <parley.0123abcd@mail.example.com>\r\n"));
	assert_non_null(strstr(b, "\r\nMessage-ID: <parley.0123abcd@mail.example.com>\r\n"));
	assert_string_not_equal(a, b);   /* only the Date differs */
	free(a);
	free(b);
}

static void test_reply_outcome(void **state)
{
	(void)state;
	assert_int_equal(email_reply_outcome(250), PARLEY_OK);
	assert_int_equal(email_reply_outcome(221), PARLEY_OK);
	assert_int_equal(email_reply_outcome(0), PARLEY_RETRY);
	assert_int_equal(email_reply_outcome(421), PARLEY_RETRY);
	assert_int_equal(email_reply_outcome(450), PARLEY_RETRY);
	assert_int_equal(email_reply_outcome(451), PARLEY_RETRY);
	assert_int_equal(email_reply_outcome(452), PARLEY_RETRY);
	assert_int_equal(email_reply_outcome(500), PARLEY_FAIL);
	assert_int_equal(email_reply_outcome(535), PARLEY_FAIL);
	assert_int_equal(email_reply_outcome(550), PARLEY_FAIL);
	assert_int_equal(email_reply_outcome(554), PARLEY_FAIL);
	assert_int_equal(email_reply_outcome(354), PARLEY_FAIL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_address_valid),
		cmocka_unit_test(test_format_date),
		cmocka_unit_test(test_plain_message_byte_for_byte),
		cmocka_unit_test(test_utf8_subject_and_qp_body_byte_for_byte),
		cmocka_unit_test(test_header_injection_is_impossible),
		cmocka_unit_test(test_long_ascii_subject_is_encoded_and_cut),
		cmocka_unit_test(test_to_is_folded),
		cmocka_unit_test(test_body_round_trips),
		cmocka_unit_test(test_unusable_input_is_refused),
		cmocka_unit_test(test_message_id_is_stable),
		cmocka_unit_test(test_reply_outcome),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
