//! The relation cache: what each relation id's columns are, as last described by the server.
//!
//! pgoutput sends a Relation message before the first change to a table in a session, and
//! again with the same id whenever the table's description changed (ALTER TABLE) before the
//! next change to it. Tuples carry only values, in the column order of the latest Relation,
//! so the consumer keeps that latest description per id: [`RelationCache`].

use std::collections::HashMap;
use std::fmt;

use super::message::{Column, Message, Oid, Relation, TupleData, TupleValue};

/// Why a tuple could not be matched with its relation's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelationError {
    /// No Relation message with this id was seen (on this connection).
    UnknownRelation(Oid),
    /// The tuple does not have as many columns as the relation describes.
    ColumnCountMismatch {
        relation_id: Option<Oid>,
        expected: usize,
        found: usize,
    },
}

impl fmt::Display for RelationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelationError::UnknownRelation(id) => {
                write!(f, "no Relation message seen for relation id {id}")
            }
            RelationError::ColumnCountMismatch {
                relation_id: Some(id),
                expected,
                found,
            } => write!(
                f,
                "tuple for relation {id} has {found} columns, the relation has {expected}"
            ),
            RelationError::ColumnCountMismatch {
                relation_id: None,
                expected,
                found,
            } => write!(f, "tuple has {found} columns, expected {expected}"),
        }
    }
}

impl std::error::Error for RelationError {}

/// One column of a tuple together with its description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedValue<'a> {
    pub column: &'a Column,
    pub value: &'a TupleValue,
}

impl<'a> NamedValue<'a> {
    pub fn name(&self) -> &'a str {
        &self.column.name
    }
}

impl Relation {
    /// Pairs each value of `tuple` with its column, or fails when the counts differ.
    pub fn named<'a>(&'a self, tuple: &'a TupleData) -> Result<Vec<NamedValue<'a>>, RelationError> {
        if tuple.columns.len() != self.columns.len() {
            return Err(RelationError::ColumnCountMismatch {
                relation_id: Some(self.id),
                expected: self.columns.len(),
                found: tuple.columns.len(),
            });
        }
        Ok(self
            .columns
            .iter()
            .zip(&tuple.columns)
            .map(|(column, value)| NamedValue { column, value })
            .collect())
    }
}

/// Relation id → latest [`Relation`]. Keep one per replication connection: relation
/// messages are re-sent after a reconnect.
#[derive(Debug, Clone, Default)]
pub struct RelationCache {
    relations: HashMap<Oid, Relation>,
}

impl RelationCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a relation, replacing (and returning) any earlier description with its id.
    pub fn insert(&mut self, relation: Relation) -> Option<Relation> {
        self.relations.insert(relation.id, relation)
    }

    /// Stores the relation if `message` is a Relation message; returns whether it was.
    pub fn observe(&mut self, message: &Message) -> bool {
        match message {
            Message::Relation(relation) => {
                self.insert(relation.clone());
                true
            }
            _ => false,
        }
    }

    pub fn get(&self, id: Oid) -> Option<&Relation> {
        self.relations.get(&id)
    }

    pub fn remove(&mut self, id: Oid) -> Option<Relation> {
        self.relations.remove(&id)
    }

    pub fn clear(&mut self) {
        self.relations.clear();
    }

    pub fn len(&self) -> usize {
        self.relations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.relations.is_empty()
    }

    /// Pairs each value of `tuple` with its column name and description, using the latest
    /// Relation for `relation_id`.
    pub fn named<'a>(
        &'a self,
        relation_id: Oid,
        tuple: &'a TupleData,
    ) -> Result<Vec<NamedValue<'a>>, RelationError> {
        self.get(relation_id)
            .ok_or(RelationError::UnknownRelation(relation_id))?
            .named(tuple)
    }
}
