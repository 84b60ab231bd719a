/*-------------------------------------------------------------------------
 *
 * run_model.c
 *	  The names of the statuses of runs and steps, as the tables hold them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "run_model.h"

const char *const run_status_names[RUN_STATUS_COUNT] = {
	[RUN_PENDING] = "pending",
	[RUN_RUNNING] = "running",
	[RUN_COMPENSATING] = "compensating",
	[RUN_SUCCEEDED] = "succeeded",
	[RUN_FAILED] = "failed",
	[RUN_CANCELLED] = "cancelled",
	[RUN_QUEUED] = "queued",
};

const char *const step_status_names[STEP_STATUS_COUNT] = {
	[STEP_WAITING] = "waiting",
	[STEP_READY] = "ready",
	[STEP_RUNNING] = "running",
	[STEP_SUCCEEDED] = "succeeded",
	[STEP_SKIPPED] = "skipped",
	[STEP_FAILED] = "failed",
	[STEP_DEAD] = "dead",
	[STEP_CANCELLED] = "cancelled",
	[STEP_COMPENSATED] = "compensated",
	[STEP_SCHEDULED] = "scheduled",
};

RunStatus
run_status_from_name(const char *name)
{
	for (int i = 0; i < RUN_STATUS_COUNT; i++)
		if (strcmp(name, run_status_names[i]) == 0)
			return (RunStatus) i;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown run status \"%s\"", name)));
	return RUN_FAILED;			/* keep the compiler quiet */
}
