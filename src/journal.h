/*-------------------------------------------------------------------------
 *
 * journal.h
 *	  Sql steps lost outside their statement: the dispatcher's batch failed
 *	  while handling them, or the dispatcher process died while running them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_JOURNAL_H
#define ORCHESTRATOR_JOURNAL_H

#include "postgres.h"

#include "utils/elog.h"
#include "utils/uuid.h"

#include "shmem.h"			/* StepKey */

/* In the dispatcher, around each step of a batch (sql_steps.c). */
extern void orchestrator_step_begin(pg_uuid_t *run_id, const char *step, int32 attempt);
extern void orchestrator_step_end(void);
extern void orchestrator_batch_end(void);
extern bool orchestrator_step_in_hand(StepKey *key);
extern bool orchestrator_step_unchained(pg_uuid_t *run_id, const char *step);
extern bool orchestrator_step_lost_pending(pg_uuid_t *run_id, const char *step);

/* The dispatcher's life and turns (dispatcher.c). */
extern void orchestrator_journal_open(int slot);
extern bool orchestrator_step_failed_in_batch(ErrorData *edata);
extern int	orchestrator_record_lost_steps(void);

/* The postmaster, when shared memory is (re)initialised. */
extern void orchestrator_journal_install_hooks(void);

/* The step watchdog fired (executor.c): the exit names that reason. */
extern volatile sig_atomic_t orchestrator_watchdog_fired;

#endif							/* ORCHESTRATOR_JOURNAL_H */
