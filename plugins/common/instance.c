/* instance.c - the create/reload/destroy skeleton (see instance.h). */
#include "instance.h"

#include <stdlib.h>
#include <string.h>

static void *at(void *self, size_t offset)
{
	return (char *)self + offset;
}

int pu_instance_create(const pu_instance_class *c, const parley_host *host,
                       parley_instance *inst, const parley_config *cfg, void **self)
{
	void *s;

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
	if (c->read(host, inst, cfg, at(s, c->settings_offset)) != 0) {
		free(s);
		return -1;
	}
	if (c->init != NULL && c->init(s) != 0) {
		c->free(at(s, c->settings_offset));
		free(s);
		return -1;
	}
	if (c->announce != NULL)
		c->announce(s);
	*self = s;
	return 0;
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
	if (c->read(host, inst, cfg, next) != 0) {
		free(next);
		return -1;
	}
	if (c->check_reload != NULL && c->check_reload(self, next) != 0) {
		c->free(next);
		free(next);
		return -1;
	}
	memcpy(old, cur, c->settings_size);
	memcpy(cur, next, c->settings_size);
	if (c->reloaded != NULL)
		c->reloaded(self, old);
	c->free(old);
	free(next);
	if (c->announce != NULL)
		c->announce(self);
	return 0;
}

void pu_instance_destroy(const pu_instance_class *c, void *self)
{
	if (c->finish != NULL)
		c->finish(self);
	c->free(at(self, c->settings_offset));
	free(self);
}
