//! The type server-side apply merges by, built from a CRD version's structural schema as
//! kube-apiserver builds it (kube-openapi's `schemaconv` over the CRD's published OpenAPI).
//!
//! - Objects are maps whose declared properties are fields; `additionalProperties` gives
//!   the type of other keys. Maps are granular unless `x-kubernetes-map-type: atomic`.
//! - Lists are atomic unless `x-kubernetes-list-type` is `set` (items are their own keys)
//!   or `map` (items keyed by `x-kubernetes-list-map-keys`).
//! - `x-kubernetes-preserve-unknown-fields` makes undeclared keys *deduced*: maps below
//!   are granular and lists atomic, whatever the value turns out to be.
//! - A node without a type (`x-kubernetes-int-or-string`, `{}`) is an untyped atom.
//! - The root and every `x-kubernetes-embedded-resource` get `apiVersion`, `kind` and
//!   `metadata` typed as ObjectMeta: finalizers a set, ownerReferences keyed by uid
//!   (each reference atomic), labels and annotations granular.

use std::collections::HashMap;

use serde_json::Value;

/// An index into [`Schema::atoms`].
pub type TypeRef = usize;

/// Undeclared keys under `x-kubernetes-preserve-unknown-fields`.
pub const DEDUCED: TypeRef = 0;
/// A node with no type: replaced as a whole.
pub const UNTYPED_ATOMIC: TypeRef = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    String,
    Numeric,
    Boolean,
    Untyped,
}

#[derive(Debug, Clone)]
pub struct ListType {
    pub elem: TypeRef,
    /// `None`: atomic. `Some([])`: a set. `Some(keys)`: a map keyed by those fields.
    pub associative: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct MapType {
    fields: Vec<(String, TypeRef, Option<Value>)>,
    index: HashMap<String, usize>,
    pub elem: Option<TypeRef>,
    pub atomic: bool,
}

impl MapType {
    pub fn field(&self, name: &str) -> Option<TypeRef> {
        self.index.get(name).map(|&i| self.fields[i].1)
    }

    pub fn field_default(&self, name: &str) -> Option<&Value> {
        self.index
            .get(name)
            .and_then(|&i| self.fields[i].2.as_ref())
    }

    pub fn has_no_fields(&self) -> bool {
        self.fields.is_empty()
    }

    /// The type of key `name`: its declared field, else the element type.
    pub fn child(&self, name: &str) -> Option<TypeRef> {
        self.field(name).or(self.elem)
    }
}

/// What a node may be; an untyped or deduced node may be any of the three.
#[derive(Debug, Clone, Default)]
pub struct Atom {
    pub scalar: Option<Scalar>,
    pub list: Option<ListType>,
    pub map: Option<MapType>,
}

/// The atom chosen for one value, as structured-merge-diff's `deduceAtom` then
/// `handleAtom` choose it (map first, then scalar, then list).
pub enum Kind<'a> {
    Map(&'a MapType),
    Scalar(Scalar),
    List(&'a ListType),
    Invalid,
}

#[derive(Debug, Clone)]
pub struct Schema {
    atoms: Vec<Atom>,
    root: TypeRef,
}

impl Schema {
    pub fn root(&self) -> TypeRef {
        self.root
    }

    pub fn atom(&self, t: TypeRef) -> &Atom {
        &self.atoms[t]
    }

    /// The atom for `v` at `t`: narrowed to the value's form when the type allows it.
    pub fn kind(&self, t: TypeRef, v: Option<&Value>) -> Kind<'_> {
        let a = &self.atoms[t];
        match v {
            Some(Value::Number(_) | Value::String(_) | Value::Bool(_)) if a.scalar.is_some() => {
                return Kind::Scalar(a.scalar.unwrap_or(Scalar::Untyped))
            }
            Some(Value::Array(_)) if a.list.is_some() => {
                return Kind::List(a.list.as_ref().expect("checked"))
            }
            Some(Value::Object(_)) if a.map.is_some() => {
                return Kind::Map(a.map.as_ref().expect("checked"))
            }
            _ => {}
        }
        if let Some(m) = &a.map {
            Kind::Map(m)
        } else if let Some(s) = a.scalar {
            Kind::Scalar(s)
        } else if let Some(l) = &a.list {
            Kind::List(l)
        } else {
            Kind::Invalid
        }
    }

    /// Builds the type of a CRD version from its `openAPIV3Schema`.
    pub fn from_crd(open_api_v3_schema: &Value) -> Schema {
        let mut b = Builder { atoms: Vec::new() };
        b.atoms.push(Atom::default()); // DEDUCED, filled below
        b.atoms.push(Atom::default()); // UNTYPED_ATOMIC
        b.atoms[DEDUCED] = Atom {
            scalar: Some(Scalar::Untyped),
            list: Some(ListType {
                elem: UNTYPED_ATOMIC,
                associative: None,
            }),
            map: Some(map_type(Vec::new(), Some(DEDUCED), false)),
        };
        b.atoms[UNTYPED_ATOMIC] = Atom {
            scalar: Some(Scalar::Untyped),
            list: Some(ListType {
                elem: UNTYPED_ATOMIC,
                associative: None,
            }),
            map: Some(map_type(Vec::new(), Some(UNTYPED_ATOMIC), true)),
        };
        let meta = b.object_meta();
        let root = b.node(open_api_v3_schema, Some(meta));
        Schema {
            atoms: b.atoms,
            root,
        }
    }
}

fn map_type(
    fields: Vec<(String, TypeRef, Option<Value>)>,
    elem: Option<TypeRef>,
    atomic: bool,
) -> MapType {
    let index = fields
        .iter()
        .enumerate()
        .map(|(i, f)| (f.0.clone(), i))
        .collect();
    MapType {
        fields,
        index,
        elem,
        atomic,
    }
}

struct Builder {
    atoms: Vec<Atom>,
}

impl Builder {
    fn push(&mut self, a: Atom) -> TypeRef {
        self.atoms.push(a);
        self.atoms.len() - 1
    }

    fn scalar(&mut self, s: Scalar) -> TypeRef {
        self.push(Atom {
            scalar: Some(s),
            ..Default::default()
        })
    }

    fn object_meta(&mut self) -> TypeRef {
        let string = self.scalar(Scalar::String);
        let number = self.scalar(Scalar::Numeric);
        let boolean = self.scalar(Scalar::Boolean);
        let string_map = self.push(Atom {
            map: Some(map_type(Vec::new(), Some(string), false)),
            ..Default::default()
        });
        let finalizers = self.push(Atom {
            list: Some(ListType {
                elem: string,
                associative: Some(Vec::new()),
            }),
            ..Default::default()
        });
        let owner_ref = self.push(Atom {
            map: Some(map_type(
                ["apiVersion", "kind", "name", "uid"]
                    .iter()
                    .map(|f| (f.to_string(), string, None))
                    .chain(
                        ["blockOwnerDeletion", "controller"]
                            .iter()
                            .map(|f| (f.to_string(), boolean, None)),
                    )
                    .collect(),
                None,
                true,
            )),
            ..Default::default()
        });
        let owner_refs = self.push(Atom {
            list: Some(ListType {
                elem: owner_ref,
                associative: Some(vec!["uid".to_string()]),
            }),
            ..Default::default()
        });
        let managed = self.push(Atom {
            list: Some(ListType {
                elem: UNTYPED_ATOMIC,
                associative: None,
            }),
            ..Default::default()
        });
        let mut fields: Vec<(String, TypeRef, Option<Value>)> = [
            "name",
            "generateName",
            "namespace",
            "selfLink",
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
        ]
        .iter()
        .map(|f| (f.to_string(), string, None))
        .collect();
        fields.push(("generation".into(), number, None));
        fields.push(("deletionGracePeriodSeconds".into(), number, None));
        fields.push(("labels".into(), string_map, None));
        fields.push(("annotations".into(), string_map, None));
        fields.push(("finalizers".into(), finalizers, None));
        fields.push(("ownerReferences".into(), owner_refs, None));
        fields.push(("managedFields".into(), managed, None));
        self.push(Atom {
            map: Some(map_type(fields, None, false)),
            ..Default::default()
        })
    }

    /// Converts one schema node; `resource_meta` adds `apiVersion`, `kind` and `metadata`
    /// (the root, and embedded resources).
    fn node(&mut self, s: &Value, resource_meta: Option<TypeRef>) -> TypeRef {
        let flag = |k: &str| s.get(k).and_then(Value::as_bool) == Some(true);
        let str_of = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("");
        let preserve = flag("x-kubernetes-preserve-unknown-fields");
        let embedded = flag("x-kubernetes-embedded-resource");
        let meta = match (resource_meta, embedded) {
            (Some(m), _) => Some(m),
            (None, true) => Some(self.object_meta()),
            (None, false) => None,
        };
        let ty = str_of("type");
        let has_props = s.get("properties").is_some_and(Value::is_object);
        if flag("x-kubernetes-int-or-string") {
            return UNTYPED_ATOMIC;
        }
        match ty {
            "string" => self.scalar(Scalar::String),
            "integer" | "number" => self.scalar(Scalar::Numeric),
            "boolean" => self.scalar(Scalar::Boolean),
            "array" => {
                let elem = match s.get("items") {
                    Some(items) if items.is_object() => self.node(items, None),
                    _ => UNTYPED_ATOMIC,
                };
                let associative = match str_of("x-kubernetes-list-type") {
                    "set" => Some(Vec::new()),
                    "map" => Some(
                        s.get("x-kubernetes-list-map-keys")
                            .and_then(Value::as_array)
                            .map(|keys| {
                                keys.iter()
                                    .filter_map(|k| k.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    ),
                    _ => None,
                };
                self.push(Atom {
                    list: Some(ListType { elem, associative }),
                    ..Default::default()
                })
            }
            "object" => self.object(s, meta, preserve),
            _ if has_props || meta.is_some() => self.object(s, meta, preserve),
            _ if preserve => DEDUCED,
            _ => UNTYPED_ATOMIC,
        }
    }

    fn object(&mut self, s: &Value, meta: Option<TypeRef>, preserve: bool) -> TypeRef {
        let mut fields = Vec::new();
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (name, p) in props {
                if meta.is_some() && ["apiVersion", "kind", "metadata"].contains(&name.as_str()) {
                    continue;
                }
                let t = self.node(p, None);
                fields.push((name.clone(), t, p.get("default").cloned()));
            }
        }
        if let Some(m) = meta {
            let string = self.scalar(Scalar::String);
            fields.push(("apiVersion".into(), string, None));
            fields.push(("kind".into(), string, None));
            fields.push(("metadata".into(), m, None));
        }
        let elem = match s.get("additionalProperties") {
            Some(a) if a.is_object() => Some(self.node(a, None)),
            Some(Value::Bool(true)) => Some(DEDUCED),
            _ if preserve => Some(DEDUCED),
            _ => None,
        };
        let atomic = s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
        self.push(Atom {
            map: Some(map_type(fields, elem, atomic)),
            ..Default::default()
        })
    }
}
