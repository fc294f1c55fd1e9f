-- ark-apiserver schema, version 5: managedFields are stored as written.
--
-- jsonb stores object keys sorted by length, then bytes, and that reorders both the
-- keys of a managedFields entry (manager, operation, apiVersion, time, ...) and the
-- entries of its fieldsV1, where kube-apiserver writes `.` first and then the fields in
-- structured-merge-diff's order. GitOps tools compare managedFields as kube writes them,
-- so the column becomes json, which keeps the text it was given. Nothing queries into
-- the column; it is read and written whole. The rewrite touches every row once.

ALTER TABLE resources ALTER COLUMN managed_fields DROP DEFAULT;
ALTER TABLE resources ALTER COLUMN managed_fields TYPE json USING managed_fields::json;
ALTER TABLE resources ALTER COLUMN managed_fields SET DEFAULT '[]'::json;
