/*-------------------------------------------------------------------------
 *
 * start.c
 *	  start_workflow(): the options checked, the caller's right, the
 *	  idempotency key, then the run (engine_run_created()).
 *
 * This is the call every application request makes, so it is C through
 * and through: a PL/pgSQL implementation cost a SECURITY DEFINER function's
 * settings, a handful of queries per call and the statements of the run on
 * the partitioned parents.  Only a "deadline" option (an interval or a
 * time) is parsed by a SQL function, _start_deadline().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "caller.h"
#include "engine.h"
#include "lookup_cache.h"
#include "quota.h"
#include "rights.h"

PG_FUNCTION_INFO_V1(orchestrator_api_start_workflow);

extern Datum orchestrator_uuid_v7(PG_FUNCTION_ARGS);

#define KNOWN_OPTIONS "Known options: version, idempotency_key, tenant, deadline, priority, traceparent."

typedef struct StartRun
{
	char	   *name;
	Datum		input;
	bool		input_isnull;
	Jsonb	   *options;
	Oid			caller;
	pg_uuid_t	id;				/* the run started, or the one the key names */
} StartRun;

static char *
json_text(JsonbValue *v)
{
	if (v->type == jbvBinary)
		return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
	return JsonbToCString(NULL, &JsonbValueToJsonb(v)->root, 0);
}

/* A string option of 1 to 255 characters, or NULL when absent. */
static char *
string_option(JsonbValue *v, const char *option)
{
	if (v == NULL)
		return NULL;
	if (v->type != jbvString || v->val.string.len < 1 ||
		pg_mbstrlen_with_len(v->val.string.val, v->val.string.len) > 255)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be a string of 1 to 255 characters", option),
				 errdetail("Got %s.", json_text(v))));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* An integer option within [min, max] (digits only, as written in JSON). */
static bool
integer_option(JsonbValue *v, int32 min, int32 max, int32 *value)
{
	char	   *text;
	char	   *end;
	long		n;

	if (v->type != jbvNumeric)
		return false;
	text = json_text(v);
	if (strspn(text + (text[0] == '-'), "0123456789") != strlen(text + (text[0] == '-')) ||
		strlen(text) > 10)
		return false;
	n = strtol(text, &end, 10);
	if (n < min || n > max)
		return false;
	*value = (int32) n;
	return true;
}

static bool
lower_hex(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool
all_zero(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (s[i] != '0')
			return false;
	return true;
}

/*
 * A W3C traceparent: version-traceid-parentid-flags, lowercase hex; version
 * ff and all-zero ids are invalid; versions after 00 may append fields,
 * which are dropped (the run keeps it as version 00).  Sets the run's trace
 * id and the normalised traceparent.
 */
static void
traceparent_option(JsonbValue *v, char **trace_id, char **trace_parent)
{
	char	   *tp = v->type == jbvString ? pnstrdup(v->val.string.val, v->val.string.len) : NULL;
	int			len = tp ? strlen(tp) : 0;

	if (tp == NULL || len < 55 || !lower_hex(tp, 2) || tp[2] != '-' || !lower_hex(tp + 3, 32) ||
		tp[35] != '-' || !lower_hex(tp + 36, 16) || tp[52] != '-' || !lower_hex(tp + 53, 2) ||
		(len > 55 && tp[55] != '-') || strncmp(tp, "ff", 2) == 0 ||
		(strncmp(tp, "00", 2) == 0 && len != 55) || all_zero(tp + 3, 32) || all_zero(tp + 36, 16))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"traceparent\" is not a valid W3C traceparent"),
				 errdetail("Got %s.", json_text(v)),
				 errhint("The form is 00-<trace id: 32 lowercase hex digits>-<parent span id: 16 lowercase hex digits>-<flags: 2 hex digits>, ids not all zero, for example 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.")));
	*trace_id = pnstrdup(tp + 3, 32);
	*trace_parent = psprintf("00-%.52s", tp + 3);
}

static JsonbValue *
option(Jsonb *options, const char *key)
{
	return getKeyJsonValueFromContainer(&options->root, key, strlen(key), NULL);
}

static void
start_work(void *arg)
{
	StartRun   *a = arg;
	Jsonb	   *options = a->options;
	JsonbValue *v;
	EngineRun	run;
	int32		version = 0;
	char	   *idempotency_key;
	char	   *tenant;
	Datum		values[4];
	bool		isnull;

	memset(&run, 0, sizeof(run));

	/* options: an object of known keys */
	if (!JB_ROOT_IS_OBJECT(options) || JB_ROOT_IS_SCALAR(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object"),
				 errdetail("Got %s.", JsonbToCString(NULL, &options->root, 0)),
				 errhint(KNOWN_OPTIONS)));
	if (JB_ROOT_COUNT(options) > 0)
	{
		JsonbIterator *it = JsonbIteratorInit(&options->root);
		JsonbIteratorToken token;
		JsonbValue	key;
		char	   *unknown = NULL;

		while ((token = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
		{
			char	   *k;

			if (token != WJB_KEY)
				continue;
			k = pnstrdup(key.val.string.val, key.val.string.len);
			if (strcmp(k, "version") != 0 && strcmp(k, "idempotency_key") != 0 &&
				strcmp(k, "tenant") != 0 && strcmp(k, "deadline") != 0 && strcmp(k, "priority") != 0 &&
				strcmp(k, "traceparent") != 0 &&
				(unknown == NULL || strcmp(k, unknown) < 0))
				unknown = k;
		}
		if (unknown)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown option \"%s\"", unknown),
					 errhint(KNOWN_OPTIONS)));
	}

	if (a->input_isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("input must not be null"),
				 errhint("Pass '{}' for a workflow that takes no input.")));
	if (a->name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("workflow \"<NULL>\" is not defined"),
				 errhint("Define it first with orchestrator.define_workflow(name, spec).")));

	/* the version (the one asked for, or the latest) and the owner */
	values[0] = CStringGetTextDatum(a->name);
	if ((v = option(options, "version")) != NULL &&
		(!integer_option(v, 0, 999999999, &version) || json_text(v)[0] == '-'))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"version\" must be a positive integer"),
				 errdetail("Got %s.", json_text(v))));
	/* "version": 0 names no version (0 asks lookup_workflow() for the latest) */
	if ((v != NULL && version == 0) || !lookup_workflow(a->name, version, &version, &run.owner))
	{
		if (v != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("workflow \"%s\" has no version %d", a->name, version),
					 errhint("Omit \"version\" to start the latest version.")));
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("workflow \"%s\" is not defined", a->name),
				 errhint("Define it first with orchestrator.define_workflow(name, spec).")));
	}

	/*
	 * Its owner, roles granted "start", and admins start runs; the steps run
	 * with the owner's rights whoever starts them.
	 */
	if (run.owner != a->caller && !workflow_right(a->name, "start", a->caller))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to start workflow \"%s\"", a->name),
				 errdetail("Runs of a workflow are started by its owner, by roles it was granted to with privilege \"start\", and by members of orchestrator_admin."),
				 errhint("The owner can run: SELECT orchestrator.grant_workflow(%s, %s);",
						 quote_literal_cstr(a->name),
						 quote_literal_cstr(DatumGetCString(DirectFunctionCall1(regroleout,
																				ObjectIdGetDatum(a->caller)))))));

	idempotency_key = string_option(option(options, "idempotency_key"), "idempotency_key");
	tenant = string_option(option(options, "tenant"), "tenant");
	run.priority = 0;
	if ((v = option(options, "priority")) != NULL && !integer_option(v, -1000, 1000, &run.priority))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"priority\" must be an integer from -1000 to 1000"),
				 errdetail("Got %s.", json_text(v))));
	run.has_deadline = false;
	if ((v = option(options, "deadline")) != NULL)
	{
		Datum		d[1] = {JsonbPGetDatum(JsonbValueToJsonb(v))};

		engine_stmt(S_DEADLINE, NULL, d, NULL);
		run.deadline = DatumGetTimestampTz(engine_col("deadline", &isnull));
		run.has_deadline = true;
		engine_rows_done();
	}

	if ((v = option(options, "traceparent")) != NULL)
		traceparent_option(v, &run.trace_id, &run.trace_parent);

	{
		LOCAL_FCINFO(fc, 0);

		InitFunctionCallInfoData(*fc, NULL, 0, InvalidOid, NULL, NULL);
		a->id = *DatumGetUUIDP(orchestrator_uuid_v7(fc));
	}

	/* a key used before names the run it started */
	if (idempotency_key != NULL)
	{
		values[0] = ObjectIdGetDatum(a->caller);
		values[1] = CStringGetTextDatum(a->name);
		values[2] = CStringGetTextDatum(idempotency_key);
		values[3] = UUIDPGetDatum(&a->id);
		if (engine_stmt(S_CLAIM_IDEMPOTENCY_KEY, NULL, values, NULL) == 0)
		{
			engine_stmt(S_IDEMPOTENT_RUN, NULL, values, NULL);
			a->id = *DatumGetUUIDP(engine_col("run_id", &isnull));
			engine_rows_done();
			return;
		}
	}

	/* the owner's limits (quota.c): 54000, and nothing is written */
	orchestrator_quota_check_start(run.owner, a->input, a->input_isnull);

	run.id = UUIDPGetDatum(&a->id);
	run.name = a->name;
	run.version = version;
	engine_run_created(&run, a->caller, tenant, a->input, idempotency_key);
}

/*
 * orchestrator._api_start_workflow(name text, input jsonb, options jsonb)
 *		returns uuid: start_workflow() behind the API gate.
 */
Datum
orchestrator_api_start_workflow(PG_FUNCTION_ARGS)
{
	StartRun	a;

	memset(&a, 0, sizeof(a));
	a.name = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	a.input_isnull = PG_ARGISNULL(1);
	a.input = a.input_isnull ? (Datum) 0 : PG_GETARG_DATUM(1);
	a.options = PG_ARGISNULL(2) ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")))
		: PG_GETARG_JSONB_P(2);
	a.caller = orchestrator_current_caller();
	engine_unit(start_work, &a);
	/* the unit's memory is gone: the id is returned from a copy made here */
	{
		pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));

		*id = a.id;
		PG_RETURN_UUID_P(id);
	}
}

/*
 * orchestrator._start_run() of versions 0.3 and before: the install scripts
 * of released versions name it, so the library keeps the symbol (creating
 * those versions, to update them, must work); the API refuses their schema.
 */
PG_FUNCTION_INFO_V1(orchestrator_start_run);

Datum
orchestrator_start_run(PG_FUNCTION_ARGS)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the orchestrator extension must be updated before it can be used"),
			 errhint("Run ALTER EXTENSION orchestrator UPDATE in this database.")));
	PG_RETURN_VOID();
}
