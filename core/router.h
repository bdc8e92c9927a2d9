/* router.h - which handler answers which request: health, readiness,
 * metrics, channel webhooks and sink events. */
#ifndef PARLEY_CORE_ROUTER_H
#define PARLEY_CORE_ROUTER_H

#include <stdbool.h>
#include "http_server.h"
#include "plugin_loader.h"

/* `plugins` is borrowed and may be replaced (reload) with router_set_plugins. */
void router_init(plugin_set *plugins);
/* While draining, /readyz answers 503 so load balancers stop sending. */
void router_set_draining(bool draining);
/* The http_server handler; arg unused. */
void router_handle(http_request *req, void *arg);
/* Readiness checks in flight (each holds a request). */
size_t router_pending(void);

#endif
