-- ark-apiserver schema, version 6: the name check of a create probes by name.
--
-- A create inserts only where no live object has its name (INSERT ... WHERE NOT EXISTS,
-- one probe per row). resources_kind_namespace (kind, namespace) served that probe as
-- well as the (kind, namespace, name) indexes in the planner's eyes whenever the table had
-- no statistics yet (a new database, or autovacuum not yet around to it), and then each
-- create scanned its whole namespace: on 20,000 Queries in one namespace, creates fell
-- from about 7,000 to 650 per second with PostgreSQL's CPU the limit. Every query that
-- used it is served by resources_kind_namespace_name, whose leading columns are the same,
-- so it goes: one index fewer to write per row, and no plan can choose it.

DROP INDEX IF EXISTS resources_kind_namespace;
