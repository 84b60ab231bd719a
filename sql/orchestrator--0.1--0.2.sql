-- orchestrator 0.1 -> 0.2
\echo Use "ALTER EXTENSION orchestrator UPDATE TO '0.2'" to load this file. \quit

-- Only the engine writes the status of runs and steps, and PostgreSQL
-- parses CHECK constraints again for every statement that writes a row: the
-- dispatcher's hot path spent a tenth of its time there.  (Dropping a
-- constraint of the partitioned parent drops it from every partition.)
ALTER TABLE orchestrator.workflow_runs DROP CONSTRAINT workflow_runs_status_check;
ALTER TABLE orchestrator.workflow_steps DROP CONSTRAINT workflow_steps_status_check;
