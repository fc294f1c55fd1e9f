-- ark-apiserver schema, version 1: one row per object, commit-ordered resourceVersions.

CREATE TABLE resources (
    uid                uuid        PRIMARY KEY,
    kind               text        NOT NULL,
    api_version        text        NOT NULL,
    namespace          text        NOT NULL DEFAULT '',   -- '' for cluster-scoped kinds
    name               text        NOT NULL,
    resource_version   bigint      NOT NULL DEFAULT 0,    -- assigned by trigger, see below
    generation         bigint      NOT NULL DEFAULT 1,
    spec               jsonb,
    status             jsonb,
    labels             jsonb       NOT NULL DEFAULT '{}',
    annotations        jsonb       NOT NULL DEFAULT '{}',
    finalizers         jsonb       NOT NULL DEFAULT '[]',
    owner_references   jsonb       NOT NULL DEFAULT '[]',
    managed_fields     jsonb       NOT NULL DEFAULT '[]',
    -- Top-level fields other than spec/status, and metadata fields without a column of their own
    -- (under the key "metadata"), so that no part of an object is lost.
    extra              jsonb       NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deletion_timestamp timestamptz,                       -- metadata.deletionTimestamp: terminating
    deleted_at         timestamptz                        -- soft delete: gone from the API
);

CREATE INDEX resources_kind_namespace ON resources (kind, namespace);
CREATE INDEX resources_kind_namespace_name ON resources (kind, namespace, name);
-- A name is unique among live objects only, so it can be reused once its object is deleted.
CREATE UNIQUE INDEX resources_live_name ON resources (kind, namespace, name) WHERE deleted_at IS NULL;
CREATE INDEX resources_labels ON resources USING gin (labels jsonb_path_ops);
CREATE INDEX resources_deleted_at ON resources (deleted_at) WHERE deleted_at IS NOT NULL;

-- One counter for the whole table. Every writing statement first locks the counter row
-- (statement trigger, before it touches any row) and keeps the lock until it commits, so
-- counter order is commit order: a transaction that gets a larger value cannot commit
-- before one holding a smaller value. Taking the lock before any row lock is what keeps
-- two multi-row writers from deadlocking; a statement trigger cannot know which kinds it
-- will touch, so the counter is shared by all kinds. See ARCHITECTURE.md, "resourceVersion".
CREATE TABLE resource_version_counter (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    value     bigint  NOT NULL
);
INSERT INTO resource_version_counter (singleton, value) VALUES (true, 0);

CREATE FUNCTION ark_lock_resource_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The purge removes rows already gone from the API; it needs no resourceVersion.
    IF TG_OP = 'DELETE' AND current_setting('ark.purge', true) = 'on' THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM resource_version_counter FOR NO KEY UPDATE;
    RETURN NULL;
END
$$;

CREATE TRIGGER resources_lock_resource_version
    BEFORE INSERT OR UPDATE OR DELETE ON resources
    FOR EACH STATEMENT EXECUTE FUNCTION ark_lock_resource_version();

CREATE FUNCTION ark_assign_resource_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    next bigint;
BEGIN
    UPDATE resource_version_counter SET value = value + 1 RETURNING value INTO next;
    NEW.resource_version := next;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Every writer goes through these triggers, including a person running UPDATE in psql.
CREATE TRIGGER resources_assign_resource_version
    BEFORE INSERT OR UPDATE ON resources
    FOR EACH ROW EXECUTE FUNCTION ark_assign_resource_version();

-- A DELETE of a live row becomes a soft delete, so it gets a resourceVersion and its final
-- state reaches watchers like any other change. The purge of expired soft-deleted rows sets
-- ark.purge = 'on' to really remove them.
CREATE FUNCTION ark_soft_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.deleted_at IS NOT NULL OR current_setting('ark.purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    UPDATE resources
       SET deleted_at = now(),
           deletion_timestamp = coalesce(deletion_timestamp, now())
     WHERE uid = OLD.uid;
    RETURN NULL;
END
$$;

CREATE TRIGGER resources_soft_delete
    BEFORE DELETE ON resources
    FOR EACH ROW EXECUTE FUNCTION ark_soft_delete();

-- The change stream the watch is built on. Creating a publication needs ownership of the
-- table, which the migrating role has; the serving role then needs only DML and REPLICATION.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'ark_cdc') THEN
        CREATE PUBLICATION ark_cdc FOR TABLE resources;
    END IF;
END
$$;
