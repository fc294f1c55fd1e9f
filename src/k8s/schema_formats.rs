//! The string formats kube validates in CRD schemas, and the Go behaviours the validator's
//! messages depend on: RE2 regular expressions, and how Go prints floats.
//!
//! Format checks follow kube-openapi's `strfmt` registry as restricted by apiextensions'
//! `StripUnsupportedFormatsPostProcessorForVersion` at compatibility version 1.35. Formats
//! kube does not support are ignored, as kube ignores them.

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;

/// Formats CRD schemas may use (names normalized as go-openapi does: dashes removed).
const SUPPORTED_STRING_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "quantity",
    // Added in Kubernetes 1.34.
    "k8sshortname",
    "k8slongname",
];

fn normalize(format: &str) -> String {
    format.replace('-', "")
}

/// The format kube's validator sees for a node of these types: unsupported formats become
/// empty, and only int32/int64 and float/double survive on integers and numbers.
pub(super) fn validated_format(types: &[&str], format: &str) -> String {
    let schema_type = if types.len() == 1 { types[0] } else { "" };
    let keep = match schema_type {
        "" | "string" => SUPPORTED_STRING_FORMATS.contains(&normalize(format).as_str()),
        "integer" => format == "int32" || format == "int64",
        "number" => format == "float" || format == "double",
        _ => false,
    };
    if keep {
        format.to_string()
    } else {
        String::new()
    }
}

/// Whether kube's format registry knows this (already validated) format, i.e. whether the
/// format check applies to a string value at all.
pub(super) fn is_string_format(format: &str) -> bool {
    !format.is_empty() && SUPPORTED_STRING_FORMATS.contains(&normalize(format).as_str())
}

macro_rules! re {
    ($name:ident, $pattern:expr) => {
        static $name: LazyLock<Regex> =
            LazyLock::new(|| Regex::new($pattern).expect("static regex"));
    };
}

re!(
    HOSTNAME,
    r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9\-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$"
);
re!(
    UUID,
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$"
);
re!(
    UUID3,
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$"
);
re!(
    UUID4,
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"
);
re!(
    UUID5,
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"
);
re!(
    BASE64,
    r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"
);
re!(HEXCOLOR, r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$");
re!(
    RGBCOLOR,
    r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$"
);
re!(SSN, r"^\d{3}[- ]?\d{2}[- ]?\d{4}$");
re!(
    CREDITCARD,
    r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]|2720)[0-9]{12}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11}|6[27][0-9]{14})$"
);
re!(
    DATETIME_TIME,
    r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$"
);
re!(DURATION_SCALA, r"^\s*(?:\d+\s*[A-Za-zµ]+\s*)+$");
re!(DURATION_PART, r"(\d+)\s*([A-Za-zµ]+)");
re!(
    EMAIL_ADDR,
    r#"^(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*|"(?:[^"\\\r\n]|\\.)*")@(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*|\[[^\[\]\\\r\n]*\])$"#
);
re!(SHORT_NAME, r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$");
re!(
    LONG_NAME,
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
);

/// Whether `s` is valid for a supported format.
pub(super) fn check(format: &str, s: &str) -> bool {
    match normalize(format).as_str() {
        "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "uri" => is_request_uri(s),
        "email" => is_email(s),
        "hostname" => HOSTNAME.is_match(s) && s.len() <= 255 && s.split('.').all(|p| p.len() <= 63),
        "ipv4" => parse_ip_sloppy(s) && s.contains('.'),
        "ipv6" => s.contains(':') && parse_ip_sloppy(s),
        "cidr" => is_cidr(s),
        "mac" => is_mac(s),
        "uuid" => UUID.is_match(s),
        "uuid3" => UUID3.is_match(s),
        "uuid4" => UUID4.is_match(s),
        "uuid5" => UUID5.is_match(s),
        "isbn" => is_isbn10(s) || is_isbn13(s),
        "isbn10" => is_isbn10(s),
        "isbn13" => is_isbn13(s),
        "creditcard" => is_credit_card(s),
        "ssn" => s.len() == 11 && SSN.is_match(s),
        "hexcolor" => HEXCOLOR.is_match(s),
        "rgbcolor" => RGBCOLOR.is_match(s),
        "byte" => BASE64.is_match(s),
        "password" => true,
        "date" => is_date(s),
        "datetime" => is_date_time(s),
        "duration" => is_duration(s),
        "quantity" => is_quantity(s),
        "k8sshortname" => s.len() <= 63 && SHORT_NAME.is_match(s),
        "k8slongname" => s.len() <= 253 && LONG_NAME.is_match(s),
        _ => true,
    }
}

/// Go's `time.Parse("2006-01-02", s)`: fixed widths, real calendar days.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// kube-openapi's `IsDateTime`: a date, a `t`, and a time checked by a pattern.
fn is_date_time(s: &str) -> bool {
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let parts: Vec<&str> = lower.split('t').collect();
    if parts.len() < 2 || !is_date(parts[0]) {
        return false;
    }
    match DATETIME_TIME.captures(parts[1]) {
        Some(c) => &c[1] <= "23" && &c[2] <= "59" && &c[3] <= "59",
        None => false,
    }
}

/// kube-openapi's `ParseDuration`: Go's `time.ParseDuration`, else a Scala-like `5 minutes`.
fn is_duration(s: &str) -> bool {
    if go_parse_duration(s) {
        return true;
    }
    if !DURATION_SCALA.is_match(s) {
        return false;
    }
    const UNITS: &[&[&str]] = &[
        &["ns", "nano"],
        &["us", "µs", "micro"],
        &["ms", "milli"],
        &["s", "sec"],
        &["m", "min"],
        &["h", "hr", "hour"],
        &["d", "day"],
        &["w", "wk", "week"],
    ];
    let mut ok = false;
    for c in DURATION_PART.captures_iter(s) {
        if c[1].parse::<i64>().is_err() {
            return false;
        }
        let unit = c[2].trim().to_lowercase();
        for variants in UNITS {
            let last = variants.len() - 1;
            for (i, v) in variants.iter().enumerate() {
                if (i == last && unit.starts_with(v)) || v.eq_ignore_ascii_case(&unit) {
                    ok = true;
                }
            }
        }
    }
    ok
}

/// Go's `time.ParseDuration` grammar `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+` with its overflow rule.
fn go_parse_duration(s: &str) -> bool {
    let mut rest = s.strip_prefix(['-', '+']).unwrap_or(s);
    if rest == "0" {
        return true;
    }
    if rest.is_empty() {
        return false;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..n];
            rest = &r[n..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return false;
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let nanos: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return false,
        };
        rest = &rest[unit_len..];
        let Ok(v) = int_part
            .parse::<u128>()
            .or(if int_part.is_empty() { Ok(0) } else { Err(()) })
        else {
            return false;
        };
        if v > (1u128 << 63) {
            return false;
        }
        total += v * nanos;
        if let Some(d) = frac_part.bytes().next() {
            total += u128::from(d - b'0') * nanos / 10;
        }
        if total > (1u128 << 63) {
            return false;
        }
    }
    total < (1u128 << 63) || s.starts_with('-')
}

/// apimachinery's `resource.ParseQuantity` grammar: sign, digits with one optional point,
/// then a binary/decimal SI suffix or a decimal exponent.
fn is_quantity(s: &str) -> bool {
    let rest = s.strip_prefix(['+', '-']).unwrap_or(s);
    let num_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (num, suffix) = rest.split_at(num_len);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return false;
    }
    match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        _ => {
            let Some(exp) = suffix.strip_prefix(['e', 'E']) else {
                return false;
            };
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        }
    }
}

/// `netutils.ParseIPSloppy`: Go's pre-1.17 `net.ParseIP`, which allows leading zeros.
fn parse_ip_sloppy(s: &str) -> bool {
    parse_ipv4_sloppy(s) || (s.contains(':') && !s.contains('%') && s.parse::<Ipv6Addr>().is_ok())
}

fn parse_ipv4_sloppy(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.trim_start_matches('0').len() <= 3
                && p.parse::<u32>().map(|n| n <= 255).unwrap_or(false)
        })
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let max = if parse_ipv4_sloppy(ip) {
        32
    } else if ip.contains(':') && parse_ip_sloppy(ip) {
        128
    } else {
        return false;
    };
    !bits.is_empty()
        && bits.bytes().all(|b| b.is_ascii_digit())
        && bits.parse::<u32>().is_ok_and(|n| n <= max)
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets as `xx:..`, `xx-..` or `xxxx.xxxx...`.
fn is_mac(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let octets = |n: usize| n == 6 || n == 8 || n == 20;
    for sep in [':', '-'] {
        let parts: Vec<&str> = s.split(sep).collect();
        if parts.len() > 1 && octets(parts.len()) && parts.iter().all(|p| hex(p, 2)) {
            return true;
        }
    }
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() > 1 && octets(parts.len() * 2) && parts.iter().all(|p| hex(p, 4))
}

fn is_isbn10(s: &str) -> bool {
    let c: Vec<u8> = s.bytes().filter(|b| *b != b'-' && *b != b' ').collect();
    if c.len() != 10 || !c[..9].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let last = match c[9] {
        b'X' => 10,
        d if d.is_ascii_digit() => u32::from(d - b'0'),
        _ => return false,
    };
    let sum: u32 = c[..9]
        .iter()
        .enumerate()
        .map(|(i, d)| (i as u32 + 1) * u32::from(d - b'0'))
        .sum();
    (sum + 10 * last) % 11 == 0
}

fn is_isbn13(s: &str) -> bool {
    let c: Vec<u8> = s.bytes().filter(|b| *b != b'-' && *b != b' ').collect();
    if c.len() != 13 || !c.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = c[..12]
        .iter()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    (10 - sum % 10) % 10 == u32::from(c[12] - b'0')
}

fn is_credit_card(s: &str) -> bool {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if !CREDITCARD.is_match(&digits) {
        return false;
    }
    let mut sum = 0;
    for (i, d) in digits.bytes().rev().enumerate() {
        let mut n = u32::from(d - b'0');
        if i % 2 == 1 {
            n *= 2;
            if n > 9 {
                n -= 9;
            }
        }
        sum += n;
    }
    sum % 10 == 0
}

/// Approximates Go's `mail.ParseAddress`: an addr-spec, optionally as `Name <addr-spec>`.
fn is_email(s: &str) -> bool {
    let s = s.trim();
    let addr = match (s.rfind('<'), s.ends_with('>')) {
        (Some(i), true) => &s[i + 1..s.len() - 1],
        _ => s,
    };
    EMAIL_ADDR.is_match(addr)
}

/// Approximates Go's `url.ParseRequestURI`: an absolute URI or an absolute path, no control
/// characters, and a well-formed authority when there is one.
fn is_request_uri(s: &str) -> bool {
    if s.is_empty() || s.chars().any(|c| c.is_control()) {
        return false;
    }
    let rest = match s.find(':') {
        Some(i) if !s[..i].contains('/') && !s[..i].contains('?') => {
            let scheme = &s[..i];
            let mut chars = scheme.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if !valid {
                return false;
            }
            &s[i + 1..]
        }
        _ => {
            if !s.starts_with('/') {
                return false;
            }
            s
        }
    };
    if let Some(auth) = rest.strip_prefix("//") {
        let auth = &auth[..auth.find(['/', '?', '#']).unwrap_or(auth.len())];
        let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
        let (host, port) = if host.starts_with('[') {
            match host.find(']') {
                Some(i) => (&host[..=i], &host[i + 1..]),
                None => return false,
            }
        } else {
            match host.rfind(':') {
                Some(i) => (&host[..i], &host[i..]),
                None => (host, ""),
            }
        };
        let port_ok = port.is_empty()
            || (port.starts_with(':') && port[1..].bytes().all(|b| b.is_ascii_digit()));
        if !port_ok {
            return false;
        }
        if host.contains([' ', '<', '>', '"', '{', '}', '|', '\\', '^', '`']) {
            return false;
        }
    }
    true
}

/// Compiles a schema `pattern` with Go's semantics. Go's RE2 `\d`, `\w`, `\s` and `\b` are
/// ASCII-only where Rust's are Unicode-aware, so they are rewritten to ASCII classes.
pub(super) fn go_regex(pattern: &str) -> Result<Regex, String> {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    // Position right after `[` or `[^`, where `]` is a literal.
    let mut class_start = false;
    while let Some(c) = chars.next() {
        let at_class_start = std::mem::take(&mut class_start);
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let rewritten = match (in_class, e) {
                    (false, 'd') => "[0-9]",
                    (false, 'D') => "[^0-9]",
                    (false, 'w') => "[0-9A-Za-z_]",
                    (false, 'W') => "[^0-9A-Za-z_]",
                    (false, 's') => r"[\t\n\f\r ]",
                    (false, 'S') => r"[^\t\n\f\r ]",
                    (false, 'b') => r"(?-u:\b)",
                    (false, 'B') => r"(?-u:\B)",
                    (true, 'd') => "0-9",
                    (true, 'w') => "0-9A-Za-z_",
                    (true, 's') => r"\t\n\f\r ",
                    (true, 'D') => "[:^digit:]",
                    (true, 'W') => "[:^word:]",
                    (true, 'S') => "[:^space:]",
                    _ => {
                        out.push('\\');
                        out.push(e);
                        continue;
                    }
                };
                out.push_str(rewritten);
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
                class_start = true;
            }
            '[' if chars.peek() == Some(&':') => {
                // A POSIX class such as [:alpha:]; copy through its closing `:]`.
                out.push('[');
                let mut prev = '[';
                for n in chars.by_ref() {
                    out.push(n);
                    if prev == ':' && n == ']' {
                        break;
                    }
                    prev = n;
                }
            }
            ']' if in_class && !at_class_start => {
                in_class = false;
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    Regex::new(&out).map_err(|e| e.to_string())
}

/// Go's `%v` for a float64 (`strconv` 'g' with the shortest digits): exponent form when the
/// exponent is below -4 or at least 6, so 1e6 prints as `1e+06`.
pub(super) fn go_float(f: f64) -> String {
    format_float(f, -4, 6, true)
}

/// Go's `encoding/json` float64: `%f`-style except below 1e-6 or from 1e21, with `e-7`
/// rather than `e-07`.
pub(super) fn go_json_float(f: f64) -> String {
    format_float(f, -6, 21, false)
}

/// Shortest round-trip digits, printed plainly when `min_exp <= exponent < max_exp`, else in
/// exponent form (`padded`: at least two exponent digits, as `%e` prints).
fn format_float(f: f64, min_exp: i32, max_exp: i32, padded: bool) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if exp < min_exp || exp >= max_exp {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let (esign, eabs) = if exp < 0 { ('-', -exp) } else { ('+', exp) };
        let e = if padded {
            format!("{eabs:02}")
        } else {
            eabs.to_string()
        };
        return format!("{sign}{m}e{esign}{e}");
    }
    let point = exp + 1; // digits before the decimal point
    let s = if point <= 0 {
        format!("0.{}{}", "0".repeat((-point) as usize), digits)
    } else if (point as usize) >= digits.len() {
        format!("{}{}", digits, "0".repeat(point as usize - digits.len()))
    } else {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    };
    format!("{sign}{s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_prints_them() {
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(100000.0), "100000");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-2.5e-7), "-2.5e-07");
        assert_eq!(go_json_float(1e20), "100000000000000000000");
        assert_eq!(go_json_float(1e21), "1e+21");
        assert_eq!(go_json_float(1e-7), "1e-7");
        assert_eq!(go_json_float(0.000001), "0.000001");
    }

    #[test]
    fn unsupported_formats_are_stripped_per_type() {
        assert_eq!(validated_format(&["string"], "date-time"), "date-time");
        assert_eq!(validated_format(&["string"], "int32"), "");
        assert_eq!(validated_format(&["integer"], "int32"), "int32");
        assert_eq!(validated_format(&["integer"], "date-time"), "");
        assert_eq!(validated_format(&["number"], "double"), "double");
        assert_eq!(validated_format(&["boolean"], "byte"), "");
        assert_eq!(
            validated_format(&["integer", "string"], "k8s-short-name"),
            "k8s-short-name"
        );
        assert!(!is_string_format("int32"));
    }

    #[test]
    fn go_regex_keeps_escape_classes_ascii() {
        let re = go_regex(r"^\w+\s\d$").unwrap();
        assert!(re.is_match("ab_1 2"));
        assert!(!re.is_match("é 2"));
        let class = go_regex(r"^[\d.\-]+$").unwrap();
        assert!(class.is_match("1.2-3"));
        assert!(!class.is_match("١"));
        assert!(go_regex(r"^[]a]+$").unwrap().is_match("]a"));
        assert!(go_regex(r"^[[:alpha:]\d]+$").unwrap().is_match("a1"));
        assert!(go_regex(r"\bword\b").unwrap().is_match("a word here"));
    }

    #[test]
    fn dates_and_times() {
        assert!(check("date", "2024-02-29"));
        assert!(!check("date", "2023-02-29"));
        assert!(!check("date", "2024-2-01"));
        assert!(check("date-time", "2024-01-02T03:04:05Z"));
        assert!(check("date-time", "2024-01-02t03:04:05.123+02:00"));
        assert!(!check("date-time", "2024-01-02T24:00:00Z"));
        assert!(!check("date-time", "2024-01-02 03:04:05Z"));
        assert!(!check("datetime", "2024-01-02T03:04:05"));
    }

    #[test]
    fn durations_follow_go_then_scala_syntax() {
        for ok in ["1h30m", "-1.5s", "0", "300ms", "2 minutes", "1 day", "5µs"] {
            assert!(check("duration", ok), "{ok}");
        }
        for bad in ["", "1", "1x", "h", ".s", "9999999999999999999h"] {
            assert!(!check("duration", bad), "{bad}");
        }
    }

    #[test]
    fn quantities() {
        for ok in ["1", "500Mi", "1.5", "100m", "1e3", "+2Gi", "-1k", ".5"] {
            assert!(check("quantity", ok), "{ok}");
        }
        for bad in ["", "Mi", "1.2.3", "5 apples", "1e", "1Kb"] {
            assert!(!check("quantity", bad), "{bad}");
        }
    }

    #[test]
    fn network_formats() {
        assert!(check("ipv4", "10.0.0.1"));
        assert!(check("ipv4", "010.000.000.001"));
        assert!(!check("ipv4", "256.0.0.1"));
        assert!(!check("ipv4", "::1"));
        assert!(check("ipv6", "::1"));
        assert!(check("ipv6", "::ffff:1.2.3.4"));
        assert!(!check("ipv6", "1.2.3.4"));
        assert!(check("cidr", "10.0.0.0/8"));
        assert!(check("cidr", "fd00::/64"));
        assert!(!check("cidr", "10.0.0.0/33"));
        assert!(check("mac", "01:23:45:67:89:ab"));
        assert!(check("mac", "0123.4567.89ab"));
        assert!(!check("mac", "01:23:45"));
        assert!(check("hostname", "example.com"));
        assert!(check("hostname", "localhost"));
        assert!(!check("hostname", "-bad-.com"));
        assert!(check("uri", "https://example.com:8443/path?q=1"));
        assert!(check("uri", "/absolute/path"));
        assert!(check("uri", "mailto:a@b.c"));
        assert!(!check("uri", "relative/path"));
        assert!(!check("uri", "http://exa mple.com/"));
        assert!(!check("uri", "1http://x"));
        assert!(check("email", "a.b@example.com"));
        assert!(check("email", "Name <a@example.com>"));
        assert!(!check("email", "not-an-email"));
    }

    #[test]
    fn identifier_formats() {
        assert!(check("uuid", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(check("uuid4", "123e4567-e89b-42d3-a456-426614174000"));
        assert!(!check("uuid4", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(check("bsonobjectid", "507f1f77bcf86cd799439011"));
        assert!(check("isbn10", "0-321-75104-3"));
        assert!(check("isbn13", "978-0321751041"));
        assert!(check("isbn", "0321751043"));
        assert!(!check("isbn13", "978-0321751042"));
        assert!(check("creditcard", "4111 1111 1111 1111"));
        assert!(!check("creditcard", "4111 1111 1111 1112"));
        assert!(check("ssn", "123-45-6789"));
        assert!(!check("ssn", "123456789"));
        assert!(check("hexcolor", "#fff"));
        assert!(check("rgbcolor", "rgb(255, 0, 10)"));
        assert!(!check("rgbcolor", "rgb(256,0,0)"));
        assert!(check("byte", "aGVsbG8="));
        assert!(!check("byte", ""));
        assert!(check("k8s-short-name", "my-name"));
        assert!(!check("k8s-short-name", "My-Name"));
        assert!(check("k8s-long-name", "a.b-c.d"));
        assert!(check("password", ""));
    }
}
