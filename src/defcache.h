/*-------------------------------------------------------------------------
 *
 * defcache.h
 *	  Step definitions and a version's shape, read once per process and
 *	  kept in a cache bounded in bytes (defcache.c); the definition of a
 *	  for_each step's element is its step's.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_DEFCACHE_H
#define ORCHESTRATOR_DEFCACHE_H

#include "postgres.h"

#include "cache_figures.h"
#include "run_model.h"

extern StepDef *engine_step_def(const char *name, int32 version, const char *step);
extern RunShape *engine_run_shape(const char *name, int32 version);
extern char **engine_root_steps(const char *name, int32 version, int *nroots);
extern void engine_def_cache_check(void);
extern void defcache_figures(CacheFigures *figures);

/* elements of a for_each step, "<step>[<index>]" */
extern bool step_element_name(const char *step, char **base, int32 *index);
extern StepDef *step_element_def(StepDef *base, const char *step, int32 index);

#endif							/* ORCHESTRATOR_DEFCACHE_H */
