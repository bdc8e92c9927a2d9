/* host_api.h - the function table the core hands to plugins (parley_host),
 * and the core-side objects behind its opaque handles. */
#ifndef PARLEY_CORE_HOST_API_H
#define PARLEY_CORE_HOST_API_H

#include <stdbool.h>
#include <event2/event.h>
#include <jansson.h>
#include "parley/parley.h"
#include "http_server.h"

struct loaded_plugin;

/* One configured instance of a plugin. */
struct parley_instance {
	char *name;                      /* instance name from the config */
	char *component;                 /* "channel/NAME" for logs */
	parley_kind kind;
	struct loaded_plugin *plugin;    /* borrowed from the plugin set */
	const parley_plugin_descriptor *desc;
	void *self;                      /* the plugin's state from create() */
	char *cfg_file;                  /* for config_error messages */
	char *cfg_path;                  /* "channels[2]" */
	char *config_error;              /* first config_error() message, or NULL */
	char *metric_labels;             /* instance="NAME" */
	void *settings;                  /* the filled settings struct (ABI 1.3) or NULL;
	                                    owned here, handed to the plugin read-only */
};

/* A validated instance config as the plugin sees it. */
struct parley_config {
	json_t *obj;                     /* borrowed from cfg_instance */
	const void *settings;            /* borrowed: the struct for config_settings, or NULL */
	char **owned;                    /* serialized JSON values handed out */
	size_t n_owned;
};

/* Release what a config handle handed out (after create/reload returns). */
void host_config_release(struct parley_config *pc);

const parley_host *host_api_table(void);
/* The loop everything runs on; set once at start. */
void host_api_set_base(struct event_base *base);
struct event_base *host_api_base(void);

/* Deliveries: the core creates one per unit of outbound work. */
typedef struct host_delivery_result {
	parley_outcome outcome;
	int64_t retry_at_ms;
	const char *reason;       /* may be NULL */
	const char *external_id;  /* delivery_set_external_id, or NULL */
	const char *thread_id;    /* delivery_set_thread_id, or NULL */
	const char *recipient_id; /* delivery_set_recipient_id, or NULL */
} host_delivery_result;
/* r: borrowed for the call. */
typedef void (*host_delivery_done_fn)(void *arg, const host_delivery_result *r);
parley_delivery *host_delivery_new(parley_instance *inst, host_delivery_done_fn done, void *arg);

/* Requests: wrap an HTTP request for a plugin's handle_request. */
parley_request *host_request_new(parley_instance *inst, http_request *http, const char *subpath);

/* Cancel every pending plugin timer (shutdown). */
void host_api_cancel_timers(void);
/* Plugin timers pending (tests, shutdown). */
size_t host_api_timer_count(void);
/* Requests handed to plugins and not answered or not yet committed. */
size_t host_api_requests_pending(void);

#endif
