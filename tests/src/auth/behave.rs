//! What the server does with one message read from a socket: count it, pick the behaviour, and
//! build the reply bytes. Transport-independent; `serve` does the I/O.

use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};

use super::zone::Answer;
use super::{Behaviour, EdnsInfo, QueryInfo, State, Stats, Transport};
use crate::net::name;

/// Most we send over UDP, whatever the requester advertises.
const MAX_UDP_PAYLOAD: u16 = 4096;
/// The UDP payload size we advertise in our own OPT record.
const OUR_UDP_PAYLOAD: u16 = 1232;
/// The question name of [`Behaviour::WrongQuestion`] answers.
const WRONG_QUESTION: &str = "wrong-question.zonegate.test.";

/// What to send back for one message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Nothing.
    Ignore,
    /// These bytes (one datagram, or one TCP frame without its length prefix).
    Reply(Vec<u8>),
    /// These bytes after this long.
    Delayed(Duration, Vec<u8>),
    /// Reset the TCP connection.
    Reset,
}

pub(super) fn plan(state: &mut State, bytes: &[u8], transport: Transport) -> Plan {
    state.stats.total += 1;
    *state.stats.by_transport.entry(transport).or_default() += 1;
    if transport == Transport::Udp && !state.up {
        return Plan::Ignore;
    }
    let Ok(query) = Message::from_vec(bytes) else {
        return formerr_from_header(bytes).map_or(Plan::Ignore, Plan::Reply);
    };
    if query.message_type == MessageType::Response {
        return Plan::Ignore;
    }
    if query.op_code != OpCode::Query {
        return reply(
            &query,
            respond(&query, ResponseCode::NotImp.into()),
            transport,
        );
    }
    let [question] = query.queries.as_slice() else {
        return reply(
            &query,
            respond(&query, ResponseCode::FormErr.into()),
            transport,
        );
    };
    state.stats.count(&query, transport);
    let lower = question.name.to_lowercase();
    let behaviour = state.per_name.get(&lower).copied().unwrap_or(state.global);
    let answer = || {
        respond(
            &query,
            state.zone.answer(&question.name, question.query_type),
        )
    };
    match (behaviour, transport) {
        (Behaviour::Drop, _) => Plan::Ignore,
        (Behaviour::Delay(delay), _) => match reply(&query, answer(), transport) {
            Plan::Reply(bytes) => Plan::Delayed(delay, bytes),
            other => other,
        },
        (Behaviour::Truncate, Transport::Udp) => encode(&truncated(&query)),
        (Behaviour::ServFail, _) => reply(
            &query,
            respond(&query, ResponseCode::ServFail.into()),
            transport,
        ),
        (Behaviour::Refused, _) => reply(
            &query,
            respond(&query, ResponseCode::Refused.into()),
            transport,
        ),
        (Behaviour::WrongId, _) => {
            let mut message = answer();
            message.metadata.id = query.id.wrapping_add(1);
            reply(&query, message, transport)
        }
        (Behaviour::WrongQuestion, _) => {
            let mut message = answer();
            message.queries[0].name = name(WRONG_QUESTION);
            reply(&query, message, transport)
        }
        (Behaviour::Garbage, _) => Plan::Reply(garbage(query.id)),
        (Behaviour::CloseTcp, Transport::Tcp) => Plan::Reset,
        (Behaviour::Answer | Behaviour::Truncate | Behaviour::CloseTcp, _) => {
            reply(&query, answer(), transport)
        }
    }
}

impl Stats {
    fn count(&mut self, query: &Message, transport: Transport) {
        let question = &query.queries[0];
        let lower = question.name.to_lowercase();
        *self
            .by_question
            .entry((lower.clone(), question.query_type))
            .or_default() += 1;
        let edns = query.edns.as_ref().map(|edns| EdnsInfo {
            udp_size: edns.max_payload(),
            dnssec_ok: edns.flags().dnssec_ok,
            version: edns.version(),
        });
        let info = QueryInfo {
            transport,
            qtype: question.query_type,
            recursion_desired: query.recursion_desired,
            checking_disabled: query.checking_disabled,
            edns,
            message: query.clone(),
        };
        self.last.insert(lower, info);
    }
}

impl From<ResponseCode> for Answer {
    fn from(rcode: ResponseCode) -> Self {
        Answer {
            rcode,
            ..Answer::default()
        }
    }
}

/// A response to `query`: its question as received, AA, RD/CD copied, and an OPT record when the
/// query had one (with the DO bit copied, RFC 3225).
fn respond(query: &Message, answer: Answer) -> Message {
    let mut message = Message::new(query.id, MessageType::Response, query.op_code);
    message.metadata = Metadata::response_from_request(&query.metadata);
    message.metadata.authoritative = true;
    // Forwarders normally talk to recursive resolvers; answering like one keeps RA checks honest.
    message.metadata.recursion_available = query.recursion_desired;
    message.metadata.response_code = answer.rcode;
    message.add_queries(query.queries.iter().cloned());
    message.add_answers(answer.answers);
    message.add_authorities(answer.authorities);
    if let Some(edns) = &query.edns {
        let mut ours = Edns::new();
        ours.set_max_payload(OUR_UDP_PAYLOAD);
        ours.set_dnssec_ok(edns.flags().dnssec_ok);
        message.set_edns(ours);
    }
    message
}

/// The answer with no records and TC=1: what a server sends when the answer does not fit.
fn truncated(query: &Message) -> Message {
    let mut message = respond(query, Answer::default());
    message.metadata.truncation = true;
    message
}

/// Encodes a response, truncating it over UDP if it exceeds the requester's payload size.
fn reply(query: &Message, message: Message, transport: Transport) -> Plan {
    let Plan::Reply(bytes) = encode(&message) else {
        return Plan::Ignore;
    };
    let limit = query
        .edns
        .as_ref()
        .map_or(512, |edns| edns.max_payload().clamp(512, MAX_UDP_PAYLOAD));
    if transport == Transport::Udp && bytes.len() > usize::from(limit) {
        return encode(&truncated(query));
    }
    Plan::Reply(bytes)
}

fn encode(message: &Message) -> Plan {
    match message.to_vec() {
        Ok(bytes) => Plan::Reply(bytes),
        Err(e) => {
            tracing::warn!("AuthServer cannot encode its answer: {e}");
            Plan::Ignore
        }
    }
}

/// FORMERR for a query that does not parse but has a header; nothing for shorter messages or
/// responses.
fn formerr_from_header(bytes: &[u8]) -> Option<Vec<u8>> {
    let header = bytes.get(..12)?;
    if header[2] & 0x80 != 0 {
        return None;
    }
    let mut reply = vec![0; 12];
    reply[..2].copy_from_slice(&header[..2]);
    reply[2] = 0x80 | (header[2] & 0x78); // QR, the opcode of the query
    reply[3] = ResponseCode::FormErr.low();
    Some(reply)
}

/// A response header with the query's id and QUERY opcode claiming a question and answers, then
/// fewer than the 5 bytes the smallest question needs: it never parses.
fn garbage(id: u16) -> Vec<u8> {
    let mut bytes = vec![0u8; 12 + rand::random_range(0..5)];
    rand::fill(&mut bytes[2..]);
    bytes[..2].copy_from_slice(&id.to_be_bytes());
    bytes[2] = (bytes[2] | 0x80) & !0x78;
    bytes[4..6].copy_from_slice(&1u16.to_be_bytes());
    bytes[6] |= 0x01;
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_never_parses_and_keeps_the_id() {
        for id in 0..200u16 {
            let bytes = garbage(id);
            assert_eq!(u16::from_be_bytes([bytes[0], bytes[1]]), id);
            assert!(Message::from_vec(&bytes).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn formerr_only_for_queries_with_a_header() {
        assert_eq!(formerr_from_header(&[0; 11]), None);
        let mut response = [0u8; 12];
        response[2] = 0x80;
        assert_eq!(formerr_from_header(&response), None);
        let reply =
            formerr_from_header(&[0xab, 0xcd, 0x01, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0]).unwrap();
        let message = Message::from_vec(&reply).unwrap();
        assert_eq!(
            (message.id, message.response_code),
            (0xabcd, ResponseCode::FormErr)
        );
    }
}
