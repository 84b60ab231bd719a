/*-------------------------------------------------------------------------
 *
 * random_pool.c
 *	  Random bytes for identifiers, drawn from a per-process pool.
 *
 * Every run takes random bytes for its id (uuid.c) and its trace id
 * (trace.c), every external claim for its lease token (external.c).
 * pg_strong_random() costs about 1.5 us a call with OpenSSL 3, whatever the
 * length asked for, so the bytes are fetched from it a pool at a time and
 * handed out once each: the same strong bytes, one call per pool instead of
 * one per identifier.
 *
 * The pool belongs to the process that filled it: a process forked after a
 * fill (the postmaster never fills it, but nothing here relies on that)
 * sees another MyProcPid and refills before it hands out anything, so two
 * processes never share bytes.  Keys (secrets.c, the relay's channel key)
 * still call pg_strong_random() themselves.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"

#include "random_pool.h"

#define RANDOM_POOL_BYTES	512

static uint8 pool[RANDOM_POOL_BYTES];
static size_t pool_left = 0;	/* unused bytes at the end of pool */
static int	pool_pid = 0;		/* the process that filled pool */

/*
 * random_pool_fill
 *		Fill dst with len strong random bytes, none of them handed out before.
 */
void
random_pool_fill(void *dst, size_t len)
{
	uint8	   *out = dst;

	if (pool_pid != MyProcPid)
		pool_left = 0;
	while (len > 0)
	{
		size_t		n;

		if (pool_left == 0)
		{
			if (!pg_strong_random(pool, RANDOM_POOL_BYTES))
				ereport(ERROR,
						(errcode(ERRCODE_INTERNAL_ERROR),
						 errmsg("could not generate random values")));
			pool_left = RANDOM_POOL_BYTES;
			pool_pid = MyProcPid;
		}
		n = Min(len, pool_left);
		memcpy(out, pool + RANDOM_POOL_BYTES - pool_left, n);
		/* a byte handed out is not kept */
		memset(pool + RANDOM_POOL_BYTES - pool_left, 0, n);
		pool_left -= n;
		out += n;
		len -= n;
	}
}
