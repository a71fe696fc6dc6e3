//! Which state root owns the node's network: recorded as the bridge's alias, so a second root is
//! refused and does not tear down what another owns.

use std::path::Path;

use super::*;

/// What the bridge's alias says when a podbox state root owns it.
pub(super) const OWNER_PREFIX: &str = "podbox root ";

/// The state root this process acts for, as recorded on (and compared with) the bridge's alias.
#[derive(Debug, Clone)]
pub struct Owner {
    pub(super) alias: String,
}

impl Owner {
    /// The owner identity of `root`: its canonical path (so `./r` and `/abs/r` are one root).
    pub fn of(root: &Path) -> Result<Owner, NetError> {
        let path = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let alias = format!("{OWNER_PREFIX}{}", path.display());
        // The kernel keeps at most 255 bytes of alias (IFALIASZ).
        if alias.len() > 255 {
            return Err(NetError::Config(format!("state root path {} is too long to record as the bridge owner (max 243 bytes)", path.display())));
        }
        Ok(Owner { alias })
    }

    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// Whether a bridge whose alias is `found` may be used by this root: unowned, ours, or owned by
    /// a root that no longer exists (its pods are gone with it; we take over).
    pub fn check(&self, bridge: &str, found: Option<&str>) -> Result<(), NetError> {
        let Some(found) = found else { return Ok(()) };
        if found == self.alias {
            return Ok(());
        }
        match found.strip_prefix(OWNER_PREFIX) {
            Some(other) if !Path::new(other).exists() => Ok(()),
            Some(other) => Err(NetError::OwnedByOtherRoot { bridge: bridge.into(), owner: other.into() }),
            None => Err(NetError::Conflict(format!(
                "bridge {bridge} has the alias {found:?}, so someone else manages it; choose another bridge name with `podbox network config --bridge`"
            ))),
        }
    }
}

/// Refuse when another (existing) state root owns `bridge`: for commands that would change the
/// node network, before they change anything.
pub fn check_owner(root: &Path, bridge: &str) -> Result<(), NetError> {
    match owned_by_other(root, bridge)? {
        Some(owner) => Err(NetError::OwnedByOtherRoot { bridge: bridge.into(), owner }),
        None => Ok(()),
    }
}

/// The state root that owns `bridge`, if that is not the root at `root` (and it still exists).
pub(super) fn owned_by_other(root: &Path, bridge: &str) -> Result<Option<String>, NetError> {
    let me = Owner::of(root)?;
    let name = bridge.to_string();
    let found = netlink::run(|h| async move { Ok(netlink::link_by_name(&h, &name).await?.and_then(|l| netlink::alias(&l))) })?;
    match me.check(bridge, found.as_deref()) {
        Err(NetError::OwnedByOtherRoot { owner, .. }) => Ok(Some(owner)),
        _ => Ok(None),
    }
}
