//! Where webhooks may go: never inside the gateway's own network.
//!
//! A `callback_url` is chosen by an API caller, so without a rule anyone with
//! a `send` key could make Herald POST to its own admin interfaces, a cloud
//! metadata service or a database on the private network. Addresses that are
//! loopback, private, link-local, unique-local, unspecified, multicast,
//! reserved, or an IPv4 address of those kinds embedded in IPv6 (mapped,
//! compatible, NAT64, 6to4) are refused, unless they fall in
//! `webhooks.allow_destinations`.
//!
//! The rule is applied to the address actually connected to: the sender
//! resolves names itself and connects only to addresses that pass, so a name
//! that resolves (or re-resolves) to an inside address is refused too.
//! Admission refuses literal inside addresses up front with 422.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Which destinations webhooks may reach.
#[derive(Debug, Clone, Default)]
pub struct DestinationPolicy {
    /// Inside networks the operator allowed explicitly.
    allow: Vec<IpNet>,
}

/// An address the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{addr} is a {kind} address, which webhooks may not reach (see webhooks.allow_destinations)"
)]
pub struct Forbidden {
    pub addr: IpAddr,
    pub kind: &'static str,
}

impl DestinationPolicy {
    /// A policy allowing, besides public addresses, the networks in `allow`
    /// (`"10.1.2.0/24"`, or one address as `"127.0.0.1"`).
    ///
    /// # Errors
    /// The first entry that is neither an address nor a CIDR block.
    pub fn new(allow: &[String]) -> Result<DestinationPolicy, String> {
        let allow = allow
            .iter()
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{entry:?} is neither an IP address nor a CIDR block"))
            })
            .collect::<Result<_, _>>()?;
        Ok(DestinationPolicy { allow })
    }

    /// Whether webhooks may connect to `addr`.
    ///
    /// # Errors
    /// [`Forbidden`], naming the kind of address.
    pub fn check(&self, addr: IpAddr) -> Result<(), Forbidden> {
        let Some(kind) = inside_kind(addr) else {
            return Ok(());
        };
        let embedded = embedded_v4(addr).map(IpAddr::V4);
        let allowed = self
            .allow
            .iter()
            .any(|net| net.contains(&addr) || embedded.is_some_and(|v4| net.contains(&v4)));
        if allowed {
            Ok(())
        } else {
            Err(Forbidden { addr, kind })
        }
    }

    /// Checks the host of `url` when it is a literal address; names pass
    /// here and are checked once resolved.
    ///
    /// # Errors
    /// [`Forbidden`] for a literal inside address.
    pub fn check_literal(&self, url: &reqwest::Url) -> Result<(), Forbidden> {
        // The URL parser normalises every IPv4 spelling (decimal, octal,
        // short forms) to dotted quads and keeps IPv6 in brackets.
        let host = url.host_str().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match host.parse::<IpAddr>() {
            Ok(addr) => self.check(addr),
            Err(_) => Ok(()),
        }
    }
}

/// What kind of inside address `addr` is, or `None` for a public one.
fn inside_kind(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => embedded_v4(addr).and_then(v4_kind).or_else(|| v6_kind(v6)),
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_unspecified() || a == 0 {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if a == 100 && (64..128).contains(&b) {
        "shared (carrier-grade NAT)"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_broadcast() || a >= 240 {
        "reserved"
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        "IETF protocol"
    } else if a == 198 && (18..20).contains(&b) {
        "benchmarking"
    } else {
        return None;
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_multicast() {
        "multicast"
    } else if first & 0xffc0 == 0xfe80 {
        "link-local"
    } else if first & 0xffc0 == 0xfec0 {
        "site-local"
    } else if first & 0xfe00 == 0xfc00 {
        "unique-local"
    } else {
        return None;
    })
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`)
/// and 6to4 (`2002:AABB:CCDD::/48`) forms.
fn embedded_v4(addr: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(ip) = addr else {
        return None;
    };
    let s = ip.segments();
    let o = ip.octets();
    let mapped_or_compatible = s[..5] == [0; 5]
        && (s[5] == 0xffff || (s[5] == 0 && !ip.is_loopback() && !ip.is_unspecified()));
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if mapped_or_compatible || nat64 {
        Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &DestinationPolicy, addr: &str) -> bool {
        policy.check(addr.parse().expect("address")).is_err()
    }

    #[test]
    fn inside_addresses_are_refused_in_every_form() {
        let p = DestinationPolicy::default();
        for addr in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
        ] {
            assert!(refused(&p, addr), "{addr} must be refused");
        }
        for addr in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!refused(&p, addr), "{addr} must be allowed");
        }
    }

    #[test]
    fn the_allowlist_opens_exactly_its_networks() {
        let p =
            DestinationPolicy::new(&["127.0.0.1".into(), "10.1.0.0/16".into()]).expect("policy");
        assert!(!refused(&p, "127.0.0.1"));
        assert!(!refused(&p, "::ffff:127.0.0.1"));
        assert!(refused(&p, "127.0.0.2"));
        assert!(!refused(&p, "10.1.200.3"));
        assert!(refused(&p, "10.2.0.1"));
        assert!(DestinationPolicy::new(&["localhost".into()]).is_err());
    }

    #[test]
    fn literal_hosts_are_checked_and_names_left_to_resolution() {
        let p = DestinationPolicy::default();
        let url = |u: &str| reqwest::Url::parse(u).expect("url");
        assert!(
            p.check_literal(&url("http://169.254.169.254/latest"))
                .is_err()
        );
        assert!(
            p.check_literal(&url("http://[::ffff:7f00:1]:8080/"))
                .is_err()
        );
        assert!(
            p.check_literal(&url("http://2130706433/")).is_err(),
            "decimal form"
        );
        assert!(p.check_literal(&url("https://example.com/hook")).is_ok());
    }
}
