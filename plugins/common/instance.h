/* instance.h - the create/reload/destroy skeleton of a plugin instance.
 *
 * Every shipped plugin's instance is a struct holding the host, the
 * instance handle and a settings struct (`cfg`) that a reload replaces as a
 * whole. What differs is how settings are read, freed and announced, and a
 * few hooks; the allocation, the host's age check, the swap on reload and
 * the frees in the right order are here once. A plugin describes itself
 * with a pu_instance_class and gets its three descriptor functions from
 * PU_INSTANCE_FUNCTIONS. Compiled into each plugin like plugin_util.c. */
#ifndef PARLEY_PLUGIN_INSTANCE_H
#define PARLEY_PLUGIN_INSTANCE_H

#include <stddef.h>

#include "parley/parley.h"
#include "pacer.h"
#include "plugin_util.h"

typedef struct pu_instance_class {
	size_t size;                /* the instance struct; created zeroed */
	size_t host_offset;         /* where its `const parley_host *host` is */
	size_t inst_offset;         /* where its `parley_instance *inst` is */
	size_t settings_offset;     /* where its settings struct is */
	size_t settings_size;
	size_t host_needs;          /* host->size at least this (PU_HOST_NEEDS); 0: any */
	const char *too_old;        /* logged when the host is smaller */
	/* Read cfg (borrowed) into out (zeroed; owned by the caller after 0):
	 * 0, or -1 after host->config_error named the key. NULL for a plugin
	 * with an ABI 1.3 settings table: the core fills the struct (its
	 * PARLEY_SETTINGS type must be the settings member's) and the skeleton
	 * copies it; the strings stay the core's. */
	int (*read)(const parley_host *host, parley_instance *inst, const parley_config *cfg,
	            void *out);
	/* With read NULL, optional: the checks a table cannot state (settings
	 * that matter only together). settings: borrowed. 0, or -1 after
	 * host->config_error named the key. */
	int (*check)(const parley_host *host, parley_instance *inst, const void *settings);
	/* Free what read put into settings (not settings itself); NULL when the
	 * core owns them. */
	void (*free)(void *settings);
	/* Log what the settings mean (never a secret). May be NULL. */
	void (*announce)(void *self);
	/* Optional: set up the rest once the first settings are in place. -1
	 * fails the create (init undoes its own work; the settings and the
	 * struct are freed here). */
	int (*init)(void *self);
	/* Optional: refuse a reload that cannot be applied: -1 after
	 * config_error. next: borrowed. */
	int (*check_reload)(void *self, const void *next);
	/* Optional: after a reload swapped the settings in; old is freed after
	 * it returns. */
	void (*reloaded)(void *self, const void *old);
	/* Optional: release the rest before the settings and the struct go. */
	void (*finish)(void *self);

	/* Optional: an instance that paces its requests has a pu_pacer at
	 * pacer_offset (the owner its callbacks get is the instance). The
	 * skeleton sets it up before init, gives it the rate the settings ask
	 * for on every reload, and hands its waiting items to pace_free on
	 * destroy. */
	pu_pacer_rate (*pace)(const void *settings);   /* NULL: no pacer */
	size_t pacer_offset;
	pu_pacer_start_fn pace_start;
	pu_pacer_back_fn pace_back;
	void (*pace_free)(pu_pacer_item *item);
	const char *pace_pause_reason;  /* static: see pu_pacer_init */
} pu_instance_class;

/* The pacer fields of a class whose struct `type` has a pu_pacer `member`. */
#define PU_INSTANCE_PACER(type, member) .pacer_offset = offsetof(type, member)

/* The layout fields of a class for instance struct `type` with members
 * host, inst and the settings struct `cfg`. */
#define PU_INSTANCE_LAYOUT(type, cfg_member) \
	.size = sizeof(type), .host_offset = offsetof(type, host), \
	.inst_offset = offsetof(type, inst), .settings_offset = offsetof(type, cfg_member), \
	.settings_size = sizeof(((type *)0)->cfg_member)

/* host_needs for a plugin that calls host->field. */
#define PU_HOST_NEEDS(field) \
	(offsetof(parley_host, field) + sizeof(((parley_host *)0)->field))

/* The descriptor's create: a zeroed struct with host and inst set, the
 * settings read, the pacer set up, init run, announced; *self receives
 * it. 0 or -1. */
PU_INTERNAL int pu_instance_create(const pu_instance_class *c, const parley_host *host,
                                   parley_instance *inst, const parley_config *cfg,
                                   void **self);
/* The descriptor's reload: new settings read and checked, swapped in,
 * the old ones freed. On -1 the old settings stay in force. */
PU_INTERNAL int pu_instance_reload(const pu_instance_class *c, void *self,
                                   const parley_config *cfg);
/* The descriptor's destroy: finish, the pacer's waiting items, the
 * settings, the struct. */
PU_INTERNAL void pu_instance_destroy(const pu_instance_class *c, void *self);

/* prefix_create, prefix_reload and prefix_destroy for the descriptor, on
 * the class `cls` (a static const pu_instance_class). */
#define PU_INSTANCE_FUNCTIONS(prefix, cls) \
	static int prefix##_create(const parley_host *host, parley_instance *inst, \
	                           const parley_config *cfg, void **self) \
	{ \
		return pu_instance_create(&(cls), host, inst, cfg, self); \
	} \
	static int prefix##_reload(void *self, const parley_config *cfg) \
	{ \
		return pu_instance_reload(&(cls), self, cfg); \
	} \
	static void prefix##_destroy(void *self) \
	{ \
		pu_instance_destroy(&(cls), self); \
	}

#endif
