/*-------------------------------------------------------------------------
 *
 * notify_queue.h
 *	  The server's notification queue as commands/async.c keeps it: how
 *	  full it is, who listens and who holds it back.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_NOTIFY_QUEUE_H
#define ORCHESTRATOR_NOTIFY_QUEUE_H

extern void notify_queue_attach(void);
extern bool notify_queue_listened_here(void);
extern double notify_queue_usage(void);
extern bool notify_queue_has_room(void);

#endif							/* ORCHESTRATOR_NOTIFY_QUEUE_H */
