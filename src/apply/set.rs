//! Field sets: which fields a manager owns, as a trie of path elements, with the set
//! algebra of structured-merge-diff's `fieldpath.Set` and its `fieldsV1` encoding.
//!
//! A node holds *members* (paths that end here) and *children* (paths that go on). A path
//! can be both, which `fieldsV1` writes as a child object whose first entry is `"."`.

use serde_json::{Map, Value};

use super::path::{Path, PathElement};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    /// Sorted, unique.
    members: Vec<PathElement>,
    /// Sorted by element, unique.
    children: Vec<(PathElement, Set)>,
}

impl Set {
    pub fn new() -> Set {
        Set::default()
    }

    pub fn from_paths<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Set {
        let mut s = Set::new();
        for p in paths {
            s.insert(p);
        }
        s
    }

    pub fn insert(&mut self, p: &[PathElement]) {
        match p {
            [] => {}
            [last] => {
                if let Err(i) = self.members.binary_search(last) {
                    self.members.insert(i, last.clone());
                }
            }
            [first, rest @ ..] => self.descend(first).insert(rest),
        }
    }

    fn descend(&mut self, pe: &PathElement) -> &mut Set {
        let i = match self.children.binary_search_by(|(e, _)| e.cmp(pe)) {
            Ok(i) => i,
            Err(i) => {
                self.children.insert(i, (pe.clone(), Set::new()));
                i
            }
        };
        &mut self.children[i].1
    }

    pub fn child(&self, pe: &PathElement) -> Option<&Set> {
        self.children
            .binary_search_by(|(e, _)| e.cmp(pe))
            .ok()
            .map(|i| &self.children[i].1)
    }

    pub fn has_member(&self, pe: &PathElement) -> bool {
        self.members.binary_search(pe).is_ok()
    }

    pub fn has(&self, p: &[PathElement]) -> bool {
        match p {
            [] => false,
            [last] => self.has_member(last),
            [first, rest @ ..] => self.child(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The subtree under `pe` (empty when there is none).
    pub fn with_prefix(&self, pe: &PathElement) -> Set {
        self.child(pe).cloned().unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.iter().all(|(_, c)| c.is_empty())
    }

    pub fn members(&self) -> &[PathElement] {
        &self.members
    }

    pub fn children(&self) -> &[(PathElement, Set)] {
        &self.children
    }

    pub(super) fn from_parts(members: Vec<PathElement>, children: Vec<(PathElement, Set)>) -> Set {
        Set { members, children }
    }

    pub fn union(&self, o: &Set) -> Set {
        Set {
            members: merge_sorted(&self.members, &o.members, true, true),
            children: {
                let (mut out, mut i, mut j) = (Vec::new(), 0, 0);
                let (a, b) = (&self.children, &o.children);
                while i < a.len() && j < b.len() {
                    match a[i].0.cmp(&b[j].0) {
                        std::cmp::Ordering::Less => {
                            out.push(a[i].clone());
                            i += 1;
                        }
                        std::cmp::Ordering::Greater => {
                            out.push(b[j].clone());
                            j += 1;
                        }
                        std::cmp::Ordering::Equal => {
                            out.push((a[i].0.clone(), a[i].1.union(&b[j].1)));
                            i += 1;
                            j += 1;
                        }
                    }
                }
                out.extend_from_slice(&a[i..]);
                out.extend_from_slice(&b[j..]);
                out
            },
        }
    }

    pub fn intersection(&self, o: &Set) -> Set {
        Set {
            members: merge_sorted(&self.members, &o.members, false, false),
            children: self
                .children
                .iter()
                .filter_map(|(pe, c)| {
                    let r = c.intersection(o.child(pe)?);
                    (!r.is_empty()).then(|| (pe.clone(), r))
                })
                .collect(),
        }
    }

    /// Members of `o` leave; children lose `o`'s matching subtrees (a member of `o` does not
    /// remove the subtree below the same element: see [`Set::recursive_difference`]).
    pub fn difference(&self, o: &Set) -> Set {
        Set {
            members: self
                .members
                .iter()
                .filter(|m| !o.has_member(m))
                .cloned()
                .collect(),
            children: self
                .children
                .iter()
                .filter_map(|(pe, c)| match o.child(pe) {
                    None => Some((pe.clone(), c.clone())),
                    Some(oc) => {
                        let d = c.difference(oc);
                        (!d.is_empty()).then(|| (pe.clone(), d))
                    }
                })
                .collect(),
        }
    }

    /// Like [`Set::difference`], but a member of `o` removes everything below it too.
    pub fn recursive_difference(&self, o: &Set) -> Set {
        Set {
            members: self
                .members
                .iter()
                .filter(|m| !o.has_member(m))
                .cloned()
                .collect(),
            children: self
                .children
                .iter()
                .filter(|(pe, _)| !o.has_member(pe))
                .filter_map(|(pe, c)| match o.child(pe) {
                    None => Some((pe.clone(), c.clone())),
                    Some(oc) => {
                        let d = c.recursive_difference(oc);
                        (!d.is_empty()).then(|| (pe.clone(), d))
                    }
                })
                .collect(),
        }
    }

    /// Every path, members of a node before its children's paths (kube's iteration order).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for m in &self.members {
            let mut p = prefix.clone();
            p.push(m.clone());
            out.push(p);
        }
        for (pe, c) in &self.children {
            prefix.push(pe.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The `fieldsV1` form, entries in the order kube writes them.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit(false))
    }

    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !(self.members.is_empty() && self.children.is_empty()) {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        let (mut mi, mut ci) = (0, 0);
        let (m, c) = (&self.members, &self.children);
        while mi < m.len() || ci < c.len() {
            let order = match (m.get(mi), c.get(ci)) {
                (Some(a), Some((b, _))) => a.cmp(b),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    out.insert(m[mi].to_key(), Value::Object(Map::new()));
                    mi += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.insert(c[ci].0.to_key(), Value::Object(c[ci].1.emit(false)));
                    ci += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.insert(c[ci].0.to_key(), Value::Object(c[ci].1.emit(true)));
                    mi += 1;
                    ci += 1;
                }
            }
        }
        out
    }

    /// Reads `fieldsV1`; element types kube does not know are skipped, as kube skips them.
    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        let Value::Object(m) = v else {
            return Err("FieldsV1 must be a JSON object".to_string());
        };
        Ok(read_node(m)?.0.unwrap_or_default())
    }
}

/// A node's children (if it has any) and whether the node itself is a member.
fn read_node(m: &Map<String, Value>) -> Result<(Option<Set>, bool), String> {
    let mut children: Option<Set> = None;
    let mut is_member = false;
    for (key, v) in m {
        if key == "." {
            is_member = true;
            continue;
        }
        let Some(pe) = PathElement::from_key(key)? else {
            continue;
        };
        let Value::Object(child) = v else {
            return Err(format!(
                "parsing key as path element: {key}: expected an object"
            ));
        };
        let (grand, child_is_member) = read_node(child)?;
        if child_is_member {
            children
                .get_or_insert_with(Set::new)
                .insert(std::slice::from_ref(&pe));
        }
        if let Some(g) = grand {
            let s = children.get_or_insert_with(Set::new);
            let node = s.descend(&pe);
            *node = node.union(&g);
        }
    }
    if children.is_none() {
        is_member = true;
    }
    Ok((children, is_member))
}

/// A sorted merge of two sorted lists: keeps elements in both, and those in only `a` or
/// only `b` when asked.
fn merge_sorted(
    a: &[PathElement],
    b: &[PathElement],
    keep_a_only: bool,
    keep_b_only: bool,
) -> Vec<PathElement> {
    let (mut out, mut i, mut j) = (Vec::new(), 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                if keep_a_only {
                    out.push(a[i].clone());
                }
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                if keep_b_only {
                    out.push(b[j].clone());
                }
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i].clone());
                i += 1;
                j += 1;
            }
        }
    }
    if keep_a_only {
        out.extend_from_slice(&a[i..]);
    }
    if keep_b_only {
        out.extend_from_slice(&b[j..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> PathElement {
        PathElement::field(s)
    }

    #[test]
    fn a_node_that_is_owned_and_has_children_writes_its_dot_first() {
        let s = Set::from_paths(&[
            vec![f("spec")],
            vec![f("spec"), f("z")],
            vec![f("spec"), f("a"), f("b")],
            vec![f("metadata"), f("labels"), f("app")],
        ]);
        let v = s.to_fields_v1();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{".":{},"f:a":{"f:b":{}},"f:z":{}}}"#
        );
        assert_eq!(Set::from_fields_v1(&v).unwrap(), s);
    }

    #[test]
    fn set_algebra_matches_structured_merge_diff() {
        let a = Set::from_paths(&[vec![f("a")], vec![f("a"), f("b")], vec![f("c")]]);
        let b = Set::from_paths(&[vec![f("a")], vec![f("d")]]);
        assert_eq!(
            a.difference(&b),
            Set::from_paths(&[vec![f("a"), f("b")], vec![f("c")]])
        );
        assert_eq!(a.recursive_difference(&b), Set::from_paths(&[vec![f("c")]]));
        assert_eq!(a.intersection(&b), Set::from_paths(&[vec![f("a")]]));
        assert_eq!(a.union(&b).paths().len(), 4);
        assert!(a.has(&[f("a"), f("b")]) && !a.has(&[f("b")]));
        assert!(Set::from_fields_v1(&json!({"f:a": {"x:y": {}}, "f:b": {}}))
            .unwrap()
            .has(&[f("b")]));
    }
}
