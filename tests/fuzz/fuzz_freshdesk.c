/* fuzz_freshdesk.c - libFuzzer target for the freshdesk sink's pure half:
 * the input is tried as an automation webhook body, as Freshdesk's answers
 * (a created ticket or note, a ticket list, a conversation list, a validation
 * error), as HTML to turn into text, and its first line as webhook
 * credentials, as the text of a ticket and a note, and as a ticket's stored
 * record of notes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "freshdesk_api.h"
#include "freshdesk_notes.h"

/* Check what the parser hands out the way the core would, so a field that
 * is not NUL-terminated or missing shows up under the sanitizers. */
static int take(void *ctx, const parley_ticket_event *ev)
{
	size_t *n = ctx;
	size_t sum = 0;
	const char *strings[] = { ev->dedupe_key, ev->external_ticket_id, ev->comment_id,
	                          ev->author_name, ev->text };

	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		if (strings[i] != NULL)
			sum += strlen(strings[i]);
	}
	if (ev->dedupe_key == NULL || ev->external_ticket_id == NULL)
		abort();
	if (ev->type == PARLEY_TICKET_COMMENT && (ev->comment_id == NULL || ev->text == NULL))
		abort();
	if (ev->raw_json == NULL || strlen(ev->raw_json) != ev->raw_json_len)
		abort();
	*n += sum > 0;
	/* Refuse every third event, so the refusal path runs too. */
	return (*n % 3 == 0) ? -1 : 0;
}

static int equals(const void *a, size_t a_len, const void *b, size_t b_len)
{
	return a_len == b_len && memcmp(a, b, a_len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[256], line[300], id[FD_ID_BYTES], cid[FD_COMMENT_ID_BYTES], fp[17];
	fd_result r;
	size_t n = 0, i;
	char *s;

	fd_parse_webhook(data, size, 1700000000000LL, take, &n, why, sizeof(why));
	fd_classify_create(201, NULL, data, size, NULL, "ticket", &r);
	fd_classify_create(400, NULL, data, size, NULL, "ticket", &r);
	fd_classify_create(429, NULL, data, size, "12", "note", &r);
	fd_classify_lookup(200, NULL, data, size, NULL, "parley-0123456789abcdef", id, &r);
	fd_webhook_public_ticket(data, size, id);
	{
		fd_note_search search;
		memset(&search, 0, sizeof(search));
		memcpy(search.fp, "0123456789abcdef", 17);
		search.needed = 2;
		search.page = 1;
		fd_classify_conversations(200, NULL, data, size, NULL, &search, &r);
	}
	s = fd_html_to_text((const char *)data, size);
	if (s != NULL) {
		fd_fingerprint(s, fp);
		free(s);
	}

	for (i = 0; i < size && i < sizeof(line) - 1 && data[i] != '\n'; i++)
		line[i] = data[i] != '\0' ? (char)data[i] : ' ';
	line[i] = '\0';
	fd_check_auth(line, NULL, NULL, "secret", equals);
	fd_check_auth(NULL, line, "user", "secret", equals);
	fd_comment_id(line, 1, line, cid);
	s = fd_auth_header(line);
	free(s);
	s = fd_note_body(line);
	free(s);
	s = fd_note_path(line);
	free(s);
	{
		fd_notes notes;
		fd_notes_parse(line, &notes);
		fd_notes_owns(&notes, line);
		s = fd_notes_format(&notes);
		free(s);
	}
	{
		fd_ticket_in t;
		char *body = NULL, *path = NULL;
		memset(&t, 0, sizeof(t));
		t.idempotency_key = line;
		t.case_number = line;
		t.customer_id = line;
		t.customer_phone = i % 2 ? line : NULL;
		t.text = line;
		t.follow_up_of = line;
		t.priority = 1;
		t.source = 2;
		if (fd_ticket_body(&t, &body, why, sizeof(why)))
			free(body);
		if (fd_lookup_path(&t, &path))
			free(path);
	}
	return 0;
}
