/*-------------------------------------------------------------------------
 *
 * wake.h
 *	  Wake the dispatchers when the current transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_WAKE_H
#define ORCHESTRATOR_WAKE_H

/* Kinds of work a dispatcher is woken for (a bit mask). */
#define WAKE_SQL	0x01		/* a sql step became ready */
#define WAKE_TIMER	0x02		/* a timer or deadline was queued */
#define WAKE_HTTP	0x04		/* an http step or webhook delivery */
#define WAKE_ALL	(WAKE_SQL | WAKE_TIMER | WAKE_HTTP)

extern void orchestrator_wake_dispatchers_at_commit(int kinds);

#endif							/* ORCHESTRATOR_WAKE_H */
