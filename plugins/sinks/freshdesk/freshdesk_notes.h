/* freshdesk_notes.h - how the freshdesk sink knows its own notes without
 * waiting for Freshdesk's answer.
 *
 * Before Parley adds a customer's message as a note it records, in the
 * instance's plugin state under "notes:<ticket id>", which job is adding
 * which text (the job's tag, the text's fingerprint, the time). Two readers
 * use that record:
 *
 * - the automation webhook: a public comment whose fingerprint is recorded
 *   for its ticket is Parley's own note, even when the POST's answer has not
 *   arrived (or never will), and is never sent back to the customer;
 * - a retry of the job: its tag is recorded, so an earlier attempt may have
 *   added the note; the ticket's conversations are read, and a matching
 *   incoming note completes the job instead of a second POST.
 *
 * Appends to one ticket run one at a time (one ordering key per case and
 * sink), so the read-modify-write of a ticket's record is not raced.
 *
 * Pure: no host table, no loop. */
#ifndef PARLEY_FRESHDESK_NOTES_H
#define PARLEY_FRESHDESK_NOTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "freshdesk_api.h"

#define FD_NOTES_MAX 16             /* notes remembered per ticket (the newest) */
#define FD_NOTES_KEY_BYTES 32       /* "notes:" and a ticket id, and NUL */
#define FD_NOTES_PER_PAGE 100       /* conversations read per request */
#define FD_NOTES_MAX_PAGES 2        /* a retry reads at most this many pages */
#define FD_NOTES_CLOCK_SLACK_MS 120000 /* Parley's and Freshdesk's clocks may differ */

typedef struct fd_note_entry {
	char tag[17];                   /* the job's tag: 16 hex digits */
	char fp[17];                    /* the text's fingerprint (fd_fingerprint) */
	int64_t at_ms;                  /* when the first attempt began, Unix ms */
} fd_note_entry;

/* A ticket's record, oldest first. */
typedef struct fd_notes {
	fd_note_entry e[FD_NOTES_MAX];
	size_t n;
} fd_notes;

/* The plugin-state key of a ticket's record. false when ticket_id is not a
 * Freshdesk id. */
FD_INTERNAL bool fd_notes_key(const char *ticket_id, char out[FD_NOTES_KEY_BYTES]);

/* The tag of a job: the first 16 hex digits of SHA-256(idempotency_key). */
FD_INTERNAL void fd_job_tag(const char *idempotency_key, char out[17]);

/* Read a stored record (borrowed; NULL: none yet) into *out. Malformed
 * entries are skipped, so a damaged record costs at most a lookup. */
FD_INTERNAL void fd_notes_parse(const char *value, fd_notes *out);

/* The stored form of n, owned by the caller; NULL when out of memory. */
FD_INTERNAL char *fd_notes_format(const fd_notes *n);

/* Record that job tag adds text with fingerprint fp, beginning at at_ms;
 * the oldest entry goes when the record is full. */
FD_INTERNAL void fd_notes_add(fd_notes *n, const char *tag, const char *fp, int64_t at_ms);

/* The entry of job tag, or NULL. */
FD_INTERNAL const fd_note_entry *fd_notes_find(const fd_notes *n, const char *tag);

/* True when comment_id (borrowed, "<ticket>:pub:<fingerprint>" as the
 * webhook gives it for ticket ticket_id) is a public note n records. */
FD_INTERNAL bool fd_notes_owns(const fd_notes *n, const char *comment_id);

/* What a retry looks for in the ticket's conversations. */
typedef struct fd_note_search {
	char fp[17];                    /* the note's fingerprint */
	int64_t since_ms;               /* notes created before this are older ones */
	int needed;                     /* matches that prove this job's note landed */
	int seen;                       /* matches so far (over the pages read) */
	int page;                       /* the page being read, from 1 */
} fd_note_search;

/* Prepare s for job entry `mine` of record n: the same text recorded by an
 * earlier job of the ticket within the clock slack must be matched too. */
FD_INTERNAL void fd_note_search_init(fd_note_search *s, const fd_notes *n,
                                     const fd_note_entry *mine);

/* GET /api/v2/tickets/{id}/conversations?per_page=100&page=N, owned by the
 * caller; NULL when ticket_id is not valid or out of memory. */
FD_INTERNAL char *fd_conversations_path(const char *ticket_id, int page);

typedef enum fd_note_lookup {
	FD_NOTE_FOUND = 0,              /* this job's note is there: do not add it again */
	FD_NOTE_MORE = 1,               /* a full page: read page s->page (advanced) */
	FD_NOTE_ABSENT = 2,             /* not there (or too many pages to tell): add it */
	FD_NOTE_ERROR = 3               /* r says what to do with the delivery */
} fd_note_lookup;

/* Classify one page of conversations (an array of Freshdesk conversation
 * objects). A match is an incoming public note whose text (body, else
 * body_text) has s->fp and whose created_at is not before s->since_ms. A
 * 404 (no such ticket) is ABSENT: the POST says so properly. Other failures
 * are classified like fd_classify_create. */
FD_INTERNAL fd_note_lookup fd_classify_conversations(long status, const char *error,
                                                     const void *body, size_t len,
                                                     const char *retry_after,
                                                     fd_note_search *s, fd_result *r);

#endif
