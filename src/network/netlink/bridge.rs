//! The node's pod bridge over rtnetlink: created with the options a pod bridge wants (see
//! `new_bridge`), checked, claimed for a state root, given the gateway's address.

use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::packet_route::link::{InfoBridge, InfoData, InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec};

use super::{NetError, addresses, addresses_strict, alias, errno, kind, link_by_name, nl, set_alias};

/// Make sure `name` is an up bridge with `mtu` holding `gw/prefix`, owned by `owner` if given
/// (see `crate::network::Owner`: a bridge another state root owns is refused before anything changes; an
/// unowned one is claimed once it checks out; podbox-cni gives none); returns its index.
/// `strict`: `h`'s socket has strict checking (a `Session`'s), no other socket is needed.
pub async fn ensure_bridge(h: &Handle, strict: bool, name: &str, mtu: u32, gw: Ipv4Addr, prefix: u8, owner: Option<&crate::network::Owner>) -> Result<u32, NetError> {
    // The gateway's MAC address is derived from its IPv4 address, as a pod's is.
    let (idx, owned_by, snoops) = bridge_link(h, name, mtu, Some(crate::network::pod_mac(gw)), owner).await?;
    let have = if strict { addresses_strict(h, idx).await? } else { addresses(h, idx).await? };
    if let Some((ip, p)) = have.iter().find(|a| **a != (gw, prefix)) {
        return Err(NetError::Conflict(format!(
            "bridge {name} has address {ip}/{p}, but the network config wants {gw}/{prefix}; \
             remove that address or change the config (`podbox network config`)"
        )));
    }
    if have.is_empty() {
        match h.address().add(idx, IpAddr::V4(gw), prefix).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == libc::EEXIST => {}
            Err(e) => return Err(nl(format!("adding {gw}/{prefix} to bridge {name}"))(e)),
        }
    }
    // A podbox bridge made before snooping was turned off at creation (see `new_bridge`), or one
    // being claimed: once. (podbox-cni's, `owner` None, may not be podbox's: left as found.)
    if owner.is_some() && snoops {
        let mut off = LinkMessageBuilder::<LinkBridge>::new(name).append_info_data(InfoBridge::MulticastSnooping(false)).build();
        off.header.index = idx;
        // RTM_NEWLINK on an existing link (`change`): RTM_SETLINK ignores a bridge's options.
        h.link().change(off).execute().await.map_err(nl(format!("turning off multicast snooping on bridge {name}")))?;
    }
    if let Some(owner) = owner
        && owned_by.as_deref() != Some(owner.alias())
    {
        set_alias(h, idx, owner.alias()).await?;
        // Another root claiming at the same moment: the later alias stands, the other one yields.
        // (Both can still pass if each reads back before the other writes; claims are rare —
        // a root's first pod — and this narrows that to the same microseconds.)
        let now = link_by_name(h, name).await?.and_then(|l| alias(&l));
        owner.check(name, now.as_deref())?;
    }
    Ok(idx)
}

/// Make sure `name` is an up bridge with `mtu` (addresses and owner untouched: podbox-cni's
/// bridge, configured by its network config); returns its index.
pub async fn ensure_bridge_link(h: &Handle, name: &str, mtu: u32) -> Result<u32, NetError> {
    Ok(bridge_link(h, name, mtu, None, None).await?.0)
}

/// A new pod bridge: `mtu`, no multicast snooping, and MAC address `mac` if given.
///
/// Performance (issue 19): with snooping on, every port that comes up or goes away makes the
/// kernel restart the IGMP and MLD own-query timers of every other port of the bridge
/// (`br_port_state_selection` → `br_multicast_enable_port`): at 1,000 pods, over half of the
/// kernel's time in bringing a pod's port up, and as much again when one goes away. Snooping prunes the flooding of
/// multicast joined through IGMP/MLD reports; a pod bridge runs no querier, so its group
/// entries lapse after the membership interval (260 s) and the group floods again anyway.
/// Off, multicast floods to every pod as broadcast does (as on a bridge with snooping and no
/// querier after a few minutes). A fixed MAC address: the kernel otherwise recomputes the
/// bridge's own (the lowest of its ports') at every port added or removed, a walk of all ports,
/// and the gateway's MAC changes under the pods when a lower one joins.
fn new_bridge(name: &str, mtu: u32, mac: Option<[u8; 6]>) -> LinkMessage {
    let mut b = LinkBridge::new(name).mtu(mtu).append_info_data(InfoBridge::MulticastSnooping(false));
    if let Some(mac) = mac {
        b = b.address(mac.to_vec());
    }
    b.build()
}

/// Whether bridge link `l` snoops multicast (the kernel's default for a new bridge).
fn snoops_multicast(l: &LinkMessage) -> bool {
    l.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().any(|i| matches!(i, LinkInfo::Data(InfoData::Bridge(d)) if d.contains(&InfoBridge::MulticastSnooping(true)))),
        _ => false,
    })
}

/// The bridge link itself: created if missing (see `new_bridge`), checked to be a bridge (and,
/// with `owner`, not another root's), set up with `mtu`. Returns its index, its alias and
/// whether it snoops multicast.
async fn bridge_link(h: &Handle, name: &str, mtu: u32, mac: Option<[u8; 6]>, owner: Option<&crate::network::Owner>) -> Result<(u32, Option<String>, bool), NetError> {
    let link = match link_by_name(h, name).await? {
        Some(l) => l,
        None => {
            match h.link().add(new_bridge(name, mtu, mac)).execute().await {
                Ok(()) => {}
                // Another podbox created it meanwhile: fine, we check it below like any other.
                Err(e) if errno(&e) == libc::EEXIST => {}
                Err(e) => return Err(nl(format!("creating bridge {name}"))(e)),
            }
            link_by_name(h, name).await?.ok_or_else(|| NetError::Netlink {
                what: format!("creating bridge {name}"),
                msg: "it vanished right after creation".into(),
            })?
        }
    };
    if kind(&link) != Some(&InfoKind::Bridge) {
        return Err(NetError::Conflict(format!(
            "link {name} exists but is not a bridge ({:?}); choose another bridge name with `podbox network config --bridge`",
            kind(&link)
        )));
    }
    let owned_by = alias(&link);
    if let Some(owner) = owner {
        owner.check(name, owned_by.as_deref())?;
    }
    let idx = link.header.index;
    // Performance: a request that changes nothing still waits for the rtnl lock, which is one
    // for the whole machine and contended on a busy node: only when needed.
    let is_up = link.header.flags.contains(rtnetlink::packet_route::link::LinkFlags::Up);
    let has_mtu = link.attributes.iter().any(|a| matches!(a, LinkAttribute::Mtu(m) if *m == mtu));
    if !(is_up && has_mtu) {
        h.link()
            .set(LinkUnspec::new_with_index(idx).mtu(mtu).up().build())
            .execute()
            .await
            .map_err(nl(format!("setting bridge {name} up with MTU {mtu}")))?;
    }
    Ok((idx, owned_by, snoops_multicast(&link)))
}
