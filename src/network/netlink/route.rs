//! The main routing table's IPv4 routes, read for the network's picture and status.

use std::net::Ipv4Addr;

use futures_util::TryStreamExt;
use rtnetlink::{Handle, RouteMessageBuilder};

use super::{NetError, nl};

/// An IPv4 route of the main table, as `ip route` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: ipnet::Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index.
    pub oif: Option<u32>,
}

/// The main routing table's IPv4 unicast routes (local/broadcast tables are noise for a picture).
pub async fn routes(h: &Handle) -> Result<Vec<Route>, NetError> {
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteType};
    let mut out = Vec::new();
    let mut s = h.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
    while let Some(m) = s.try_next().await.map_err(nl("listing routes"))? {
        let table = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        });
        if table.unwrap_or(u32::from(m.header.table)) != u32::from(RouteHeader::RT_TABLE_MAIN) || m.header.kind != RouteType::Unicast {
            continue;
        }
        let mut r = Route { dst: ipnet::Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).unwrap(), gateway: None, oif: None };
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                    r.dst = ipnet::Ipv4Net::new(*ip, m.header.destination_prefix_length).unwrap_or(r.dst);
                }
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => r.gateway = Some(*ip),
                RouteAttribute::Oif(i) => r.oif = Some(*i),
                _ => {}
            }
        }
        out.push(r);
    }
    Ok(out)
}
