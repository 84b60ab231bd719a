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

#endif							/* ORCHESTRATOR_SQL_STEPS_H */
