/*-------------------------------------------------------------------------
 *
 * engine_json.c
 *	  Small JSON values that the engine writes into events and rows: built
 *	  here once, so that every transition writes them alike.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "engine_json.h"

/* A jsonb value from JSON text. */
Datum
engine_jsonb(const char *json)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
}

/* {} as jsonb, built without parsing text */
Datum
engine_empty_object(void)
{
	JsonbParseState *state = NULL;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
}

/*
 * A uuid as text, as uuid_out() writes it (lowercase, dashed 8-4-4-4-12).
 * Written here without a StringInfo: every event's notification and every
 * step's figures name their run, and uuid_out() appends one character at a
 * time (about 2,800 instructions a call against about 200).
 */
char *
engine_uuid_text(Datum id)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *b = DatumGetUUIDP(id)->data;
	char	   *out = palloc(2 * UUID_LEN + 5);
	char	   *p = out;

	for (int i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[b[i] >> 4];
		*p++ = hex[b[i] & 0x0f];
	}
	*p = '\0';
	return out;
}

/* A jsonb value as JSON text ("null" for SQL NULL). */
char *
engine_json_text(Datum value, bool isnull)
{
	return isnull ? "null" : JsonbToCString(NULL, &DatumGetJsonbP(value)->root, 0);
}

/*
 * engine_valid_name
 *		A queue or signal name: 1 to 63 letters, digits, "_", ".", ":" or "-",
 *		the first a letter, digit or "_".
 */
bool
engine_valid_name(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0 || len > 63)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		char		c = name[i];
		bool		word = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '_';

		if (!word && (i == 0 || (c != '.' && c != ':' && c != '-')))
			return false;
	}
	return true;
}

/* A time as JSON text, as to_jsonb() writes it. */
char *
engine_json_time(TimestampTz t)
{
	char		buf[MAXDATELEN + 3];

	buf[0] = '"';
	JsonEncodeDateTime(buf + 1, TimestampTzGetDatum(t), TIMESTAMPTZOID, NULL);
	strcat(buf, "\"");
	return pstrdup(buf);
}

/* An interval as JSON text, as to_jsonb() writes it. */
char *
engine_json_interval(Datum interval)
{
	StringInfoData s;

	initStringInfo(&s);
	escape_json(&s, DatumGetCString(DirectFunctionCall1(interval_out, interval)));
	return s.data;
}

/* Push "key": value (value jsonb, or null) into an object being built. */
void
engine_jsonb_push_pair(JsonbParseState **state, const char *key, Datum value, bool isnull)
{
	JsonbValue	k;
	JsonbValue	v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &k);
	if (isnull)
		v.type = jbvNull;
	else
	{
		Jsonb	   *jb = DatumGetJsonbP(value);

		v.type = jbvBinary;
		v.val.binary.data = &jb->root;
		v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	pushJsonbValue(state, WJB_VALUE, &v);
}

/* {"key": value} (value jsonb, or null), built without printing and parsing it */
Datum
engine_json_object1(const char *key, Datum value, bool isnull)
{
	JsonbParseState *state = NULL;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	engine_jsonb_push_pair(&state, key, value, isnull);
	return JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
}


/*
 * engine_step_started_data
 *		step.started's data: {"attempt": n, "worker": w} ("worker" left out
 *		when NULL), built without printing and parsing it.
 */
Datum
engine_step_started_data(int32 attempt, const char *worker)
{
	JsonbParseState *state = NULL;
	JsonbValue	v;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	v.type = jbvString;
	v.val.string.val = "attempt";
	v.val.string.len = strlen("attempt");
	pushJsonbValue(&state, WJB_KEY, &v);
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(attempt);
	pushJsonbValue(&state, WJB_VALUE, &v);
	if (worker != NULL)
	{
		v.type = jbvString;
		v.val.string.val = "worker";
		v.val.string.len = strlen("worker");
		pushJsonbValue(&state, WJB_KEY, &v);
		v.val.string.val = (char *) worker;
		v.val.string.len = strlen(worker);
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	return JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
}

/*
 * engine_error_fields
 *		Open a JSON error object from an error caught in user code:
 *		{"message": ..., "sqlstate": ...[, "detail": ...] (the caller adds
 *		what else it knows and the closing brace).
 */
void
engine_error_fields(StringInfo s, const ErrorData *e)
{
	appendStringInfoString(s, "{\"message\": ");
	escape_json(s, e->message ? e->message : "");
	appendStringInfoString(s, ", \"sqlstate\": ");
	escape_json(s, unpack_sql_state(e->sqlerrcode));
	if (e->detail && e->detail[0])
	{
		appendStringInfoString(s, ", \"detail\": ");
		escape_json(s, e->detail);
	}
}

/* {"message": msg}, for errors the engine raises itself */
Datum
engine_message_error(const char *message)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfoString(&s, "{\"message\": ");
	escape_json(&s, message);
	appendStringInfoChar(&s, '}');
	return engine_jsonb(s.data);
}
