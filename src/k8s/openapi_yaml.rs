//! The YAML text of gnostic's `Any` values (vendor extensions, defaults, enums, examples).

use serde_json::Value;

/// The value as block YAML, the form gnostic gives `Any.yaml` (it marshals the parsed node
/// with its style cleared). Readers parse the text back, so what matters is that it reads as
/// the same value under YAML 1.1 and 1.2: strings are plain only where no resolver could take
/// them for anything else, and double-quoted (with escapes) otherwise.
pub(super) fn yaml(v: &Value) -> String {
    let mut out = String::new();
    yaml_node(&mut out, v, 0, true);
    out
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

/// Writes `v` at `indent`; the first line is not indented when it follows a `- `.
fn yaml_node(out: &mut String, v: &Value, indent: usize, indent_first: bool) {
    let mut first = true;
    let mut start_line = |out: &mut String| {
        if indent_first || !first {
            out.extend(std::iter::repeat_n(' ', indent));
        }
        first = false;
    };
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                start_line(out);
                yaml_string(out, k);
                out.push(':');
                yaml_child(out, x, indent, true);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for x in a {
                start_line(out);
                out.push('-');
                yaml_child(out, x, indent, false);
            }
        }
        _ => {
            start_line(out);
            yaml_scalar(out, v);
            out.push('\n');
        }
    }
}

/// What follows `key:` or `-`: a scalar on the same line, or a block indented under it (a
/// map in a list starts on the dash's line).
fn yaml_child(out: &mut String, v: &Value, indent: usize, after_key: bool) {
    if !is_block(v) {
        out.push(' ');
        yaml_scalar(out, v);
        out.push('\n');
    } else if after_key {
        out.push('\n');
        yaml_node(out, v, indent + 2, true);
    } else {
        out.push(' ');
        yaml_node(out, v, indent + 2, false);
    }
}

fn yaml_scalar(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => yaml_number(out, n),
        Value::String(s) => yaml_string(out, s),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

/// Integers as they are; floats in the form both YAML 1.1 and 1.2 read as floats: YAML
/// 1.1 wants a `.` in the mantissa and a sign on the exponent, which `1e300` lacks.
fn yaml_number(out: &mut String, n: &serde_json::Number) {
    let text = n.to_string();
    match text.split_once('e') {
        Some((mantissa, exponent)) if n.is_f64() => {
            out.push_str(mantissa);
            if !mantissa.contains('.') {
                out.push_str(".0");
            }
            out.push('e');
            if !exponent.starts_with(['-', '+']) {
                out.push('+');
            }
            out.push_str(exponent);
        }
        _ => out.push_str(&text),
    }
}

/// Plain when the string starts with a letter, holds only letters, digits, `.`, `_`, `/`,
/// `-` and inner spaces, and is none of YAML 1.1's booleans or null: such a string can only
/// be read as itself. Anything else is double-quoted.
fn yaml_string(out: &mut String, s: &str) {
    const WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic())
        && !s.ends_with(' ')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-' | ' '))
        && !WORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // YAML allows neither C0/C1 controls, DEL nor BOM unescaped.
            c if (c as u32) < 0x20
                || (0x7f..=0x9f).contains(&(c as u32))
                || matches!(c, '\u{feff}' | '\u{fffe}' | '\u{ffff}') =>
            {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
