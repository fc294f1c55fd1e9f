//! The authenticated user, as kube's `user.Info`.

use std::collections::BTreeMap;

/// `system:anonymous`, for requests no authenticator claimed.
pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const AUTHENTICATED: &str = "system:authenticated";
/// Members are allowed everything without a review, as kube's authorizer does.
pub const MASTERS: &str = "system:masters";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Extra attributes, keys lower-cased (kube's `user.Info.GetExtra`).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: ANONYMOUS.into(),
            groups: vec![UNAUTHENTICATED.into()],
            ..Default::default()
        }
    }

    /// Adds `system:authenticated`, as kube does for every authenticated user (not the
    /// anonymous one), unless it is already there.
    pub fn authenticated(mut self) -> UserInfo {
        if self.name != ANONYMOUS && !self.groups.iter().any(|g| g == AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.into());
        }
        self
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}
