/* instance.c - the create/reload/destroy skeleton (see instance.h). */
#include "instance.h"

#include <stdlib.h>
#include <string.h>

static void *at(void *self, size_t offset)
{
	return (char *)self + offset;
}

/* The settings of cfg into out: read by the plugin (class read), or the
 * struct the core filled from the descriptor's settings table (ABI 1.3),
 * copied: the strings it points to stay the core's, valid until destroy or
 * the next accepted reload, exactly as long as the copy is in use. */
static int read_settings(const pu_instance_class *c, const parley_host *host,
                         parley_instance *inst, const parley_config *cfg, void *out)
{
	const void *filled;

	if (c->read != NULL)
		return c->read(host, inst, cfg, out);
	if (!PARLEY_HAS_FIELD(host, parley_host, config_settings) ||
	    (filled = host->config_settings(cfg)) == NULL) {
		host->log(inst, PARLEY_LOG_ERROR, "the core did not fill this plugin's settings");
		return -1;
	}
	memcpy(out, filled, c->settings_size);
	return c->check != NULL ? c->check(host, inst, out) : 0;
}

static void free_settings(const pu_instance_class *c, void *settings)
{
	if (c->free != NULL)
		c->free(settings);
}

int pu_instance_create(const pu_instance_class *c, const parley_host *host,
                       parley_instance *inst, const parley_config *cfg, void **self)
{
	void *s, *settings;

	if (c->host_needs > 0 && host->size < c->host_needs) {
		host->log(inst, PARLEY_LOG_ERROR, "%s",
		          c->too_old != NULL ? c->too_old : "this parleyd is too old for the plugin");
		return -1;
	}
	s = calloc(1, c->size);
	if (s == NULL) {
		host->log(inst, PARLEY_LOG_ERROR, "out of memory");
		return -1;
	}
	memcpy(at(s, c->host_offset), &host, sizeof(host));
	memcpy(at(s, c->inst_offset), &inst, sizeof(inst));
	settings = at(s, c->settings_offset);
	if (read_settings(c, host, inst, cfg, settings) != 0) {
		free(s);
		return -1;
	}
	if (c->pace != NULL) {
		pu_pacer_rate rate = c->pace(settings);
		if (!pu_pacer_init(at(s, c->pacer_offset), host, inst, &rate, s, c->pace_start,
		                   c->pace_back, c->pace_pause_reason)) {
			host->log(inst, PARLEY_LOG_ERROR, "the request rate is out of range");
			goto fail;
		}
	}
	if (c->init != NULL && c->init(s) != 0)
		goto fail;
	if (c->announce != NULL)
		c->announce(s);
	*self = s;
	return 0;
fail:
	free_settings(c, settings);
	free(s);
	return -1;
}

int pu_instance_reload(const pu_instance_class *c, void *self, const parley_config *cfg)
{
	const parley_host *host;
	parley_instance *inst;
	void *cur = at(self, c->settings_offset);
	/* One block for the new settings and, after the swap, the old ones:
	 * settings_size is a multiple of the struct's alignment. */
	char *next = calloc(2, c->settings_size), *old;

	memcpy(&host, at(self, c->host_offset), sizeof(host));
	memcpy(&inst, at(self, c->inst_offset), sizeof(inst));
	if (next == NULL) {
		host->log(inst, PARLEY_LOG_ERROR, "out of memory reading the new settings");
		return -1;
	}
	old = next + c->settings_size;
	if (read_settings(c, host, inst, cfg, next) != 0) {
		free(next);
		return -1;
	}
	if (c->check_reload != NULL && c->check_reload(self, next) != 0) {
		free_settings(c, next);
		free(next);
		return -1;
	}
	memcpy(old, cur, c->settings_size);
	memcpy(cur, next, c->settings_size);
	if (c->pace != NULL) {
		/* read checked the range the rate comes from: this cannot fail. */
		pu_pacer_rate rate = c->pace(cur);
		(void)pu_pacer_set_rate(at(self, c->pacer_offset), &rate);
	}
	if (c->reloaded != NULL)
		c->reloaded(self, old);
	free_settings(c, old);
	free(next);
	if (c->announce != NULL)
		c->announce(self);
	return 0;
}

void pu_instance_destroy(const pu_instance_class *c, void *self)
{
	if (c->finish != NULL)
		c->finish(self);
	if (c->pace != NULL)
		pu_pacer_destroy(at(self, c->pacer_offset), c->pace_free);
	free_settings(c, at(self, c->settings_offset));
	free(self);
}
