//! Zone match (query path step 2): the longest suffix of the lowercased name among the
//! listener view's zones, then `.`, else REFUSED — what CoreDNS really does.

use std::collections::HashMap;

/// Zones of every view, by lowercased wire-format name.
#[derive(Debug, Default)]
pub struct ZoneTable {
    views: HashMap<String, HashMap<Box<[u8]>, usize>>,
}

impl ZoneTable {
    /// Builds the table from (view, wire-format zone name) pairs; the value found is the
    /// pair's index.
    pub fn build<'a>(zones: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut views: HashMap<String, HashMap<Box<[u8]>, usize>> = HashMap::new();
        for (i, (view, name)) in zones.into_iter().enumerate() {
            views
                .entry(view.to_owned())
                .or_default()
                .insert(name.into(), i);
        }
        ZoneTable { views }
    }

    /// The index of the zone with the longest suffix of `name` (lowercased wire format) in
    /// `view`; the root zone matches every name.
    pub fn find(&self, view: &str, name: &[u8]) -> Option<usize> {
        let zones = self.views.get(view)?;
        let mut pos = 0;
        loop {
            let suffix = name.get(pos..)?;
            if let Some(&i) = zones.get(suffix) {
                return Some(i);
            }
            let len = *suffix.first()? as usize;
            if len == 0 {
                return None;
            }
            pos += 1 + len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in name.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    #[test]
    fn longest_suffix_within_the_view_then_root() {
        let names = [
            ("kube", wire("cluster.local")),
            ("kube", wire(".")),
            ("kube", wire("svc.cluster.local")),
            ("vnet", wire("example.com")),
        ];
        let table = ZoneTable::build(names.iter().map(|(v, n)| (*v, n.as_slice())));
        let cases: &[(&str, &str, Option<usize>)] = &[
            ("kube", "kubernetes.default.svc.cluster.local", Some(2)),
            ("kube", "svc.cluster.local", Some(2)),
            ("kube", "pod.cluster.local", Some(0)),
            ("kube", "cluster.local", Some(0)),
            ("kube", "local", Some(1)),
            ("kube", "www.example.com", Some(1)),
            ("kube", ".", Some(1)),
            ("vnet", "www.example.com", Some(3)),
            ("vnet", "example.com", Some(3)),
            ("vnet", "badexample.com", None),
            ("vnet", "cluster.local", None),
            ("nope", "example.com", None),
        ];
        for (view, name, want) in cases {
            assert_eq!(table.find(view, &wire(name)), *want, "{view} {name}");
        }
    }
}
