/*-------------------------------------------------------------------------
 *
 * engine_json.h
 *	  Small JSON values that the engine writes into events and rows
 *	  (engine_json.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_ENGINE_JSON_H
#define ORCHESTRATOR_ENGINE_JSON_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/timestamp.h"

struct JsonbParseState;

extern Datum engine_jsonb(const char *json);
extern Datum engine_empty_object(void);
extern char *engine_json_text(Datum value, bool isnull);
extern char *engine_uuid_text(Datum id);
extern bool engine_valid_name(const char *name);
extern char *engine_json_time(TimestampTz t);
extern char *engine_json_interval(Datum interval);
extern void engine_jsonb_push_pair(struct JsonbParseState **state, const char *key, Datum value,
								   bool isnull);
extern Datum engine_json_object1(const char *key, Datum value, bool isnull);
extern Datum engine_step_started_data(int32 attempt, const char *worker);
extern Datum engine_message_error(const char *message);
extern void engine_error_fields(StringInfo s, const ErrorData *e);

#endif							/* ORCHESTRATOR_ENGINE_JSON_H */
