/* settings_probe.h - the settings struct of the settings_probe test plugin
 * (ABI 1.3), shared with the unit tests that look at what the core filled. */
#ifndef PARLEY_TEST_SETTINGS_PROBE_H
#define PARLEY_TEST_SETTINGS_PROBE_H

#include <stdint.h>
#include "parley/parley.h"

/* Every field owned by the core (see parley_host.config_settings). */
typedef struct settings_probe_settings {
	const char *label;             /* string, default "none", 1..32 bytes, printable */
	const char *token;             /* secret, required, 8..64 bytes */
	int64_t timeout_ms;            /* integer, default 5000, 100..60000 */
	int verbose;                   /* boolean, default true */
	const char *endpoint;          /* url, default https://api.example.com/v1 */
	const char *const *tags;       /* string list, default ["a", "b"], each 1..16 bytes,
	                                  printable */
	const char *extra;             /* json, no default */
	const char *auth_user;         /* "auth.user": string in a nested object */
	const char *auth_key;          /* "auth.key": string flagged secret, with a default */
	int64_t port;                  /* integer, default 8080, 1..65535, restart only */
} settings_probe_settings;

/* The instance (what create() stores in *self). */
typedef struct settings_probe {
	const parley_host *host;                  /* owned by the core */
	parley_instance *inst;                    /* owned by the core */
	const settings_probe_settings *settings;  /* borrowed from the core (see above) */
	int reloads;                              /* reloads accepted */
} settings_probe;

#endif
