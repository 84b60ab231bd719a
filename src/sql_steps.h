/*-------------------------------------------------------------------------
 *
 * sql_steps.h
 *	  The dispatcher's batch of sql steps: claim, run, record.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_SQL_STEPS_H
#define ORCHESTRATOR_SQL_STEPS_H

/*
 * How many sql steps the batch claims next in its transaction (0: none,
 * commit): asked first with claimed 0, then after the steps of each claim
 * were run; more_due: the last claim got all it asked for.
 */
typedef int (*SqlBatchNext) (int claimed, bool more_due);

extern int	orchestrator_run_sql_steps(int max_steps, SqlBatchNext next, bool *more_due);

/*
 * Set by the timers pass (_dispatch()): a due sql step is held by nobody
 * (its run was locked when a batch claimed it); the dispatcher runs a sql
 * batch again shortly.
 */
extern bool orchestrator_sql_steps_waiting;

#endif							/* ORCHESTRATOR_SQL_STEPS_H */
