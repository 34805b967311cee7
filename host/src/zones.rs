//! Zone match (query path step 2): the longest suffix of the lowercased name among the
//! listener view's zones, then `.`, else REFUSED — what CoreDNS really does.

use std::collections::HashMap;

/// Zones of every view, by lowercased wire-format name.
#[derive(Debug, Default)]
pub struct ZoneTable {
    views: HashMap<String, View>,
}

#[derive(Debug, Default)]
struct View {
    zones: HashMap<Box<[u8]>, usize>,
    /// Labels of the view's longest zone name: longer suffixes cannot match, so a lookup
    /// starts at the first suffix this short (one probe for a view holding only `.`).
    max_labels: usize,
}

impl ZoneTable {
    /// Builds the table from (view, wire-format zone name) pairs; the value found is the
    /// pair's index.
    pub fn build<'a>(zones: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut views: HashMap<String, View> = HashMap::new();
        for (i, (view, name)) in zones.into_iter().enumerate() {
            let v = views.entry(view.to_owned()).or_default();
            v.max_labels = v.max_labels.max(label_count(name).unwrap_or(0));
            v.zones.insert(name.into(), i);
        }
        ZoneTable { views }
    }

    /// The index of the zone with the longest suffix of `name` (lowercased wire format) in
    /// `view`; the root zone matches every name.
    pub fn find(&self, view: &str, name: &[u8]) -> Option<usize> {
        let v = self.views.get(view)?;
        let mut pos = 0;
        for _ in v.max_labels..label_count(name)? {
            pos += 1 + usize::from(*name.get(pos)?);
        }
        loop {
            let suffix = name.get(pos..)?;
            if let Some(&i) = v.zones.get(suffix) {
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

/// Labels of an uncompressed wire-format name (the root has none); None if it runs off
/// the end.
fn label_count(name: &[u8]) -> Option<usize> {
    let mut pos = 0;
    let mut n = 0;
    loop {
        let len = usize::from(*name.get(pos)?);
        if len == 0 {
            return Some(n);
        }
        n += 1;
        pos += 1 + len;
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
            ("vnet", "a.b.c.d.e.www.example.com", Some(3)),
            ("kube", "a.b.c.d.e.f.g.h.svc.cluster.local", Some(2)),
        ];
        for (view, name, want) in cases {
            assert_eq!(table.find(view, &wire(name)), *want, "{view} {name}");
        }
        // A name whose labels run off its end matches nothing.
        assert_eq!(table.find("kube", b"\x03www\x07exam"), None);
        assert_eq!(table.find("vnet", b"\x01a\x01b\x01c\x09"), None);
    }
}
