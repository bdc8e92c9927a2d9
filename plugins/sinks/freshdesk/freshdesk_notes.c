/* freshdesk_notes.c - the record of the notes Parley adds to a ticket, and
 * the search of a ticket's conversations for a note an earlier attempt
 * added (see freshdesk_notes.h). Pure: no host table, no loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "freshdesk_notes.h"
#include "../../common/rfc3339.h"
#include "../../common/plugin_util.h"

/* "tag:fp:ms": 16 + 1 + 16 + 1 + up to 19 digits. */
#define FD_ENTRY_MAX_BYTES 64
/* 9999-12-31T23:59:59.999Z: a later time is none Parley recorded. */
#define FD_ENTRY_MAX_MS 253402300799999LL

bool fd_notes_key(const char *ticket_id, char out[FD_NOTES_KEY_BYTES])
{
	int n;

	if (!fd_id_is_valid(ticket_id))
		return false;
	n = snprintf(out, FD_NOTES_KEY_BYTES, "notes:%s", ticket_id);
	return n > 0 && n < FD_NOTES_KEY_BYTES;
}

void fd_job_tag(const char *idempotency_key, char out[17])
{
	char tag[FD_TAG_BYTES];

	/* The same digits as the ticket tag "parley-<16 hex>" of the job. */
	fd_key_tag(idempotency_key != NULL ? idempotency_key : "", tag);
	memcpy(out, tag + strlen("parley-"), 16);
	out[16] = '\0';
}

static bool is_hex16(const char *s, size_t len)
{
	if (len != 16)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return true;
}

/* One "tag:fp:ms" (len bytes at s) into *e; false when malformed. */
static bool parse_entry(const char *s, size_t len, fd_note_entry *e)
{
	char ms[20];
	size_t ms_len;
	int64_t v = 0;

	if (len < 16 + 1 + 16 + 2 || s[16] != ':' || s[33] != ':')
		return false;
	if (!is_hex16(s, 16) || !is_hex16(s + 17, 16))
		return false;
	ms_len = len - 34;
	if (ms_len >= sizeof(ms))
		return false;
	memcpy(ms, s + 34, ms_len);
	ms[ms_len] = '\0';
	/* The record is stored state, which may be damaged: a time past year
	 * 9999 makes the entry malformed, and the bound also keeps 19 digits
	 * from overflowing v. */
	for (const char *p = ms; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
		if (v > FD_ENTRY_MAX_MS)
			return false;
	}
	memcpy(e->tag, s, 16);
	e->tag[16] = '\0';
	memcpy(e->fp, s + 17, 16);
	e->fp[16] = '\0';
	e->at_ms = v;
	return true;
}

void fd_notes_parse(const char *value, fd_notes *out)
{
	memset(out, 0, sizeof(*out));
	if (value == NULL)
		return;
	while (*value != '\0') {
		size_t len = strcspn(value, " ");
		fd_note_entry e;

		if (len > 0 && len <= FD_ENTRY_MAX_BYTES && parse_entry(value, len, &e))
			fd_notes_add(out, e.tag, e.fp, e.at_ms);
		value += len;
		value += strspn(value, " ");
	}
}

char *fd_notes_format(const fd_notes *n)
{
	pu_buf b = { 0 };
	char entry[FD_ENTRY_MAX_BYTES + 2];

	for (size_t i = 0; i < n->n; i++) {
		snprintf(entry, sizeof(entry), "%s%s:%s:%lld", i > 0 ? " " : "", n->e[i].tag,
		         n->e[i].fp, (long long)n->e[i].at_ms);
		pu_buf_str(&b, entry);
	}
	if (!b.failed && b.data == NULL)
		pu_buf_add(&b, "", 0);
	if (b.failed) {
		free(b.data);
		return NULL;
	}
	return b.data;
}

void fd_notes_add(fd_notes *n, const char *tag, const char *fp, int64_t at_ms)
{
	fd_note_entry *e;

	if (n->n == FD_NOTES_MAX) {
		memmove(&n->e[0], &n->e[1], sizeof(n->e[0]) * (FD_NOTES_MAX - 1));
		n->n--;
	}
	e = &n->e[n->n++];
	snprintf(e->tag, sizeof(e->tag), "%s", tag);
	snprintf(e->fp, sizeof(e->fp), "%s", fp);
	e->at_ms = at_ms < 0 ? 0 : at_ms;
}

const fd_note_entry *fd_notes_find(const fd_notes *n, const char *tag)
{
	for (size_t i = 0; i < n->n; i++) {
		if (strcmp(n->e[i].tag, tag) == 0)
			return &n->e[i];
	}
	return NULL;
}

bool fd_notes_owns(const fd_notes *n, const char *comment_id)
{
	const char *fp = comment_id != NULL ? strstr(comment_id, ":pub:") : NULL;

	if (fp == NULL)
		return false;   /* Parley adds public notes only */
	fp += strlen(":pub:");
	for (size_t i = 0; i < n->n; i++) {
		if (strcmp(n->e[i].fp, fp) == 0)
			return true;
	}
	return false;
}

void fd_note_search_init(fd_note_search *s, const fd_notes *n, const fd_note_entry *mine)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->fp, sizeof(s->fp), "%s", mine->fp);
	s->since_ms = mine->at_ms - FD_NOTES_CLOCK_SLACK_MS;
	s->needed = 1;
	s->page = 1;
	/* The same words added shortly before by another job of this ticket
	 * (a customer writing "Thanks!" twice) are not this job's note. */
	for (size_t i = 0; i < n->n && &n->e[i] != mine; i++) {
		if (strcmp(n->e[i].fp, mine->fp) == 0 && n->e[i].at_ms >= s->since_ms)
			s->needed++;
	}
}

char *fd_conversations_path(const char *ticket_id, int page)
{
	char path[128];
	int n;

	if (!fd_id_is_valid(ticket_id) || page < 1)
		return NULL;
	n = snprintf(path, sizeof(path), "/api/v2/tickets/%s/conversations?per_page=%d&page=%d",
	             ticket_id, FD_NOTES_PER_PAGE, page);
	if (n < 0 || (size_t)n >= sizeof(path))
		return NULL;
	return pu_strdup(path);
}

/* Does conversation c count as this job's note? */
static bool is_match(const json_t *c, const fd_note_search *s)
{
	const char *html = json_string_value(json_object_get(c, "body"));
	const char *plain = json_string_value(json_object_get(c, "body_text"));
	int64_t created;
	char fp[17];
	char *text;

	if (!json_is_true(json_object_get(c, "incoming")) ||
	    !json_is_false(json_object_get(c, "private")))
		return false;
	/* A note without a readable time cannot be told from an older one with
	 * the same words, unless nothing older counts. */
	if (!pu_rfc3339_ms(json_string_value(json_object_get(c, "created_at")), &created))
		created = s->needed == 1 ? s->since_ms : INT64_MIN;
	if (created < s->since_ms)
		return false;
	if (html != NULL && html[0] != '\0') {
		text = fd_html_to_text(html, strlen(html));
		if (text == NULL)
			return false;
		fd_fingerprint(text, fp);
		free(text);
		if (strcmp(fp, s->fp) == 0)
			return true;
	}
	if (plain != NULL && plain[0] != '\0') {
		fd_fingerprint(plain, fp);
		return strcmp(fp, s->fp) == 0;
	}
	return false;
}

fd_note_lookup fd_classify_conversations(long status, const char *error, const void *body,
                                         size_t len, const char *retry_after,
                                         fd_note_search *s, fd_result *r)
{
	json_t *list;
	size_t i, count;
	json_t *c;

	memset(r, 0, sizeof(*r));
	if (status == 404)
		return FD_NOTE_ABSENT;
	if (status != 200) {
		fd_classify_failure(status, error, body, len, retry_after, "conversation lookup", r);
		return FD_NOTE_ERROR;
	}
	list = body != NULL ? json_loadb(body, len, 0, NULL) : NULL;
	if (!json_is_array(list)) {
		/* Without the list the note may be there: a second POST could
		 * duplicate it, so try again later. */
		json_decref(list);
		r->outcome = PARLEY_RETRY;
		snprintf(r->reason, sizeof(r->reason),
		         "Freshdesk's conversation list answer is not a list");
		return FD_NOTE_ERROR;
	}
	json_array_foreach(list, i, c) {
		if (is_match(c, s))
			s->seen++;
	}
	count = json_array_size(list);
	json_decref(list);
	if (s->seen >= s->needed)
		return FD_NOTE_FOUND;
	if (count >= FD_NOTES_PER_PAGE && s->page < FD_NOTES_MAX_PAGES) {
		s->page++;
		return FD_NOTE_MORE;
	}
	return FD_NOTE_ABSENT;
}
