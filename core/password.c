/* password.c - scrypt password hashes in PHC strings, and the password policy. */
#include "password.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "util.h"

#define PREFIX "$scrypt$"
#define SALT_MIN 8
#define SALT_MAX 64
#define KEY_MIN 16
#define KEY_MAX 64
/* Longer than any string within the bounds: "$scrypt$ln=20,r=16,p=4$",
 * 86 characters of salt, "$", 86 of key. */
#define STORED_MAX 256

#define STR_(x) #x
#define STR(x) STR_(x)

/* The hash password_verify_dummy checks against. Its parameters are pasted
 * from the defines, so it always costs what a current hash costs; its salt and
 * key are fixed and public (a hash of a random password, thrown away): what
 * matters is the work, and the result is never used. */
static const char dummy_hash[] =
	PREFIX "ln=" STR(PASSWORD_SCRYPT_LN) ",r=" STR(PASSWORD_SCRYPT_R)
	",p=" STR(PASSWORD_SCRYPT_P) "$h1VELXaFKOzb5BFsedHu9A$"
	"TWFIYL3SvYIuDp6O/9IZmieOIxQWrdvqTHJtrUNW2RE";

typedef struct phc {
	unsigned ln, r, p;
	unsigned char salt[SALT_MAX];
	size_t salt_len;
	unsigned char key[KEY_MAX];
	size_t key_len;
} phc;

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 without padding; out has room for 4*ceil(len/3)+1. */
static size_t b64_encode(const unsigned char *in, size_t len, char *out)
{
	size_t o = 0, i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
	}
	out[o] = '\0';
	return o;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict decoding of len characters: the alphabet only, no padding, and the
 * bits past the last byte zero, so each byte string has one spelling. */
static bool b64_decode(const char *in, size_t len, unsigned char *out, size_t cap,
                       size_t *outlen)
{
	if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > cap)
		return false;
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64_value(in[i]);
		if (v < 0)
			return false;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1U << bits) - 1;
		}
	}
	if (acc != 0)
		return false;
	*outlen = o;
	return true;
}

/* A decimal in 1..max at *s, no sign, no leading zero; advances *s. */
static bool parse_uint(const char **s, unsigned max, unsigned *out)
{
	const char *p = *s;
	if (*p < '1' || *p > '9')
		return false;
	unsigned v = 0;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > max)
			return false;
		p++;
	}
	*s = p;
	*out = v;
	return true;
}

static bool expect(const char **s, const char *lit)
{
	size_t n = strlen(lit);
	if (strncmp(*s, lit, n) != 0)
		return false;
	*s += n;
	return true;
}

static bool cost_in_bounds(unsigned ln, unsigned r, unsigned p)
{
	if (ln < PASSWORD_LN_MIN || ln > PASSWORD_LN_MAX || r < 1 || r > PASSWORD_R_MAX ||
	    p < 1 || p > PASSWORD_P_MAX)
		return false;
	return ((uint64_t)1 << ln) * r * p <= PASSWORD_WORK_MAX;
}

/* Parse and bound a stored string; false on anything else. */
static bool phc_parse(const char *s, phc *out)
{
	if (s == NULL || strnlen(s, STORED_MAX + 1) > STORED_MAX)
		return false;
	if (!expect(&s, PREFIX "ln=") || !parse_uint(&s, 99, &out->ln) || !expect(&s, ",r=") ||
	    !parse_uint(&s, 999, &out->r) || !expect(&s, ",p=") ||
	    !parse_uint(&s, 999, &out->p) || !expect(&s, "$"))
		return false;
	if (!cost_in_bounds(out->ln, out->r, out->p))
		return false;
	const char *salt_end = strchr(s, '$');
	if (salt_end == NULL)
		return false;
	if (!b64_decode(s, (size_t)(salt_end - s), out->salt, sizeof(out->salt), &out->salt_len) ||
	    out->salt_len < SALT_MIN)
		return false;
	s = salt_end + 1;
	if (!b64_decode(s, strlen(s), out->key, sizeof(out->key), &out->key_len) ||
	    out->key_len < KEY_MIN)
		return false;
	return true;
}

/* scrypt's memory as OpenSSL counts it against maxmem: V is 128*r*(N+2)
 * bytes, B is 128*r*p. At the default cost that is 33,557,504 bytes, just
 * over OpenSSL's default limit of 32 MiB, so the limit is always passed. */
static uint64_t scrypt_mem(unsigned ln, unsigned r, unsigned p)
{
	return 128ULL * r * (((uint64_t)1 << ln) + 2) + 128ULL * r * p;
}

static bool scrypt_key(const char *password, const unsigned char *salt, size_t salt_len,
                       unsigned ln, unsigned r, unsigned p, unsigned char *key, size_t key_len)
{
	return EVP_PBE_scrypt(password, strlen(password), salt, salt_len, (uint64_t)1 << ln, r,
	                      p, scrypt_mem(ln, r, p), key, key_len) == 1;
}

bool password_hash_with_cost(const char *password, unsigned ln, unsigned r, unsigned p,
                             char *out, size_t outlen)
{
	if (out != NULL && outlen > 0)
		out[0] = '\0';
	if (password == NULL || out == NULL || outlen < PASSWORD_HASH_MAX ||
	    !cost_in_bounds(ln, r, p))
		return false;
	unsigned char salt[PASSWORD_SALT_BYTES], key[PASSWORD_KEY_BYTES];
	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return false;
	if (!scrypt_key(password, salt, sizeof(salt), ln, r, p, key, sizeof(key))) {
		OPENSSL_cleanse(key, sizeof(key));
		return false;
	}
	char salt64[4 * ((PASSWORD_SALT_BYTES + 2) / 3) + 1];
	char key64[4 * ((PASSWORD_KEY_BYTES + 2) / 3) + 1];
	b64_encode(salt, sizeof(salt), salt64);
	b64_encode(key, sizeof(key), key64);
	OPENSSL_cleanse(key, sizeof(key));
	int n = snprintf(out, outlen, PREFIX "ln=%u,r=%u,p=%u$%s$%s", ln, r, p, salt64, key64);
	OPENSSL_cleanse(key64, sizeof(key64));
	if (n < 0 || (size_t)n >= outlen) {
		out[0] = '\0';
		return false;
	}
	return true;
}

bool password_hash(const char *password, char *out, size_t outlen)
{
	return password_hash_with_cost(password, PASSWORD_SCRYPT_LN, PASSWORD_SCRYPT_R,
	                               PASSWORD_SCRYPT_P, out, outlen);
}

bool password_verify(const char *password, const char *stored, bool *match)
{
	*match = false;
	phc h;
	if (password == NULL || !phc_parse(stored, &h))
		return false;
	unsigned char key[KEY_MAX];
	bool ok = scrypt_key(password, h.salt, h.salt_len, h.ln, h.r, h.p, key, h.key_len);
	if (ok)
		*match = CRYPTO_memcmp(key, h.key, h.key_len) == 0;
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(&h, sizeof(h));
	return ok;
}

void password_verify_dummy(const char *password)
{
	bool match;
	/* The outcome is meaningless; only the time spent counts. */
	bool ran = password_verify(password != NULL ? password : "", dummy_hash, &match);
	(void)ran;
}

/* The code point of the valid UTF-8 sequence at s (n > 0 bytes left), its
 * length in *len; false on an invalid sequence. */
static bool utf8_next(const unsigned char *s, size_t n, uint32_t *cp, size_t *len)
{
	unsigned char c = s[0];
	size_t need;
	uint32_t v, min;
	if (c < 0x80) {
		*cp = c;
		*len = 1;
		return true;
	} else if (c >= 0xc2 && c <= 0xdf) {
		need = 2, v = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3, v = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4, v = c & 0x07, min = 0x10000;
	} else {
		return false;  /* a continuation byte, C0/C1 (overlong), F5.. */
	}
	if (n < need)
		return false;
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return false;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return false;
	*cp = v;
	*len = need;
	return true;
}

/* Unicode's White_Space property (PropList.txt), which is short and stable. */
static bool is_white_space(uint32_t cp)
{
	return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 ||
	       cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
	       cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

bool password_acceptable(const char *pw, char *why, size_t whylen)
{
	if (pw == NULL) {
		util_set_err(why, whylen, "no password given");
		return false;
	}
	size_t len = strnlen(pw, PASSWORD_MAX_BYTES + 1);
	if (len < PASSWORD_MIN_BYTES) {
		util_set_err(why, whylen, "too short: a password needs at least %d bytes",
		             PASSWORD_MIN_BYTES);
		return false;
	}
	if (len > PASSWORD_MAX_BYTES) {
		util_set_err(why, whylen, "too long: a password may have at most %d bytes",
		             PASSWORD_MAX_BYTES);
		return false;
	}
	const unsigned char *s = (const unsigned char *)pw;
	bool visible = false;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n;
		if (!utf8_next(s + i, len - i, &cp, &n)) {
			util_set_err(why, whylen, "not valid UTF-8");
			return false;
		}
		if (!is_white_space(cp))
			visible = true;
		i += n;
	}
	if (!visible) {
		util_set_err(why, whylen, "only whitespace");
		return false;
	}
	return true;
}
