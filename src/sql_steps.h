/*-------------------------------------------------------------------------
 *
 * sql_steps.h
 *	  The dispatcher's batch of sql steps: claim, run, record.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_SQL_STEPS_H
#define ORCHESTRATOR_SQL_STEPS_H

extern int	orchestrator_run_sql_steps(int max_steps);

/*
 * Set by the timers pass (_dispatch()): a due sql step is held by nobody
 * (its run was locked when a batch claimed it); the dispatcher runs a sql
 * batch again shortly.
 */
extern bool orchestrator_sql_steps_waiting;

#endif							/* ORCHESTRATOR_SQL_STEPS_H */
