/* meta_settings.c - the meta channel's settings beyond what its table
 * says: graph_version's format, and the JSON settings (pages,
 * instagram_accounts, whatsapp_numbers, whatsapp_template) parsed into the
 * instance's meta_assets. The table itself is in meta.c. */
#include "meta_settings.h"
#include "../../common/plugin_util.h"

#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#define META_MAX_TEMPLATE_BYTES 512

static int version_is_valid(const char *v)
{
	size_t len = strlen(v);

	return len >= 2 && len <= 16 && v[0] == 'v' && strspn(v + 1, "0123456789.") == len - 1;
}

void meta_assets_release(meta_assets *a)
{
	meta_assets_free(&a->pages);
	meta_assets_free(&a->instagram);
	meta_assets_free(&a->whatsapp);
	free(a->template_name);
	free(a->template_language);
	memset(a, 0, sizeof(*a));
}

/* One asset list setting (JSON text or NULL, borrowed) into *out. */
static int parse_asset_list(const parley_host *host, parley_instance *inst, const char *key,
                            const char *json, const char *id_key, meta_asset_list *out)
{
	char err[256];

	if (!meta_assets_parse(json, id_key, out, err, sizeof(err))) {
		host->config_error(inst, key, err);
		return -1;
	}
	return 0;
}

/* whatsapp_template: {"name": "...", "language": "en_US"} (language defaults
 * to en_US). text: borrowed, NULL for none. */
static int parse_template(const parley_host *host, parley_instance *inst, const char *text,
                          meta_assets *out)
{
	json_t *root;
	const char *name, *lang;
	int rc = 0;

	if (text == NULL)
		return 0;
	root = json_loads(text, 0, NULL);
	name = json_string_value(json_object_get(root, "name"));
	lang = json_string_value(json_object_get(root, "language"));
	if (json_object_get(root, "language") != NULL && lang == NULL)
		name = NULL;
	if (!json_is_object(root) || name == NULL || name[0] == '\0' ||
	    strlen(name) > META_MAX_TEMPLATE_BYTES || (lang != NULL && lang[0] == '\0')) {
		host->config_error(inst, "whatsapp_template",
		                   "must be {\"name\": \"<approved template>\", \"language\": \"en_US\"}");
		rc = -1;
	} else {
		out->template_name = strdup(name);
		out->template_language = strdup(lang != NULL ? lang : "en_US");
		if (out->template_name == NULL || out->template_language == NULL) {
			host->log(inst, PARLEY_LOG_ERROR, "out of memory reading whatsapp_template");
			rc = -1;
		}
	}
	json_decref(root);
	return rc;
}

/* The JSON settings of s (borrowed) into *out (zeroed here; owned by the
 * caller, meta_assets_release). -1 after config_error, with *out freed. */
int meta_assets_read(const parley_host *host, parley_instance *inst, const meta_settings *s,
                        meta_assets *out)
{
	memset(out, 0, sizeof(*out));
	if (parse_asset_list(host, inst, "pages", s->pages, "id", &out->pages) != 0 ||
	    parse_asset_list(host, inst, "instagram_accounts", s->instagram_accounts, "id",
	                     &out->instagram) != 0 ||
	    parse_asset_list(host, inst, "whatsapp_numbers", s->whatsapp_numbers, "phone_number_id",
	                     &out->whatsapp) != 0 ||
	    parse_template(host, inst, s->whatsapp_template, out) != 0) {
		meta_assets_release(out);
		return -1;
	}
	return 0;
}

/* What the table cannot say: the version's format and the JSON settings'
 * shape (parsed here only to be checked: the instance keeps its own parse,
 * made in init or check_reload). settings: borrowed. */
int meta_settings_check(const parley_host *host, parley_instance *inst, const void *settings)
{
	const meta_settings *s = settings;
	meta_assets parsed;
	int ok = 1;

	if (!version_is_valid(s->graph_version)) {
		host->config_error(inst, "graph_version", "must look like v21.0");
		ok = 0;
	}
	if (meta_assets_read(host, inst, s, &parsed) != 0)
		ok = 0;
	else
		meta_assets_release(&parsed);
	return ok ? 0 : -1;
}
