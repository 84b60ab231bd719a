/*-------------------------------------------------------------------------
 *
 * executor.h
 *	  Run the statement of a sql step as the workflow's owner.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_EXECUTOR_H
#define ORCHESTRATOR_EXECUTOR_H

#include "postgres.h"

#include "utils/array.h"

struct CacheFigures;

extern Datum orchestrator_execute_sql_step(Oid owner, const char *sql, int nargs,
										   Datum *values, char *nulls,
										   int timeout_ms, bool *isnull);
extern void orchestrator_enable_step_watchdog(void);
extern void orchestrator_step_plan_figures(struct CacheFigures *figures);
extern void orchestrator_engine_guard_arm(int ms);
extern void orchestrator_engine_guard_disarm(void);
extern void orchestrator_engine_guard_forget(void);
extern void orchestrator_sql_step_args(ArrayType *args, int *nargs,
									   Datum **values, char **nulls);

#endif							/* ORCHESTRATOR_EXECUTOR_H */
