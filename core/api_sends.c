/* api_sends.c - the node's side of an API operation that queues sends:
 * the channels' checks of their platforms' rules, and the node's settings
 * the operation reads. See api_sends.h. */
#include "api_sends.h"

#include <stdio.h>
#include <string.h>

#include "job_payload.h"
#include "log.h"

#define API_SENDS_LOG "api"

static const plugin_set *sends_plugins;
static cfg *const *sends_config;

void api_sends_init(const plugin_set *plugins, cfg *const *config)
{
	sends_plugins = plugins;
	sends_config = config;
}

json_t *api_sends_node(void)
{
	json_t *texts = json_object();
	const cfg *c = sends_config != NULL ? *sends_config : NULL;
	for (size_t i = 0; c != NULL && i < c->n_channels; i++)
		json_object_set_new(texts, c->channels[i].name,
		                    json_string(c->channels[i].move_to_private_text));
	return json_pack("{s:o, s:s}", "move_to_private_text", texts, "move_to_private_default",
	                 CFG_MOVE_TEXT_DEFAULT);
}

/* A rule name a plugin may answer with: it becomes the API's error code. */
static bool rule_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63 || s[0] < 'a' || s[0] > 'z')
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

/* One send: its channel's answer, or NULL. */
static const char *check_one(json_t *send, char *reason, size_t len)
{
	const char *name = json_string_value(json_object_get(send, "instance"));
	json_t *payload = json_object_get(send, "payload");
	parley_instance *inst = name != NULL ? plugins_find(sends_plugins, PARLEY_KIND_CHANNEL, name) : NULL;
	if (inst == NULL)
		return NULL;
	const parley_channel_ops *ops = inst->desc->channel;
	if (!PARLEY_HAS_FIELD(ops, parley_channel_ops, check_send) || ops->check_send == NULL)
		return NULL;
	job_call call;
	char why[256];
	memset(&call, 0, sizeof(call));
	if (!job_payload_send(payload, "preview", &call, why, sizeof(why))) {
		/* The database built it: a mismatch is a bug, and the send job
		 * will fail with the same reason. */
		log_warn(API_SENDS_LOG, "preview of a send on %s: %s", name, why);
		job_call_clear(&call);
		return NULL;
	}
	reason[0] = '\0';
	const char *rule = ops->check_send(inst->self, &call.u.send, reason, len);
	job_call_clear(&call);
	if (rule != NULL && !rule_name_ok(rule)) {
		log_warn(API_SENDS_LOG, "channel %s answered check_send with a malformed rule name", name);
		rule = "send_refused";
	}
	if (rule != NULL && reason[0] == '\0')
		snprintf(reason, len, "channel %s refuses this message", name);
	return rule;
}

const char *api_sends_refusal(json_t *sends, char *reason, size_t len)
{
	size_t i;
	json_t *send;
	json_array_foreach(sends, i, send) {
		const char *rule = check_one(send, reason, len);
		if (rule != NULL)
			return rule;
	}
	return NULL;
}
