/*-------------------------------------------------------------------------
 *
 * restore.c
 *	  Restoring a dump into a database that has partitions already.
 *
 * The history partitions are ordinary tables, so a dump holds them: CREATE
 * TABLE, ATTACH PARTITION (pre-data), and, after the rows, each partition's
 * primary key and indexes, created on the partition and attached to the
 * parent's index (post-data).  The restore first runs CREATE EXTENSION,
 * which makes the parents with their indexes and partitions for the current
 * days, and dispatchers may create the next days while the restore runs.
 * So, in the restored database, a dumped partition may exist already, and
 * ATTACH PARTITION creates a partition's indexes from its parent's before
 * the dump's own CREATE INDEX and ADD CONSTRAINT ... PRIMARY KEY come.
 *
 * This utility hook makes exactly those statements no-ops, with the notice
 * an IF NOT EXISTS gives, when they meet what is already there: creating a
 * history partition (orchestrator.workflow_{runs,steps,events}_pYYYYMMDD)
 * that exists, attaching one that is attached to that parent already,
 * creating an index of a name that exists on that partition, adding a
 * primary key to a partition that has one.  ALTER INDEX ... ATTACH
 * PARTITION of an index attached already does nothing by itself.  Every
 * other statement, and these on anything else, is left alone; so a plain
 * pg_restore or psql of a plain dump works without flags or lists.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "restore.h"

static ProcessUtility_hook_type prev_process_utility = NULL;

/*
 * history_partition
 *		The OID of the existing history partition "rv" names, else
 *		InvalidOid.  Sets *parent to the parent its name says (the OID of
 *		orchestrator.workflow_runs, _steps or _events).
 */
static Oid
history_partition(const RangeVar *rv, Oid *parent)
{
	static const char *const parents[] = {"workflow_runs", "workflow_steps", "workflow_events"};
	Oid			nsp;

	if (rv == NULL || rv->schemaname == NULL || strcmp(rv->schemaname, "orchestrator") != 0)
		return InvalidOid;
	nsp = get_namespace_oid("orchestrator", true);
	if (!OidIsValid(nsp))
		return InvalidOid;
	for (size_t i = 0; i < lengthof(parents); i++)
	{
		size_t		len = strlen(parents[i]);
		const char *p = rv->relname + len;

		if (strncmp(rv->relname, parents[i], len) != 0 || strncmp(p, "_p", 2) != 0)
			continue;
		p += 2;
		if (strlen(p) != 8 || strspn(p, "0123456789") != 8)
			return InvalidOid;
		*parent = get_relname_relid(parents[i], nsp);
		return OidIsValid(*parent) ? get_relname_relid(rv->relname, nsp) : InvalidOid;
	}
	return InvalidOid;
}

/* Is relid a partition of parent? */
static bool
is_partition_of(Oid relid, Oid parent)
{
	return get_rel_relispartition(relid) && get_partition_parent(relid, true) == parent;
}

/* Does relid have a primary key? */
static bool
has_primary_key(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	bool		result = OidIsValid(RelationGetPrimaryKeyIndex(rel));

	table_close(rel, AccessShareLock);
	return result;
}

/*
 * already_there
 *		Is the statement one of those above, meeting what exists?  Tells
 *		what to say in *what.
 */
static bool
already_there(Node *stmt, const char **what, const char **name)
{
	Oid			parent = InvalidOid;
	Oid			relid;

	switch (nodeTag(stmt))
	{
		case T_CreateStmt:
			{
				CreateStmt *c = (CreateStmt *) stmt;

				relid = history_partition(c->relation, &parent);
				if (!OidIsValid(relid))
					return false;
				*what = "relation";
				*name = c->relation->relname;
				return true;
			}
		case T_IndexStmt:
			{
				IndexStmt  *ix = (IndexStmt *) stmt;

				relid = history_partition(ix->relation, &parent);
				if (!OidIsValid(relid) || ix->idxname == NULL || !is_partition_of(relid, parent))
					return false;
				if (get_relname_relid(ix->idxname, get_rel_namespace(relid)) == InvalidOid)
					return false;
				*what = "index";
				*name = ix->idxname;
				return true;
			}
		case T_AlterTableStmt:
			{
				AlterTableStmt *a = (AlterTableStmt *) stmt;
				AlterTableCmd *cmd;

				if (list_length(a->cmds) != 1 || a->objtype != OBJECT_TABLE)
					return false;
				cmd = linitial_node(AlterTableCmd, a->cmds);
				if (cmd->subtype == AT_AttachPartition)
				{
					PartitionCmd *pc = (PartitionCmd *) cmd->def;
					Oid			named_parent;

					relid = history_partition(pc->name, &parent);
					if (!OidIsValid(relid))
						return false;
					named_parent = RangeVarGetRelid(a->relation, NoLock, true);
					if (named_parent != parent || !is_partition_of(relid, parent))
						return false;
					*what = "partition";
					*name = pc->name->relname;
					return true;
				}
				if (cmd->subtype == AT_AddConstraint && IsA(cmd->def, Constraint) &&
					((Constraint *) cmd->def)->contype == CONSTR_PRIMARY)
				{
					relid = history_partition(a->relation, &parent);
					if (!OidIsValid(relid) || !is_partition_of(relid, parent) || !has_primary_key(relid))
						return false;
					*what = "primary key of";
					*name = a->relation->relname;
					return true;
				}
				return false;
			}
		default:
			return false;
	}
}

static void
orchestrator_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
							 ProcessUtilityContext context, ParamListInfo params,
							 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	const char *what;
	const char *name;

	if (pstmt->utilityStmt != NULL && already_there(pstmt->utilityStmt, &what, &name))
	{
		ereport(NOTICE,
				(errmsg("%s \"%s\" already exists, skipping", what, name),
				 errdetail("The history partitions of orchestrator and their indexes were there before this statement (CREATE EXTENSION, ATTACH PARTITION or a dispatcher made them).")));
		return;
	}
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

/*
 * orchestrator_restore_install_hooks
 *		Chain the utility hook in front of any installed before us.
 */
void
orchestrator_restore_install_hooks(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = orchestrator_process_utility;
}
