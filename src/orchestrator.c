/*-------------------------------------------------------------------------
 *
 * orchestrator.c
 *	  Module entry point of the orchestrator extension.
 *
 * The library must be preloaded: it reserves shared memory for the
 * dispatcher slots and registers the launcher background worker, and both
 * can only happen while the postmaster starts.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "guc.h"
#include "journal.h"
#include "metrics.h"
#include "otlp.h"
#include "relay.h"
#include "restore.h"
#include "seq_cache.h"
#include "version.h"
#include "shmem.h"
#include "workers.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * _PG_init
 *		Define the settings, ask for shared memory and start the launcher.
 *
 * In binary-upgrade mode nothing runs: pg_upgrade only checks that the
 * library loads.
 */
void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("orchestrator must be loaded via shared_preload_libraries"),
				 errdetail("The extension runs background workers and needs shared memory, which can only be set up when the server starts."),
				 errhint("Add orchestrator to shared_preload_libraries in postgresql.conf and restart the server.")));

	orchestrator_define_gucs();
	orchestrator_shmem_install_hooks();
	orchestrator_journal_install_hooks();	/* after shmem's */
	orchestrator_register_launcher();
	orchestrator_relay_install();
	orchestrator_metrics_install();
	orchestrator_otlp_install();
	seq_cache_install();
	orchestrator_restore_install_hooks();
	orchestrator_version_install_hooks();
}
