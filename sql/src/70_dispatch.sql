-- What the background dispatchers call in SQL.  Their sql steps are
-- claimed, run and recorded in C (src/sql_steps.c); a sql step's
-- statement, its result, its successors and its events commit together, so
-- its effect happens exactly once.

-- An attempt of a sql step that was lost outside its statement's own error
-- handling (the dispatcher's transaction failed while handling the step, or
-- the process died while the step ran: src/journal.c).  Counted now, and
-- retried or dead-lettered like any failed attempt; a step that moved on
-- since is left alone.  Returns 'recorded', 'stale' or 'busy' (the run is
-- locked: try again later).  In C (src/engine_fn.c).
CREATE FUNCTION orchestrator._sql_attempt_lost(run_id uuid, step text, attempt integer, error jsonb)
RETURNS text
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_sql_attempt_lost';

-- One dispatcher pass after the sql steps: due timers (a sleep ends, a wait
-- times out, a deadline passes) and expired leases.  Returns how many items
-- it processed and when the next timer, retry or lease expiry is due (NULL:
-- nothing is scheduled).  In C (src/engine_fn.c).
CREATE FUNCTION orchestrator._dispatch(max_steps integer, OUT processed integer, OUT next_wake timestamptz)
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_dispatch';
