/*
 * commit_delay.c
 *	  A test library: commit_delay(ms) makes the current transaction's
 *	  commit sleep "ms" after it became visible, before the transaction
 *	  callbacks registered earlier in the backend run (callbacks run newest
 *	  first).  test_relay.py uses it to stand for a backend preempted between
 *	  the two: orchestrator's commit callback then runs late.
 *
 *	  Built by the test with the server's headers; never installed.
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(commit_delay_arm);

static int	delay_ms = 0;
static bool registered = false;

static void
commit_delay_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && delay_ms > 0)
	{
		long		ms = delay_ms;

		delay_ms = 0;
		pg_usleep(ms * 1000L);
	}
	else if (event == XACT_EVENT_ABORT)
		delay_ms = 0;
}

Datum
commit_delay_arm(PG_FUNCTION_ARGS)
{
	if (!registered)
	{
		RegisterXactCallback(commit_delay_callback, NULL);
		registered = true;
	}
	delay_ms = PG_GETARG_INT32(0);
	PG_RETURN_VOID();
}
