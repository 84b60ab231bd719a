/*-------------------------------------------------------------------------
 *
 * queue_vacuum.h
 *	  The first dispatcher vacuums work_queue while steps flow
 *	  (queue_vacuum.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_QUEUE_VACUUM_H
#define ORCHESTRATOR_QUEUE_VACUUM_H

extern void queue_vacuum_note(int n);
extern void queue_vacuum_after_turn(void);

#endif							/* ORCHESTRATOR_QUEUE_VACUUM_H */
