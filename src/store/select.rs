//! Label and field selectors as SQL over `resources`, always with bound parameters.
//!
//! Equality on labels becomes `labels @> {"k":"v"}`, which the GIN index on `labels`
//! answers; the other operators are plain jsonb predicates.

use serde_json::json;
use tokio_postgres::types::ToSql;

use crate::k8s::selector::{FieldOp, FieldSelector, LabelSelector, Op};

pub type Param = Box<dyn ToSql + Sync + Send>;

pub struct Filter {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Filter {
    /// Live objects of `kind`.
    pub fn new(kind: &str) -> Self {
        let mut f = Filter {
            clauses: vec!["deleted_at IS NULL".into()],
            params: Vec::new(),
        };
        let p = f.bind(kind.to_string());
        f.clauses.push(format!("kind = {p}"));
        f
    }

    fn bind<T: ToSql + Sync + Send + 'static>(&mut self, v: T) -> String {
        self.params.push(Box::new(v));
        format!("${}", self.params.len())
    }

    pub fn namespace(&mut self, ns: &str) {
        let p = self.bind(ns.to_string());
        self.clauses.push(format!("namespace = {p}"));
    }

    pub fn after(&mut self, ns: &str, name: &str) {
        let a = self.bind(ns.to_string());
        let b = self.bind(name.to_string());
        self.clauses.push(format!("(namespace, name) > ({a}, {b})"));
    }

    pub fn labels(&mut self, sel: &LabelSelector) {
        for r in &sel.requirements {
            let key = r.key.clone();
            match r.op {
                Op::Equals | Op::DoubleEquals => {
                    let v = r.values.first().cloned().unwrap_or_default();
                    let p = self.bind(json!({ key: v }));
                    self.clauses.push(format!("labels @> {p}"));
                }
                Op::NotEquals => {
                    let v = r.values.first().cloned().unwrap_or_default();
                    let p = self.bind(json!({ key: v }));
                    self.clauses.push(format!("NOT (labels @> {p})"));
                }
                Op::In => {
                    let k = self.bind(key);
                    let vs = self.bind(r.values.clone());
                    self.clauses.push(format!("(labels ->> {k}) = ANY({vs})"));
                }
                Op::NotIn => {
                    let k = self.bind(key);
                    let vs = self.bind(r.values.clone());
                    self.clauses
                        .push(format!("NOT coalesce((labels ->> {k}) = ANY({vs}), false)"));
                }
                Op::Exists => {
                    let k = self.bind(key);
                    self.clauses.push(format!("labels ? {k}"));
                }
                Op::DoesNotExist => {
                    let k = self.bind(key);
                    self.clauses.push(format!("NOT (labels ? {k})"));
                }
            }
        }
    }

    /// Only `metadata.name` and `metadata.namespace` reach here; the parser rejects others.
    pub fn fields(&mut self, sel: &FieldSelector) {
        for r in &sel.requirements {
            let column = match r.field.as_str() {
                "metadata.name" => "name",
                "metadata.namespace" => "namespace",
                _ => continue,
            };
            let p = self.bind(r.value.clone());
            match r.op {
                FieldOp::Equals => self.clauses.push(format!("{column} = {p}")),
                FieldOp::NotEquals => self.clauses.push(format!("{column} <> {p}")),
            }
        }
    }

    pub fn finish(self) -> (String, Vec<Param>) {
        (self.clauses.join(" AND "), self.params)
    }
}
