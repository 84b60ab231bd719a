/*-------------------------------------------------------------------------
 *
 * rows.h
 *	  Rows of the engine's tables written without the executor (rows.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_ROWS_H
#define ORCHESTRATOR_ROWS_H

#include "access/htup.h"
#include "access/genam.h"
#include "access/stratnum.h"
#include "executor/tuptable.h"
#include "utils/relcache.h"

/* rows of a table in primary key order (rows_scan()) */
typedef struct RowsScan
{
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
} RowsScan;

extern Relation rows_open(Oid relid);
extern void rows_close(Relation rel);
extern void rows_place(Relation rel, int ncolumns, const char *const *columns, int *place);
extern void rows_insert(Relation rel, Datum *values, bool *nulls);
extern RowsScan *rows_scan(Relation rel, int nkeys, const Datum *keys);
extern RowsScan *rows_scan_on(Relation rel, Oid indexid, int nkeys, const Datum *keys);
extern RowsScan *rows_scan_until(Relation rel, Oid indexid, Datum upper);
extern HeapTuple rows_next(RowsScan *s);
/* at most this many key columns in a scan */
#define ROWS_SCAN_MAX_KEYS 3
extern RowsScan *rows_scan_range(Relation rel, Oid indexid, int nkeys,
								 const StrategyNumber *strategies, const Datum *keys);
extern bool rows_next_entry(RowsScan *s, ItemPointer tid, Datum *values, bool *isnull);
extern HeapTuple rows_entry_row(RowsScan *s);
extern bool rows_held_elsewhere(RowsScan *s);
extern void rows_scan_end(RowsScan *s);
extern HeapTuple rows_fetch(Relation rel, int nkeys, const Datum *keys);
extern HeapTuple rows_fetch_tid(Relation rel, ItemPointer tid);
extern bool rows_update(Relation rel, HeapTuple old, Datum *values, bool *nulls, bool *replace);
extern bool rows_delete(Relation rel, HeapTuple old);
extern Datum rows_get(Relation rel, HeapTuple tuple, int place, bool *isnull);

#endif							/* ORCHESTRATOR_ROWS_H */
