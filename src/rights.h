/*-------------------------------------------------------------------------
 *
 * rights.h
 *	  Who may start runs of a workflow or work its external steps
 *	  (rights.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_RIGHTS_H
#define ORCHESTRATOR_RIGHTS_H

extern bool role_is_admin(Oid role);
extern bool workflow_right(const char *name, const char *privilege, Oid role);
extern bool caller_workflow_right(const char *name, const char *privilege);
extern Datum workable_workflows(Oid role);

#endif							/* ORCHESTRATOR_RIGHTS_H */
