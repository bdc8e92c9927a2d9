/* test_password.c - scrypt PHC hashes (format, salt, verification, bounds on
 * stored strings), the dummy check's cost, the password policy, and the
 * worker thread (results on the loop, FIFO, queue bound, stop semantics).
 *
 * Most hashes here use the cheapest cost the bounds admit (ln=10), which
 * password_verify reads from the string; the production cost runs in a few
 * tests (hash, verify, a known answer, dummy, the worker's hash and stop),
 * and one of them logs how long a production hash takes on this machine. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>

#include "password.h"
#include "password_worker.h"

#define RIGHT "correct horse battery staple"
#define WRONG "correct horse battery stapler"
/* Made with Python's hashlib.scrypt (n=1024, r=8, p=1, salt bytes 0..15,
 * 32-byte key) and base64 without padding: the PHC spelling other tools use. */
#define KNOWN "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$" \
	"mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S/AXJlRU"
#define KNOWN_SALT "AAECAwQFBgcICQoLDA0ODw"
#define KNOWN_KEY "mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S/AXJlRU"

static double thread_cpu_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static double wall_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void cheap_hash(const char *pw, char out[PASSWORD_HASH_MAX])
{
	assert_true(password_hash_with_cost(pw, PASSWORD_LN_MIN, 8, 1, out, PASSWORD_HASH_MAX));
}

/* verify must refuse stored: false, and match false even if it was true. */
static void assert_refused(const char *stored)
{
	bool match = true;
	if (password_verify(RIGHT, stored, &match))
		fail_msg("accepted: %s", stored);
	assert_false(match);
}

/* ---------------------------------------------------------------- hashing */

static void test_production_hash_and_verify(void **state)
{
	char h[PASSWORD_HASH_MAX];
	double wall = wall_ms(), cpu = thread_cpu_ms();
	assert_true(password_hash(RIGHT, h, sizeof(h)));
	cpu = thread_cpu_ms() - cpu;
	wall = wall_ms() - wall;
	print_message("[ INFO     ] one production hash (ln=%d r=%d p=%d): %.0f ms CPU, %.0f ms wall\n",
	              PASSWORD_SCRYPT_LN, PASSWORD_SCRYPT_R, PASSWORD_SCRYPT_P, cpu, wall);
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "$scrypt$ln=%d,r=%d,p=%d$", PASSWORD_SCRYPT_LN,
	         PASSWORD_SCRYPT_R, PASSWORD_SCRYPT_P);
	assert_memory_equal(h, prefix, strlen(prefix));
	/* 16-byte salt: 22 characters; 32-byte key: 43; no padding. */
	assert_int_equal(strlen(h), strlen(prefix) + 22 + 1 + 43);
	assert_null(strchr(h + strlen(prefix), '='));
	bool match = false;
	assert_true(password_verify(RIGHT, h, &match));
	assert_true(match);
	assert_true(password_verify(WRONG, h, &match));
	assert_false(match);
}

/* Go's golang.org/x/crypto/scrypt example (an implementation of its own, not
 * OpenSSL): "some password", salt c8 28 f2 58 a7 6a ad 7b, N=2^15, r=8, p=1,
 * 32 bytes. Our production cost computes standard scrypt. */
#define GO_EXAMPLE "$scrypt$ln=15,r=8,p=1$yCjyWKdqrXs$lGnMz8io0AUkfzn6Pls1qX20Vs7PGN6sbYQ2TQgY12M"

static void test_known_answer(void **state)
{
	bool match = false;
	assert_true(password_verify("some password", GO_EXAMPLE, &match));
	assert_true(match);
	assert_true(password_verify(RIGHT, KNOWN, &match));
	assert_true(match);
	assert_true(password_verify(WRONG, KNOWN, &match));
	assert_false(match);
	assert_true(password_verify("", KNOWN, &match));
	assert_false(match);
}

static void test_cheap_hash_verifies(void **state)
{
	char h[PASSWORD_HASH_MAX];
	cheap_hash(RIGHT, h);
	assert_memory_equal(h, "$scrypt$ln=10,r=8,p=1$", 22);
	bool match = false;
	assert_true(password_verify(RIGHT, h, &match));
	assert_true(match);
	assert_true(password_verify(WRONG, h, &match));
	assert_false(match);
	/* Bytes, not characters: a password is compared exactly. */
	assert_true(password_verify(RIGHT " ", h, &match));
	assert_false(match);
}

static void test_two_hashes_differ(void **state)
{
	char a[PASSWORD_HASH_MAX], b[PASSWORD_HASH_MAX];
	cheap_hash(RIGHT, a);
	cheap_hash(RIGHT, b);
	assert_string_not_equal(a, b);
	/* The salts differ, hence the keys. */
	const char *sa = a + 22, *sb = b + 22;
	assert_memory_not_equal(sa, sb, 22);
	assert_string_not_equal(strrchr(a, '$'), strrchr(b, '$'));
	bool match = false;
	assert_true(password_verify(RIGHT, b, &match));
	assert_true(match);
}

static void test_hash_refuses_bad_arguments(void **state)
{
	char h[PASSWORD_HASH_MAX];
	strcpy(h, "junk");
	assert_false(password_hash(NULL, h, sizeof(h)));
	assert_string_equal(h, "");
	assert_false(password_hash(RIGHT, NULL, sizeof(h)));
	strcpy(h, "junk");
	assert_false(password_hash(RIGHT, h, PASSWORD_HASH_MAX - 1));
	assert_string_equal(h, "");
	/* A cost outside what verify accepts is never written. */
	assert_false(password_hash_with_cost(RIGHT, 9, 8, 1, h, sizeof(h)));
	assert_false(password_hash_with_cost(RIGHT, 21, 1, 1, h, sizeof(h)));
	assert_false(password_hash_with_cost(RIGHT, 10, 0, 1, h, sizeof(h)));
	assert_false(password_hash_with_cost(RIGHT, 10, 17, 1, h, sizeof(h)));
	assert_false(password_hash_with_cost(RIGHT, 10, 8, 0, h, sizeof(h)));
	assert_false(password_hash_with_cost(RIGHT, 10, 8, 5, h, sizeof(h)));
	assert_false(password_hash_with_cost(RIGHT, 18, 8, 1, h, sizeof(h)));  /* work 2^21 */
	assert_string_equal(h, "");
}

/* --------------------------------------------------------- stored strings */

static void test_verify_refuses_malformed(void **state)
{
	static const char *bad[] = {
		"",
		"scrypt$ln=10,r=8,p=1$" KNOWN_SALT "$" KNOWN_KEY,          /* no leading $ */
		"$scrypy$ln=10,r=8,p=1$" KNOWN_SALT "$" KNOWN_KEY,         /* algorithm */
		"$argon2id$v=19$m=65536,t=3,p=4$" KNOWN_SALT "$" KNOWN_KEY,
		"$SCRYPT$ln=10,r=8,p=1$" KNOWN_SALT "$" KNOWN_KEY,
		"$scrypt$" KNOWN_SALT "$" KNOWN_KEY,                        /* no parameters */
		"$scrypt$ln=,r=8,p=1$" KNOWN_SALT "$" KNOWN_KEY,            /* empty ln */
		"$scrypt$ln=010,r=8,p=1$" KNOWN_SALT "$" KNOWN_KEY,         /* leading zero */
		"$scrypt$ln=+10,r=8,p=1$" KNOWN_SALT "$" KNOWN_KEY,         /* sign */
		"$scrypt$ln=1a,r=8,p=1$" KNOWN_SALT "$" KNOWN_KEY,
		"$scrypt$ln= 10,r=8,p=1$" KNOWN_SALT "$" KNOWN_KEY,
		"$scrypt$r=8,ln=10,p=1$" KNOWN_SALT "$" KNOWN_KEY,          /* order */
		"$scrypt$ln=10,p=1$" KNOWN_SALT "$" KNOWN_KEY,              /* r missing */
		"$scrypt$ln=10,r=8$" KNOWN_SALT "$" KNOWN_KEY,              /* p missing */
		"$scrypt$ln=10,r=8,p=1,x=2$" KNOWN_SALT "$" KNOWN_KEY,      /* extra */
		"$scrypt$ln=10;r=8;p=1$" KNOWN_SALT "$" KNOWN_KEY,
		"$scrypt$ln=10,r=,p=1$" KNOWN_SALT "$" KNOWN_KEY,
		"$scrypt$ln=10,r=8,p=$" KNOWN_SALT "$" KNOWN_KEY,
		"$scrypt$ln=10,r=8,p=1",                                    /* no salt, no key */
		"$scrypt$ln=10,r=8,p=1$" KNOWN_SALT,                        /* no key */
		"$scrypt$ln=10,r=8,p=1$" KNOWN_SALT "$",                    /* empty key */
		"$scrypt$ln=10,r=8,p=1$$" KNOWN_KEY,                        /* empty salt */
		"$scrypt$ln=10,r=8,p=1$" KNOWN_SALT "==$" KNOWN_KEY,        /* padded salt */
		"$scrypt$ln=10,r=8,p=1$" KNOWN_SALT "$" KNOWN_KEY "=",      /* padded key */
		"$scrypt$ln=10,r=8,p=1$AAECAwQFBgcI*QoLDA0ODw$" KNOWN_KEY,  /* not base64 */
		"$scrypt$ln=10,r=8,p=1$AAECAwQFBgcI-QoLDA0ODw$" KNOWN_KEY,  /* base64url */
		"$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODx$" KNOWN_KEY,  /* stray low bits */
		"$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODwAAA$" KNOWN_KEY, /* 4n+1 */
		"$scrypt$ln=10,r=8,p=1$AAECAwQFBg$" KNOWN_KEY,              /* salt 7 bytes */
		"$scrypt$ln=10,r=8,p=1$" KNOWN_SALT "$mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S/AXJlRV",
		"$scrypt$ln=10,r=8,p=1$" KNOWN_SALT "$mp90zEQd5XGh*Ev4WArVH4Z0XRSzkGWtJK2S/AXJlRU",
		"$scrypt$ln=10,r=8,p=1$" KNOWN_SALT "$mp90zEQd5XGhjEv4WArV",   /* key 15 bytes */
		"$scrypt$ln=10,r=8,p=1$" KNOWN_SALT "$" KNOWN_KEY "$",      /* extra field */
		"$scrypt$ln=10,r=8,p=1$" KNOWN_SALT "$" KNOWN_KEY "$x",
		"$scrypt$ln=10,r=8,p=1$" KNOWN_SALT "$" KNOWN_KEY " ",      /* trailing space */
		"$scrypt$ln=10,r=8,p=1$" KNOWN_SALT "$" KNOWN_KEY "\n",
		" $scrypt$ln=10,r=8,p=1$" KNOWN_SALT "$" KNOWN_KEY,
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_refused(bad[i]);
	assert_refused(NULL);

	/* Salt and key beyond 64 bytes (88 characters is 66 bytes). */
	char s[400], long64[89];
	memset(long64, 'A', 88);
	long64[88] = '\0';
	snprintf(s, sizeof(s), "$scrypt$ln=10,r=8,p=1$%s$%s", long64, KNOWN_KEY);
	assert_refused(s);
	snprintf(s, sizeof(s), "$scrypt$ln=10,r=8,p=1$%s$%s", KNOWN_SALT, long64);
	assert_refused(s);
	/* Longer than any legal string. */
	memset(s, 'A', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	memcpy(s, "$scrypt$ln=10,r=8,p=1$" KNOWN_SALT "$", 45);
	assert_refused(s);

	/* A password NULL is malformed input too. */
	bool match = true;
	assert_false(password_verify(NULL, KNOWN, &match));
	assert_false(match);
}

static void test_verify_refuses_out_of_range(void **state)
{
	static const char *params[] = {
		"ln=9,r=8,p=1", "ln=21,r=1,p=1", "ln=99,r=8,p=1", "ln=100,r=8,p=1",
		"ln=10,r=0,p=1", "ln=10,r=17,p=1", "ln=10,r=4294967297,p=1",
		"ln=10,r=8,p=0", "ln=10,r=8,p=5", "ln=10,r=8,p=99999999999999999999",
		"ln=18,r=8,p=1",  /* within each bound, 2^21 work, 256 MiB */
		"ln=17,r=8,p=2",
		"ln=20,r=16,p=4", /* the worst of each: 2 GiB, minutes */
	};
	char s[256];
	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
		snprintf(s, sizeof(s), "$scrypt$%s$%s$%s", params[i], KNOWN_SALT, KNOWN_KEY);
		assert_refused(s);
	}
	/* At the edges, and a wrong key: the check runs, no match. */
	static const char *edges[] = {"ln=10,r=1,p=1", "ln=10,r=16,p=4"};
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		snprintf(s, sizeof(s), "$scrypt$%s$%s$%s", edges[i], KNOWN_SALT, KNOWN_KEY);
		bool match = true;
		assert_true(password_verify(RIGHT, s, &match));
		assert_false(match);
	}
}

/* The dummy costs what a check against a current hash costs (within a wide
 * margin: the machine is shared), not what a cheap or a refused one does. */
static void test_dummy_costs_a_real_verify(void **state)
{
	char h[PASSWORD_HASH_MAX];
	assert_true(password_hash(RIGHT, h, sizeof(h)));
	bool match;
	double t0 = thread_cpu_ms();
	assert_true(password_verify(WRONG, h, &match));
	double real = thread_cpu_ms() - t0;
	t0 = thread_cpu_ms();
	password_verify_dummy(WRONG);
	double dummy = thread_cpu_ms() - t0;
	print_message("[ INFO     ] verify %.0f ms CPU, dummy verify %.0f ms CPU\n", real, dummy);
	assert_true(dummy > real / 2 && dummy < real * 2);
	password_verify_dummy(NULL);  /* no crash */
}

/* ----------------------------------------------------------------- policy */

static void assert_unacceptable(const char *pw, const char *reason)
{
	char why[128] = "";
	if (password_acceptable(pw, why, sizeof(why)))
		fail_msg("accepted a password (%zu bytes)", pw ? strlen(pw) : 0);
	if (strstr(why, reason) == NULL)
		fail_msg("reason \"%s\", expected \"%s\"", why, reason);
	if (pw != NULL && strlen(pw) >= 4 && strstr(why, pw) != NULL)
		fail_msg("the reason quotes the password");
}

static void test_policy(void **state)
{
	char why[128];
	assert_true(password_acceptable("twelve bytes", why, sizeof(why)));
	assert_true(password_acceptable("  padded pw  ", NULL, 0));
	assert_true(password_acceptable("p\xc3\xa4ssw\xc3\xb6rd \xc3\xbcn\xc3\xaf", why, sizeof(why)));
	assert_true(password_acceptable("\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", why,
	                                sizeof(why)));  /* 4 euro signs: 12 bytes */
	assert_true(password_acceptable("\xf0\x9f\x94\x91\xf0\x9f\x94\x91\xf0\x9f\x94\x91",
	                                why, sizeof(why)));  /* 3 keys: 12 bytes, 4-byte UTF-8 */
	assert_unacceptable(NULL, "no password");
	assert_unacceptable("", "too short");
	assert_unacceptable("eleven byte", "too short");
	assert_unacceptable("\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", "too short");

	char big[PASSWORD_MAX_BYTES + 2];
	memset(big, 'x', sizeof(big));
	big[PASSWORD_MAX_BYTES] = '\0';
	assert_true(password_acceptable(big, why, sizeof(why)));
	big[PASSWORD_MAX_BYTES] = 'x';
	big[PASSWORD_MAX_BYTES + 1] = '\0';
	assert_unacceptable(big, "too long");

	assert_unacceptable("password \x80 tail", "UTF-8");         /* lone continuation */
	assert_unacceptable("password \xc0\xaf tail", "UTF-8");     /* overlong '/' */
	assert_unacceptable("password \xe0\x80\xaf tail", "UTF-8"); /* overlong, 3 bytes */
	assert_unacceptable("password \xed\xa0\x80 tail", "UTF-8"); /* surrogate */
	assert_unacceptable("password \xf4\x90\x80\x80 x", "UTF-8"); /* beyond U+10FFFF */
	assert_unacceptable("password \xff tail", "UTF-8");
	assert_unacceptable("password tail\xe2\x82", "UTF-8");      /* cut at the end */
	assert_unacceptable("password \xc3 tail", "UTF-8");         /* cut in the middle */

	assert_unacceptable("            ", "whitespace");
	assert_unacceptable(" \t\n\r\v\f \t\n\r\v\f", "whitespace");
	assert_unacceptable("\xc2\xa0\xc2\xa0\xc2\xa0\xc2\xa0\xc2\xa0\xc2\xa0", "whitespace");
	assert_unacceptable("\xe3\x80\x80\xe3\x80\x80\xe3\x80\x80\xe3\x80\x80", "whitespace");
	assert_unacceptable("\xe2\x80\x83\xe2\x80\xa8\xe2\x80\xaf\xe2\x81\x9f", "whitespace");
	assert_true(password_acceptable("           .", why, sizeof(why)));
	/* A zero-width space is not White_Space: it counts as content. */
	assert_true(password_acceptable("\xe2\x80\x8b\xe2\x80\x8b\xe2\x80\x8b\xe2\x80\x8b", why,
	                                sizeof(why)));
}

/* ----------------------------------------------------------------- worker */

typedef struct result {
	int calls;
	int order;        /* the how-many-th callback it was */
	bool ok, match;
	char hash[PASSWORD_HASH_MAX];
} result;

static int delivered;  /* callbacks so far, across a test */

static void on_verify(bool ok, bool match, void *arg)
{
	result *r = arg;
	r->calls++;
	r->order = delivered++;
	r->ok = ok;
	r->match = match;
}

static void on_hash(bool ok, const char *hash, void *arg)
{
	result *r = arg;
	r->calls++;
	r->order = delivered++;
	r->ok = ok;
	if (ok) {
		assert_non_null(hash);
		snprintf(r->hash, sizeof(r->hash), "%s", hash);
	} else {
		assert_null(hash);
	}
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
}

/* Run base until `want` callbacks arrived (fails after 60 s). */
static void run_until(struct event_base *base, int want)
{
	struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
	struct timeval tv = {0, 50 * 1000};
	assert_int_equal(event_add(t, &tv), 0);
	double deadline = wall_ms() + 60e3;
	while (delivered < want) {
		if (wall_ms() > deadline)
			fail_msg("%d of %d callbacks after 60 s", delivered, want);
		event_base_loop(base, EVLOOP_ONCE);
	}
	event_free(t);
}

static int setup_base(void **state)
{
	delivered = 0;
	*state = event_base_new();
	return *state == NULL ? -1 : 0;
}

static int teardown_base(void **state)
{
	password_worker_stop();
	event_base_free(*state);
	return 0;
}

static void test_worker_refuses_when_not_running(void **state)
{
	struct event_base *base = *state;
	result r = {0};
	assert_false(password_worker_verify(RIGHT, KNOWN, on_verify, &r));
	assert_false(password_worker_hash(RIGHT, on_hash, &r));
	password_worker_stop();  /* not running: nothing */
	assert_true(password_worker_start(base));
	assert_false(password_worker_start(base));  /* one worker */
	assert_false(password_worker_verify(RIGHT, KNOWN, NULL, &r));
	assert_false(password_worker_verify(NULL, KNOWN, on_verify, &r));
	assert_false(password_worker_hash(RIGHT, NULL, &r));
	password_worker_stop();
	assert_false(password_worker_verify(RIGHT, KNOWN, on_verify, &r));
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(r.calls, 0);
	assert_int_equal(password_worker_outstanding(), 0);
}

static void test_worker_verifies_in_order(void **state)
{
	struct event_base *base = *state;
	char cheap[PASSWORD_HASH_MAX];
	cheap_hash(RIGHT, cheap);
	assert_true(password_worker_start(base));
	enum { N = 12 };
	result r[N];
	memset(r, 0, sizeof(r));
	for (int i = 0; i < N - 2; i++)
		assert_true(password_worker_verify(i % 2 ? WRONG : RIGHT, i % 3 ? cheap : KNOWN,
		                                   on_verify, &r[i]));
	assert_true(password_worker_verify(RIGHT, "$scrypt$ln=9,r=8,p=1$x$y", on_verify, &r[N - 2]));
	assert_true(password_worker_verify(RIGHT, NULL, on_verify, &r[N - 1]));  /* dummy */
	/* Never from inside the submitting call. */
	assert_int_equal(delivered, 0);
	assert_int_equal(password_worker_outstanding(), N);
	run_until(base, N);
	for (int i = 0; i < N - 2; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].order, i);
		assert_true(r[i].ok);
		assert_int_equal(r[i].match, i % 2 == 0);
	}
	assert_int_equal(r[N - 2].calls, 1);
	assert_false(r[N - 2].ok);
	assert_false(r[N - 2].match);
	assert_int_equal(r[N - 1].calls, 1);
	assert_true(r[N - 1].ok);
	assert_false(r[N - 1].match);
	assert_int_equal(password_worker_outstanding(), 0);
	password_worker_stop();
}

static void test_worker_hashes(void **state)
{
	struct event_base *base = *state;
	assert_true(password_worker_start(base));
	result r = {0};
	assert_true(password_worker_hash(RIGHT, on_hash, &r));
	run_until(base, 1);
	assert_int_equal(r.calls, 1);
	assert_true(r.ok);
	bool match = false;
	assert_true(password_verify(RIGHT, r.hash, &match));
	assert_true(match);
	password_worker_stop();
}

static void test_worker_queue_full(void **state)
{
	struct event_base *base = *state;
	char cheap[PASSWORD_HASH_MAX];
	assert_true(password_hash_with_cost(RIGHT, PASSWORD_LN_MIN, 1, 1, cheap, sizeof(cheap)));
	assert_true(password_worker_start(base));
	static result r[PASSWORD_WORKER_QUEUE_MAX + 1];
	memset(r, 0, sizeof(r));
	for (int i = 0; i < PASSWORD_WORKER_QUEUE_MAX; i++)
		assert_true(password_worker_verify(RIGHT, cheap, on_verify, &r[i]));
	/* Results not yet delivered still count: the loop has not run. */
	result extra = {0};
	assert_false(password_worker_verify(RIGHT, cheap, on_verify, &extra));
	assert_false(password_worker_verify(RIGHT, NULL, on_verify, &extra));
	assert_false(password_worker_hash(RIGHT, on_hash, &extra));
	assert_int_equal(password_worker_outstanding(), PASSWORD_WORKER_QUEUE_MAX);
	run_until(base, PASSWORD_WORKER_QUEUE_MAX);
	for (int i = 0; i < PASSWORD_WORKER_QUEUE_MAX; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_true(r[i].ok && r[i].match);
	}
	assert_int_equal(extra.calls, 0);
	/* Room again. */
	assert_true(password_worker_verify(RIGHT, cheap, on_verify, &r[PASSWORD_WORKER_QUEUE_MAX]));
	run_until(base, PASSWORD_WORKER_QUEUE_MAX + 1);
	assert_true(r[PASSWORD_WORKER_QUEUE_MAX].match);
	password_worker_stop();
}

/* Stop with production-cost jobs queued: every callback runs once, before
 * stop returns; the jobs never started get ok = false. */
static void test_worker_stop_settles_pending(void **state)
{
	struct event_base *base = *state;
	assert_true(password_worker_start(base));
	enum { N = 6 };
	result r[N + 1];
	memset(r, 0, sizeof(r));
	for (int i = 0; i < N; i++)
		assert_true(password_worker_verify(RIGHT, NULL, on_verify, &r[i]));
	assert_true(password_worker_hash(RIGHT, on_hash, &r[N]));
	password_worker_stop();
	assert_int_equal(delivered, N + 1);
	assert_int_equal(password_worker_outstanding(), 0);
	int cancelled = 0;
	for (int i = 0; i <= N; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].order, i);
		assert_false(r[i].match);
		if (!r[i].ok)
			cancelled++;
		else
			assert_true(i < N);  /* the hash is last: started only if all were */
	}
	/* Seven jobs of over 100 ms each cannot all have run in the microseconds
	 * between submission and stop. */
	assert_true(cancelled > 0);
	/* Ok results form a prefix: the worker went in order. */
	for (int i = 1; i <= N; i++)
		assert_true(r[i - 1].ok || !r[i].ok);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(delivered, N + 1);

	/* Stopped means stopped; it can start again. */
	result again = {0};
	assert_false(password_worker_verify(RIGHT, KNOWN, on_verify, &again));
	assert_true(password_worker_start(base));
	assert_true(password_worker_verify(RIGHT, KNOWN, on_verify, &again));
	run_until(base, N + 2);
	assert_true(again.ok && again.match);
	password_worker_stop();
}

/* A callback that stops the worker, and one that submits during the stop. */
static result stop_r[4];
static bool resubmit_refused;

static void stop_from_callback(bool ok, bool match, void *arg)
{
	on_verify(ok, match, arg);
	password_worker_stop();
}

static void submit_from_callback(bool ok, bool match, void *arg)
{
	on_verify(ok, match, arg);
	resubmit_refused = !password_worker_verify(RIGHT, KNOWN, on_verify, &stop_r[3]);
}

static void test_worker_stop_from_callback(void **state)
{
	struct event_base *base = *state;
	memset(stop_r, 0, sizeof(stop_r));
	assert_true(password_worker_start(base));
	assert_true(password_worker_verify(RIGHT, KNOWN, stop_from_callback, &stop_r[0]));
	assert_true(password_worker_verify(RIGHT, NULL, submit_from_callback, &stop_r[1]));
	assert_true(password_worker_verify(RIGHT, NULL, on_verify, &stop_r[2]));
	run_until(base, 3);
	assert_int_equal(delivered, 3);
	assert_true(stop_r[0].ok && stop_r[0].match);
	for (int i = 0; i < 3; i++)
		assert_int_equal(stop_r[i].calls, 1);
	assert_true(resubmit_refused);
	assert_int_equal(stop_r[3].calls, 0);
	assert_int_equal(password_worker_outstanding(), 0);
	/* The loop is quiet: the wake event is gone with the worker. */
	assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 1);
}

/* A callback may submit the next job (a login that rehashes, say). */
static result chain_r[2];

static void chain_next(bool ok, bool match, void *arg)
{
	on_verify(ok, match, arg);
	assert_true(password_worker_verify(WRONG, KNOWN, on_verify, &chain_r[1]));
}

static void test_worker_callback_submits(void **state)
{
	struct event_base *base = *state;
	memset(chain_r, 0, sizeof(chain_r));
	assert_true(password_worker_start(base));
	assert_true(password_worker_verify(RIGHT, KNOWN, chain_next, &chain_r[0]));
	run_until(base, 2);
	assert_true(chain_r[0].ok && chain_r[0].match);
	assert_true(chain_r[1].ok && !chain_r[1].match);
	password_worker_stop();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_production_hash_and_verify),
		cmocka_unit_test(test_known_answer),
		cmocka_unit_test(test_cheap_hash_verifies),
		cmocka_unit_test(test_two_hashes_differ),
		cmocka_unit_test(test_hash_refuses_bad_arguments),
		cmocka_unit_test(test_verify_refuses_malformed),
		cmocka_unit_test(test_verify_refuses_out_of_range),
		cmocka_unit_test(test_dummy_costs_a_real_verify),
		cmocka_unit_test(test_policy),
		cmocka_unit_test_setup_teardown(test_worker_refuses_when_not_running, setup_base,
		                                teardown_base),
		cmocka_unit_test_setup_teardown(test_worker_verifies_in_order, setup_base,
		                                teardown_base),
		cmocka_unit_test_setup_teardown(test_worker_hashes, setup_base, teardown_base),
		cmocka_unit_test_setup_teardown(test_worker_queue_full, setup_base, teardown_base),
		cmocka_unit_test_setup_teardown(test_worker_stop_settles_pending, setup_base,
		                                teardown_base),
		cmocka_unit_test_setup_teardown(test_worker_stop_from_callback, setup_base,
		                                teardown_base),
		cmocka_unit_test_setup_teardown(test_worker_callback_submits, setup_base,
		                                teardown_base),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
