\set SHOW_CONTEXT never
-- schedule_workflow() / unschedule_workflow(): pg_cron jobs that start a
-- workflow as the role that scheduled it.  (test/t/008_schedules.pl waits
-- for pg_cron to really start one; here the job's command is run by hand.)

SET ROLE alice;
SELECT orchestrator.define_workflow('sched_report', '{"steps": [{"name": "count", "kind": "sql", "sql": "SELECT $1 AS got", "args": [{"$path": "$.input"}]}]}') AS v;
RESET ROLE;

-- Without pg_cron in the database.
SET ROLE alice;
SELECT try($$SELECT orchestrator.schedule_workflow('daily', '0 6 * * *', 'sched_report')$$) AS without_pg_cron;
SELECT orchestrator.unschedule_workflow('daily') AS unschedule_without_pg_cron;
RESET ROLE;

CREATE EXTENSION pg_cron;

SET ROLE alice;
SELECT orchestrator.schedule_workflow('daily', '0 6 * * *', 'sched_report', '{"it''s": "quoted"}', '{"tenant": "acme", "priority": 5, "deadline": "1 hour"}') AS job \gset
RESET ROLE;
-- The job: named per role, run by alice, in this database.
SELECT jobid = :job AS same_id, jobname, username, schedule, database = current_database() AS this_db, active
FROM cron.job WHERE jobid = :job;
-- (<alice> is alice's role OID)
SELECT replace(command, 'alice'::regrole::oid::text, '<alice>') AS command FROM cron.job WHERE jobid = :job;
-- The same name again replaces the schedule (and keeps the job id).
SET ROLE alice;
SELECT orchestrator.schedule_workflow('daily', '30 7 * * *', 'sched_report', '{"n": 2}') = :job AS same_job;
RESET ROLE;
SELECT schedule, replace(command, 'alice'::regrole::oid::text, '<alice>') AS command FROM cron.job WHERE jobid = :job;
SELECT command AS alice_command FROM cron.job WHERE jobid = :job \gset

-- What pg_cron runs, run as alice: a run started by alice.
SET ROLE alice;
:alice_command;
RESET ROLE;
SELECT r.name, r.started_by, r.owner, r.input, r.tenant FROM orchestrator.runs r WHERE r.name = 'sched_report';

-- A role without the right to start the workflow cannot schedule it.
SET ROLE bob;
SELECT try($$SELECT orchestrator.schedule_workflow('steal', '* * * * *', 'sched_report')$$) AS bob_without_grant;
-- bob's schedule of the same name is his own; alice's is untouched.
SELECT orchestrator.unschedule_workflow('daily') AS bob_unschedules_alices;
RESET ROLE;
SELECT count(*) AS alice_job_still_there FROM cron.job WHERE jobid = :job;
SELECT count(*) AS bob_jobs FROM cron.job WHERE username = 'bob';

-- Granted, bob schedules it under the same name: a second, separate job.
SET ROLE alice;
SELECT orchestrator.grant_workflow('sched_report', 'bob');
RESET ROLE;
SET ROLE bob;
SELECT orchestrator.schedule_workflow('daily', '*/5 * * * *', 'sched_report', '{"by": "bob"}') AS bob_job \gset
RESET ROLE;
SELECT jobid <> :job AS separate, jobname, username, schedule FROM cron.job WHERE jobid = :bob_job;
SELECT schedule AS alice_schedule_unchanged FROM cron.job WHERE jobid = :job;
SELECT command AS bob_command FROM cron.job WHERE jobid = :bob_job \gset

-- The right is checked again at each run: after the grant is revoked,
-- bob's job fails.
SET ROLE alice;
SELECT orchestrator.revoke_workflow('sched_report', 'bob');
RESET ROLE;
SET ROLE bob;
SELECT try(:'bob_command') AS bob_job_after_revoke;
RESET ROLE;
-- The job fails, starting nothing, when run as another role than the one
-- that scheduled it (a role created later under a dropped role's name).
SET ROLE carol;
SELECT regexp_replace(try(:'alice_command'), 'OID [0-9]+', 'OID <alice>') AS run_by_carol;
RESET ROLE;
SELECT count(*) AS runs FROM orchestrator.runs WHERE name = 'sched_report';

-- Bad input: a specific SQLSTATE, and nothing scheduled.
SELECT count(*) AS jobs_before FROM cron.job \gset
SET ROLE alice;
SELECT try($$SELECT orchestrator.schedule_workflow(NULL, '* * * * *', 'sched_report')$$) AS null_job_name;
SELECT try($$SELECT orchestrator.schedule_workflow('', '* * * * *', 'sched_report')$$) AS empty_job_name;
SELECT try($$SELECT orchestrator.schedule_workflow('a b', '* * * * *', 'sched_report')$$) AS space_in_job_name;
SELECT try($$SELECT orchestrator.schedule_workflow('x''; DROP TABLE t; --', '* * * * *', 'sched_report')$$) AS quote_in_job_name;
SELECT try($$SELECT orchestrator.schedule_workflow(repeat('j', 55), '* * * * *', 'sched_report')$$) AS long_job_name;
SELECT try($$SELECT orchestrator.schedule_workflow('j', NULL, 'sched_report')$$) AS null_schedule;
SELECT try($$SELECT orchestrator.schedule_workflow('j', ' ', 'sched_report')$$) AS blank_schedule;
SELECT try($$SELECT orchestrator.schedule_workflow('j', 'every day', 'sched_report')$$) AS bad_schedule;
SELECT try($$SELECT orchestrator.schedule_workflow('j', '61 * * * *', 'sched_report')$$) AS out_of_range_schedule;
SELECT try($$SELECT orchestrator.schedule_workflow('j', '* * * * *', NULL)$$) AS null_workflow;
SELECT try($$SELECT orchestrator.schedule_workflow('j', '* * * * *', 'no_such_workflow')$$) AS unknown_workflow;
SELECT try($$SELECT orchestrator.schedule_workflow('j', '* * * * *', 'sched_report', NULL)$$) AS null_input;
SELECT try($$SELECT orchestrator.schedule_workflow('j', '* * * * *', 'sched_report', '{}', '[]')$$) AS options_not_object;
SELECT try($$SELECT orchestrator.schedule_workflow('j', '* * * * *', 'sched_report', '{}', '{"idempotency_key": "k"}')$$) AS idempotency_key;
SELECT try($$SELECT orchestrator.schedule_workflow('j', '* * * * *', 'sched_report', '{}', '{"colour": "red"}')$$) AS unknown_option;
SELECT try($$SELECT orchestrator.schedule_workflow('j', '* * * * *', 'sched_report', '{}', '{"tenant": 5}')$$) AS bad_tenant;
SELECT try($$SELECT orchestrator.schedule_workflow('j', '* * * * *', 'sched_report', '{}', '{"priority": 5000}')$$) AS bad_priority;
SELECT try($$SELECT orchestrator.schedule_workflow('j', '* * * * *', 'sched_report', '{}', '{"version": "1"}')$$) AS bad_version;
SELECT try($$SELECT orchestrator.schedule_workflow('j', '* * * * *', 'sched_report', '{}', '{"version": 9}')$$) AS unknown_version;
SELECT try($$SELECT orchestrator.schedule_workflow('j', '* * * * *', 'sched_report', '{}', '{"deadline": "2030-01-01"}')$$) AS absolute_deadline;
SELECT try($$SELECT orchestrator.schedule_workflow('j', '* * * * *', 'sched_report', '{}', '{"deadline": "-1 hour"}')$$) AS negative_deadline;
SELECT try($$SELECT orchestrator.unschedule_workflow(NULL)$$) AS unschedule_null;
SELECT try($$SELECT orchestrator.unschedule_workflow('a b')$$) AS unschedule_bad_name;
RESET ROLE;
SELECT count(*) = :jobs_before AS nothing_scheduled FROM cron.job;

-- A role that cannot log in cannot be pg_cron's job user.
CREATE ROLE nologin_user NOLOGIN IN ROLE orchestrator_user;
SET ROLE alice;
SELECT orchestrator.grant_workflow('sched_report', 'nologin_user');
RESET ROLE;
SET ROLE nologin_user;
SELECT try($$SELECT orchestrator.schedule_workflow('j', '* * * * *', 'sched_report')$$) AS nologin;
RESET ROLE;
-- mallory is no orchestrator user; nobody calls the implementations.
SET ROLE mallory;
SELECT try($$SELECT orchestrator.schedule_workflow('j', '* * * * *', 'sched_report')$$) AS mallory_schedules;
SELECT try($$SELECT orchestrator.unschedule_workflow('daily')$$) AS mallory_unschedules;
RESET ROLE;
SET ROLE bob;
SELECT try($$SELECT orchestrator._api_schedule_workflow('j', '* * * * *', 'sched_report', '{}', '{}')$$) AS implementation_direct;
SELECT try($$SELECT orchestrator._api_unschedule_workflow('daily')$$) AS implementation_direct_unschedule;
RESET ROLE;

-- An admin may schedule any workflow; the job runs as the admin.
SET ROLE carol;
SELECT orchestrator.schedule_workflow('ops', '@daily', 'sched_report') > 0 AS admin_scheduled;
SELECT orchestrator.unschedule_workflow('ops') AS admin_unscheduled;
RESET ROLE;

-- Unschedule: each role its own.
SET ROLE bob;
SELECT orchestrator.unschedule_workflow('daily') AS bob_unscheduled, orchestrator.unschedule_workflow('daily') AS again;
RESET ROLE;
SELECT count(*) AS alice_job_kept FROM cron.job WHERE jobid = :job;
SET ROLE alice;
SELECT orchestrator.unschedule_workflow('daily') AS alice_unscheduled;
RESET ROLE;
SELECT count(*) AS jobs_left FROM cron.job WHERE jobname LIKE 'workflow:%';
DROP EXTENSION pg_cron;
DROP ROLE nologin_user;
