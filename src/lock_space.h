/*-------------------------------------------------------------------------
 *
 * lock_space.h
 *	  The extension's own locks: tags of the advisory kind whose last field
 *	  no SQL function can name.
 *
 * pg_advisory_lock() and its kin make tags ending in 1 (one bigint key) or
 * 2 (two int keys), so any role can take, and hold, any of their keys.  The
 * extension's locks end in values of their own, which only C code makes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_LOCK_SPACE_H
#define ORCHESTRATOR_LOCK_SPACE_H

/* a role's starts while it has an active-run limit (quota.c) */
#define LOCK_SPACE_OWNER_STARTS	3
/* _xact_lock(space, key): define_workflow() per name, maintain() (lock_space.c) */
#define LOCK_SPACE_NAMED		4
/* a role's new session keys while it has a session limit (quota.c) */
#define LOCK_SPACE_OWNER_SESSIONS	5

#endif							/* ORCHESTRATOR_LOCK_SPACE_H */
