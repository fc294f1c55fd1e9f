//! The front proxy's user, from request headers (k8s.io/apiserver's `headerrequest`).
//!
//! The kube-apiserver's aggregator connects with a client certificate of the requestheader
//! CA and names the user in headers. The headers are believed only from such a connection;
//! [`RequestHeaderConfig::user`] is called only after that certificate verified. Pure.

use std::collections::BTreeMap;

use super::user::UserInfo;

/// Which headers carry the user, and whose certificate is believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaderConfig {
    /// Common names a front proxy's certificate may have; empty allows any the CA signed.
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub uid_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_prefixes: Vec<String>,
}

impl Default for RequestHeaderConfig {
    /// kube-apiserver's defaults for its own front proxy flags.
    fn default() -> Self {
        RequestHeaderConfig {
            allowed_names: Vec::new(),
            username_headers: vec!["X-Remote-User".into()],
            uid_headers: vec!["X-Remote-Uid".into()],
            group_headers: vec!["X-Remote-Group".into()],
            extra_prefixes: vec!["X-Remote-Extra-".into()],
        }
    }
}

/// Headers as (name, value) pairs, in the order they arrived.
pub type Headers<'a> = [(&'a str, &'a str)];

impl RequestHeaderConfig {
    /// Whether a verified front-proxy certificate with this common name may name users.
    pub fn allows(&self, common_name: &str) -> bool {
        self.allowed_names.is_empty() || self.allowed_names.iter().any(|n| n == common_name)
    }

    /// The user the headers name: the first non-empty username header (none: not
    /// authenticated by this means), groups from every group header, extras from the prefix
    /// headers (key lower-cased and percent-unescaped), the UID from the UID headers.
    pub fn user(&self, headers: &Headers<'_>) -> Option<UserInfo> {
        let name = first_value(headers, &self.username_headers)?;
        let uid = first_value(headers, &self.uid_headers).unwrap_or_default();
        let groups = self
            .group_headers
            .iter()
            .flat_map(|h| values(headers, h))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        // Prefix by prefix, so values keep the prefixes' order, as kube's newExtra does.
        for prefix in &self.extra_prefixes {
            let prefix = prefix.to_ascii_lowercase();
            for (k, v) in headers {
                let lower = k.to_ascii_lowercase();
                if let Some(key) = lower.strip_prefix(&prefix) {
                    extra.entry(unescape(key)).or_default().push(v.to_string());
                }
            }
        }
        Some(UserInfo {
            name,
            uid,
            groups,
            extra,
        })
    }

    /// Whether `name` is one of the headers that carry identity: they are removed from
    /// every request before anything else reads it, trusted or not.
    pub fn is_identity_header(&self, name: &str) -> bool {
        let eq = |h: &String| h.eq_ignore_ascii_case(name);
        self.username_headers.iter().any(eq)
            || self.uid_headers.iter().any(eq)
            || self.group_headers.iter().any(eq)
            || self.extra_prefixes.iter().any(|p| {
                name.len() >= p.len()
                    && name
                        .get(..p.len())
                        .is_some_and(|head| head.eq_ignore_ascii_case(p))
            })
    }
}

fn values<'a>(headers: &'a Headers<'a>, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// The first non-empty value of the first header, in order, that has one.
fn first_value(headers: &Headers<'_>, names: &[String]) -> Option<String> {
    names
        .iter()
        .find_map(|n| values(headers, n).next().filter(|v| !v.is_empty()))
        .map(str::to_string)
}

/// Go's `url.PathUnescape`; a key that does not unescape is kept as it is.
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => return key.to_string(),
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_comes_from_the_first_non_empty_username_header_and_every_group_header() {
        let cfg = RequestHeaderConfig {
            username_headers: vec!["X-Remote-User".into(), "X-Other-User".into()],
            ..Default::default()
        };
        let h = [
            ("x-remote-user", ""),
            ("x-other-user", "alice"),
            ("X-Remote-Group", "dev"),
            ("x-remote-group", "ops"),
            ("X-Remote-Group", ""),
            ("X-Remote-Uid", "u-1"),
            ("X-Remote-Extra-Scopes", "a"),
            ("x-remote-extra-scopes", "b"),
            ("X-Remote-Extra-Acme.com%2Fproject", "p1"),
        ];
        let u = cfg.user(&h).unwrap();
        assert_eq!(u.name, "alice");
        assert_eq!(u.uid, "u-1");
        assert_eq!(u.groups, ["dev", "ops"]);
        assert_eq!(u.extra["scopes"], ["a", "b"]);
        assert_eq!(u.extra["acme.com/project"], ["p1"]);
    }

    #[test]
    fn without_a_username_header_nobody_is_named() {
        let cfg = RequestHeaderConfig::default();
        assert!(cfg.user(&[("X-Remote-Group", "dev")]).is_none());
    }

    #[test]
    fn allowed_names_restrict_the_front_proxy_when_given() {
        let mut cfg = RequestHeaderConfig::default();
        assert!(cfg.allows("anything"));
        cfg.allowed_names = vec!["front-proxy-client".into()];
        assert!(cfg.allows("front-proxy-client"));
        assert!(!cfg.allows("aggregator"));
    }

    #[test]
    fn identity_headers_are_recognised_in_any_case() {
        let cfg = RequestHeaderConfig::default();
        for h in [
            "x-remote-user",
            "X-REMOTE-GROUP",
            "x-remote-uid",
            "X-Remote-Extra-Foo",
        ] {
            assert!(cfg.is_identity_header(h), "{h}");
        }
        assert!(!cfg.is_identity_header("authorization"));
        assert!(!cfg.is_identity_header("x-remote"));
    }

    #[test]
    fn extra_keys_that_do_not_unescape_are_kept() {
        assert_eq!(unescape("a%2fb"), "a/b");
        assert_eq!(unescape("a%zzb"), "a%zzb");
    }
}
