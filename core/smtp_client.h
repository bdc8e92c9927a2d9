/* smtp_client.h - outbound mail through SMTP on the core loop. */
#ifndef PARLEY_CORE_SMTP_CLIENT_H
#define PARLEY_CORE_SMTP_CLIENT_H

#include "parley/parley.h"

/* Send one mail through SMTP (smtp:// with STARTTLS, or smtps://); everything
 * in `call` is copied. The callback's status is the server's last reply code
 * (250 when accepted; a 4xx/5xx refusal too, with its text as the error), or
 * 0 for a transport failure. Returns 0 if started (the callback runs exactly
 * once, later, on the loop), -1 otherwise. Needs http_client_init. */
PARLEY_MUSTCHECK int smtp_client_send(const parley_smtp_call *call, parley_http_done_fn done,
                                      void *arg);

#endif
