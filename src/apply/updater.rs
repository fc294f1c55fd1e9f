//! Ownership bookkeeping for one write: structured-merge-diff's `merge.Updater`.
//!
//! An Update takes ownership of whatever it changed; an Apply merges its configuration,
//! owns exactly what the configuration sets, removes what it stopped setting (unless
//! someone else still owns it), and fails on fields another manager owns and this apply
//! changes, unless forced.

use std::collections::BTreeMap;

use serde_json::Value;

use super::path::Path;
use super::schema::Schema;
use super::set::Set;
use super::typed::{self, Comparison};

/// One manager's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedSet {
    pub set: Set,
    pub api_version: String,
    pub applied: bool,
}

/// Every manager's fields, by manager identifier (see `managed::identifier`).
pub type ManagedFields = BTreeMap<String, VersionedSet>;

/// Fields another manager owns that a write would change.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub path: Path,
}

pub struct Updater<'a> {
    pub schema: &'a Schema,
    /// Fields this endpoint never owns (`status` on the main resource; everything but
    /// `status` on `/status`): kube's reset fields.
    pub ignored: Option<&'a Set>,
}

impl Updater<'_> {
    fn field_set(&self, v: &Value) -> Set {
        typed::to_field_set(self.schema, self.schema.root(), v)
    }

    fn ensure(&self, s: &Set) -> Set {
        typed::ensure_named_fields_are_members(self.schema, self.schema.root(), s)
    }

    fn remove(&self, v: &Value, s: &Set) -> Value {
        typed::remove_items(self.schema, self.schema.root(), v, s)
            .unwrap_or_else(|| Value::Object(Default::default()))
    }

    fn filter(&self, s: Set) -> Set {
        match self.ignored {
            Some(i) => s.recursive_difference(i),
            None => s,
        }
    }

    /// Takes changed fields away from every manager but `workflow`; with conflicts and no
    /// `force`, fails instead.
    fn update(
        &self,
        old: &Value,
        new: &Value,
        managers: &mut ManagedFields,
        workflow: &str,
        force: bool,
    ) -> Result<Comparison, Vec<Conflict>> {
        let cmp = typed::compare(self.schema, self.schema.root(), old, new).filtered(self.ignored);
        let changed = cmp.modified.union(&cmp.added);
        let mut conflicts: Vec<(String, Set)> = Vec::new();
        for (manager, vs) in managers.iter() {
            if manager == workflow {
                continue;
            }
            let c = vs.set.intersection(&changed);
            if !c.is_empty() {
                conflicts.push((manager.clone(), c));
            }
        }
        if !force && !conflicts.is_empty() {
            return Err(conflicts
                .into_iter()
                .flat_map(|(m, s)| {
                    s.paths().into_iter().map(move |path| Conflict {
                        manager: m.clone(),
                        path,
                    })
                })
                .collect());
        }
        for (manager, c) in &conflicts {
            if let Some(vs) = managers.get_mut(manager) {
                vs.set = vs.set.difference(c);
            }
        }
        if !cmp.removed.is_empty() {
            for (manager, vs) in managers.iter_mut() {
                if manager != workflow {
                    vs.set = vs.set.difference(&cmp.removed);
                }
            }
        }
        managers.retain(|_, vs| !vs.set.is_empty());
        Ok(cmp)
    }

    /// Sets recorded at this version under an older schema, reconciled with this one before
    /// any write uses them (as SMD's Updater does first thing). Entries of other versions
    /// are left alone: without a conversion there is no schema of theirs to check against.
    fn reconcile(&self, managers: &mut ManagedFields, version: &str) {
        for vs in managers.values_mut() {
            if vs.api_version == version {
                if let Some(r) = super::reconcile::reconcile(self.schema, &vs.set) {
                    vs.set = r;
                }
            }
        }
    }

    /// An Update by `manager` from `live` to `new`.
    pub fn update_op(
        &self,
        live: &Value,
        new: &Value,
        version: &str,
        managers: &mut ManagedFields,
        manager: &str,
    ) {
        self.reconcile(managers, version);
        let cmp = match self.update(live, new, managers, manager, true) {
            Ok(c) => c,
            Err(_) => unreachable!("a forced update has no conflicts"),
        };
        let previous = managers
            .get(manager)
            .map(|v| v.set.clone())
            .unwrap_or_default();
        let set = previous
            .difference(&cmp.removed)
            .union(&cmp.modified)
            .union(&cmp.added);
        let set = self.filter(set);
        if set.is_empty() {
            managers.remove(manager);
        } else {
            managers.insert(
                manager.to_string(),
                VersionedSet {
                    set,
                    api_version: version.to_string(),
                    applied: false,
                },
            );
        }
    }

    /// An Apply of `config` by `manager` onto `live`. Returns the new object, or `None`
    /// when it equals `live` (nothing to write; the managers may still have changed).
    pub fn apply_op(
        &self,
        live: &Value,
        config: &Value,
        version: &str,
        managers: &mut ManagedFields,
        manager: &str,
        force: bool,
    ) -> Result<Option<Value>, Vec<Conflict>> {
        self.reconcile(managers, version);
        let root = self.schema.root();
        let merged = typed::merge(self.schema, root, Some(live), Some(config))
            .unwrap_or_else(|| Value::Object(Default::default()));
        let last = managers.get(manager).cloned();
        let set = self.filter(self.field_set(config));
        let mut trial = managers.clone();
        trial.insert(
            manager.to_string(),
            VersionedSet {
                set,
                api_version: version.to_string(),
                applied: true,
            },
        );
        let new = self.prune(merged, &trial, last.as_ref());
        self.update(live, &new, &mut trial, manager, force)?;
        *managers = trial;
        Ok((!super::path::values_equal(live, &new)).then_some(new))
    }

    /// Removes what `manager` owned before and no longer applies, keeping what another
    /// manager (or the new configuration) owns.
    fn prune(&self, merged: Value, managers: &ManagedFields, last: Option<&VersionedSet>) -> Value {
        let Some(last) = last.filter(|l| !l.set.is_empty()) else {
            return merged;
        };
        let pruned = self.remove(&merged, &self.ensure(&last.set));
        // Add back what anyone still owns.
        let managed = managers
            .values()
            .fold(Set::new(), |acc, vs| acc.union(&vs.set));
        let merged_set = self.ensure(&self.field_set(&merged));
        let pruned_set = self.ensure(&self.field_set(&pruned));
        let pruned = self.remove(
            &merged,
            &merged_set.difference(&pruned_set.union(&self.ensure(&managed))),
        );
        // And what the applier never owned (removed only as a side effect above).
        let pruned_set = self.ensure(&self.field_set(&pruned));
        let last_set = self.ensure(&last.set);
        self.remove(
            &merged,
            &merged_set.difference(&pruned_set).intersection(&last_set),
        )
    }
}
