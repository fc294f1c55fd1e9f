-- ark-apiserver schema, version 3: the replicas that share this database.
--
-- One replica, the one holding the replication slot, consumes the change stream and relays
-- the committed transactions to the others. Each replica keeps a row here: the address
-- other replicas reach it at (--advertise-address), the secret a follower must present to
-- read its relay, the SHA-256 of its serving certificate (a follower pins the leader's
-- certificate to it), and how far it has applied, which bounds what the leader confirms to
-- the slot, so that whichever follower takes the slot over resumes without a gap.
--
-- The table is not in the publication: rows here never reach a watch. Only roles that
-- can read the database's tables can read the secrets, which is what authenticates a
-- follower to the leader.
CREATE TABLE IF NOT EXISTS ark_replicas (
    replica_id   text PRIMARY KEY,
    slot_name    text NOT NULL,
    address      text NOT NULL,
    token        text NOT NULL,
    cert_sha256  text NOT NULL,
    applied_lsn  pg_lsn NOT NULL DEFAULT '0/0',
    applied_rv   bigint NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
