/* zendesk_memory.c - what one zendesk instance remembers in memory: each
 * ticket's requester, each customer's Zendesk user, and the comments whose
 * PUT may have landed although its answer was lost. All are small rings in
 * the instance (see zendesk_sink.h); forgetting only costs a request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/plugin_util.h"
#include "zendesk_sink.h"

const char *zd_requester_of(const zendesk_sink *zs, const char *ticket)
{
	for (size_t i = 0; i < ZD_REQUESTERS; i++) {
		if (zs->requesters[i].ticket[0] != '\0' && strcmp(zs->requesters[i].ticket, ticket) == 0)
			return zs->requesters[i].user;
	}
	return NULL;
}

/* Remember a ticket's requester (a small ring: the oldest goes first). */
void zd_requester_remember(zendesk_sink *zs, const char *ticket, const char *user)
{
	zd_requester *r;

	if (!zd_is_id(ticket) || !zd_is_id(user) || zd_requester_of(zs, ticket) != NULL)
		return;
	r = &zs->requesters[zs->requester_next];
	zs->requester_next = (zs->requester_next + 1) % ZD_REQUESTERS;
	snprintf(r->ticket, sizeof(r->ticket), "%s", ticket);
	snprintf(r->user, sizeof(r->user), "%s", user);
}

/* FNV-1a of s (borrowed): tells whether a user body changed. */
uint64_t zd_fingerprint(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		h ^= *p;
		h *= 1099511628211ULL;
	}
	return h;
}

static zd_user *user_slot(zendesk_sink *zs, const char *customer)
{
	for (size_t i = 0; customer != NULL && i < ZD_USERS; i++) {
		if (zs->users[i].customer[0] != '\0' && strcmp(zs->users[i].customer, customer) == 0)
			return &zs->users[i];
	}
	return NULL;
}

/* The Zendesk user of customer (borrowed) when it was learned from the same
 * user body, else NULL. */
const char *zd_user_of(zendesk_sink *zs, const char *customer, uint64_t fp)
{
	const zd_user *u = user_slot(zs, customer);

	return u != NULL && u->fingerprint == fp ? u->user : NULL;
}

/* Remember customer's user (a ring: the oldest goes first; a forgotten one
 * costs one more user call). Ids too long for a slot are not remembered. */
void zd_user_remember(zendesk_sink *zs, const char *customer, uint64_t fp, const char *user)
{
	zd_user *u;

	if (customer == NULL || strlen(customer) >= ZD_CUSTOMER_BYTES || !zd_is_id(user))
		return;
	u = user_slot(zs, customer);
	if (u == NULL) {
		u = &zs->users[zs->user_next];
		zs->user_next = (zs->user_next + 1) % ZD_USERS;
		snprintf(u->customer, sizeof(u->customer), "%s", customer);
	}
	u->fingerprint = fp;
	snprintf(u->user, sizeof(u->user), "%s", user);
}

void zd_user_forget(zendesk_sink *zs, const char *customer)
{
	zd_user *u = user_slot(zs, customer);

	if (u != NULL)
		memset(u, 0, sizeof(*u));
}

zd_uncertain *zd_uncertain_find(zendesk_sink *zs, const char *key)
{
	for (size_t i = 0; key != NULL && i < ZD_UNCERTAIN; i++) {
		if (zs->uncertain[i].key != NULL && strcmp(zs->uncertain[i].key, key) == 0)
			return &zs->uncertain[i];
	}
	return NULL;
}

/* Remember that key's PUT, started at_ms, may have landed (a ring: the
 * oldest is forgotten first; a forgotten one risks a duplicate comment). */
void zd_uncertain_add(zendesk_sink *zs, const char *key, int64_t at_ms)
{
	zd_uncertain *u = zd_uncertain_find(zs, key);

	if (key == NULL)
		return;
	if (u != NULL) {
		if (at_ms < u->at_ms)
			u->at_ms = at_ms;
		return;
	}
	u = &zs->uncertain[zs->uncertain_next];
	zs->uncertain_next = (zs->uncertain_next + 1) % ZD_UNCERTAIN;
	free(u->key);
	u->key = pu_strdup(key);
	u->at_ms = at_ms;
}

void zd_uncertain_forget(zendesk_sink *zs, const char *key)
{
	zd_uncertain *u = zd_uncertain_find(zs, key);

	if (u != NULL) {
		free(u->key);
		u->key = NULL;
	}
}
