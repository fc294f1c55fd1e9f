-- ark-apiserver schema, version 2: the resourceVersion counter never reads 0.
--
-- A LIST of an empty store reported the counter's value as its resourceVersion: "0". To a
-- client, resourceVersion "0" does not mean "this point" but "any point" (a watch from it
-- replays the whole current state instead of the changes after the list), and Kubernetes
-- 1.35's comparable resourceVersions treat it as invalid; etcd's revision is never below 1
-- either. Starting the counter at 1 makes every reported resourceVersion positive, and the
-- first write takes 2, so a watch from a list's "1" sees it. A database that has been
-- written to already has a counter of at least 1 and is unchanged.
UPDATE resource_version_counter SET value = 1 WHERE value < 1;
