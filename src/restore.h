/*-------------------------------------------------------------------------
 *
 * restore.h
 *	  Restoring a dump into a database that has partitions already.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_RESTORE_H
#define ORCHESTRATOR_RESTORE_H

extern void orchestrator_restore_install_hooks(void);

#endif							/* ORCHESTRATOR_RESTORE_H */
