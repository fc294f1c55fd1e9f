//! Query parameters, read as kube's parameter codec reads them into ListOptions,
//! GetOptions and the write options.
//!
//! Every verb and option derives from one [`Query`], so the server can never disagree
//! with itself about a parameter (as it once did, serving `?watch=True` as a LIST):
//! - percent-decoded, `+` as a space (Go's `url.ParseQuery`);
//! - a repeated key counts with its first value (`url.Values.Get`, and the conversions
//!   take `values[0]`);
//! - a boolean is false only for `0` and, in any case, `false`; any other value, including
//!   an empty one, is true, and an absent key is unset (apimachinery's
//!   `Convert_Slice_string_To_bool`). It is never an error.

/// The decoded pairs of a query string, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Decodes `a=1&b=x%20y`. A malformed escape is the client's error (400).
    pub fn parse(qs: &str) -> Result<Query, String> {
        let mut pairs = Vec::new();
        for part in qs.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((percent_decode(k)?, percent_decode(v)?));
        }
        Ok(Query { pairs })
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `key`, unless it is empty: what kube's string options treat as
    /// unset (`resourceVersion=`, `continue=`).
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Every value of `key`, in order (`dryRun` is a list).
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key` as kube reads a boolean option; `None` when the key is absent.
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.get(key)
            .map(|v| !(v == "0" || v.eq_ignore_ascii_case("false")))
    }

    /// `key` as an integer; an empty value is unset.
    pub fn int(&self, key: &str) -> Result<Option<i64>, String> {
        self.non_empty(key)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| format!("invalid integer value {v:?} for query parameter {key:?}"))
            })
            .transpose()
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .ok_or_else(|| format!("truncated escape in {s:?}"))?;
                let hex = std::str::from_utf8(hex).map_err(|_| format!("bad escape in {s:?}"))?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape in {s:?}"))?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 after decoding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_percent_decoded() {
        let q = Query::parse("labelSelector=app%3Dweb%2Ctier+in+(a)&limit=5").unwrap();
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(q.int("limit").unwrap(), Some(5));
        assert!(Query::parse("x=%zz").is_err());
        assert!(Query::parse("x=%4").is_err());
    }

    #[test]
    fn booleans_are_false_only_for_0_and_false_in_any_case() {
        for v in ["true", "True", "TRUE", "1", "t", "yes", ""] {
            let q = Query::parse(&format!("watch={v}")).unwrap();
            assert_eq!(q.bool("watch"), Some(true), "{v:?}");
        }
        for v in ["false", "False", "FALSE", "fAlSe", "0"] {
            let q = Query::parse(&format!("watch={v}")).unwrap();
            assert_eq!(q.bool("watch"), Some(false), "{v:?}");
        }
        let q = Query::parse("watch").unwrap();
        assert_eq!(q.bool("watch"), Some(true), "a bare key has an empty value");
        assert_eq!(Query::parse("").unwrap().bool("watch"), None);
    }

    #[test]
    fn a_repeated_key_counts_with_its_first_value() {
        let q = Query::parse("watch=false&watch=true&dryRun=All&dryRun=").unwrap();
        assert_eq!(q.bool("watch"), Some(false));
        assert_eq!(q.all("dryRun").collect::<Vec<_>>(), ["All", ""]);
    }
}
