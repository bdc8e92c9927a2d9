/* api_sends.h - what the API asks of the node before an operation that
 * queues sends to customers (a reply, a move to private, a macro that
 * replies) runs: each channel's check of its platform's rules
 * (check_send, ABI 1.4), and the node's settings such an operation needs
 * (the channels' move_to_private_text).
 *
 * The operation's SQL function is first called with "preview": true and
 * answers the sends it would queue: [{"instance", "payload"}], each payload
 * as its channel 'send' job would carry it (docs/JOBS.md). */
#ifndef PARLEY_CORE_API_SENDS_H
#define PARLEY_CORE_API_SENDS_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "config.h"
#include "plugin_loader.h"

/* plugins: the node's loaded plugins; config: where the node's current
 * configuration is (it changes on SIGHUP). Both borrowed for the daemon's
 * life. */
void api_sends_init(const plugin_set *plugins, cfg *const *config);

/* {"move_to_private_text": {"instance": "text", ...},
 *  "move_to_private_default": "..."}: the node's settings an operation's
 * SQL function reads as req.node. Owned by the caller. */
json_t *api_sends_node(void);

/* The first send of `sends` (borrowed) its channel would refuse: the rule's
 * name ([a-z][a-z0-9_]*, borrowed, static) with the reason in reason[len];
 * NULL when every send may go. A channel this node does not run, or one
 * without check_send, refuses nothing here (its send still checks). */
const char *api_sends_refusal(json_t *sends, char *reason, size_t len);

#endif
