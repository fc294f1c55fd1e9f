-- ark-apiserver schema, version 4: resourceVersions cost O(1) per row.
--
-- Version 1 incremented the counter row once per changed row. Inside one transaction
-- every increment is a new version of that one row, and each increment walks the chain
-- of versions the transaction made before it, so a single statement touching N rows
-- cost O(N^2): 200,000 rows took about 150 times as long as without the triggers.
--
-- Now each statement reads the counter once, counts in a transaction-local setting
-- (ark.resource_version) as it assigns values to rows, and writes the counter back once
-- when the statement ends. Ordering is unchanged: the statement trigger still locks the
-- counter row before any row lock and the lock is held until commit, so counter order
-- is still commit order, for every writer.
--
-- Why greatest(counter, setting): the setting is local to the transaction, and within
-- it the counter is ours (locked), so the larger of the two is the last value handed out.
-- The setting is ahead while a statement runs, and while a statement nested inside a
-- trigger (the soft delete's UPDATE) runs inside an outer one that has not yet written
-- back; the counter is ahead after something raised it directly (a replica moving it
-- past a resourceVersion it has seen) or when the setting is left from an earlier
-- transaction by a session-level SET.

CREATE OR REPLACE FUNCTION ark_lock_resource_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    counted bigint;
BEGIN
    -- The purge removes rows already gone from the API; it needs no resourceVersion.
    IF TG_OP = 'DELETE' AND current_setting('ark.purge', true) = 'on' THEN
        RETURN NULL;
    END IF;
    SELECT value INTO counted FROM resource_version_counter FOR NO KEY UPDATE;
    PERFORM set_config('ark.resource_version',
        greatest(counted, coalesce(nullif(current_setting('ark.resource_version', true), '')::bigint, 0))::text,
        true);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION ark_assign_resource_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    next bigint;
BEGIN
    next := current_setting('ark.resource_version')::bigint + 1;
    PERFORM set_config('ark.resource_version', next::text, true);
    NEW.resource_version := next;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE FUNCTION ark_store_resource_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('ark.purge', true) = 'on' THEN
        RETURN NULL;
    END IF;
    -- The soft delete's UPDATE, run once per deleted row, leaves the write-back to the
    -- DELETE that fired it, so a DELETE of N rows writes the counter once, not N times.
    IF current_setting('ark.soft_deleting', true) = 'on' THEN
        RETURN NULL;
    END IF;
    UPDATE resource_version_counter
       SET value = current_setting('ark.resource_version')::bigint
     WHERE value < current_setting('ark.resource_version')::bigint;
    RETURN NULL;
END
$$;

CREATE TRIGGER resources_store_resource_version
    AFTER INSERT OR UPDATE OR DELETE ON resources
    FOR EACH STATEMENT EXECUTE FUNCTION ark_store_resource_version();

CREATE OR REPLACE FUNCTION ark_soft_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.deleted_at IS NOT NULL OR current_setting('ark.purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    PERFORM set_config('ark.soft_deleting', 'on', true);
    UPDATE resources
       SET deleted_at = now(),
           deletion_timestamp = coalesce(deletion_timestamp, now())
     WHERE uid = OLD.uid;
    PERFORM set_config('ark.soft_deleting', '', true);
    RETURN NULL;
END
$$;
