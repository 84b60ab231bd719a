/*-------------------------------------------------------------------------
 *
 * relay.h
 *	  Notifications sent after commit by one relay worker, in batches.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_RELAY_H
#define ORCHESTRATOR_RELAY_H

typedef enum RelayChannel
{
	RELAY_EVENTS = 0,			/* "orchestrator": run and step events */
	RELAY_QUEUES = 1,			/* "orchestrator_queue": an external queue has work */
	RELAY_PRIVATE = 2			/* a private channel, named in the entry */
} RelayChannel;

extern void orchestrator_notify(RelayChannel channel, const char *payload);
extern void orchestrator_notify_private(const char *channel, const char *payload);
extern void orchestrator_private_channel(const char *prefix, Oid role, char *buf);
extern void orchestrator_relay_install(void);
extern void orchestrator_relay_commit(void);

#endif							/* ORCHESTRATOR_RELAY_H */
