//! The dummy interface through netlink (rtnetlink): create it up with the listen addresses as
//! /32 or /128 (IPv6 ones without DAD, so they can be bound at once), adopt an existing link
//! of that name and kind, refuse to touch any other kind of link.
//!
//! Each operation opens its own netlink socket and closes it after, so a pass never depends on
//! a socket that died since the last one.

use std::collections::HashSet;
use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec};

use super::SetupError;

/// The kind of link that holds the addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinkKind {
    /// A `dummy` link, as node-local-dns creates.
    #[default]
    Dummy,
    /// An `ifb` link: the same for local addresses, for kernels built without the dummy driver
    /// (the VM kernel of this project's CI is one).
    Ifb,
}

impl LinkKind {
    fn info_kind(self) -> InfoKind {
        match self {
            LinkKind::Dummy => InfoKind::Dummy,
            LinkKind::Ifb => InfoKind::Ifb,
        }
    }

    /// The kind's name as `ip -d link` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Dummy => "dummy",
            LinkKind::Ifb => "ifb",
        }
    }
}

/// Linux's `ENODEV`, which a lookup by name answers when the link does not exist.
const ENODEV: i32 = 19;
/// Linux's `EEXIST`: the address (or link) is already there.
const EEXIST: i32 = 17;
/// `IFNAMSIZ - 1`.
const MAX_NAME: usize = 15;

/// Checks an interface name as the kernel would (`dev_valid_name`).
pub fn validate_name(name: &str) -> Result<(), SetupError> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0');
    if bad {
        return Err(SetupError::InterfaceName(name.to_owned()));
    }
    Ok(())
}

/// A netlink connection whose driver task ends with it.
struct Netlink {
    handle: Handle,
    driver: tokio::task::JoinHandle<()>,
}

impl Netlink {
    fn open() -> Result<Self, SetupError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(SetupError::Socket)?;
        Ok(Self {
            handle,
            driver: tokio::spawn(conn),
        })
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn nl_err(op: &'static str, name: &str) -> impl FnOnce(rtnetlink::Error) -> SetupError {
    let name = name.to_owned();
    move |source| SetupError::Netlink { op, name, source }
}

fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}

async fn find(nl: &Netlink, name: &str) -> Result<Option<LinkMessage>, SetupError> {
    let mut links = nl.handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(nl_err("get link", name)(e)),
    }
}

fn is_kind(link: &LinkMessage, kind: LinkKind) -> bool {
    let want = kind.info_kind();
    link.attributes.iter().any(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(k) if *k == want)),
        _ => false,
    })
}

/// Finds the link or creates it; errors if it exists and is of another kind. Returns the link
/// and whether it was created.
async fn find_or_create(
    nl: &Netlink,
    name: &str,
    kind: LinkKind,
) -> Result<(LinkMessage, bool), SetupError> {
    if let Some(link) = find(nl, name).await? {
        if !is_kind(&link, kind) {
            return Err(not_ours(name, kind));
        }
        return Ok((link, false));
    }
    let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(kind.info_kind())
        .name(name.to_owned())
        .up()
        .build();
    let add = nl.handle.link().add(msg);
    match add.execute().await {
        Ok(()) => {}
        // Created concurrently (another instance during a rolling update): adopt it.
        Err(e) if errno(&e) == Some(EEXIST) => {}
        Err(e) => return Err(nl_err("add link", name)(e)),
    }
    match find(nl, name).await? {
        Some(link) if is_kind(&link, kind) => Ok((link, true)),
        Some(_) => Err(not_ours(name, kind)),
        None => Err(nl_err("get link", name)(rtnetlink::Error::RequestFailed)),
    }
}

fn not_ours(name: &str, kind: LinkKind) -> SetupError {
    SetupError::NotOurKind {
        name: name.to_owned(),
        kind: kind.as_str(),
    }
}

async fn addresses_of(nl: &Netlink, index: u32, name: &str) -> Result<HashSet<IpAddr>, SetupError> {
    let msgs: Vec<_> = nl
        .handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(nl_err("get addresses", name))?;
    Ok(msgs
        .iter()
        .flat_map(|m| m.attributes.iter())
        .filter_map(|attr| match attr {
            AddressAttribute::Address(ip) | AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        })
        .collect())
}

/// Makes sure the interface exists, is up and holds every address; returns how many changes
/// that took (0 when everything was in place).
pub async fn ensure(name: &str, kind: LinkKind, addrs: &[IpAddr]) -> Result<usize, SetupError> {
    validate_name(name)?;
    let nl = Netlink::open()?;
    let (link, created) = find_or_create(&nl, name, kind).await?;
    let index = link.header.index;
    let mut changes = usize::from(created);
    if !link.header.flags.contains(LinkFlags::Up) {
        let up = LinkUnspec::new_with_index(index).up().build();
        nl.handle
            .link()
            .set(up)
            .execute()
            .await
            .map_err(nl_err("set up", name))?;
        changes += 1;
    }
    let present = addresses_of(&nl, index, name).await?;
    for addr in addrs.iter().filter(|a| !present.contains(a)) {
        match add_address(&nl, index, *addr).await {
            Ok(()) => changes += 1,
            Err(e) if errno(&e) == Some(EEXIST) => {}
            Err(e) => return Err(nl_err("add address", name)(e)),
        }
    }
    Ok(changes)
}

async fn add_address(nl: &Netlink, index: u32, addr: IpAddr) -> Result<(), rtnetlink::Error> {
    let prefix = if addr.is_ipv4() { 32 } else { 128 };
    let mut req = nl.handle.address().add(index, addr, prefix);
    if addr.is_ipv6() {
        let msg = req.message_mut();
        msg.header.flags |= AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute().await
}

/// Deletes the interface (and with it its addresses) if it is of our kind; false when it was
/// not there.
pub async fn delete(name: &str, kind: LinkKind) -> Result<bool, SetupError> {
    validate_name(name)?;
    let nl = Netlink::open()?;
    let Some(link) = find(&nl, name).await? else {
        return Ok(false);
    };
    if !is_kind(&link, kind) {
        return Err(not_ours(name, kind));
    }
    match nl.handle.link().del(link.header.index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(false),
        Err(e) => Err(nl_err("delete link", name)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_validated_like_the_kernel() {
        let cases = [
            ("nodelocaldns", true),
            ("a", true),
            ("exactly15chars_", true),
            ("sixteen_chars___", false),
            ("", false),
            (".", false),
            ("..", false),
            ("a/b", false),
            ("a:b", false),
            ("a b", false),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_name(name).is_ok(), ok, "{name:?}");
        }
    }
}
