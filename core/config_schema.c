/* config_schema.c - everything done with the settings table
 * (config_settings.c): set defaults, read and range-check a document, free,
 * name the restart-only keys that changed, print the reference.
 *
 * Nothing here knows a particular setting; a new one is a row. */
#include "config_internal.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define FIELD(c, row, type) ((type *)(void *)((char *)(c) + (row)->offset))
#define CFIELD(c, row, type) ((const type *)(const void *)((const char *)(c) + (row)->offset))

/* ------------------------------------------------------------------------ */
/* Defaults                                                                 */
/* ------------------------------------------------------------------------ */

static bool section_defaults(const cfg_ctx *ctx, const cfg_section *s, cfg *c)
{
	char path[JF_PATH_MAX];
	for (const cfg_setting *r = s->rows; r->key != NULL; r++) {
		jf_path_key(path, s->path, r->key);
		switch (r->type) {
		case CFG_T_INT: *FIELD(c, r, int) = (int)r->def; break;
		case CFG_T_SIZE: *FIELD(c, r, size_t) = (size_t)r->def; break;
		case CFG_T_BOOL: *FIELD(c, r, bool) = r->def != 0; break;
		case CFG_T_STRING:
			if (r->def_str == NULL)
				break;
			if (r->parse != NULL) {
				if (!r->parse(ctx, path, r->def_str, c))
					return false;
			} else {
				*FIELD(c, r, char *) = xstrdup(r->def_str);
			}
			break;
		case CFG_T_SECTION:
			if (!section_defaults(ctx, r->section, c))
				return false;
			break;
		case CFG_T_NAMES:
		case CFG_T_LIST:
			break;
		}
	}
	return true;
}

bool cfg_schema_defaults(const cfg_ctx *ctx, cfg *c)
{
	return section_defaults(ctx, &cfg_root_section, c);
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                  */
/* ------------------------------------------------------------------------ */

/* obj[key]: an array of instance names, attached to the cfg as it fills so
 * cfg_free releases a partial one. */
static bool read_names(const cfg_ctx *ctx, const json_t *obj, const char *path,
                       const cfg_setting *r, cfg *c)
{
	json_t *arr = NULL;
	if (!jf_get_string_array(&ctx->jf, obj, path, r->key, 0, SIZE_MAX, &arr))
		return false;
	if (arr == NULL)
		return true;
	char ***names = FIELD(c, r, char **);
	size_t *n = (size_t *)(void *)((char *)c + r->offset_n);
	*names = xcalloc(json_array_size(arr) + 1, sizeof(char *));
	for (size_t i = 0; i < json_array_size(arr); i++) {
		(*names)[i] = xstrdup(json_string_value(json_array_get(arr, i)));
		*n = i + 1;
	}
	return true;
}

static bool read_section(const cfg_ctx *ctx, const cfg_section *s, json_t *obj, cfg *c);

static bool read_row(const cfg_ctx *ctx, const cfg_section *s, const cfg_setting *r,
                     json_t *obj, cfg *c)
{
	const jf_ctx *jf = &ctx->jf;
	char path[JF_PATH_MAX];
	jf_path_key(path, s->path, r->key);
	json_int_t n;
	switch (r->type) {
	case CFG_T_INT:
		n = *FIELD(c, r, int);
		if (!jf_get_int(jf, obj, s->path, r->key, r->min, r->max, &n))
			return false;
		*FIELD(c, r, int) = (int)n;
		break;
	case CFG_T_SIZE:
		n = (json_int_t)*FIELD(c, r, size_t);
		if (!jf_get_int(jf, obj, s->path, r->key, r->min, r->max, &n))
			return false;
		*FIELD(c, r, size_t) = (size_t)n;
		break;
	case CFG_T_BOOL:
		if (!jf_get_bool(jf, obj, s->path, r->key, FIELD(c, r, bool)))
			return false;
		break;
	case CFG_T_STRING: {
		const char *v = NULL;
		if (!jf_get_string(jf, obj, s->path, r->key, &v))
			return false;
		if (v == NULL)
			break;
		if (r->parse != NULL)
			return r->parse(ctx, path, v, c);
		free(*FIELD(c, r, char *));
		*FIELD(c, r, char *) = xstrdup(v);
		break;
	}
	case CFG_T_NAMES:
		return read_names(ctx, obj, s->path, r, c);
	case CFG_T_SECTION: {
		json_t *sub = NULL;
		if (!jf_get_object(jf, obj, s->path, r->key, &sub))
			return false;
		if (sub != NULL)
			return read_section(ctx, r->section, sub, c);
		break;
	}
	case CFG_T_LIST:
		return r->parse_list(ctx, obj, c);
	}
	return true;
}

static const cfg_setting *find_row(const cfg_section *s, const char *key)
{
	for (const cfg_setting *r = s->rows; r->key != NULL; r++)
		if (strcmp(r->key, key) == 0)
			return r;
	return NULL;
}

/* Has the row a cluster part: the whole value, a part of a list (a sink's
 * route), or a section holding one? */
static bool has_cluster_part(const cfg_setting *r)
{
	if (r->flags & CFG_CLUSTER)
		return true;
	if (r->type == CFG_T_SECTION) {
		for (const cfg_setting *x = r->section->rows; x->key != NULL; x++)
			if (has_cluster_part(x))
				return true;
		return false;
	}
	return r->dump != NULL;
}

static bool read_section(const cfg_ctx *ctx, const cfg_section *s, json_t *obj, cfg *c)
{
	/* Every key is checked: a typo must not fall back to a default. */
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v) {
		const cfg_setting *r = find_row(s, key);
		char path[JF_PATH_MAX];
		jf_path_key(path, s->path, key);
		if (r == NULL)
			return cfg_fail(ctx, path, "unknown key");
		if (ctx->policy && !has_cluster_part(r))
			return cfg_fail(ctx, path, "a node setting: it belongs in each node's file, "
			                "not in the cluster policy");
		if (r->flags & CFG_CLUSTER)
			c->writes_cluster_keys = true;
	}
	for (const cfg_setting *r = s->rows; r->key != NULL; r++) {
		if (ctx->policy && !has_cluster_part(r))
			continue;
		if (ctx->policy && r->parse_policy != NULL) {
			if (!r->parse_policy(ctx, obj, c))
				return false;
			continue;
		}
		/* Type errors come before "missing", so a required key of the wrong
		 * type says what is wrong with it. */
		if (!read_row(ctx, s, r, obj, c))
			return false;
		if ((r->flags & CFG_REQUIRED) && !jf_require(&ctx->jf, obj, s->path, r->key))
			return false;
	}
	return true;
}

bool cfg_schema_read(const cfg_ctx *ctx, json_t *root, cfg *c)
{
	return read_section(ctx, &cfg_root_section, root, c);
}

/* ------------------------------------------------------------------------ */
/* Freeing                                                                  */
/* ------------------------------------------------------------------------ */

static void section_free(const cfg_section *s, cfg *c)
{
	for (const cfg_setting *r = s->rows; r->key != NULL; r++) {
		if (r->type == CFG_T_SECTION) {
			section_free(r->section, c);
		} else if (r->type == CFG_T_STRING && r->offset != 0) {
			/* offset 0 is cfg.file: the row stores through its parse function */
			free(*FIELD(c, r, char *));
			*FIELD(c, r, char *) = NULL;
		} else if (r->type == CFG_T_NAMES) {
			char **names = *FIELD(c, r, char **);
			size_t *n = (size_t *)(void *)((char *)c + r->offset_n);
			for (size_t i = 0; i < *n; i++)
				free(names[i]);
			free(names);
			*FIELD(c, r, char **) = NULL;
			*n = 0;
		}
	}
}

void cfg_schema_free(cfg *c)
{
	section_free(&cfg_root_section, c);
}

/* ------------------------------------------------------------------------ */
/* The cluster part                                                         */
/* ------------------------------------------------------------------------ */

static json_t *names_json(const cfg_setting *r, const cfg *c)
{
	json_t *arr = json_array();
	size_t n = *(const size_t *)(const void *)((const char *)c + r->offset_n);
	char *const *names = *(char **const *)(const void *)((const char *)c + r->offset);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_string(names[i]));
	return arr;
}

static json_t *row_json(const cfg_setting *r, const cfg *c)
{
	switch (r->type) {
	case CFG_T_INT: return json_integer(*CFIELD(c, r, int));
	case CFG_T_SIZE: return json_integer((json_int_t)*CFIELD(c, r, size_t));
	case CFG_T_BOOL: return json_boolean(*CFIELD(c, r, bool));
	case CFG_T_STRING: {
		const char *v = *CFIELD(c, r, char *);
		return v != NULL ? json_string(v) : json_null();
	}
	case CFG_T_NAMES: return names_json(r, c);
	case CFG_T_SECTION:
	case CFG_T_LIST: break;
	}
	return r->dump != NULL ? r->dump(c) : json_null();
}

static json_t *section_cluster_json(const cfg_section *s, const cfg *c)
{
	json_t *o = json_object();
	for (const cfg_setting *r = s->rows; r->key != NULL; r++) {
		if (!has_cluster_part(r))
			continue;
		if (r->type == CFG_T_SECTION)
			json_object_set_new(o, r->key, section_cluster_json(r->section, c));
		else
			json_object_set_new(o, r->key, row_json(r, c));
	}
	return o;
}

json_t *cfg_schema_cluster_json(const cfg *c)
{
	return section_cluster_json(&cfg_root_section, c);
}

static void section_take(const cfg_section *s, cfg *dst, const cfg *src)
{
	for (const cfg_setting *r = s->rows; r->key != NULL; r++) {
		if (r->type == CFG_T_SECTION) {
			section_take(r->section, dst, src);
			continue;
		}
		if (r->copy != NULL) {
			r->copy(dst, src);
			continue;
		}
		if (!(r->flags & CFG_CLUSTER))
			continue;
		switch (r->type) {
		case CFG_T_INT: *FIELD(dst, r, int) = *CFIELD(src, r, int); break;
		case CFG_T_SIZE: *FIELD(dst, r, size_t) = *CFIELD(src, r, size_t); break;
		case CFG_T_BOOL: *FIELD(dst, r, bool) = *CFIELD(src, r, bool); break;
		case CFG_T_STRING: {
			const char *v = *CFIELD(src, r, char *);
			free(*FIELD(dst, r, char *));
			*FIELD(dst, r, char *) = v != NULL ? xstrdup(v) : NULL;
			break;
		}
		case CFG_T_NAMES: {
			char **names = *FIELD(dst, r, char **);
			size_t *n = (size_t *)(void *)((char *)dst + r->offset_n);
			for (size_t i = 0; i < *n; i++)
				free(names[i]);
			free(names);
			size_t m = *(const size_t *)(const void *)((const char *)src + r->offset_n);
			char *const *from = *(char **const *)(const void *)((const char *)src + r->offset);
			names = xcalloc(m + 1, sizeof(char *));
			for (size_t i = 0; i < m; i++)
				names[i] = xstrdup(from[i]);
			*FIELD(dst, r, char **) = names;
			*n = m;
			break;
		}
		case CFG_T_SECTION:
		case CFG_T_LIST: break;
		}
	}
}

void cfg_schema_take_cluster(cfg *dst, const cfg *src)
{
	section_take(&cfg_root_section, dst, src);
}

/* ------------------------------------------------------------------------ */
/* What a reload cannot apply                                               */
/* ------------------------------------------------------------------------ */

static bool same_names(const cfg_setting *r, const cfg *a, const cfg *b)
{
	size_t na = *(const size_t *)(const void *)((const char *)a + r->offset_n);
	size_t nb = *(const size_t *)(const void *)((const char *)b + r->offset_n);
	if (na != nb)
		return false;
	char *const *x = *(char **const *)(const void *)((const char *)a + r->offset);
	char *const *y = *(char **const *)(const void *)((const char *)b + r->offset);
	for (size_t i = 0; i < na; i++)
		if (strcmp(x[i], y[i]) != 0)
			return false;
	return true;
}

static bool same_value(const cfg_setting *r, const cfg *a, const cfg *b)
{
	if (r->same != NULL)
		return r->same(a, b);
	switch (r->type) {
	case CFG_T_INT: return *CFIELD(a, r, int) == *CFIELD(b, r, int);
	case CFG_T_SIZE: return *CFIELD(a, r, size_t) == *CFIELD(b, r, size_t);
	case CFG_T_BOOL: return *CFIELD(a, r, bool) == *CFIELD(b, r, bool);
	case CFG_T_STRING: {
		const char *x = *CFIELD(a, r, char *), *y = *CFIELD(b, r, char *);
		return x == y || (x != NULL && y != NULL && strcmp(x, y) == 0);
	}
	case CFG_T_NAMES: return same_names(r, a, b);
	case CFG_T_SECTION:
	case CFG_T_LIST: return true;
	}
	return true;
}

static void append(char *out, size_t outlen, size_t *used, const char *text)
{
	int n = snprintf(out + *used, outlen - *used, "%s%s", *used > 0 ? ", " : "", text);
	if (n > 0)
		*used = *used + (size_t)n < outlen ? *used + (size_t)n : outlen - 1;
}

static size_t section_changes(const cfg_section *s, const cfg *a, const cfg *b,
                              char *out, size_t outlen, size_t *used)
{
	size_t count = 0;
	char path[JF_PATH_MAX];
	for (const cfg_setting *r = s->rows; r->key != NULL; r++) {
		if (r->type == CFG_T_SECTION) {
			count += section_changes(r->section, a, b, out, outlen, used);
			continue;
		}
		/* Cluster keys come from the cluster policy, not from the reload. */
		if ((r->flags & (CFG_RELOAD | CFG_CLUSTER)) || same_value(r, a, b))
			continue;
		jf_path_key(path, s->path, r->key);
		if (r->type == CFG_T_LIST)
			snprintf(path + strlen(path), sizeof(path) - strlen(path), " (the set of instances)");
		append(out, outlen, used, path);
		count++;
	}
	return count;
}

size_t cfg_restart_changes(const cfg *a, const cfg *b, char *out, size_t outlen)
{
	size_t used = 0;
	if (outlen > 0)
		out[0] = '\0';
	return section_changes(&cfg_root_section, a, b, out, outlen > 0 ? outlen : 1, &used);
}

/* ------------------------------------------------------------------------ */
/* The reference                                                            */
/* ------------------------------------------------------------------------ */

static const char *doc_type(const cfg_setting *r)
{
	if (r->doc_type != NULL)
		return r->doc_type;
	switch (r->type) {
	case CFG_T_INT:
	case CFG_T_SIZE: return "integer";
	case CFG_T_BOOL: return "boolean";
	case CFG_T_STRING: return "string";
	case CFG_T_NAMES: return "array of strings";
	case CFG_T_SECTION: return "object";
	case CFG_T_LIST: return "array";
	}
	return "?";
}

/* The default as the reference writes it, into buf. */
static const char *doc_default(const cfg_setting *r, char *buf, size_t len)
{
	if (r->doc_default != NULL)
		return r->doc_default;
	if (r->flags & CFG_REQUIRED)
		return "— (**required**)";
	switch (r->type) {
	case CFG_T_INT:
	case CFG_T_SIZE: snprintf(buf, len, "`%lld`", r->def); break;
	case CFG_T_BOOL: snprintf(buf, len, "`%s`", r->def ? "true" : "false"); break;
	case CFG_T_STRING:
		if (r->def_str == NULL)
			return "none";
		snprintf(buf, len, "`\"%s\"`", r->def_str);
		break;
	case CFG_T_NAMES:
	case CFG_T_LIST: return "`[]`";
	case CFG_T_SECTION:
		snprintf(buf, len, "see [`%s`](#%s)", r->key, r->key);
		break;
	}
	return buf;
}

static const char *doc_range(const cfg_setting *r, char *buf, size_t len)
{
	if (r->doc_range != NULL)
		return r->doc_range;
	if (r->type != CFG_T_INT && r->type != CFG_T_SIZE)
		return "";
	if (r->max >= INT_MAX)
		snprintf(buf, len, "≥ %lld", r->min);
	else
		snprintf(buf, len, "%lld..%lld", r->min, r->max);
	return buf;
}

static const char *doc_reload(const cfg_setting *r)
{
	if (r->doc_reload != NULL)
		return r->doc_reload;
	if (r->type == CFG_T_SECTION)
		return "per key";
	if (r->flags & CFG_CLUSTER)
		return "policy";
	return (r->flags & CFG_RELOAD) ? "yes" : "restart";
}

static const char *doc_scope(const cfg_setting *r)
{
	if (r->doc_scope != NULL)
		return r->doc_scope;
	if (r->type == CFG_T_SECTION)
		return "per key";
	return (r->flags & CFG_CLUSTER) ? "cluster" : "node";
}

static void print_markdown(FILE *out, const cfg_section *s)
{
	char def[256], range[128];
	fprintf(out, "## %s\n\n", s->title);
	if (s->intro != NULL)
		fprintf(out, "%s\n\n", s->intro);
	fprintf(out, "| Key | Type | Default | Range | Scope | SIGHUP | Meaning |\n");
	fprintf(out, "|-----|------|---------|-------|-------|--------|---------|\n");
	for (const cfg_setting *r = s->rows; r->key != NULL; r++)
		fprintf(out, "| `%s` | %s | %s | %s | %s | %s | %s |\n", r->key, doc_type(r),
		        doc_default(r, def, sizeof(def)), doc_range(r, range, sizeof(range)),
		        doc_scope(r), doc_reload(r), r->doc);
	for (const cfg_setting *r = s->rows; r->key != NULL; r++)
		if (r->type == CFG_T_SECTION) {
			fprintf(out, "\n");
			print_markdown(out, r->section);
		}
}

static void print_text(FILE *out, const cfg_section *s)
{
	char def[256], range[128], path[JF_PATH_MAX];
	for (const cfg_setting *r = s->rows; r->key != NULL; r++) {
		if (r->type == CFG_T_SECTION)
			continue;
		jf_path_key(path, s->path, r->key);
		const char *rg = doc_range(r, range, sizeof(range));
		fprintf(out, "%s (%s)\n  default: %s\n", path, doc_type(r), doc_default(r, def, sizeof(def)));
		if (rg[0] != '\0')
			fprintf(out, "  range: %s\n", rg);
		fprintf(out, "  on SIGHUP: %s\n  scope: %s\n  %s\n\n", doc_reload(r), doc_scope(r), r->doc);
	}
	for (const cfg_setting *r = s->rows; r->key != NULL; r++)
		if (r->type == CFG_T_SECTION)
			print_text(out, r->section);
}

void cfg_print_reference(FILE *out, bool markdown)
{
	if (markdown)
		print_markdown(out, &cfg_root_section);
	else
		print_text(out, &cfg_root_section);
}
