//! Values walked by their type: validation, field sets, comparison, merge and removal,
//! each the counterpart of a walker in structured-merge-diff's `typed` package, with its
//! rules for when a node is a leaf (atomic, or empty on both sides) and how list items
//! are ordered in a merge.

use serde_json::{Map, Value};

use super::path::{path_string, values_equal, Path, PathElement};
use super::schema::{Kind, ListType, Scalar, Schema, TypeRef, DEDUCED};
use super::set::Set;

/// What the walkers report about an object that does not fit its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    /// Where, as kube prints paths (`.spec.tools[name="a"]`).
    pub path: String,
    pub message: String,
    /// A duplicate item in an associative list (kube's 422 rather than 400).
    pub duplicate: bool,
}

impl std::fmt::Display for TypeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Several type errors as structured-merge-diff joins them.
pub fn errors_string(errs: &[TypeError]) -> String {
    if errs.len() == 1 {
        return errs[0].to_string();
    }
    let mut s = String::from("errors:");
    for e in errs {
        s.push_str("\n  ");
        s.push_str(&e.to_string());
    }
    s
}

/// The path element of a list item, or why it has none.
pub fn item_element(schema: &Schema, l: &ListType, item: &Value) -> Result<PathElement, String> {
    let Some(keys) = &l.associative else {
        return Err("invalid indexing of non-associative list".to_string());
    };
    if keys.is_empty() {
        return match item {
            Value::Object(_) => {
                Err("associative list without keys has an element that's a map type".to_string())
            }
            Value::Array(_) => {
                Err("not supported: associative list with lists as elements".to_string())
            }
            Value::Null => Err(
                "associative list without keys has an element that's an explicit null".to_string(),
            ),
            v => Ok(PathElement::Value(v.clone())),
        };
    }
    let Value::Object(m) = item else {
        return Err(if item.is_null() {
            "associative list with keys may not have a null element".to_string()
        } else {
            "associative list with keys may not have non-map elements".to_string()
        });
    };
    let elem_map = schema.atom(l.elem).map.as_ref();
    let mut fields = Vec::new();
    for k in keys {
        if let Some(v) = m.get(k) {
            fields.push((k.clone(), v.clone()));
        } else if let Some(d) = elem_map.and_then(|em| em.field_default(k)) {
            fields.push((k.clone(), d.clone()));
        }
    }
    if fields.is_empty() {
        let quoted: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
        return Err(format!(
            "associative list with keys has an element that omits all key fields [{}] (and doesn't have default values for any key fields)",
            quoted.join(" ")
        ));
    }
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(PathElement::Key(fields))
}

fn scalar_error(s: Scalar, v: &Value) -> Option<String> {
    let ok = matches!(
        (s, v),
        (_, Value::Null)
            | (Scalar::Numeric, Value::Number(_))
            | (Scalar::String, Value::String(_))
            | (Scalar::Boolean, Value::Bool(_))
            | (
                Scalar::Untyped,
                Value::Number(_) | Value::String(_) | Value::Bool(_)
            )
    );
    if ok {
        return None;
    }
    let want = match s {
        Scalar::Numeric => "numeric (int or float)",
        Scalar::String => "string",
        Scalar::Boolean => "boolean",
        Scalar::Untyped => "any scalar",
    };
    Some(format!("expected {want}, got {v}"))
}

/// Checks `v` fits type `t`: declared fields only (unless the map has an element type),
/// scalars of the declared kind, keyed items with their keys, and (unless
/// `allow_duplicates`) no two items of an associative list with the same key.
pub fn validate(schema: &Schema, t: TypeRef, v: &Value, allow_duplicates: bool) -> Vec<TypeError> {
    let mut errs = Vec::new();
    validate_at(
        schema,
        t,
        v,
        allow_duplicates,
        &mut String::new(),
        &mut errs,
    );
    errs
}

fn validate_at(
    schema: &Schema,
    t: TypeRef,
    v: &Value,
    dups: bool,
    at: &mut String,
    errs: &mut Vec<TypeError>,
) {
    let err = |at: &str, message: String, duplicate: bool| TypeError {
        path: at.to_string(),
        message,
        duplicate,
    };
    match schema.kind(t, Some(v)) {
        Kind::Scalar(s) => {
            if let Some(m) = scalar_error(s, v) {
                errs.push(err(at, m, false));
            }
        }
        Kind::Map(m) => match v {
            Value::Null => {}
            Value::Object(obj) => {
                for (k, child) in obj {
                    let len = at.len();
                    at.push('.');
                    at.push_str(k);
                    match m.child(k) {
                        Some(ct) => validate_at(schema, ct, child, dups, at, errs),
                        None => {
                            errs.push(err(at, "field not declared in schema".into(), false));
                            at.truncate(len);
                            return;
                        }
                    }
                    at.truncate(len);
                }
            }
            other => errs.push(err(at, format!("expected map, got {other}"), false)),
        },
        Kind::List(l) => match v {
            Value::Null => {}
            Value::Array(items) => {
                let mut seen: Vec<PathElement> = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let pe = if l.associative.is_some() {
                        match item_element(schema, l, item) {
                            Ok(pe) => pe,
                            Err(e) => {
                                errs.push(err(at, format!("element {i}: {e}"), false));
                                return;
                            }
                        }
                    } else {
                        PathElement::Index(i)
                    };
                    if l.associative.is_some() {
                        if !dups && seen.contains(&pe) {
                            errs.push(err(at, format!("duplicate entries for key {pe}"), true));
                        }
                        seen.push(pe.clone());
                    }
                    let len = at.len();
                    at.push_str(&pe.to_string());
                    validate_at(schema, l.elem, item, dups, at, errs);
                    at.truncate(len);
                }
            }
            other => errs.push(err(at, format!("expected list, got {other}"), false)),
        },
        Kind::Invalid => errs.push(err(at, "schema error: invalid atom".into(), false)),
    }
}

/// The fields `v` sets: leaves, atomic nodes, list items, and map keys that are empty,
/// null or not declared fields (so owning `labels.app` is a member of its own).
pub fn to_field_set(schema: &Schema, t: TypeRef, v: &Value) -> Set {
    let mut set = Set::new();
    field_set_at(schema, t, v, &mut Vec::new(), &mut set);
    set
}

fn field_set_at(schema: &Schema, t: TypeRef, v: &Value, at: &mut Path, set: &mut Set) {
    match schema.kind(t, Some(v)) {
        Kind::Scalar(_) => set.insert(at),
        Kind::Map(m) => {
            if m.atomic {
                set.insert(at);
                return;
            }
            let Value::Object(obj) = v else { return };
            for (k, child) in obj {
                at.push(PathElement::field(k));
                let declared = m.field(k);
                field_set_at(schema, m.child(k).unwrap_or(DEDUCED), child, at, set);
                let empty = child.is_null() || child.as_object().is_some_and(Map::is_empty);
                if empty || declared.is_none() {
                    set.insert(at);
                }
                at.pop();
            }
        }
        Kind::List(l) => {
            if l.associative.is_none() {
                set.insert(at);
                return;
            }
            let Value::Array(items) = v else { return };
            let pes: Vec<Option<PathElement>> = items
                .iter()
                .map(|i| item_element(schema, l, i).ok())
                .collect();
            let mut seen = Vec::new();
            let mut dups = Vec::new();
            for pe in pes.iter().flatten() {
                if seen.contains(pe) {
                    if !dups.contains(pe) {
                        at.push(pe.clone());
                        set.insert(at);
                        at.pop();
                        dups.push(pe.clone());
                    }
                } else {
                    seen.push(pe.clone());
                }
            }
            for (item, pe) in items.iter().zip(pes) {
                let Some(pe) = pe else { continue };
                if dups.contains(&pe) {
                    continue;
                }
                at.push(pe);
                field_set_at(schema, l.elem, item, at, set);
                set.insert(at);
                at.pop();
            }
        }
        Kind::Invalid => {}
    }
}

/// Fields added, changed and removed from `lhs` to `rhs`.
#[derive(Debug, Default, Clone)]
pub struct Comparison {
    pub removed: Set,
    pub modified: Set,
    pub added: Set,
}

impl Comparison {
    pub fn is_same(&self) -> bool {
        self.removed.is_empty() && self.modified.is_empty() && self.added.is_empty()
    }

    /// Leaves out `ignored` (and everything below its members).
    pub fn filtered(mut self, ignored: Option<&Set>) -> Comparison {
        if let Some(i) = ignored {
            self.removed = self.removed.recursive_difference(i);
            self.modified = self.modified.recursive_difference(i);
            self.added = self.added.recursive_difference(i);
        }
        self
    }
}

pub fn compare(schema: &Schema, t: TypeRef, lhs: &Value, rhs: &Value) -> Comparison {
    let mut c = Comparison::default();
    compare_at(schema, t, Some(lhs), Some(rhs), &mut Vec::new(), &mut c);
    c
}

fn deref_list(v: Option<&Value>) -> Option<&Vec<Value>> {
    v.and_then(Value::as_array)
}

fn deref_map(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v.and_then(Value::as_object)
}

/// The atom that handles a pair: the right side's unless it is absent.
fn pair_kind<'a>(
    schema: &'a Schema,
    t: TypeRef,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
) -> Kind<'a> {
    if rhs.is_none() {
        schema.kind(t, lhs)
    } else {
        schema.kind(t, rhs)
    }
}

fn compare_at(
    schema: &Schema,
    t: TypeRef,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    at: &mut Path,
    c: &mut Comparison,
) {
    // When the two sides are of different forms (a deduced field that was a map and is now
    // a string), kube walks the left side's form too: its children count as removed.
    if let (Some(l), Some(r)) = (lhs, rhs) {
        let (lk, rk) = (schema.kind(t, Some(l)), schema.kind(t, Some(r)));
        if std::mem::discriminant(&lk) != std::mem::discriminant(&rk) {
            match lk {
                Kind::Map(m) if !m.atomic => {
                    for (k, lv) in l.as_object().into_iter().flatten() {
                        at.push(PathElement::field(k));
                        compare_at(schema, m.child(k).unwrap_or(DEDUCED), Some(lv), None, at, c);
                        at.pop();
                    }
                }
                Kind::List(list) if list.associative.is_some() => {
                    compare_list_items(schema, list, l.as_array(), None, at, c)
                }
                _ => {}
            }
        }
    }
    let mut leaf_done = false;
    let leaf = |c: &mut Comparison, at: &Path| match (lhs, rhs) {
        (None, _) => c.added.insert(at),
        (_, None) => c.removed.insert(at),
        (Some(l), Some(r)) if !values_equal(l, r) => c.modified.insert(at),
        _ => {}
    };
    match pair_kind(schema, t, lhs, rhs) {
        Kind::Scalar(_) | Kind::Invalid => {
            leaf(c, at);
            leaf_done = true;
        }
        Kind::List(l) => {
            let (ll, rl) = (deref_list(lhs), deref_list(rhs));
            let empty = ll.is_none_or(Vec::is_empty) && rl.is_none_or(Vec::is_empty);
            if l.associative.is_none() || empty {
                leaf(c, at);
                leaf_done = true;
            } else {
                compare_list_items(schema, l, ll, rl, at, c);
            }
        }
        Kind::Map(m) => {
            let (lm, rm) = (deref_map(lhs), deref_map(rhs));
            let empty = lm.is_none_or(Map::is_empty) && rm.is_none_or(Map::is_empty);
            if m.atomic || empty {
                leaf(c, at);
                leaf_done = true;
            } else {
                let mut keys: Vec<&String> = Vec::new();
                if let Some(lm) = lm {
                    keys.extend(lm.keys());
                }
                if let Some(rm) = rm {
                    keys.extend(
                        rm.keys()
                            .filter(|k| lm.is_none_or(|lm| !lm.contains_key(*k))),
                    );
                }
                for k in keys {
                    at.push(PathElement::field(k));
                    compare_at(
                        schema,
                        m.child(k).unwrap_or(DEDUCED),
                        lm.and_then(|x| x.get(k)),
                        rm.and_then(|x| x.get(k)),
                        at,
                        c,
                    );
                    at.pop();
                }
            }
        }
    }
    if !leaf_done {
        if lhs.is_none() {
            c.added.insert(at);
        } else if rhs.is_none() {
            c.removed.insert(at);
        }
    }
}

fn compare_list_items<'a>(
    schema: &Schema,
    l: &ListType,
    lhs: Option<&'a Vec<Value>>,
    rhs: Option<&'a Vec<Value>>,
    at: &mut Path,
    c: &mut Comparison,
) {
    type Groups<'a> = Vec<(PathElement, Vec<&'a Value>)>;
    /// Adds `v` under `pe`; whether `pe` is new.
    fn group<'a>(vals: &mut Groups<'a>, pe: PathElement, v: &'a Value) -> bool {
        match vals.iter_mut().find(|(p, _)| *p == pe) {
            Some((_, list)) => {
                list.push(v);
                false
            }
            None => {
                vals.push((pe, vec![v]));
                true
            }
        }
    }
    let mut order: Vec<PathElement> = Vec::new();
    let mut lvals: Groups<'a> = Vec::new();
    let mut rvals: Groups<'a> = Vec::new();
    for item in lhs.into_iter().flatten() {
        if let Ok(pe) = item_element(schema, l, item) {
            if group(&mut lvals, pe.clone(), item) {
                order.push(pe);
            }
        }
    }
    for item in rhs.into_iter().flatten() {
        if let Ok(pe) = item_element(schema, l, item) {
            if group(&mut rvals, pe.clone(), item) && !lvals.iter().any(|(p, _)| *p == pe) {
                order.push(pe);
            }
        }
    }
    let get = |vals: &Vec<(PathElement, Vec<&'_ Value>)>, pe: &PathElement| -> Vec<Value> {
        vals.iter()
            .find(|(p, _)| p == pe)
            .map(|(_, v)| v.iter().map(|x| (*x).clone()).collect())
            .unwrap_or_default()
    };
    for pe in order {
        let (ll, rl) = (get(&lvals, &pe), get(&rvals, &pe));
        at.push(pe);
        match (ll.len(), rl.len()) {
            (0..=1, 0..=1) => compare_at(schema, l.elem, ll.first(), rl.first(), at, c),
            (2.., 2..) => {
                let same =
                    ll.len() == rl.len() && ll.iter().zip(&rl).all(|(a, b)| values_equal(a, b));
                if !same {
                    c.modified.insert(at);
                }
            }
            (2.., _) => {
                if let Some(r) = rl.first() {
                    compare_at(schema, l.elem, None, Some(r), at, c);
                }
                c.removed.insert(at);
            }
            (_, _) => {
                if let Some(lv) = ll.first() {
                    compare_at(schema, l.elem, Some(lv), None, at, c);
                }
                c.added.insert(at);
            }
        }
        at.pop();
    }
}

/// `rhs` merged onto `lhs`: the right side wins at every leaf; granular maps merge by key
/// and associative lists by item key; items only in `lhs` keep their place, shared and new
/// items follow `rhs`'s order. `None` is an absent result (a map or list that merged to
/// nothing).
pub fn merge(
    schema: &Schema,
    t: TypeRef,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
) -> Option<Value> {
    let leaf = || rhs.or(lhs).cloned();
    match pair_kind(schema, t, lhs, rhs) {
        Kind::Scalar(_) | Kind::Invalid => leaf(),
        Kind::List(l) => {
            let (ll, rl) = (deref_list(lhs), deref_list(rhs));
            let empty = ll.is_none_or(Vec::is_empty) && rl.is_none_or(Vec::is_empty);
            if l.associative.is_none() || empty {
                return leaf();
            }
            let out = merge_list_items(schema, l, ll, rl);
            (!out.is_empty()).then_some(Value::Array(out))
        }
        Kind::Map(m) => {
            let (lm, rm) = (deref_map(lhs), deref_map(rhs));
            let empty = lm.is_none_or(Map::is_empty) && rm.is_none_or(Map::is_empty);
            if m.atomic || empty {
                return leaf();
            }
            let mut out = Map::new();
            let mut visit = |k: &String| {
                let ct = m.child(k).unwrap_or(DEDUCED);
                if let Some(v) = merge(
                    schema,
                    ct,
                    lm.and_then(|x| x.get(k)),
                    rm.and_then(|x| x.get(k)),
                ) {
                    out.insert(k.clone(), v);
                }
            };
            if let Some(lm) = lm {
                lm.keys().for_each(&mut visit);
            }
            if let Some(rm) = rm {
                rm.keys()
                    .filter(|k| lm.is_none_or(|lm| !lm.contains_key(*k)))
                    .for_each(&mut visit);
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
    }
}

fn merge_list_items(
    schema: &Schema,
    l: &ListType,
    lhs: Option<&Vec<Value>>,
    rhs: Option<&Vec<Value>>,
) -> Vec<Value> {
    let index =
        |list: Option<&Vec<Value>>| -> (Vec<PathElement>, Vec<(PathElement, Value)>, Vec<usize>) {
            let mut pes = Vec::new();
            let mut observed: Vec<(PathElement, Value)> = Vec::new();
            let mut positions = Vec::new();
            for (i, item) in list.into_iter().flatten().enumerate() {
                let Ok(pe) = item_element(schema, l, item) else {
                    continue;
                };
                match observed.iter_mut().find(|(p, _)| *p == pe) {
                    // A key seen twice on the live side merges as an explicit null, as kube's does.
                    Some((_, v)) => *v = Value::Null,
                    None => observed.push((pe.clone(), item.clone())),
                }
                pes.push(pe);
                positions.push(i);
            }
            (pes, observed, positions)
        };
    let (rpes, robs, _) = index(rhs);
    let (lpes, lobs, lpos) = index(lhs);
    let lget = |pe: &PathElement| lobs.iter().find(|(p, _)| p == pe).map(|(_, v)| v);
    let rget = |pe: &PathElement| robs.iter().find(|(p, _)| p == pe).map(|(_, v)| v);
    let mut shared: std::collections::VecDeque<&PathElement> =
        rpes.iter().filter(|pe| lget(pe).is_some()).collect();
    let mut next_shared = shared.pop_front();
    let mut merged_rhs: Vec<PathElement> = Vec::new();
    let mut out = Vec::new();
    let push = |pe: &PathElement, lv: Option<&Value>, rv: Option<&Value>, out: &mut Vec<Value>| {
        if let Some(v) = merge(schema, l.elem, lv, rv) {
            out.push(v);
        }
        let _ = pe;
    };
    let (mut li, mut ri) = (0, 0);
    while li < lpes.len() || ri < rpes.len() {
        if li < lpes.len() && ri < rpes.len() {
            let pe = &lpes[li];
            if *pe == rpes[ri] {
                merged_rhs.push(pe.clone());
                push(pe, lget(pe), rget(pe), &mut out);
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if rget(pe).is_some() && next_shared.is_some_and(|n| n != &lpes[li]) {
                li += 1;
                continue;
            }
        }
        if li < lpes.len() {
            let pe = &lpes[li];
            if rget(pe).is_none() {
                let item = lhs.map(|v| &v[lpos[li]]);
                push(pe, item, None, &mut out);
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
            }
        }
        if ri < rpes.len() {
            let pe = rpes[ri].clone();
            merged_rhs.push(pe.clone());
            push(&pe, lget(&pe), rget(&pe), &mut out);
            ri += 1;
            if next_shared.is_some_and(|n| *n == pe) {
                next_shared = shared.pop_front();
            }
        }
    }
    out
}

/// `v` without the fields in `remove` (a member removes its whole subtree). A map or list
/// left with nothing becomes absent (`None`), as in kube.
pub fn remove_items(schema: &Schema, t: TypeRef, v: &Value, remove: &Set) -> Option<Value> {
    match schema.kind(t, Some(v)) {
        Kind::Scalar(_) | Kind::Invalid => Some(v.clone()),
        Kind::List(l) => {
            let items = v.as_array()?;
            if items.is_empty() || l.associative.is_none() {
                return None;
            }
            let mut out = Vec::new();
            for item in items {
                let pe = item_element(schema, l, item).unwrap_or(PathElement::Index(usize::MAX));
                if remove.has_member(&pe) {
                    continue;
                }
                match remove.child(&pe).filter(|s| !s.is_empty()) {
                    Some(sub) => {
                        out.push(remove_items(schema, l.elem, item, sub).unwrap_or(Value::Null))
                    }
                    None => out.push(item.clone()),
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        Kind::Map(m) => {
            let obj = v.as_object()?;
            if obj.is_empty() || m.atomic {
                return None;
            }
            let mut out = Map::new();
            for (k, child) in obj {
                let pe = PathElement::field(k);
                if remove.has_member(&pe) {
                    continue;
                }
                let nv = match remove.child(&pe).filter(|s| !s.is_empty()) {
                    Some(sub) => remove_items(schema, m.child(k).unwrap_or(DEDUCED), child, sub)
                        .unwrap_or(Value::Null),
                    None => child.clone(),
                };
                out.insert(k.clone(), nv);
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
    }
}

/// `s` with every declared field that has children made a member too, so that removing the
/// set removes the field itself (structured-merge-diff's `EnsureNamedFieldsAreMembers`).
pub fn ensure_named_fields_are_members(schema: &Schema, t: TypeRef, s: &Set) -> Set {
    let atom = schema.atom(t);
    let mut members = s.members().to_vec();
    for (pe, _) in s.children() {
        if let (PathElement::Field(name), Some(m)) = (pe, &atom.map) {
            if m.field(name).is_some() {
                if let Err(i) = members.binary_search(pe) {
                    members.insert(i, pe.clone());
                }
            }
        }
    }
    let children = s
        .children()
        .iter()
        .map(|(pe, c)| {
            let ct = match (pe, &atom.map, &atom.list) {
                (PathElement::Field(name), Some(m), _) => m.child(name),
                (PathElement::Key(_), _, Some(l)) => Some(l.elem),
                _ => None,
            };
            let sub = match ct {
                Some(ct) => ensure_named_fields_are_members(schema, ct, c),
                None => c.clone(),
            };
            (pe.clone(), sub)
        })
        .collect();
    Set::from_parts(members, children)
}

/// A path printed for people, as in conflict messages.
pub fn display(p: &[PathElement]) -> String {
    path_string(p)
}
