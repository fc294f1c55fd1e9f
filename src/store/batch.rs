//! How one group-commit batch becomes statements: consecutive writes of the same kind go
//! out as one multi-row statement over arrays (`unnest`), not one statement per write.
//!
//! Why: the batch runs in one backend, one statement after another, so that backend's CPU
//! is the write path's ceiling. Per statement PostgreSQL pays an executor start, the
//! resourceVersion statement triggers (lock and read the counter, write it back) and a
//! protocol round of Bind/Execute; one statement per run of writes pays those once.
//!
//! The plan is pure (no I/O) so that its rules are unit tested: runs keep the batch's
//! order, and a run never holds two writes to the same object. That keeps each multi-row
//! statement equivalent to its writes one after another: two creates of one name in one
//! `INSERT` would fire the row trigger for the loser before `ON CONFLICT` drops it
//! (spending a resourceVersion no row carries), and two updates of one object in one
//! `UPDATE ... FROM` would leave it to the join which one applies.

use std::collections::HashSet;

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::row::Columns;
use super::writer::WriteOp;

/// Which statement a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Create,
    Update,
    Delete,
}

/// Consecutive writes of one kind, as indexes into the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub kind: RunKind,
    pub jobs: Vec<usize>,
}

fn kind_of(op: &WriteOp) -> RunKind {
    match op {
        WriteOp::Create(_) => RunKind::Create,
        WriteOp::Update { .. } => RunKind::Update,
        WriteOp::Delete { .. } => RunKind::Delete,
    }
}

/// Identity of the object a write touches within a run: the live name for a create (the
/// unique index it could collide on), the uid for updates and deletes.
#[derive(Hash, PartialEq, Eq)]
enum Target<'a> {
    Name(&'a str, &'a str, &'a str),
    Uid(Uuid),
}

fn target(op: &WriteOp) -> Target<'_> {
    match op {
        WriteOp::Create(c) => Target::Name(&c.kind, &c.namespace, &c.name),
        WriteOp::Update { cols, .. } | WriteOp::Delete { cols, .. } => Target::Uid(cols.uid),
    }
}

/// Splits a batch into runs: a new run starts where the kind of write changes or where a
/// write touches an object the current run already touches.
pub fn plan(ops: &[&WriteOp]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut seen: HashSet<Target<'_>> = HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        let kind = kind_of(op);
        let t = target(op);
        let extend = runs
            .last()
            .is_some_and(|r| r.kind == kind && !seen.contains(&t));
        if !extend {
            runs.push(Run {
                kind,
                jobs: Vec::new(),
            });
            seen.clear();
        }
        seen.insert(t);
        if let Some(r) = runs.last_mut() {
            r.jobs.push(i);
        }
    }
    runs
}

/// Creates of one run. `RETURNING uid` ties each row back to its write (uids are ours and
/// unique); a write without a returned row found its name taken.
pub const INSERT_MANY: &str = "INSERT INTO resources (uid, kind, api_version, namespace, name, generation, spec, status, \
     labels, annotations, finalizers, owner_references, managed_fields, extra, created_at, deletion_timestamp) \
     SELECT u.uid, u.kind, u.api_version, u.namespace, u.name, u.generation, u.spec, u.status, \
     u.labels, u.annotations, u.finalizers, u.owner_references, u.managed_fields, u.extra, u.created_at, u.deletion_timestamp \
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::jsonb[], $8::jsonb[], \
     $9::jsonb[], $10::jsonb[], $11::jsonb[], $12::jsonb[], $13::json[], $14::jsonb[], $15::timestamptz[], $16::timestamptz[]) \
     WITH ORDINALITY AS u(uid, kind, api_version, namespace, name, generation, spec, status, labels, annotations, \
     finalizers, owner_references, managed_fields, extra, created_at, deletion_timestamp, ord) \
     WHERE NOT EXISTS (SELECT 1 FROM resources r WHERE r.kind = u.kind AND r.namespace = u.namespace \
     AND r.name = u.name AND r.deleted_at IS NULL) \
     ORDER BY u.ord \
     ON CONFLICT (kind, namespace, name) WHERE deleted_at IS NULL DO NOTHING \
     RETURNING uid, resource_version";

const SET_FROM_U: &str = "api_version = u.api_version, generation = u.generation, spec = u.spec, \
     status = u.status, labels = u.labels, annotations = u.annotations, finalizers = u.finalizers, \
     owner_references = u.owner_references, managed_fields = u.managed_fields, extra = u.extra";

const UNNEST_CHANGES: &str = "FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::jsonb[], $5::jsonb[], \
     $6::jsonb[], $7::jsonb[], $8::jsonb[], $9::jsonb[], $10::json[], $11::jsonb[], $12::timestamptz[], $13::int8[]) \
     AS u(uid, api_version, generation, spec, status, labels, annotations, finalizers, owner_references, \
     managed_fields, extra, deletion_timestamp, expected_rv) \
     WHERE r.uid = u.uid AND r.resource_version = u.expected_rv AND r.deleted_at IS NULL \
     RETURNING r.uid, r.resource_version";

/// Updates of one run, each conditional on its expected resourceVersion.
pub fn update_many() -> String {
    format!(
        "UPDATE resources r SET {SET_FROM_U}, deletion_timestamp = u.deletion_timestamp {UNNEST_CHANGES}"
    )
}

/// Soft deletes of one run, each conditional on its expected resourceVersion.
pub fn delete_many() -> String {
    format!(
        "UPDATE resources r SET {SET_FROM_U}, deletion_timestamp = coalesce(u.deletion_timestamp, now()), \
         deleted_at = now() {UNNEST_CHANGES}"
    )
}

/// The arrays of one run, column by column, borrowed from the writes.
pub struct Arrays<'a> {
    uid: Vec<Uuid>,
    kind: Vec<&'a str>,
    api_version: Vec<&'a str>,
    namespace: Vec<&'a str>,
    name: Vec<&'a str>,
    generation: Vec<i64>,
    spec: Vec<Option<&'a serde_json::Value>>,
    status: Vec<Option<&'a serde_json::Value>>,
    labels: Vec<&'a serde_json::Value>,
    annotations: Vec<&'a serde_json::Value>,
    finalizers: Vec<&'a serde_json::Value>,
    owner_references: Vec<&'a serde_json::Value>,
    managed_fields: Vec<&'a serde_json::Value>,
    extra: Vec<&'a serde_json::Value>,
    created_at: Vec<chrono::DateTime<chrono::Utc>>,
    deletion_timestamp: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    expected_rv: Vec<i64>,
}

impl<'a> Arrays<'a> {
    pub fn of(ops: &[&'a WriteOp], run: &Run) -> Self {
        let n = run.jobs.len();
        let mut a = Arrays {
            uid: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            api_version: Vec::with_capacity(n),
            namespace: Vec::with_capacity(n),
            name: Vec::with_capacity(n),
            generation: Vec::with_capacity(n),
            spec: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            labels: Vec::with_capacity(n),
            annotations: Vec::with_capacity(n),
            finalizers: Vec::with_capacity(n),
            owner_references: Vec::with_capacity(n),
            managed_fields: Vec::with_capacity(n),
            extra: Vec::with_capacity(n),
            created_at: Vec::with_capacity(n),
            deletion_timestamp: Vec::with_capacity(n),
            expected_rv: Vec::with_capacity(n),
        };
        for &i in &run.jobs {
            let (c, rv): (&'a Columns, i64) = match ops[i] {
                WriteOp::Create(c) => (c, 0),
                WriteOp::Update { cols, expected_rv } | WriteOp::Delete { cols, expected_rv } => {
                    (cols, *expected_rv)
                }
            };
            a.uid.push(c.uid);
            a.kind.push(&c.kind);
            a.api_version.push(&c.api_version);
            a.namespace.push(&c.namespace);
            a.name.push(&c.name);
            a.generation.push(c.generation);
            a.spec.push(c.spec.as_ref());
            a.status.push(c.status.as_ref());
            a.labels.push(&c.labels);
            a.annotations.push(&c.annotations);
            a.finalizers.push(&c.finalizers);
            a.owner_references.push(&c.owner_references);
            a.managed_fields.push(&c.managed_fields);
            a.extra.push(&c.extra);
            a.created_at.push(c.created_at);
            a.deletion_timestamp.push(c.deletion_timestamp);
            a.expected_rv.push(rv);
        }
        a
    }

    /// The parameters, in the order of [`INSERT_MANY`] or of [`update_many`] and
    /// [`delete_many`].
    pub fn params(&self, kind: RunKind) -> Vec<&(dyn ToSql + Sync)> {
        match kind {
            RunKind::Create => vec![
                &self.uid,
                &self.kind,
                &self.api_version,
                &self.namespace,
                &self.name,
                &self.generation,
                &self.spec,
                &self.status,
                &self.labels,
                &self.annotations,
                &self.finalizers,
                &self.owner_references,
                &self.managed_fields,
                &self.extra,
                &self.created_at,
                &self.deletion_timestamp,
            ],
            RunKind::Update | RunKind::Delete => vec![
                &self.uid,
                &self.api_version,
                &self.generation,
                &self.spec,
                &self.status,
                &self.labels,
                &self.annotations,
                &self.finalizers,
                &self.owner_references,
                &self.managed_fields,
                &self.extra,
                &self.deletion_timestamp,
                &self.expected_rv,
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cols(name: &str, uid: u128) -> Columns {
        Columns {
            uid: Uuid::from_u128(uid),
            kind: "Agent".into(),
            api_version: "ark.mckinsey.com/v1alpha1".into(),
            namespace: "default".into(),
            name: name.into(),
            generation: 1,
            spec: Some(json!({})),
            status: None,
            labels: json!({}),
            annotations: json!({}),
            finalizers: json!([]),
            owner_references: json!([]),
            managed_fields: json!([]),
            extra: json!({}),
            created_at: chrono::Utc::now(),
            deletion_timestamp: None,
        }
    }

    fn create(name: &str, uid: u128) -> WriteOp {
        WriteOp::Create(cols(name, uid))
    }

    fn update(uid: u128) -> WriteOp {
        WriteOp::Update {
            cols: cols("x", uid),
            expected_rv: 7,
        }
    }

    fn delete(uid: u128) -> WriteOp {
        WriteOp::Delete {
            cols: cols("x", uid),
            expected_rv: 7,
        }
    }

    fn shape(ops: &[WriteOp]) -> Vec<(RunKind, Vec<usize>)> {
        let refs: Vec<&WriteOp> = ops.iter().collect();
        plan(&refs).into_iter().map(|r| (r.kind, r.jobs)).collect()
    }

    #[test]
    fn consecutive_writes_of_one_kind_share_a_statement() {
        let ops = [create("a", 1), create("b", 2), create("c", 3)];
        assert_eq!(shape(&ops), vec![(RunKind::Create, vec![0, 1, 2])]);
    }

    #[test]
    fn runs_keep_the_batch_order_where_the_kind_of_write_changes() {
        let ops = [
            create("a", 1),
            update(9),
            update(8),
            create("b", 2),
            delete(5),
        ];
        assert_eq!(
            shape(&ops),
            vec![
                (RunKind::Create, vec![0]),
                (RunKind::Update, vec![1, 2]),
                (RunKind::Create, vec![3]),
                (RunKind::Delete, vec![4]),
            ]
        );
    }

    #[test]
    fn two_creates_of_one_name_go_in_separate_statements() {
        let ops = [
            create("a", 1),
            create("b", 2),
            create("a", 3),
            create("c", 4),
        ];
        assert_eq!(
            shape(&ops),
            vec![(RunKind::Create, vec![0, 1]), (RunKind::Create, vec![2, 3])]
        );
    }

    #[test]
    fn two_updates_of_one_object_go_in_separate_statements() {
        let ops = [update(1), update(2), update(1)];
        assert_eq!(
            shape(&ops),
            vec![(RunKind::Update, vec![0, 1]), (RunKind::Update, vec![2])]
        );
    }

    #[test]
    fn one_name_in_two_namespaces_is_two_objects() {
        let mut other = cols("a", 2);
        other.namespace = "other".into();
        let ops = [create("a", 1), WriteOp::Create(other)];
        assert_eq!(shape(&ops), vec![(RunKind::Create, vec![0, 1])]);
    }

    #[test]
    fn arrays_line_up_with_the_statements_parameters() {
        let ops = [update(1), update(2)];
        let refs: Vec<&WriteOp> = ops.iter().collect();
        let runs = plan(&refs);
        let a = Arrays::of(&refs, &runs[0]);
        assert_eq!(a.params(RunKind::Update).len(), 13);
        assert_eq!(a.params(RunKind::Create).len(), 16);
        assert_eq!(a.uid, vec![Uuid::from_u128(1), Uuid::from_u128(2)]);
        assert_eq!(a.expected_rv, vec![7, 7]);
    }
}
