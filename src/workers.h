/*-------------------------------------------------------------------------
 *
 * workers.h
 *	  Entry points of the orchestrator background workers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_WORKERS_H
#define ORCHESTRATOR_WORKERS_H

#include "postgres.h"

#define ORCHESTRATOR_LIBRARY		"orchestrator"
#define ORCHESTRATOR_LAUNCHER_TYPE	"orchestrator launcher"
#define ORCHESTRATOR_DISPATCHER_TYPE "orchestrator dispatcher"
#define ORCHESTRATOR_RELAY_TYPE	"orchestrator relay"

extern void orchestrator_register_launcher(void);

extern PGDLLEXPORT void orchestrator_launcher_main(Datum main_arg);
extern PGDLLEXPORT void orchestrator_dispatcher_main(Datum main_arg);
extern PGDLLEXPORT void orchestrator_relay_main(Datum main_arg);

#endif							/* ORCHESTRATOR_WORKERS_H */
