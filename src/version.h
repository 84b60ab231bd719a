/*-------------------------------------------------------------------------
 *
 * version.h
 *	  Does the installed extension match this library?
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_VERSION_H
#define ORCHESTRATOR_VERSION_H

extern char *orchestrator_installed_version(void);
extern void orchestrator_require_current_schema(void);
extern bool orchestrator_schema_current(char **installed);
extern void orchestrator_version_install_hooks(void);

#endif							/* ORCHESTRATOR_VERSION_H */
