/*-------------------------------------------------------------------------
 *
 * guc.h
 *	  Configuration parameters (orchestrator.*) of the orchestrator extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_GUC_H
#define ORCHESTRATOR_GUC_H

/* Compile-time upper bound on dispatchers; sizes shared memory. */
#define ORCHESTRATOR_MAX_WORKERS	64

extern char *orchestrator_database;
extern int	orchestrator_workers;
extern int	orchestrator_batch_size;
extern int	orchestrator_poll_interval;
extern char *orchestrator_default_lease;
extern char *orchestrator_default_step_timeout;

extern void orchestrator_define_gucs(void);

#endif							/* ORCHESTRATOR_GUC_H */
