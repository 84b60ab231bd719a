/*-------------------------------------------------------------------------
 *
 * leaf.h
 *	  Statements on the daily partitions of one run's history.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_LEAF_H
#define ORCHESTRATOR_LEAF_H

#include "postgres.h"

#include "executor/spi.h"

/* The partitions (of workflow_runs, _steps, _events) that hold a run. */
typedef struct RunLeaves
{
	Oid			runs;
	Oid			steps;
	Oid			events;
} RunLeaves;

struct CacheFigures;

extern bool orchestrator_run_leaves(Datum run_id, RunLeaves *leaves, bool missing_ok);
extern Oid orchestrator_table_oid(const char *name);

extern SPIPlanPtr orchestrator_leaf_plan(int id, const char *sql, int nargs,
										 Oid *argtypes, const RunLeaves *leaves);

extern Size orchestrator_plan_bytes(SPIPlanPtr plan);
extern void orchestrator_leaf_plan_figures(struct CacheFigures *figures);

#endif							/* ORCHESTRATOR_LEAF_H */
