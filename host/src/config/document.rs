//! Reads a TOML document into raw sections, one serde pass per section and per array element
//! or named table, so one bad zone does not hide the errors of the next.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::error::Collector;
use super::raw::{
    RawCache, RawListen, RawObservability, RawOci, RawPolicy, RawServer, RawUpstream, RawZone,
};

/// Every section that deserialized; elements that failed are reported and left out.
#[derive(Debug, Default)]
pub(crate) struct RawDocument {
    pub(crate) server: RawServer,
    pub(crate) observability: RawObservability,
    pub(crate) cache: RawCache,
    pub(crate) oci: RawOci,
    /// (index in the file, listener)
    pub(crate) listen: Vec<(usize, RawListen)>,
    pub(crate) upstreams: Vec<(String, RawUpstream)>,
    /// (index in the file, zone)
    pub(crate) zones: Vec<(usize, RawZone)>,
    pub(crate) policies: Vec<(String, RawPolicy)>,
    /// Names declared, even when their body had errors (no "unknown upstream" follow-ups).
    pub(crate) upstream_names: BTreeSet<String>,
    pub(crate) policy_names: BTreeSet<String>,
    /// A `[[listen]]` failed, so views cannot be checked against listeners.
    pub(crate) listen_failed: bool,
}

/// Parses the text; a syntax error is reported with its line and ends the load.
pub(crate) fn read(text: &str, errs: &mut Collector<'_>) -> Option<RawDocument> {
    let root = match DeTable::parse(text) {
        Ok(root) => root.into_inner(),
        Err(e) => {
            errs.spanned(e.span(), "", e.message());
            return None;
        }
    };
    let mut doc = RawDocument::default();
    for (key, value) in root {
        read_section(&mut doc, key.get_ref(), key.span(), value, errs);
    }
    Some(doc)
}

fn read_section(
    doc: &mut RawDocument,
    key: &str,
    key_span: Range<usize>,
    value: Spanned<DeValue<'_>>,
    errs: &mut Collector<'_>,
) {
    match key {
        "server" => doc.server = one(value, key, errs).unwrap_or_default(),
        "observability" => doc.observability = one(value, key, errs).unwrap_or_default(),
        "cache" => doc.cache = one(value, key, errs).unwrap_or_default(),
        "oci" => doc.oci = one(value, key, errs).unwrap_or_default(),
        "listen" => {
            let (items, failed) = array(value, key, errs);
            doc.listen = items;
            doc.listen_failed = failed;
        }
        "zone" => doc.zones = array(value, key, errs).0,
        "upstreams" => {
            let (items, names) = named(value, key, errs);
            doc.upstreams = items;
            doc.upstream_names = names;
        }
        "policies" => {
            let (items, names) = named(value, key, errs);
            doc.policies = items;
            doc.policy_names = names;
        }
        other => errs.spanned(
            Some(key_span),
            other,
            "unknown section (expected server, observability, cache, oci, listen, upstreams, zone or policies)",
        ),
    }
}

/// Deserializes one value, reporting its error at `path` with the line toml points at.
fn one<T: DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
    path: &str,
    errs: &mut Collector<'_>,
) -> Option<T> {
    let span = value.span();
    T::deserialize(ValueDeserializer::from(value))
        .map_err(|e| errs.spanned(e.span().or(Some(span)), path, e.message()))
        .ok()
}

/// An array of tables (`[[zone]]`); returns the good elements and whether any failed.
fn array<T: DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
    path: &str,
    errs: &mut Collector<'_>,
) -> (Vec<(usize, T)>, bool) {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        errs.spanned(
            Some(span),
            path,
            format!("expected an array of tables ([[{path}]])"),
        );
        return (Vec::new(), true);
    };
    let mut failed = false;
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match one(item, &format!("{path}[{i}]"), errs) {
            Some(v) => out.push((i, v)),
            None => failed = true,
        }
    }
    (out, failed)
}

/// A table of named tables (`[upstreams.NAME]`); returns the good ones and every name.
fn named<T: DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
    path: &str,
    errs: &mut Collector<'_>,
) -> (Vec<(String, T)>, BTreeSet<String>) {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        errs.spanned(
            Some(span),
            path,
            format!("expected a table of [{path}.NAME] tables"),
        );
        return (Vec::new(), BTreeSet::new());
    };
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (name, item) in table {
        let name = name.get_ref().to_string();
        names.insert(name.clone());
        if let Some(v) = one(item, &format!("{path}.{name}"), errs) {
            out.push((name, v));
        }
    }
    (out, names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let mut errs = Collector::new("z.toml", text);
        let _ = read(text, &mut errs);
        match errs.finish(()) {
            Ok(()) => Vec::new(),
            Err(e) => e.errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn positions_of_syntax_and_type_errors() {
        let cases: [(&str, &[&str]); 6] = [
            ("[server\n", &["z.toml:1:8: "]),
            (
                "[server]\nworkers = \"x\"\n",
                &["z.toml:2:11: server: invalid type"],
            ),
            (
                "[server]\ndrain_timeout = 5\n",
                &[
                    "z.toml:2:17: server: invalid type: integer `5`, expected a duration like \"2s\"",
                ],
            ),
            (
                "[[zone]]\nname = \".\"\nforward = \"s\"\nbogus = 1\n",
                &["z.toml:4:1: zone[0]: unknown field `bogus`"],
            ),
            ("[nope]\n", &["z.toml:1:2: nope: unknown section"]),
            (
                "listen = 5\n",
                &["z.toml:1:10: listen: expected an array of tables"],
            ),
        ];
        for (text, want) in cases {
            let got = errors(text);
            assert_eq!(got.len(), want.len(), "{text:?}: {got:?}");
            for (g, w) in got.iter().zip(want) {
                assert!(g.starts_with(w), "{text:?}: got {g:?}, want prefix {w:?}");
            }
        }
    }

    #[test]
    fn each_element_reports_its_own_error() {
        let text = "[[zone]]\nname = \"a b\"\nforward = \"s\"\n\
                    [[zone]]\nname = \"ok\"\nforward = 3\n\
                    [upstreams.x]\nservers = [\"nope\"]\n\
                    [upstreams.y]\nservers = [\"1.1.1.1\"]\nprotocol = \"tcp\"\n";
        let got = errors(text);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(
            got[0].starts_with("z.toml:8:12: upstreams.x: invalid server address"),
            "{got:?}"
        );
        assert!(
            got[1].starts_with("z.toml:11:12: upstreams.y: unknown variant `tcp`"),
            "{got:?}"
        );
        assert!(
            got[2].starts_with("z.toml:2:8: zone[0]: invalid zone name"),
            "{got:?}"
        );
        assert!(
            got[3].starts_with("z.toml:6:11: zone[1]: invalid type"),
            "{got:?}"
        );
    }
}
