//! The end of every path: one place that counts the response, logs it per the zone's
//! `query_log`, and hands the bytes back to the listener.

use std::time::Instant;

use super::stats::{self, ZoneStats};
use super::{ListenerInfo, Snapshot};
use crate::config::QueryLog;
use crate::metrics::{Label, ResponseLabels, qtype_label, rcode_label};
use crate::policy::Transport;
use crate::request::Request;
use crate::wire::{self, Header};

/// Which step produced the answer (the `plugin` label of `coredns_dns_responses_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Cache,
    Stale,
    Forward,
    Policy,
    Overloaded,
    UpstreamFailed,
    Rejected,
}

impl Outcome {
    /// The index of the `plugin` label in [`stats::PLUGINS`].
    fn plugin(self) -> usize {
        match self {
            Outcome::Cache | Outcome::Stale => 0,
            Outcome::Forward | Outcome::Overloaded | Outcome::UpstreamFailed => 1,
            Outcome::Policy => 2,
            Outcome::Rejected => 3,
        }
    }
}

impl Snapshot {
    /// Counts a request that matched a zone.
    pub(super) fn count_request(&self, stats: &ZoneStats, req: &Request) {
        stats.request(req.transport, req.client.is_ipv4(), req.question.qtype);
        let size = match req.transport {
            Transport::Tcp => 65535.0,
            Transport::Udp => f64::from(req.edns.map_or(512, |e| e.udp_size)),
        };
        stats.request_size(req.transport, size);
        if req.do_bit() {
            stats.do_request();
        }
    }

    /// Counts, logs and returns the reply to a query that matched zone `zi`.
    pub(super) fn finish(
        &self,
        zi: usize,
        stats: &ZoneStats,
        req: &Request,
        reply: Vec<u8>,
        outcome: Outcome,
        started: Instant,
    ) -> Vec<u8> {
        let zone = &self.zones[zi];
        let code = full_rcode(&reply);
        let elapsed = started.elapsed();
        stats.response(code, outcome.plugin());
        stats.duration(req.question.qtype, elapsed.as_secs_f64());
        stats.response_size(req.transport, reply.len() as f64);
        let is_error = !matches!(code, 0 | 3);
        if zone.spec.query_log == QueryLog::Log || is_error {
            log_query(
                req,
                &reply,
                code,
                elapsed,
                zone.spec.query_log == QueryLog::Log,
                outcome,
            );
        }
        reply
    }

    /// Counts a reply to a query that matched no zone (ingress errors, ACL, no zone).
    pub(super) fn rejected(&self, listener: &ListenerInfo, reply: Vec<u8>) -> Vec<u8> {
        let code = full_rcode(&reply);
        self.metrics
            .responses
            .get_or_create(&ResponseLabels {
                server: listener.server.clone(),
                zone: Label::from("dropped"),
                view: Label(listener.view.clone()),
                rcode: rcode_label(code),
                plugin: stats::PLUGINS[Outcome::Rejected.plugin()],
            })
            .inc();
        reply
    }
}

/// The reply's RCODE including the extended bits of its OPT record (BADVERS is 16, not
/// NOERROR); SERVFAIL for a reply without a header. Saturates at 255.
fn full_rcode(reply: &[u8]) -> u8 {
    let Ok(h) = Header::new(reply) else {
        return 2;
    };
    let opt = wire::find_opt(reply).ok().flatten();
    wire::full_rcode(reply, h.rcode(), opt.as_ref())
}

/// One line in CoreDNS's log-plugin format:
/// `{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}`.
fn log_query(
    req: &Request,
    reply: &[u8],
    code: u8,
    elapsed: std::time::Duration,
    every: bool,
    outcome: Outcome,
) {
    let name = wire::name_to_string(&req.question.name);
    let flags = reply_flags(reply);
    let line = format_args!(
        "{} - {} \"{} IN {} {} {} {} {}\" {} {} {} {:.6}s",
        req.client,
        req.id,
        qtype_name(req.question.qtype),
        name,
        stats::proto(req.transport),
        req.size,
        req.do_bit(),
        req.edns.map_or(512, |e| e.udp_size),
        rcode_label(code),
        flags,
        reply.len(),
        elapsed.as_secs_f64(),
    );
    if every {
        tracing::info!(target: "zonegate::query", outcome = ?outcome, "{line}");
    } else {
        tracing::warn!(target: "zonegate::query", outcome = ?outcome, "{line}");
    }
}

fn qtype_name(qtype: u16) -> String {
    match qtype_label(qtype) {
        "other" => format!("TYPE{qtype}"),
        known => known.to_string(),
    }
}

/// `qr,aa,tc,rd,ra` as CoreDNS prints response flags.
fn reply_flags(reply: &[u8]) -> String {
    let (Some(&b2), Some(&b3)) = (reply.get(2), reply.get(3)) else {
        return String::new();
    };
    let names = [
        (b2 & 0x80, "qr"),
        (b2 & 0x04, "aa"),
        (b2 & 0x02, "tc"),
        (b2 & 0x01, "rd"),
        (b3 & 0x80, "ra"),
    ];
    names
        .iter()
        .filter(|(bit, _)| *bit != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_rcode_includes_the_extended_bits() {
        let header = |rcode: u8| vec![0, 1, 0x80, rcode, 0, 0, 0, 0, 0, 0, 0, 0];
        let with_opt = |rcode: u8, ext: u8| {
            let mut r = header(rcode);
            wire::push_opt(&mut r, 1232, ext, false);
            r
        };
        let cases: &[(&str, Vec<u8>, u8)] = &[
            ("plain NOERROR", header(0), 0),
            ("plain REFUSED", header(5), 5),
            ("BADVERS: header 0, extended 1", with_opt(0, 1), 16),
            ("OPT without extended bits", with_opt(3, 0), 3),
            ("no header", vec![0, 1, 0x80], 2),
        ];
        for (what, reply, want) in cases {
            assert_eq!(full_rcode(reply), *want, "{what}");
        }
        assert_eq!(rcode_label(full_rcode(&with_opt(0, 1))), "BADVERS");
    }
}
