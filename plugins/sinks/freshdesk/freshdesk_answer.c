/* freshdesk_answer.c - what Freshdesk's answers mean for a delivery: the
 * outcome of a create, of a failure, and of the lookup of an earlier
 * attempt's ticket. Pure (see freshdesk_api.h). */
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

#include "freshdesk_api.h"
#include "../../common/plugin_util.h"

/* ------------------------------------------------------------------------ */
/* Answers                                                                  */
/* ------------------------------------------------------------------------ */

/* The id of a JSON value (an integer, or a string of digits) in out. */
bool fd_json_id(const json_t *v, char out[FD_ID_BYTES])
{
	if (json_is_integer(v) && json_integer_value(v) > 0) {
		fd_fmt(out, FD_ID_BYTES, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return true;
	}
	if (json_is_string(v) && fd_id_is_valid(json_string_value(v))) {
		fd_fmt(out, FD_ID_BYTES, "%s", json_string_value(v));
		return true;
	}
	return false;
}

/* Freshdesk's validation answer as one line: "Validation failed: email:
 * It should be a valid email address (invalid_value)", else the body. */
static void validation_details(const void *body, size_t len, char *out, size_t outlen)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	pu_buf b = { 0 };
	const char *desc;
	json_t *errors, *e;
	size_t i;

	if (!json_is_object(root)) {
		json_decref(root);
		pu_excerpt(body, len, 300, out, outlen);
		return;
	}
	desc = json_string_value(json_object_get(root, "description"));
	pu_buf_str(&b, desc != NULL ? desc : "refused");
	errors = json_object_get(root, "errors");
	json_array_foreach(errors, i, e) {
		const char *field = json_string_value(json_object_get(e, "field"));
		const char *message = json_string_value(json_object_get(e, "message"));
		const char *code = json_string_value(json_object_get(e, "code"));
		if (i >= 5)
			break;
		pu_buf_str(&b, i == 0 ? ": " : "; ");
		if (field != NULL) {
			pu_buf_str(&b, field);
			pu_buf_str(&b, ": ");
		}
		pu_buf_str(&b, message != NULL ? message : "invalid");
		if (code != NULL) {
			pu_buf_str(&b, " (");
			pu_buf_str(&b, code);
			pu_buf_str(&b, ")");
		}
	}
	json_decref(root);
	if (b.failed || b.data == NULL)
		pu_excerpt(body, len, 300, out, outlen);
	else
		pu_excerpt(b.data, b.len, 300, out, outlen);
	free(b.data);
}

void fd_classify_failure(long status, const char *error, const void *body, size_t len,
                         const char *retry_after, const char *what, fd_result *r)
{
	char text[320];

	pu_excerpt(body, body != NULL ? len : 0, 200, text, sizeof(text));
	if (status == 0) {
		r->outcome = PARLEY_RETRY;
		fd_fmt(r->reason, sizeof(r->reason), "Freshdesk request failed: %s",
		    error != NULL ? error : "transport error");
	} else if (status == 429) {
		r->outcome = PARLEY_RETRY;
		r->rate_limited = 1;
		r->retry_after_s = pu_retry_after_seconds(retry_after, FD_MAX_RETRY_AFTER_S);
		fd_fmt(r->reason, sizeof(r->reason), "Freshdesk rate limit (429)%s",
		    r->retry_after_s > 0 ? ": honouring Retry-After" : "");
	} else if (status == 408 || status >= 500) {
		r->outcome = PARLEY_RETRY;
		fd_fmt(r->reason, sizeof(r->reason), "Freshdesk answered %ld%s%s", status,
		    text[0] != '\0' ? ": " : "", text);
	} else if (status == 401 || status == 403) {
		r->outcome = PARLEY_FAIL;
		fd_fmt(r->reason, sizeof(r->reason),
		    "unauthorized: check the API token (Freshdesk answered %ld)", status);
	} else if (status == 400 || status == 422) {
		char details[320];
		validation_details(body, body != NULL ? len : 0, details, sizeof(details));
		r->outcome = PARLEY_FAIL;
		fd_fmt(r->reason, sizeof(r->reason), "Freshdesk refused the %s (%ld): %s", what, status,
		    details);
	} else {
		r->outcome = PARLEY_FAIL;
		fd_fmt(r->reason, sizeof(r->reason), "Freshdesk answered %ld to the %s%s%s", status,
		    what, text[0] != '\0' ? ": " : "", text);
	}
}

void fd_classify_create(long status, const char *error, const void *body, size_t len,
                        const char *retry_after, const char *what, fd_result *r)
{
	memset(r, 0, sizeof(*r));
	if (status >= 200 && status < 300) {
		json_t *root = body != NULL ? json_loadb(body, len, 0, NULL) : NULL;
		bool ok = json_is_object(root) && fd_json_id(json_object_get(root, "id"), r->id);
		json_decref(root);
		if (ok) {
			r->outcome = PARLEY_OK;
			return;
		}
		/* It may exist without us knowing its id: an operator should look
		 * rather than a retry opening a second one. */
		r->outcome = PARLEY_FAIL;
		fd_fmt(r->reason, sizeof(r->reason),
		    "Freshdesk answered %ld without the %s's id; check whether it was created", status,
		    what);
		return;
	}
	fd_classify_failure(status, error, body, len, retry_after, what, r);
}

/* The id of the first ticket in list whose tags hold tag. */
static bool find_tagged(const json_t *list, const char *tag, char id_out[FD_ID_BYTES])
{
	size_t i, j;
	json_t *ticket, *t;

	json_array_foreach(list, i, ticket) {
		json_array_foreach(json_object_get(ticket, "tags"), j, t) {
			if (json_is_string(t) && strcasecmp(json_string_value(t), tag) == 0 &&
			    fd_json_id(json_object_get(ticket, "id"), id_out))
				return true;
		}
	}
	return false;
}

fd_lookup_result fd_classify_lookup(long status, const char *error, const void *body,
                                    size_t len, const char *retry_after, const char *tag,
                                    char id_out[FD_ID_BYTES], fd_result *r)
{
	json_t *root, *list;
	fd_lookup_result res;

	memset(r, 0, sizeof(*r));
	id_out[0] = '\0';
	if (status == 400 || status == 404)
		return FD_LOOKUP_NONE;   /* e.g. "There is no contact matching the given email" */
	if (status != 200) {
		fd_classify_failure(status, error, body, len, retry_after, "ticket lookup", r);
		return FD_LOOKUP_ERROR;
	}
	root = body != NULL ? json_loadb(body, len, 0, NULL) : NULL;
	list = json_is_object(root) ? json_object_get(root, "results") : root;
	if (!json_is_array(list)) {
		/* Without an answer we cannot rule out a ticket from an earlier
		 * attempt: try again later rather than risk a duplicate. */
		r->outcome = PARLEY_RETRY;
		fd_fmt(r->reason, sizeof(r->reason), "Freshdesk's ticket lookup answer is not a list");
		res = FD_LOOKUP_ERROR;
	} else {
		res = find_tagged(list, tag, id_out) ? FD_LOOKUP_FOUND : FD_LOOKUP_NONE;
	}
	json_decref(root);
	return res;
}

