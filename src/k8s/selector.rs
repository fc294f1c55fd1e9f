//! Label and field selectors, parsed, printed and matched as kube-apiserver does it.
//!
//! Clients show a bad selector's message verbatim and some tools match on it, so the
//! grammar, the order in which problems are found and every message follow apimachinery's
//! `labels.Parse` and `fields.ParseSelector`, quirks included.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use super::status::FieldError;
use super::validation::{is_qualified_name, is_valid_label_value};

/// A label selector operator. kube also parses `>` and `<` (`gt`, `lt`); this server
/// rejects them after kube's own checks, see [`LabelSelector::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One term of a label selector. `values` are sorted and free of duplicates, as kube
/// keeps them in a string set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

/// A label's value as a selector reads it: kube's labels are strings, but a row written in
/// SQL may hold any JSON value, which counts as present and equal to no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelValue<'a> {
    Str(&'a str),
    NotAString,
}

impl<'a> LabelValue<'a> {
    fn of(v: &'a Value) -> LabelValue<'a> {
        match v.as_str() {
            Some(s) => LabelValue::Str(s),
            None => LabelValue::NotAString,
        }
    }
}

impl Requirement {
    /// `get` returns the object's value of a label, `None` when it has no such label.
    pub fn matches_with<'v>(&self, get: impl Fn(&str) -> Option<LabelValue<'v>>) -> bool {
        let entry = get(&self.key);
        let value = match entry {
            Some(LabelValue::Str(s)) => Some(s),
            _ => None,
        };
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            Op::Equals | Op::DoubleEquals | Op::In => value.is_some_and(listed),
            Op::NotEquals | Op::NotIn => !value.is_some_and(listed),
            Op::Exists => entry.is_some(),
            Op::DoesNotExist => entry.is_none(),
        }
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.matches_with(|k| labels.and_then(|l| l.get(k)).map(LabelValue::of))
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, parens) = match self.op {
            Op::Exists => return f.write_str(&self.key),
            Op::DoesNotExist => return write!(f, "!{}", self.key),
            Op::Equals => ("=", false),
            Op::DoubleEquals => ("==", false),
            Op::NotEquals => ("!=", false),
            Op::In => (" in ", true),
            Op::NotIn => (" notin ", true),
        };
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let values = values.join(",");
        if parens {
            write!(f, "{}{op}({values})", self.key)
        } else {
            write!(f, "{}{op}{values}", self.key)
        }
    }
}

/// The AND of its requirements, sorted by key as kube sorts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter. `Err` holds the message kube puts in
    /// the 400 BadRequest Status.
    ///
    /// `x>1` and `x<1` are valid in kube. They go through kube's checks (so `x>a` gets
    /// kube's "must be an integer" message), and a valid one is then refused as an
    /// unsupported operator, since [`Op`] and the SQL behind it have no such operators.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut requirements = Parser::new(s).parse()?;
        // Stable, so equal keys keep their written order and printing round-trips.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    pub fn everything() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Like [`LabelSelector::matches`], reading labels through `get` (the watch cache keeps
    /// them packed, not as a map).
    pub fn matches_with<'v>(&self, get: impl Fn(&str) -> Option<LabelValue<'v>> + Copy) -> bool {
        self.requirements.iter().all(|r| r.matches_with(get))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    End,
    ClosedPar,
    Comma,
    Not,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(lit: &str) -> Option<Token> {
    Some(match lit {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::Not,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits a selector into tokens as kube's lexer does. Tokens only split at ASCII bytes,
/// so every literal is valid UTF-8. kube reads a NUL byte as the end where a token may
/// start and skips it where one ends, so a `%00` cuts the selector where kube would.
fn lex(s: &str) -> Vec<(Token, &str)> {
    let bytes = s.as_bytes();
    let mut items = Vec::new();
    let mut pos = 0;
    loop {
        while bytes.get(pos).is_some_and(|&c| is_whitespace(c)) {
            pos += 1;
        }
        let Some(&first) = bytes.get(pos).filter(|&&c| c != 0) else {
            items.push((Token::End, ""));
            return items;
        };
        let end = if is_special(first) {
            // Of the symbol operators only `!=` and `==` are two bytes long.
            let pair = matches!(first, b'!' | b'=') && bytes.get(pos + 1) == Some(&b'=');
            pos + if pair { 2 } else { 1 }
        } else {
            let stop = |&c: &u8| c == 0 || is_special(c) || is_whitespace(c);
            bytes[pos..]
                .iter()
                .position(stop)
                .map_or(bytes.len(), |n| pos + n)
        };
        let lit = &s[pos..end];
        items.push((keyword(lit).unwrap_or(Token::Identifier), lit));
        pos = end + usize::from(bytes.get(end) == Some(&0));
    }
}

/// Where `in` and `notin` are operators and where they are plain values (`x in (in)`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ParsedOp {
    Op(Op),
    GreaterThan,
    LessThan,
}

struct Parser<'a> {
    items: Vec<(Token, &'a str)>,
    pos: usize,
}

/// kube's parse errors all read "found '<token>', expected: ...".
fn found(lit: &str, expected: &str) -> String {
    format!("found '{lit}', expected: {expected}")
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        Parser {
            items: lex(s),
            pos: 0,
        }
    }

    fn lookahead(&self, ctx: Context) -> (Token, &'a str) {
        let (tok, lit) = self
            .items
            .get(self.pos)
            .copied()
            .unwrap_or((Token::End, ""));
        match tok {
            Token::In | Token::NotIn if ctx == Context::Values => (Token::Identifier, lit),
            _ => (tok, lit),
        }
    }

    fn consume(&mut self, ctx: Context) -> (Token, &'a str) {
        let item = self.lookahead(ctx);
        self.pos += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::Not => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    let (tok, lit) = self.consume(Context::Values);
                    match tok {
                        Token::End => return Ok(requirements),
                        Token::Comma => {
                            let (next, lit) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::Not {
                                return Err(found(lit, "identifier after ','"));
                            }
                        }
                        _ => return Err(found(lit, "',' or 'end of string'")),
                    }
                }
                Token::End => return Ok(requirements),
                _ => return Err(found(lit, "!, identifier, or 'end of string'")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (key, unary) = self.key_and_inferred_op()?;
        if let Some(op) = unary {
            return new_requirement(key, ParsedOp::Op(op), Vec::new());
        }
        let op = self.operator()?;
        let values = match op {
            ParsedOp::Op(Op::In | Op::NotIn) => self.value_set()?,
            _ => self.exact_value()?,
        };
        new_requirement(key, op, values)
    }

    /// The key, and the operator when it is implied: `!key` or a bare `key`.
    fn key_and_inferred_op(&mut self) -> Result<(&'a str, Option<Op>), String> {
        let mut op = None;
        let (mut tok, mut lit) = self.consume(Context::Values);
        if tok == Token::Not {
            op = Some(Op::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(found(lit, "identifier"));
        }
        let errs = is_qualified_name(lit);
        if !errs.is_empty() {
            // kube validates the key against a nil field path, which prints as "<nil>".
            return Err(FieldError::invalid("<nil>", lit.into(), errs.join("; ")).to_string());
        }
        let (next, _) = self.lookahead(Context::Values);
        if op.is_none() && (next == Token::End || next == Token::Comma) {
            op = Some(Op::Exists);
        }
        Ok((lit, op))
    }

    fn operator(&mut self) -> Result<ParsedOp, String> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => ParsedOp::Op(Op::In),
            Token::Equals => ParsedOp::Op(Op::Equals),
            Token::DoubleEquals => ParsedOp::Op(Op::DoubleEquals),
            Token::GreaterThan => ParsedOp::GreaterThan,
            Token::LessThan => ParsedOp::LessThan,
            Token::NotIn => ParsedOp::Op(Op::NotIn),
            Token::NotEquals => ParsedOp::Op(Op::NotEquals),
            _ => return Err(found(lit, "in, notin, =, ==, !=, gt, lt")),
        })
    }

    fn value_set(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let set = self.identifiers()?;
                if self.consume(Context::Values).0 != Token::ClosedPar {
                    return Err(found(lit, "')'"));
                }
                Ok(set.into_iter().collect())
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(found(lit, "',', ')' or identifier")),
        }
    }

    /// A comma-separated list in which empty entries are the empty value: `(,a)`, `(a,,b)`.
    fn identifiers(&mut self) -> Result<BTreeSet<String>, String> {
        let mut set = BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    set.insert(lit.to_string());
                    let (next, lit) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(set),
                        _ => return Err(found(lit, "',' or ')'")),
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    match self.lookahead(Context::Values).0 {
                        Token::ClosedPar => {
                            set.insert(String::new());
                            return Ok(set);
                        }
                        Token::Comma => {
                            self.consume(Context::Values);
                            set.insert(String::new());
                        }
                        _ => {}
                    }
                }
                _ => return Err(found(lit, "',', or identifier")),
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        if matches!(self.lookahead(Context::Values).0, Token::End | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        match self.consume(Context::Values) {
            (Token::Identifier, lit) => Ok(vec![lit.to_string()]),
            (_, lit) => Err(found(lit, "identifier")),
        }
    }
}

/// kube's `NewRequirement` checks for what the grammar can still let through: the
/// integer of `gt`/`lt` and each value's syntax. The key was checked while parsing.
fn new_requirement(key: &str, op: ParsedOp, values: Vec<String>) -> Result<Requirement, String> {
    let invalid = |field: String, v: &str, detail: &str| {
        FieldError::invalid(field, v.into(), detail).to_string()
    };
    let mut errs = Vec::new();
    if matches!(op, ParsedOp::GreaterThan | ParsedOp::LessThan) {
        let detail = "for 'Gt', 'Lt' operators, the value must be an integer";
        for (i, v) in values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.parse::<i64>().is_err())
        {
            errs.push(invalid(format!("values[{i}]"), v, detail));
        }
    }
    for (i, v) in values.iter().enumerate() {
        let msgs = is_valid_label_value(v);
        if !msgs.is_empty() {
            errs.push(invalid(format!("values[{i}][{key}]"), v, &msgs.join("; ")));
        }
    }
    if let Some(msg) = aggregate(errs) {
        return Err(msg);
    }
    let lit = match op {
        ParsedOp::Op(op) => {
            return Ok(Requirement {
                key: key.into(),
                op,
                values,
            })
        }
        ParsedOp::GreaterThan => "gt",
        ParsedOp::LessThan => "lt",
    };
    let supported = ["in", "notin", "=", "==", "!=", "exists", "!"];
    Err(FieldError::not_supported("operator", lit.into(), &supported).to_string())
}

/// apimachinery's aggregate error text: one message alone, several in brackets, duplicates once.
fn aggregate(errs: Vec<String>) -> Option<String> {
    let mut unique: Vec<String> = Vec::new();
    for e in errs {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    match unique.len() {
        0 => None,
        1 => unique.pop(),
        _ => Some(format!("[{}]", unique.join(", "))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Equals,
    NotEquals,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub op: FieldOp,
    pub value: String,
}

/// The AND of its requirements, in kube's order: sorted by the terms as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// `supported` lists the fields the resource supports, for custom resources
    /// "metadata.name" and "metadata.namespace".
    ///
    /// Syntax errors in any term are reported before an unsupported field, because kube
    /// parses the whole parameter before it converts field labels.
    pub fn parse(s: &str, supported: &[&str]) -> Result<FieldSelector, String> {
        let selector = Self::parse_any_field(s)?;
        if let Some(r) = selector
            .requirements
            .iter()
            .find(|r| !supported.contains(&r.field.as_str()))
        {
            return Err(format!("field label not supported: {}", r.field));
        }
        Ok(selector)
    }

    /// The syntax alone, any field accepted: kube's `fields.ParseSelector`, which is what
    /// authorization reads (a SubjectAccessReview carries the requirements as written,
    /// whether or not the resource supports the field).
    pub fn parse_any_field(s: &str) -> Result<FieldSelector, String> {
        let mut terms = split_terms(s);
        terms.sort_unstable();
        let mut requirements = Vec::new();
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let (field, op, raw) = split_term(term)
                .ok_or_else(|| format!("invalid selector: '{s}'; can't understand '{term}'"))?;
            let value = unescape_value(raw)?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// `get` returns a field's value; a field it does not know reads as "", as in kube.
    /// The value's lifetime is free of the field name's, so `get` can borrow from the object.
    pub fn matches<'v>(&self, get: impl Fn(&str) -> Option<&'v str>) -> bool {
        self.requirements.iter().all(|r| {
            let actual = get(&r.field).unwrap_or("");
            match r.op {
                FieldOp::Equals => actual == r.value,
                FieldOp::NotEquals => actual != r.value,
            }
        })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// If the selector pins a field to one value with = or ==, return it (used to narrow a
    /// list by name/namespace).
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.op == FieldOp::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            let op = if r.op == FieldOp::Equals { "=" } else { "!=" };
            let sep = if i > 0 { "," } else { "" };
            write!(f, "{sep}{}{op}{}", r.field, escape_value(&r.value))?;
        }
        Ok(())
    }
}

/// Splits at commas that no backslash escapes; escapes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// The field name cannot be escaped, so the first operator splits the term.
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    const OPERATORS: [(&str, FieldOp); 3] = [
        ("!=", FieldOp::NotEquals),
        ("==", FieldOp::Equals),
        ("=", FieldOp::Equals),
    ];
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        OPERATORS
            .iter()
            .find(|(op, _)| rest.starts_with(op))
            .map(|(op, kind)| (&term[..i], *kind, &rest[op.len()..]))
    })
}

const INVALID_FIELD_SELECTOR: &str = "invalid field selector: ";

fn unescape_value(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => {
                    return Err(format!(
                        "{INVALID_FIELD_SELECTOR}invalid escape sequence: \\{e}"
                    ))
                }
                None => {
                    return Err(format!(
                        "{INVALID_FIELD_SELECTOR}invalid escape sequence: \\"
                    ))
                }
            },
            // kube formats the rune with %v, which prints its number: 61 for '='.
            ',' | '=' => {
                return Err(format!(
                    "{INVALID_FIELD_SELECTOR}unescaped character in value: {}",
                    c as u32
                ))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const CR_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];
    const NAME_RULE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> String {
        LabelSelector::parse(s).expect_err(s)
    }

    fn fsel(s: &str) -> FieldSelector {
        FieldSelector::parse(s, CR_FIELDS).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    /// Checks `input => expected` lines; `REQ ` abbreviates "unable to parse requirement: ".
    fn table(text: &str, actual: impl Fn(&str) -> String) {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (input, want) = line.split_once(" => ").expect("input => expected");
            let want = want.replace("REQ ", "unable to parse requirement: ");
            assert_eq!(actual(input), want, "{input}");
        }
    }

    #[test]
    fn every_operator_parses_to_its_requirement() {
        let parsed = |s: &str| format!("{:?}", sel(s).requirements);
        table(
            r#"a=b => [Requirement { key: "a", op: Equals, values: ["b"] }]
            a==b => [Requirement { key: "a", op: DoubleEquals, values: ["b"] }]
            a!=b => [Requirement { key: "a", op: NotEquals, values: ["b"] }]
            a in (y,x,x) => [Requirement { key: "a", op: In, values: ["x", "y"] }]
            a notin (x) => [Requirement { key: "a", op: NotIn, values: ["x"] }]
            a => [Requirement { key: "a", op: Exists, values: [] }]
            !a => [Requirement { key: "a", op: DoesNotExist, values: [] }]"#,
            parsed,
        );
    }

    #[test]
    fn matching_follows_kube_semantics_for_every_operator() {
        let labels = json!({"env": "prod", "tier": "web", "n": 5});
        let matches = |s: &str| sel(s).matches(labels.as_object()).to_string();
        table(
            "env=prod => true
            env==dev => false
            env!=dev => true
            env!=prod => false
            env in (dev,prod) => true
            env in (dev) => false
            env notin (dev) => true
            env notin (prod) => false
            env => true
            db => false
            !db => true
            !env => false
            env=prod,tier=web => true
            env=prod,tier=db => false",
            matches,
        );
        // A non-string value is present but equals no selector value.
        table("n => true\nn=5 => false\nn!=5 => true", matches);
    }

    #[test]
    fn notin_and_not_equals_match_objects_without_the_key() {
        let without = json!({"other": "x"});
        let both = |s: &str| [sel(s).matches(None), sel(s).matches(without.as_object())];
        for s in ["env notin (prod)", "env!=prod", "!env", ""] {
            assert_eq!(both(s), [true, true], "{s}");
        }
        for s in ["env", "env=", "env in (x)"] {
            assert_eq!(both(s), [false, false], "{s}");
        }
    }

    #[test]
    fn empty_values_are_allowed_and_printed_canonically() {
        let printed = |s: &str| sel(s).to_string();
        table(
            "a= => a=
            a==,b => a==,b
            a in () => a in ()
            a in (x,) => a in (,x)
            a in (,x) => a in (,x)
            a in (x,,y) => a in (,x,y)",
            printed,
        );
        assert!(sel("a=").matches(json!({"a": ""}).as_object()));
    }

    #[test]
    fn whitespace_around_tokens_is_ignored() {
        let spaced = sel(" \t a  in ( x , y ) ,\n b != c , ! d \r");
        assert_eq!(spaced, sel("a in (x,y),b!=c,!d"));
        assert!(sel("   ").is_empty());
    }

    #[test]
    fn requirements_are_sorted_by_key_and_in_notin_may_be_keys_and_values() {
        let printed = |s: &str| sel(s).to_string();
        table(
            "z=1,a in (c,b),!m,k notin (x),e==f,g!=h,q => a in (b,c),e==f,g!=h,k notin (x),!m,q,z=1
            x.io/app=web,b => b,x.io/app=web
            notin=in,in in (notin,in) => in in (in,notin),notin=in",
            printed,
        );
    }

    #[test]
    fn syntax_errors_use_kube_messages() {
        table(
            "a b => REQ found 'b', expected: in, notin, =, ==, !=, gt, lt
            a=b c => found 'c', expected: ',' or 'end of string'
            a=b, => found '', expected: identifier after ','
            a,,b => found ',', expected: identifier after ','
            ,a => found ',', expected: !, identifier, or 'end of string'
            (a) => found '(', expected: !, identifier, or 'end of string'
            !=a => found '!=', expected: !, identifier, or 'end of string'
            !a=b => found '=', expected: ',' or 'end of string'
            ! => REQ found '', expected: identifier
            !( => REQ found '(', expected: identifier
            a!==b => REQ found '=', expected: identifier
            a in => REQ found '' expected: '('
            a in x => REQ found 'x' expected: '('
            a in (x => REQ found '', expected: ',' or ')'
            a in (x y) => REQ found 'y', expected: ',' or ')'
            a in (=) => REQ found '=', expected: ',', ')' or identifier
            a in (x,,) => REQ found ')', expected: ',', or identifier
            a=( => REQ found '(', expected: identifier",
            err,
        );
    }

    #[test]
    fn invalid_key_reports_nil_path_like_kube() {
        assert_eq!(
            err("-a=b"),
            format!("unable to parse requirement: <nil>: Invalid value: \"-a\": {NAME_RULE}")
        );
        let long = "a".repeat(64);
        let want = format!("{long:?}: name part must be no more than 63 characters");
        assert_eq!(
            err(&long),
            format!("unable to parse requirement: <nil>: Invalid value: {want}")
        );
        assert!(
            err("a/b/c").contains("Invalid value: \"a/b/c\": a valid label key must consist of")
        );
        assert!(err("Example.com/a").contains("prefix part a lowercase RFC 1123 subdomain must"));
    }

    #[test]
    fn invalid_values_report_index_and_key_aggregated_like_kube() {
        let one = |v: &str, i: usize| format!("values[{i}][a]: Invalid value: {v:?}: {VALUE_RULE}");
        let req = "unable to parse requirement: ";
        assert_eq!(err("a=demo-{x}"), format!("{req}{}", one("demo-{x}", 0)));
        assert_eq!(
            err("a in (-y,-x)"),
            format!("{req}[{}, {}]", one("-x", 0), one("-y", 1))
        );
        let long = "v".repeat(64);
        let want = format!("{long:?}: must be no more than 63 characters");
        assert!(err(&format!("a={long}")).ends_with(&want));
    }

    #[test]
    fn gt_and_lt_get_kube_checks_then_are_refused_as_unsupported() {
        let supported = r#"supported values: "in", "notin", "=", "==", "!=", "exists", "!""#;
        table(
            &format!(
                r#"environment>qa => REQ values[0]: Invalid value: "qa": for 'Gt', 'Lt' operators, the value must be an integer
                a< => REQ values[0]: Invalid value: "": for 'Gt', 'Lt' operators, the value must be an integer
                a>5 => REQ operator: Unsupported value: "gt": {supported}
                a<5 => REQ operator: Unsupported value: "lt": {supported}"#
            ),
            err,
        );
        // A negative bound is an integer but not a label value, so kube refuses it too.
        assert!(err("a<-5").starts_with("unable to parse requirement: values[0][a]: Invalid"));
    }

    #[test]
    fn nul_byte_ends_the_selector_as_in_kube() {
        assert_eq!(sel("a=b \0 garbage"), sel("a=b"));
        assert_eq!(sel("a\0=b"), sel("a=b"));
        table("!\0=a => REQ found '=', expected: identifier", err);
    }

    #[test]
    fn everything_is_empty_and_matches_all() {
        let e = LabelSelector::everything();
        assert!(e.is_empty() && e.matches(None) && e.to_string().is_empty());
        assert!(!sel("a").is_empty());
    }

    #[test]
    fn field_selector_parses_every_operator_in_kube_order() {
        let parsed = |s: &str| format!("{:?}", fsel(s).requirements);
        // Sorted by term text, as kube sorts them: '!' < '=' < 's'.
        table(
            r#"metadata.name=a,metadata.namespace==b,metadata.name!=c => [FieldRequirement { field: "metadata.name", op: NotEquals, value: "c" }, FieldRequirement { field: "metadata.name", op: Equals, value: "a" }, FieldRequirement { field: "metadata.namespace", op: Equals, value: "b" }]"#,
            parsed,
        );
        assert!(fsel(",,").is_empty() && fsel("").is_empty());
    }

    #[test]
    fn field_selector_matches_equality_and_inequality() {
        let object = json!({"name": "web", "namespace": "prod"});
        let get = |f: &str| object[f.strip_prefix("metadata.")?].as_str();
        table(
            "metadata.name=web => true
            metadata.name==db => false
            metadata.name!=db,metadata.namespace=prod => true
            metadata.namespace!=prod => false
            metadata.namespace= => false",
            |s| fsel(s).matches(get).to_string(),
        );
        assert!(fsel("").matches(get) && fsel("metadata.namespace=").matches(|_| None));
    }

    #[test]
    fn field_selector_unescapes_and_re_escapes_values() {
        let s = fsel(r"metadata.name=a\,b\=c\\d");
        assert_eq!(s.requirements[0].value, r"a,b=c\d");
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d");
    }

    #[test]
    fn field_selector_errors_use_kube_messages() {
        table(
            r"metadata.name => invalid selector: 'metadata.name'; can't understand 'metadata.name'
            spec.a=b,x => invalid selector: 'spec.a=b,x'; can't understand 'x'
            metadata.name=a=b => invalid field selector: unescaped character in value: 61
            metadata.name=a\b => invalid field selector: invalid escape sequence: \b
            metadata.name=a\ => invalid field selector: invalid escape sequence: \
            spec.foo=bar => field label not supported: spec.foo",
            |s| FieldSelector::parse(s, CR_FIELDS).expect_err(s),
        );
        // Spaces belong to the field name, as in kube.
        let e = FieldSelector::parse("metadata.name = x", CR_FIELDS).unwrap_err();
        assert_eq!(e, "field label not supported: metadata.name ");
    }

    #[test]
    fn unsupported_field_on_a_cluster_scoped_resource_is_refused() {
        let e = FieldSelector::parse("metadata.namespace=x", &["metadata.name"]).unwrap_err();
        assert_eq!(e, "field label not supported: metadata.namespace");
    }

    #[test]
    fn exact_returns_the_value_pinned_by_equality_only() {
        let s = fsel("metadata.namespace!=x,metadata.name==web");
        assert_eq!(s.exact("metadata.name"), Some("web"));
        assert_eq!(s.exact("metadata.namespace"), None);
    }

    fn selector_text() -> impl Strategy<Value = String> {
        let key =
            "([a-z0-9]{1,3}(\\.[a-z0-9]{1,3})?/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,4}[a-zA-Z0-9])?";
        let value = "[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,4}[a-zA-Z0-9])?";
        let ops = prop::sample::select(vec!["=", "==", "!=", " in ", " notin ", "", "!"]);
        let values = prop::collection::vec(value, 1..4);
        let term = (key, ops, values, any::<bool>()).prop_map(|(k, op, mut vs, empty)| {
            // kube refuses a list of only empty entries such as "(,,)", so one at most.
            if empty {
                vs[0].clear();
            }
            match op {
                "" => k,
                "!" => format!("!{k}"),
                " in " | " notin " => format!("{k}{op}({})", vs.join(",")),
                _ => format!("{k}{op}{}", vs[0]),
            }
        });
        prop::collection::vec(term, 0..5).prop_map(|t| t.join(","))
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_input(s in "\\PC*") {
            let _ = LabelSelector::parse(&s);
            let _ = FieldSelector::parse(&s, CR_FIELDS);
        }

        #[test]
        fn selector_like_input_never_panics_and_round_trips(s in "[a-z=!(), \\\\\t<>/.-]{0,30}") {
            if let Ok(sel) = LabelSelector::parse(&s) {
                prop_assert_eq!(LabelSelector::parse(&sel.to_string()), Ok(sel));
            }
        }

        #[test]
        fn display_then_parse_round_trips(s in selector_text()) {
            let sel = LabelSelector::parse(&s).map_err(|e| TestCaseError::fail(format!("{s:?}: {e}")))?;
            prop_assert_eq!(LabelSelector::parse(&sel.to_string()), Ok(sel));
        }
    }
}
