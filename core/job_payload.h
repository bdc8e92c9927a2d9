/* job_payload.h - a job's payload (JSON) into the structures of the plugin
 * ABI (include/parley/parley.h).
 *
 * Pure: no I/O, no loop, no globals. Every builder checks the fields its
 * operation needs and names the first bad one in its reason, e.g.
 * "invalid payload: conversation.customer.customer_id is missing". The
 * payload shapes are documented in docs/JOBS.md. */
#ifndef PARLEY_CORE_JOB_PAYLOAD_H
#define PARLEY_CORE_JOB_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "parley/parley.h"

/* Everything an operation is handed. The strings point into the payload
 * (which must outlive the call) or into `owned`; the plugin borrows them for
 * the call only, so job_call_clear may run as soon as the operation returns. */
typedef struct job_call {
	parley_customer_info customer;
	parley_conversation_info conversation;
	parley_message_info message;
	union {
		parley_outbound_message send;
		parley_ticket_request ticket;
		parley_ticket_append append;
		parley_notice notice;
	} u;
	json_t *payload;              /* borrowed: the job's payload, for operations that
	                                 read it themselves (core operations) */
	char **owned;                 /* owned: texts made for the call (numbers, JSON) */
	size_t n_owned;
} job_call;

/* The signature of every builder. payload: borrowed, must outlive the call's
 * use; idempotency_key: borrowed, likewise. On false, `why` holds the reason
 * (the job cannot be run with this payload) and `call` needs job_call_clear
 * all the same. */
typedef bool (*job_payload_build_fn)(json_t *payload, const char *idempotency_key,
                                     job_call *call, char *why, size_t whylen);

/* channel/send -> call->u.send */
PARLEY_MUSTCHECK
bool job_payload_send(json_t *payload, const char *idempotency_key, job_call *call, char *why,
                      size_t whylen);
/* sink/open_ticket -> call->u.ticket (with call->conversation, call->message) */
PARLEY_MUSTCHECK
bool job_payload_open_ticket(json_t *payload, const char *idempotency_key, job_call *call,
                             char *why, size_t whylen);
/* sink/append_message -> call->u.append */
PARLEY_MUSTCHECK
bool job_payload_append(json_t *payload, const char *idempotency_key, job_call *call, char *why,
                        size_t whylen);
/* notifier/deliver -> call->u.notice */
PARLEY_MUSTCHECK
bool job_payload_notice(json_t *payload, const char *idempotency_key, job_call *call, char *why,
                        size_t whylen);
/* Only checks that the payload is an object (operations that read it themselves). */
PARLEY_MUSTCHECK
bool job_payload_object(json_t *payload, const char *idempotency_key, job_call *call, char *why,
                        size_t whylen);

/* Free the texts the builder made; the structures become zero. */
void job_call_clear(job_call *call);

#endif
