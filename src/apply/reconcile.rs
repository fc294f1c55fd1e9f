//! Field sets recorded under an older schema, brought in line with the current one
//! (structured-merge-diff's `ReconcileFieldSetWithSchema`). When a map or list turns
//! atomic (a CRD gains `x-kubernetes-map-type: atomic`, or loses its
//! `x-kubernetes-list-type`), a manager that owned fields inside it owns it whole from the
//! next write on, so the next apply conflicts on, and removes, the whole as kube's would.
//! The other direction is not reconciled: an owner of a formerly atomic node keeps it.

use super::path::PathElement;
use super::schema::{Kind, Schema, TypeRef, DEDUCED};
use super::set::Set;

/// `s` reconciled with `schema`; `None` when nothing changes (the common case, so callers
/// keep their set without a copy).
pub fn reconcile(schema: &Schema, s: &Set) -> Option<Set> {
    let mut w = Walk {
        schema,
        path: Vec::new(),
        collapse: Set::new(),
    };
    w.node(schema.root(), Some(s), false);
    if w.collapse.is_empty() {
        return None;
    }
    // Everything at and below a collapsed node goes; the node itself comes back owned.
    Some(s.recursive_difference(&w.collapse).union(&w.collapse))
}

struct Walk<'a> {
    schema: &'a Schema,
    path: Vec<PathElement>,
    /// The nodes that became atomic while the set owns parts of them.
    collapse: Set,
}

impl Walk<'_> {
    /// `owned_whole`: the set has this node as a member and nothing below it.
    fn node(&mut self, t: TypeRef, set: Option<&Set>, owned_whole: bool) {
        match self.schema.kind(t, None) {
            Kind::Map(m) => {
                // Undeclared keys under preserve-unknown-fields carry no atomic marker.
                if m.elem == Some(DEDUCED) && m.has_no_fields() {
                    return;
                }
                if !owned_whole && m.atomic {
                    if set.is_some_and(|s| !s.is_empty()) {
                        self.collapse.insert(&self.path);
                    }
                    return;
                }
                if let Some(s) = set {
                    self.items(s, |pe| match pe {
                        PathElement::Field(f) => m.child(f),
                        _ => m.elem,
                    });
                }
            }
            Kind::List(l) => {
                if !owned_whole && l.associative.is_none() {
                    self.collapse.insert(&self.path);
                    return;
                }
                let elem = l.elem;
                if let Some(s) = set {
                    self.items(s, |_| Some(elem));
                }
            }
            Kind::Scalar(_) | Kind::Invalid => {}
        }
    }

    fn items(&mut self, s: &Set, type_of: impl Fn(&PathElement) -> Option<TypeRef>) {
        for (pe, child) in s.children() {
            if let Some(t) = type_of(pe) {
                self.path.push(pe.clone());
                self.node(t, Some(child), false);
                self.path.pop();
            }
        }
        for pe in s.members() {
            if s.child(pe).is_some() {
                continue; // walked above, as a node with children
            }
            if let Some(t) = type_of(pe) {
                self.path.push(pe.clone());
                self.node(t, None, true);
                self.path.pop();
            }
        }
    }
}
