/* test_util.c - HMAC-SHA256 against published and computed vectors, hex,
 * constant-time comparison, clocks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>

#include "util.h"

/* Lowercase hex HMAC-SHA256 of a NUL-terminated message. */
static void hmac_hex(const char *key, const void *data, size_t len, char out[65])
{
	unsigned char mac[32];
	util_hmac_sha256(key, strlen(key), data, len, mac);
	util_hex(mac, sizeof(mac), out);
}

/* Base64 HMAC-SHA256, as X signs its webhooks. */
static void hmac_base64(const char *key, const void *data, size_t len, char out[45])
{
	unsigned char mac[32];
	util_hmac_sha256(key, strlen(key), data, len, mac);
	assert_int_equal(EVP_EncodeBlock((unsigned char *)out, mac, sizeof(mac)), 44);
}

/* RFC 4231, test case 2: a key shorter than the block size. */
static void test_hmac_rfc4231_case2(void **state)
{
	char hex[65];
	const char *data = "what do ya want for nothing?";
	hmac_hex("Jefe", data, strlen(data), hex);
	assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

/* RFC 4231, test case 1: 20 bytes of 0x0b, "Hi There". */
static void test_hmac_rfc4231_case1(void **state)
{
	unsigned char key[20];
	memset(key, 0x0b, sizeof(key));
	unsigned char mac[32];
	char hex[65];
	util_hmac_sha256(key, sizeof(key), "Hi There", 8, mac);
	util_hex(mac, sizeof(mac), hex);
	assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

/* The signature vectors of the wire-format notes (section 0.3). */
static const char meta_v1[] =
	"{\"object\":\"page\",\"entry\":[{\"id\":\"PAGE_ID\",\"time\":1458692752478,\"messaging\":"
	"[{\"sender\":{\"id\":\"PSID\"},\"recipient\":{\"id\":\"PAGE_ID\"},\"timestamp\":1458692752478,"
	"\"message\":{\"mid\":\"mid.1457764197618:41d102a3e1ae206a38\",\"text\":\"hello, world!\"}}]}]}";
/* The six-character \u escapes are literal bytes of the body. */
static const char meta_v2[] =
	"{\"object\":\"page\",\"entry\":[{\"id\":\"PAGE_ID\",\"time\":1458692752478,\"messaging\":"
	"[{\"sender\":{\"id\":\"PSID\"},\"recipient\":{\"id\":\"PAGE_ID\"},\"timestamp\":1458692752478,"
	"\"message\":{\"mid\":\"m_1\",\"text\":\"\\u00e4\\u00f6\\u00e5\"}}]}]}";
/* The same JSON with raw UTF-8 for äöå. */
static const char meta_v3[] =
	"{\"object\":\"page\",\"entry\":[{\"id\":\"PAGE_ID\",\"time\":1458692752478,\"messaging\":"
	"[{\"sender\":{\"id\":\"PSID\"},\"recipient\":{\"id\":\"PAGE_ID\"},\"timestamp\":1458692752478,"
	"\"message\":{\"mid\":\"m_1\",\"text\":\"\xc3\xa4\xc3\xb6\xc3\xa5\"}}]}]}";
static const char x_v5[] =
	"{\"for_user_id\":\"930524282358325248\",\"tweet_delete_events\":[{\"status\":"
	"{\"id\":\"1045405559317569537\",\"user_id\":\"930524282358325248\"},"
	"\"timestamp_ms\":\"1432228155593\"}]}";

static void test_hmac_meta_vectors(void **state)
{
	char hex[65];
	/* Lengths as documented: guards against a copying mistake above. */
	assert_int_equal(strlen(meta_v1), 239);
	assert_int_equal(strlen(meta_v2), 211);
	assert_int_equal(strlen(meta_v3), 199);

	hmac_hex("test_app_secret", meta_v1, strlen(meta_v1), hex);
	assert_string_equal(hex, "eec1906d2e5dc1a43a1014f196b421cf9d7b6696ead890eadf906dbbfe03f791");
	hmac_hex("test_app_secret", meta_v2, strlen(meta_v2), hex);
	assert_string_equal(hex, "2158cdb96faeb2e6b120b89985a39c0026b52d193a94ac4f7204bf4d42029fd3");
	/* Re-serialised bytes give a different signature: always hash the raw body. */
	hmac_hex("test_app_secret", meta_v3, strlen(meta_v3), hex);
	assert_string_equal(hex, "6a3a90a3399d1766811dad5d0f386ff2f388919f1a09aca22185dc157006e3b5");
}

static void test_hmac_x_vectors(void **state)
{
	char b64[45];
	hmac_base64("test_consumer_secret", "token", 5, b64);
	assert_string_equal(b64, "cQB9Gn3y9GPSpW3hYmWu8XsaxJVI6brdGVlxu9MhWFc=");
	hmac_base64("test_consumer_secret", "abc123", 6, b64);
	assert_string_equal(b64, "NRSmW12qpe3CEF8MYyBrEyg562XPUUrrQ1iu+H6dKZs=");

	assert_int_equal(strlen(x_v5), 162);
	hmac_base64("test_consumer_secret", x_v5, strlen(x_v5), b64);
	assert_string_equal(b64, "21eUCbwiWnl45N/tJghW4DD9yIiUvrDZdyVxrp/41ZY=");
}

static void test_hmac_empty_message(void **state)
{
	/* An empty body still has a well-defined MAC (HMAC-SHA256("key", "")). */
	char hex[65];
	hmac_hex("key", "", 0, hex);
	assert_string_equal(hex, "5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0");
}

static void test_hex(void **state)
{
	const unsigned char in[] = { 0x00, 0x01, 0x7f, 0x80, 0xab, 0xff };
	char out[2 * sizeof(in) + 1];
	memset(out, 'X', sizeof(out));
	util_hex(in, sizeof(in), out);
	assert_string_equal(out, "00017f80abff");

	char empty[1] = { 'X' };
	util_hex(in, 0, empty);
	assert_string_equal(empty, "");
}

static void test_secure_equals(void **state)
{
	assert_int_equal(util_secure_equals("signature", 9, "signature", 9), 1);
	assert_int_equal(util_secure_equals("signature", 9, "signaturf", 9), 0);  /* last byte */
	assert_int_equal(util_secure_equals("signature", 9, "xignature", 9), 0);  /* first byte */
	assert_int_equal(util_secure_equals("signature", 9, "signatur", 8), 0);   /* length */
	assert_int_equal(util_secure_equals("sig", 3, "signature", 9), 0);        /* prefix */
	assert_int_equal(util_secure_equals("", 0, "", 0), 1);
	assert_int_equal(util_secure_equals("", 0, "a", 1), 0);
	/* Bytes after a NUL still count: this is not a string compare. */
	assert_int_equal(util_secure_equals("a\0b", 3, "a\0c", 3), 0);
}

/* util_secure_equals delegates to CRYPTO_memcmp, whose running time does not
 * depend on where the first difference is; that is OpenSSL's guarantee and
 * cannot be measured reliably here. What is checked is the property a
 * short-circuiting memcmp would still satisfy and a broken one would not:
 * a difference at the first or the last byte is always found, on every call. */
static void test_secure_equals_finds_difference_at_any_position(void **state)
{
	enum { N = 256, ROUNDS = 2000 };
	unsigned char a[N], first[N], last[N];
	for (size_t i = 0; i < N; i++)
		a[i] = (unsigned char)(i * 31 + 7);
	memcpy(first, a, N);
	memcpy(last, a, N);
	first[0] ^= 0x01;
	last[N - 1] ^= 0x80;

	int differs_first = 0, differs_last = 0, same = 0;
	for (int r = 0; r < ROUNDS; r++) {
		differs_first += util_secure_equals(a, N, first, N);
		differs_last += util_secure_equals(a, N, last, N);
		same += util_secure_equals(a, N, a, N);
	}
	assert_int_equal(differs_first, 0);
	assert_int_equal(differs_last, 0);
	assert_int_equal(same, ROUNDS);
}

static void test_now_ms_is_wall_clock(void **state)
{
	int64_t before = (int64_t)time(NULL) * 1000;
	int64_t now = util_now_ms();
	int64_t after = (int64_t)time(NULL) * 1000;
	assert_true(now >= before - 1000);
	assert_true(now <= after + 1000);
}

static void test_mono_us_does_not_go_back(void **state)
{
	uint64_t a = util_mono_us();
	struct timespec ts = { 0, 2 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	uint64_t b = util_mono_us();
	assert_true(b >= a + 2000);
}

static void test_strdup_wrappers(void **state)
{
	assert_null(xstrdup(NULL));
	char *s = xstrdup("parley");
	assert_string_equal(s, "parley");
	free(s);
	s = xstrndup("parley", 3);
	assert_string_equal(s, "par");
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hmac_rfc4231_case2),
		cmocka_unit_test(test_hmac_rfc4231_case1),
		cmocka_unit_test(test_hmac_meta_vectors),
		cmocka_unit_test(test_hmac_x_vectors),
		cmocka_unit_test(test_hmac_empty_message),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_secure_equals),
		cmocka_unit_test(test_secure_equals_finds_difference_at_any_position),
		cmocka_unit_test(test_now_ms_is_wall_clock),
		cmocka_unit_test(test_mono_us_does_not_go_back),
		cmocka_unit_test(test_strdup_wrappers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
