//! The data an [`AuthServer`](super::AuthServer) serves, and how one question is answered from it:
//! exact names only (no wildcards), CNAMEs chased inside the zone, RFC 2308 negative answers.

use std::collections::HashMap;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::net::name;

/// Longest CNAME chain followed inside the zone before giving up (loops end here too).
const MAX_CNAME_CHAIN: usize = 8;

/// One RRset: the records of one (name, type), sharing a TTL.
#[derive(Clone, Debug)]
struct RrSet {
    ttl: u32,
    data: Vec<RData>,
}

/// What a question gets: an RCODE and the answer and authority sections.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) rcode: ResponseCode,
    pub(crate) answers: Vec<Record>,
    pub(crate) authorities: Vec<Record>,
}

/// Records of one zone, keyed by lowercase owner name and type.
#[derive(Clone, Debug)]
pub(crate) struct Zone {
    origin: Name,
    soa_ttl: u32,
    negative_ttl: u32,
    negative_soa: bool,
    rrsets: HashMap<(Name, RecordType), RrSet>,
}

impl Zone {
    pub(crate) fn new(origin: Name) -> Self {
        Zone {
            origin: origin.to_lowercase(),
            soa_ttl: 3600,
            negative_ttl: 60,
            negative_soa: true,
            rrsets: HashMap::new(),
        }
    }

    pub(crate) fn set_origin(&mut self, origin: Name) {
        self.origin = origin.to_lowercase();
    }

    pub(crate) fn set_soa_ttl(&mut self, ttl: u32) {
        self.soa_ttl = ttl;
    }

    pub(crate) fn set_negative_ttl(&mut self, ttl: u32) {
        self.negative_ttl = ttl;
    }

    pub(crate) fn set_negative_soa(&mut self, include: bool) {
        self.negative_soa = include;
    }

    /// Adds one record to its RRset; the RRset takes the TTL of the latest record added.
    pub(crate) fn add(&mut self, owner: &Name, ttl: u32, data: RData) {
        let set = self
            .rrsets
            .entry((owner.to_lowercase(), data.record_type()))
            .or_insert(RrSet {
                ttl,
                data: Vec::new(),
            });
        set.ttl = ttl;
        set.data.push(data);
    }

    /// Replaces the RRset of (owner, rtype); an empty `data` removes it.
    pub(crate) fn replace(&mut self, owner: &Name, rtype: RecordType, ttl: u32, data: Vec<RData>) {
        let key = (owner.to_lowercase(), rtype);
        if data.is_empty() {
            self.rrsets.remove(&key);
        } else {
            self.rrsets.insert(key, RrSet { ttl, data });
        }
    }

    /// Changes the TTL of an RRset; false if there is none.
    pub(crate) fn set_ttl(&mut self, owner: &Name, rtype: RecordType, ttl: u32) -> bool {
        match self.rrsets.get_mut(&(owner.to_lowercase(), rtype)) {
            Some(set) => {
                set.ttl = ttl;
                true
            }
            None => false,
        }
    }

    /// Answers one question. Owner names in the answer keep the case of the question.
    pub(crate) fn answer(&self, qname: &Name, qtype: RecordType) -> Answer {
        let lower = qname.to_lowercase();
        if lower.is_root() && qtype == RecordType::NS && !self.has(&lower, RecordType::NS) {
            return positive(vec![root_ns(qname)]);
        }
        if !self.origin.zone_of(&lower) {
            return Answer {
                rcode: ResponseCode::Refused,
                ..Answer::default()
            };
        }
        if lower == self.origin && qtype == RecordType::SOA {
            return positive(vec![self.soa(qname, self.soa_ttl)]);
        }
        let answers = self.chase(qname, qtype);
        if !answers.is_empty() {
            return positive(answers);
        }
        self.negative(&lower)
    }

    /// The records of (qname, qtype), or the CNAME chain from qname and what it leads to.
    fn chase(&self, qname: &Name, qtype: RecordType) -> Vec<Record> {
        let mut answers = Vec::new();
        let mut owner = qname.clone();
        let mut seen = Vec::new();
        for _ in 0..MAX_CNAME_CHAIN {
            if seen.contains(&owner.to_lowercase()) {
                break;
            }
            seen.push(owner.to_lowercase());
            let matching = self.records(&owner, qtype);
            if !matching.is_empty() || qtype == RecordType::CNAME {
                answers.extend(matching);
                break;
            }
            let cname = self.records(&owner, RecordType::CNAME);
            let Some(RData::CNAME(target)) = cname.first().map(|r| r.data.clone()) else {
                break;
            };
            answers.extend(cname);
            owner = target.0;
        }
        answers
    }

    fn records(&self, owner: &Name, qtype: RecordType) -> Vec<Record> {
        let lower = owner.to_lowercase();
        let sets: Vec<&RrSet> = if qtype == RecordType::ANY {
            self.rrsets
                .iter()
                .filter(|((n, _), _)| *n == lower)
                .map(|(_, s)| s)
                .collect()
        } else {
            self.rrsets.get(&(lower, qtype)).into_iter().collect()
        };
        sets.into_iter()
            .flat_map(|set| {
                set.data
                    .iter()
                    .map(|d| Record::from_rdata(owner.clone(), set.ttl, d.clone()))
            })
            .collect()
    }

    /// NODATA when the name owns records or is an empty non-terminal, else NXDOMAIN.
    fn negative(&self, lower: &Name) -> Answer {
        let exists =
            *lower == self.origin || self.rrsets.keys().any(|(owner, _)| lower.zone_of(owner));
        let rcode = if exists {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        // RFC 2308 §3: the SOA's TTL in a negative answer is min(SOA TTL, SOA MINIMUM).
        let authorities = match self.negative_soa {
            true => vec![self.soa(&self.origin, self.soa_ttl.min(self.negative_ttl))],
            false => Vec::new(),
        };
        Answer {
            rcode,
            answers: Vec::new(),
            authorities,
        }
    }

    fn has(&self, lower: &Name, rtype: RecordType) -> bool {
        self.rrsets.contains_key(&(lower.clone(), rtype))
    }

    fn soa(&self, owner: &Name, ttl: u32) -> Record {
        let mname = name("ns.zonegate.test.");
        let rname = name("hostmaster.zonegate.test.");
        let soa = SOA::new(mname, rname, 1, 3600, 600, 86400, self.negative_ttl);
        Record::from_rdata(owner.clone(), ttl, RData::SOA(soa))
    }
}

fn positive(answers: Vec<Record>) -> Answer {
    Answer {
        rcode: ResponseCode::NoError,
        answers,
        authorities: Vec::new(),
    }
}

/// `. NS` is answered even outside the zone: it is what forwarders send as a health probe.
fn root_ns(qname: &Name) -> Record {
    Record::from_rdata(
        qname.clone(),
        86400,
        RData::NS(NS(name("ns.zonegate.test."))),
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::rdata::{A, CNAME};

    use super::*;

    fn zone() -> Zone {
        let mut zone = Zone::new(name("example.test."));
        zone.add(
            &name("www.example.test."),
            300,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
        );
        zone.add(
            &name("alias.example.test."),
            60,
            RData::CNAME(CNAME(name("www.example.test."))),
        );
        zone.add(
            &name("loop.example.test."),
            60,
            RData::CNAME(CNAME(name("loop.example.test."))),
        );
        zone.add(
            &name("a.b.deep.example.test."),
            60,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 9))),
        );
        zone
    }

    #[test]
    fn answers_by_case() {
        // (qname, qtype, rcode, answer count, has SOA in authority)
        let cases = [
            (
                "www.example.test.",
                RecordType::A,
                ResponseCode::NoError,
                1,
                false,
            ),
            (
                "WWW.Example.TEST.",
                RecordType::A,
                ResponseCode::NoError,
                1,
                false,
            ),
            (
                "www.example.test.",
                RecordType::AAAA,
                ResponseCode::NoError,
                0,
                true,
            ),
            (
                "alias.example.test.",
                RecordType::A,
                ResponseCode::NoError,
                2,
                false,
            ),
            (
                "alias.example.test.",
                RecordType::CNAME,
                ResponseCode::NoError,
                1,
                false,
            ),
            (
                "loop.example.test.",
                RecordType::A,
                ResponseCode::NoError,
                1,
                false,
            ),
            (
                "b.deep.example.test.",
                RecordType::A,
                ResponseCode::NoError,
                0,
                true,
            ),
            (
                "nope.example.test.",
                RecordType::A,
                ResponseCode::NXDomain,
                0,
                true,
            ),
            (
                "example.test.",
                RecordType::SOA,
                ResponseCode::NoError,
                1,
                false,
            ),
            (
                "example.test.",
                RecordType::A,
                ResponseCode::NoError,
                0,
                true,
            ),
            (
                "other.test.",
                RecordType::A,
                ResponseCode::Refused,
                0,
                false,
            ),
            (".", RecordType::NS, ResponseCode::NoError, 1, false),
        ];
        let zone = zone();
        for (qname, qtype, rcode, count, soa) in cases {
            let answer = zone.answer(&name(qname), qtype);
            assert_eq!(answer.rcode, rcode, "{qname} {qtype}");
            assert_eq!(answer.answers.len(), count, "{qname} {qtype}");
            assert_eq!(!answer.authorities.is_empty(), soa, "{qname} {qtype}");
        }
    }

    #[test]
    fn answer_keeps_question_case() {
        let answer = zone().answer(&name("WwW.example.test."), RecordType::A);
        assert_eq!(answer.answers[0].name.to_ascii(), "WwW.example.test.");
    }

    #[test]
    fn negative_soa_ttl_is_min_of_ttl_and_minimum() {
        let mut zone = zone();
        zone.set_negative_ttl(30);
        let answer = zone.answer(&name("nope.example.test."), RecordType::A);
        assert_eq!(answer.authorities[0].ttl, 30);
        zone.set_soa_ttl(10);
        let answer = zone.answer(&name("nope.example.test."), RecordType::A);
        assert_eq!(answer.authorities[0].ttl, 10);
        zone.set_negative_soa(false);
        assert!(
            zone.answer(&name("nope.example.test."), RecordType::A)
                .authorities
                .is_empty()
        );
    }

    #[test]
    fn replace_and_set_ttl_change_answers() {
        let mut zone = zone();
        let www = name("www.example.test.");
        assert!(zone.set_ttl(&www, RecordType::A, 5));
        assert_eq!(zone.answer(&www, RecordType::A).answers[0].ttl, 5);
        let two = vec![
            RData::A(A(Ipv4Addr::new(192, 0, 2, 2))),
            RData::A(A(Ipv4Addr::new(192, 0, 2, 3))),
        ];
        zone.replace(&www, RecordType::A, 7, two);
        assert_eq!(zone.answer(&www, RecordType::A).answers.len(), 2);
        zone.replace(&www, RecordType::A, 7, Vec::new());
        assert_eq!(
            zone.answer(&www, RecordType::A).rcode,
            ResponseCode::NXDomain
        );
    }
}
