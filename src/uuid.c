/*-------------------------------------------------------------------------
 *
 * uuid.c
 *	  Time-ordered identifiers: RFC 9562 UUID version 7.
 *
 * Layout (big-endian):
 *	 48 bits  unix_ts_ms	milliseconds since 1970-01-01 00:00 UTC
 *	  4 bits  version		0111
 *	 12 bits  rand_a		sub-millisecond fraction, then a counter
 *	  2 bits  variant		10
 *	 62 bits  rand_b		random
 *
 * rand_a starts at the sub-millisecond part of the clock (RFC 9562 section
 * 6.2, method 3), so ids from different sessions interleave in time order.
 * Within a session the 60-bit (unix_ts_ms, rand_a) value only ever grows: if
 * the clock stalls or goes back, the previous value plus one is used, and a
 * carry out of rand_a moves into the millisecond field.  Ids made by one
 * backend are therefore strictly increasing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "random_pool.h"

PG_FUNCTION_INFO_V1(orchestrator_uuid_v7);
PG_FUNCTION_INFO_V1(orchestrator_uuid_v7_boundary);
PG_FUNCTION_INFO_V1(orchestrator_uuid_v7_time);

/* Largest value of the 48-bit millisecond field. */
#define UUID_V7_MAX_MS		((UINT64CONST(1) << 48) - 1)

/* Microseconds between the Unix epoch and the PostgreSQL epoch (2000-01-01). */
#define UNIX_TO_PG_EPOCH_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

/* Last (unix_ts_ms << 12 | rand_a) handed out by this backend. */
static uint64 last_clock_seq = 0;

/*
 * uuid_v7_fill
 *		Write the fixed fields of a version 7 uuid: the 60-bit clock sequence
 *		(milliseconds and rand_a), the version and the variant.  rand_b is
 *		left as the caller put it.
 */
static void
uuid_v7_fill(pg_uuid_t *uuid, uint64 clock_seq)
{
	uint64		ms = clock_seq >> 12;
	uint16		rand_a = (uint16) (clock_seq & 0x0FFF);

	uuid->data[0] = (unsigned char) (ms >> 40);
	uuid->data[1] = (unsigned char) (ms >> 32);
	uuid->data[2] = (unsigned char) (ms >> 24);
	uuid->data[3] = (unsigned char) (ms >> 16);
	uuid->data[4] = (unsigned char) (ms >> 8);
	uuid->data[5] = (unsigned char) ms;
	uuid->data[6] = (unsigned char) (0x70 | (rand_a >> 8));
	uuid->data[7] = (unsigned char) (rand_a & 0xFF);
	uuid->data[8] = (unsigned char) (0x80 | (uuid->data[8] & 0x3F));
}

/*
 * orchestrator_uuid_v7
 *		A new version 7 uuid, greater than every one this backend made before.
 */
Datum
orchestrator_uuid_v7(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));
	struct timespec ts;
	uint64		ms;
	uint64		clock_seq;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not read the system clock: %m")));

	ms = (uint64) ts.tv_sec * 1000 + (uint64) ts.tv_nsec / 1000000;
	/* nanoseconds within the millisecond, scaled to 0..4095 */
	clock_seq = (ms << 12) | (((uint64) ts.tv_nsec % 1000000) * 4096 / 1000000);

	if (clock_seq <= last_clock_seq)
		clock_seq = last_clock_seq + 1;
	if ((clock_seq >> 12) > UUID_V7_MAX_MS)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("system clock is beyond the range of a version 7 uuid")));
	last_clock_seq = clock_seq;

	random_pool_fill(&uuid->data[8], UUID_LEN - 8);
	uuid_v7_fill(uuid, clock_seq);

	PG_RETURN_UUID_P(uuid);
}

/*
 * orchestrator_uuid_v7_boundary
 *		The smallest version 7 uuid of the millisecond of a timestamp.
 *
 * It sorts at or below every uuid_v7() of that millisecond and above every
 * one of earlier milliseconds, so it is the bound of a range partition that
 * starts at that time.
 */
Datum
orchestrator_uuid_v7_boundary(PG_FUNCTION_ARGS)
{
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(0);
	pg_uuid_t  *uuid;
	int64		unix_us;
	uint64		ms;

	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
				 errmsg("timestamp out of range for a version 7 uuid"),
				 errdetail("A version 7 uuid cannot hold an infinite timestamp.")));

	/* ts is at least -211813488000000000, so this cannot overflow */
	unix_us = ts + UNIX_TO_PG_EPOCH_USECS;
	if (unix_us < 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
				 errmsg("timestamp out of range for a version 7 uuid"),
				 errdetail("A version 7 uuid cannot hold a time before 1970-01-01 00:00:00 UTC.")));

	ms = (uint64) unix_us / 1000;
	if (ms > UUID_V7_MAX_MS)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
				 errmsg("timestamp out of range for a version 7 uuid"),
				 errdetail("A version 7 uuid holds at most 2^48 - 1 milliseconds after 1970-01-01.")));

	uuid = palloc0(sizeof(pg_uuid_t));
	uuid_v7_fill(uuid, ms << 12);

	PG_RETURN_UUID_P(uuid);
}

/*
 * orchestrator_uuid_v7_time
 *		The creation time carried by a version 7 uuid, to the millisecond.
 */
Datum
orchestrator_uuid_v7_time(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *uuid = PG_GETARG_UUID_P(0);
	uint64		ms = 0;
	int			i;

	if ((uuid->data[6] >> 4) != 7 || (uuid->data[8] & 0xC0) != 0x80)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("uuid %s is not a version 7 uuid",
						DatumGetCString(DirectFunctionCall1(uuid_out,
															UUIDPGetDatum(uuid)))),
				 errdetail("Version 7 uuids have version nibble 7 and RFC 9562 variant bits 10.")));

	for (i = 0; i < 6; i++)
		ms = (ms << 8) | uuid->data[i];

	/* 2^48 ms is in the year 10889: always a valid timestamptz */
	PG_RETURN_TIMESTAMPTZ((TimestampTz) (ms * 1000) - UNIX_TO_PG_EPOCH_USECS);
}
