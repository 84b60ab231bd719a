/*-------------------------------------------------------------------------
 *
 * yaml_spec.c
 *	  Workflow specs written in YAML: read with libyaml into jsonb.
 *
 * define_workflow_yaml() turns its text into the jsonb define_workflow()
 * takes, then validates and stores it the same way (sql/src/30_definitions.sql).
 * Only plain data is read: one document of mappings, sequences and scalars.
 * Anchors and aliases (the "billion laughs"), tags other than those of the
 * YAML 1.2 core schema, keys that are not scalars, duplicate keys and a
 * second document are refused, with the line and column where they are.
 *
 * Scalars are typed as the YAML 1.2 core schema types them: a plain
 * (unquoted) scalar is null (empty, ~, null), a boolean (true, false), an
 * integer (decimal, 0o octal, 0x hexadecimal) or a float, else a string;
 * quoted and block scalars are strings.  .inf and .nan have no JSON value and
 * are refused.  Keys are strings: a plain key such as 1 or true is the key
 * "1" or "true", as written.
 *
 * Every error is 22P02 (invalid_text_representation, as jsonb's own input
 * errors), except a NUL character in a string (22P05, as jsonb's \u0000)
 * and integers beyond 64 bits (22003).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <yaml.h>

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

PG_FUNCTION_INFO_V1(orchestrator_yaml_to_jsonb);

#define CORE_TAG(t) "tag:yaml.org,2002:" t

/* The parser and the event in hand (both hold memory of libyaml's). */
typedef struct YamlReader
{
	yaml_parser_t parser;
	yaml_event_t event;
	bool		has_event;
} YamlReader;

/* A key of a mapping, where it is (for duplicate keys). */
typedef struct YamlKey
{
	char	   *text;
	int			len;
	int			line;
	int			column;
	int			position;
} YamlKey;

/* 22P02 for the node of the current event, at its start. */
static void pg_attribute_noreturn()
node_error(YamlReader *r, const char *message, const char *hint)
{
	yaml_mark_t mark = r->event.start_mark;

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid YAML workflow spec: %s", message),
			 errdetail("Line %d, column %d.", (int) mark.line + 1, (int) mark.column + 1),
			 hint ? errhint("%s", hint) : 0));
}

/* The next event; libyaml's syntax errors are raised here. */
static void
next_event(YamlReader *r)
{
	if (r->has_event)
	{
		yaml_event_delete(&r->event);
		r->has_event = false;
	}
	if (!yaml_parser_parse(&r->parser, &r->event))
	{
		yaml_parser_t *p = &r->parser;
		const char *problem = p->problem ? p->problem : "unknown error";

		if (p->error == YAML_MEMORY_ERROR)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory while reading YAML")));
		if (p->context)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid YAML: %s", problem),
					 errdetail("Line %d, column %d, %s at line %d, column %d.",
							   (int) p->problem_mark.line + 1, (int) p->problem_mark.column + 1,
							   p->context,
							   (int) p->context_mark.line + 1, (int) p->context_mark.column + 1),
					 errhint("Check the indentation and the quoting there.")));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid YAML: %s", problem),
				 errdetail("Line %d, column %d.",
						   (int) p->problem_mark.line + 1, (int) p->problem_mark.column + 1),
				 errhint("Check the indentation and the quoting there.")));
	}
	r->has_event = true;
}

/* A tag as written: !!int for tag:yaml.org,2002:int. */
static const char *
tag_name(const char *tag)
{
	size_t		prefix = strlen(CORE_TAG(""));

	if (strncmp(tag, CORE_TAG(""), prefix) == 0)
		return psprintf("!!%s", tag + prefix);
	return tag;
}

/* Does s (NUL-terminated, as libyaml gives it) match one of the words? */
static bool
one_of(const char *s, const char *const *words)
{
	for (; *words; words++)
		if (strcmp(s, *words) == 0)
			return true;
	return false;
}

static const char *const null_words[] = {"", "~", "null", "Null", "NULL", NULL};
static const char *const true_words[] = {"true", "True", "TRUE", NULL};
static const char *const false_words[] = {"false", "False", "FALSE", NULL};
static const char *const special_floats[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF",
"-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN", NULL};

/* [-+]?[0-9]+ */
static bool
is_decimal_int(const char *s)
{
	if (*s == '-' || *s == '+')
		s++;
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* 0o[0-7]+ or 0x[0-9a-fA-F]+ (base 8 or 16; 0 when neither) */
static int
radix_int(const char *s)
{
	int			base;

	if (s[0] != '0' || (s[1] != 'o' && s[1] != 'x') || s[2] == '\0')
		return 0;
	base = s[1] == 'o' ? 8 : 16;
	for (s += 2; *s; s++)
		if (!(base == 8 ? (*s >= '0' && *s <= '7') : isxdigit((unsigned char) *s)))
			return 0;
	return base;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool
is_float(const char *s)
{
	int			digits = 0;

	if (*s == '-' || *s == '+')
		s++;
	while (*s >= '0' && *s <= '9')
		s++, digits++;
	if (*s == '.')
	{
		s++;
		if (digits == 0 && !(*s >= '0' && *s <= '9'))
			return false;
		while (*s >= '0' && *s <= '9')
			s++, digits++;
	}
	if (digits == 0)
		return false;
	if (*s == 'e' || *s == 'E')
	{
		s++;
		if (*s == '-' || *s == '+')
			s++;
		if (!(*s >= '0' && *s <= '9'))
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	return *s == '\0';
}

/* A number of the JSON value (numeric_in reads the decimal forms). */
static void
numeric_value(YamlReader *r, const char *s, int base, JsonbValue *v)
{
	v->type = jbvNumeric;
	if (base == 0)
	{
		v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(s),
															 ObjectIdGetDatum(InvalidOid),
															 Int32GetDatum(-1)));
		return;
	}
	else
	{
		uint64		n = 0;

		for (s += 2; *s; s++)
		{
			int			d = (*s >= '0' && *s <= '9') ? *s - '0' : (tolower((unsigned char) *s) - 'a' + 10);

			if (n > (uint64) (PG_INT64_MAX - d) / (uint64) base)
			{
				yaml_mark_t mark = r->event.start_mark;

				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("invalid YAML workflow spec: integer %s is out of range",
								(const char *) r->event.data.scalar.value),
						 errdetail("Line %d, column %d.", (int) mark.line + 1, (int) mark.column + 1),
						 errhint("Octal and hexadecimal integers are read up to 64 bits; write larger numbers in decimal.")));
			}
			n = n * base + d;
		}
		v->val.numeric = int64_to_numeric((int64) n);
	}
}

/* A string of the JSON value, in the server's encoding. */
static void
string_value(YamlReader *r, const char *s, size_t len, JsonbValue *v)
{
	char	   *converted;

	if (memchr(s, '\0', len) != NULL)
	{
		yaml_mark_t mark = r->event.start_mark;

		ereport(ERROR,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg("invalid YAML workflow spec: a string holds a NUL character"),
				 errdetail("Line %d, column %d.", (int) mark.line + 1, (int) mark.column + 1),
				 errhint("JSON strings in PostgreSQL cannot hold \\0 or \\u0000.")));
	}
	if (len > JENTRY_OFFLENMASK)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("string too long to represent as jsonb string")));
	/* libyaml frees its strings with the event: keep a copy */
	converted = pg_any_to_server(s, (int) len, PG_UTF8);
	v->type = jbvString;
	if (converted == s)
	{
		v->val.string.val = pnstrdup(s, len);
		v->val.string.len = (int) len;
	}
	else
	{
		v->val.string.val = converted;
		v->val.string.len = (int) strlen(converted);
	}
}

/*
 * scalar_value
 *		The JSON value of the scalar of the current event, typed by the core
 *		schema (or its explicit tag).
 */
static void
scalar_value(YamlReader *r, JsonbValue *v)
{
	const char *s = (const char *) r->event.data.scalar.value;
	size_t		len = r->event.data.scalar.length;
	const char *tag = (const char *) r->event.data.scalar.tag;
	bool		plain = r->event.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	bool		is_nul_free = memchr(s, '\0', len) == NULL;
	int			base;
	char	   *msg;

	if (tag == NULL || strcmp(tag, "!") == 0 || strcmp(tag, CORE_TAG("str")) == 0)
	{
		/* untagged plain scalars are typed; anything else is a string */
		if (tag != NULL || !plain || !is_nul_free)
		{
			string_value(r, s, len, v);
			return;
		}
		if (one_of(s, null_words))
			v->type = jbvNull;
		else if (one_of(s, true_words) || one_of(s, false_words))
		{
			v->type = jbvBool;
			v->val.boolean = one_of(s, true_words);
		}
		else if (is_decimal_int(s) || is_float(s))
			numeric_value(r, s, 0, v);
		else if ((base = radix_int(s)) != 0)
			numeric_value(r, s, base, v);
		else if (one_of(s, special_floats))
			node_error(r, psprintf("%s has no JSON value", s),
					   "JSON numbers are finite: write the value as a string (quoted) or leave it out.");
		else
			string_value(r, s, len, v);
		return;
	}

	/* an explicit core tag: the text must be of that type */
	if (strncmp(tag, CORE_TAG(""), strlen(CORE_TAG(""))) != 0)
		node_error(r, psprintf("tag %s is not supported", tag_name(tag)),
				   "Only the tags of the YAML core schema are read: !!str, !!int, !!float, !!bool, !!null, !!seq and !!map.");
	msg = psprintf("%s cannot be read as %s", quote_literal_cstr(is_nul_free ? s : ""), tag_name(tag));
	if (strcmp(tag, CORE_TAG("null")) == 0)
	{
		if (!is_nul_free || !one_of(s, null_words))
			node_error(r, msg, NULL);
		v->type = jbvNull;
	}
	else if (strcmp(tag, CORE_TAG("bool")) == 0)
	{
		if (!is_nul_free || !(one_of(s, true_words) || one_of(s, false_words)))
			node_error(r, msg, NULL);
		v->type = jbvBool;
		v->val.boolean = one_of(s, true_words);
	}
	else if (strcmp(tag, CORE_TAG("int")) == 0)
	{
		if (!is_nul_free)
			node_error(r, msg, NULL);
		if (is_decimal_int(s))
			numeric_value(r, s, 0, v);
		else if ((base = radix_int(s)) != 0)
			numeric_value(r, s, base, v);
		else
			node_error(r, msg, NULL);
	}
	else if (strcmp(tag, CORE_TAG("float")) == 0)
	{
		if (!is_nul_free)
			node_error(r, msg, NULL);
		if (is_decimal_int(s) || is_float(s))
			numeric_value(r, s, 0, v);
		else if (one_of(s, special_floats))
			node_error(r, psprintf("%s has no JSON value", s),
					   "JSON numbers are finite: write the value as a string (quoted) or leave it out.");
		else
			node_error(r, msg, NULL);
	}
	else
		node_error(r, psprintf("tag %s is not supported", tag_name(tag)),
				   "Only the tags of the YAML core schema are read: !!str, !!int, !!float, !!bool, !!null, !!seq and !!map.");
}

/* Refuse anchors and tags a collection cannot have. */
static void
check_collection(YamlReader *r, const yaml_char_t *anchor, const yaml_char_t *tag, const char *core)
{
	if (anchor != NULL)
		node_error(r, psprintf("anchor &%s", (const char *) anchor),
				   "Anchors and aliases are not read: write the data out in full.");
	if (tag != NULL && strcmp((const char *) tag, "!") != 0 && strcmp((const char *) tag, core) != 0)
		node_error(r, psprintf("tag %s is not supported here", tag_name((const char *) tag)),
				   "Only the tags of the YAML core schema are read: !!str, !!int, !!float, !!bool, !!null, !!seq and !!map.");
}

static int
key_cmp(const void *a, const void *b)
{
	const YamlKey *x = a;
	const YamlKey *y = b;
	int			c;

	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	c = memcmp(x->text, y->text, x->len);
	return c != 0 ? c : x->position - y->position;
}

/*
 * push_node
 *		Push the node that starts with the current event as "token"
 *		(WJB_ELEM, WJB_VALUE; 0 for the document's root), reading its events.
 */
static JsonbValue *
push_node(YamlReader *r, JsonbParseState **state, JsonbIteratorToken token)
{
	JsonbValue	v;
	JsonbValue *result = NULL;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();

	switch (r->event.type)
	{
		case YAML_ALIAS_EVENT:
			node_error(r, psprintf("alias *%s", (const char *) r->event.data.alias.anchor),
					   "Anchors and aliases are not read: write the data out in full.");
			break;

		case YAML_SCALAR_EVENT:
			if (r->event.data.scalar.anchor != NULL)
				node_error(r, psprintf("anchor &%s", (const char *) r->event.data.scalar.anchor),
						   "Anchors and aliases are not read: write the data out in full.");
			scalar_value(r, &v);
			if (token == 0)
			{
				JsonbValue	array;

				array.type = jbvArray;
				array.val.array.rawScalar = true;
				array.val.array.nElems = 1;
				pushJsonbValue(state, WJB_BEGIN_ARRAY, &array);
				pushJsonbValue(state, WJB_ELEM, &v);
				result = pushJsonbValue(state, WJB_END_ARRAY, NULL);
			}
			else
				pushJsonbValue(state, token, &v);
			break;

		case YAML_SEQUENCE_START_EVENT:
			check_collection(r, r->event.data.sequence_start.anchor,
							 r->event.data.sequence_start.tag, CORE_TAG("seq"));
			pushJsonbValue(state, WJB_BEGIN_ARRAY, NULL);
			for (;;)
			{
				next_event(r);
				if (r->event.type == YAML_SEQUENCE_END_EVENT)
					break;
				push_node(r, state, WJB_ELEM);
			}
			result = pushJsonbValue(state, WJB_END_ARRAY, NULL);
			break;

		case YAML_MAPPING_START_EVENT:
			{
				YamlKey    *keys = NULL;
				int			nkeys = 0;
				int			maxkeys = 0;

				check_collection(r, r->event.data.mapping_start.anchor,
								 r->event.data.mapping_start.tag, CORE_TAG("map"));
				pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
				for (;;)
				{
					JsonbValue	key;
					const char *tag;

					next_event(r);
					if (r->event.type == YAML_MAPPING_END_EVENT)
						break;
					if (r->event.type == YAML_ALIAS_EVENT)
						push_node(r, state, WJB_KEY);	/* raises */
					if (r->event.type != YAML_SCALAR_EVENT)
						node_error(r, "a mapping key must be a scalar",
								   "Keys are names; a mapping or a sequence cannot be a key.");
					if (r->event.data.scalar.anchor != NULL)
						node_error(r, psprintf("anchor &%s", (const char *) r->event.data.scalar.anchor),
								   "Anchors and aliases are not read: write the data out in full.");
					tag = (const char *) r->event.data.scalar.tag;
					if (tag != NULL && strcmp(tag, "!") != 0 && strcmp(tag, CORE_TAG("str")) != 0)
						node_error(r, psprintf("tag %s is not supported on a key", tag_name(tag)),
								   "Keys are strings: leave their tag out.");
					string_value(r, (const char *) r->event.data.scalar.value,
								 r->event.data.scalar.length, &key);
					if (nkeys == maxkeys)
					{
						maxkeys = Max(8, maxkeys * 2);
						keys = keys ? repalloc(keys, sizeof(YamlKey) * maxkeys)
							: palloc(sizeof(YamlKey) * maxkeys);
					}
					keys[nkeys].text = key.val.string.val;
					keys[nkeys].len = key.val.string.len;
					keys[nkeys].line = (int) r->event.start_mark.line + 1;
					keys[nkeys].column = (int) r->event.start_mark.column + 1;
					keys[nkeys].position = nkeys;
					nkeys++;
					pushJsonbValue(state, WJB_KEY, &key);
					next_event(r);
					push_node(r, state, WJB_VALUE);
				}
				if (nkeys > 1)
				{
					qsort(keys, nkeys, sizeof(YamlKey), key_cmp);
					for (int i = 1; i < nkeys; i++)
						if (keys[i].len == keys[i - 1].len &&
							memcmp(keys[i].text, keys[i - 1].text, keys[i].len) == 0)
						{
							/* the later one (sorted by position among equals) */
							ereport(ERROR,
									(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
									 errmsg("invalid YAML workflow spec: duplicate key %s",
											quote_literal_cstr(pnstrdup(keys[i].text, keys[i].len))),
									 errdetail("Line %d, column %d; the same key is at line %d, column %d.",
											   keys[i].line, keys[i].column,
											   keys[i - 1].line, keys[i - 1].column),
									 errhint("Each key of a mapping appears once.")));
						}
				}
				result = pushJsonbValue(state, WJB_END_OBJECT, NULL);
			}
			break;

		default:
			node_error(r, "unexpected YAML event", NULL);
	}
	return result;
}

/*
 * orchestrator._yaml_to_jsonb(yaml text) returns jsonb
 *		The value of a YAML text of one document (JSON null for a text of
 *		none).
 */
Datum
orchestrator_yaml_to_jsonb(PG_FUNCTION_ARGS)
{
	text	   *arg = PG_GETARG_TEXT_PP(0);
	char	   *input = pg_server_to_any(VARDATA_ANY(arg), VARSIZE_ANY_EXHDR(arg), PG_UTF8);
	size_t		input_len = input == VARDATA_ANY(arg) ? VARSIZE_ANY_EXHDR(arg) : strlen(input);
	YamlReader	r;
	JsonbValue *value = NULL;
	volatile bool parser_ready = false;

	memset(&r, 0, sizeof(r));
	PG_TRY();
	{
		JsonbParseState *state = NULL;
		bool		documents = false;

		if (!yaml_parser_initialize(&r.parser))
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory while reading YAML")));
		parser_ready = true;
		yaml_parser_set_encoding(&r.parser, YAML_UTF8_ENCODING);
		yaml_parser_set_input_string(&r.parser, (const unsigned char *) input, input_len);

		next_event(&r);			/* STREAM-START */
		for (;;)
		{
			next_event(&r);
			if (r.event.type == YAML_STREAM_END_EVENT)
				break;
			/* DOCUMENT-START */
			if (documents)
				node_error(&r, "more than one document",
						   "A workflow spec is one YAML document: remove the second \"---\" and what follows it.");
			documents = true;
			next_event(&r);
			value = push_node(&r, &state, 0);
			next_event(&r);		/* DOCUMENT-END */
		}
	}
	PG_FINALLY();
	{
		if (r.has_event)
			yaml_event_delete(&r.event);
		if (parser_ready)
			yaml_parser_delete(&r.parser);
	}
	PG_END_TRY();

	if (value == NULL)
	{
		JsonbValue	null;

		null.type = jbvNull;
		PG_RETURN_POINTER(JsonbValueToJsonb(&null));
	}
	PG_RETURN_POINTER(JsonbValueToJsonb(value));
}
