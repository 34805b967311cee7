#!/usr/bin/env python3
"""Writes the seed corpora under host/fuzz/corpus/<target>/ (small, committed).

Real messages, built by hand so the seeds need nothing but Python: queries as clients send
them, responses as upstreams send them (compressed names, CNAME chains, SOA negatives, OPT),
framed TCP streams, and the project's own config files. Run from anywhere:
`python3 host/fuzz/seeds.py`.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def name(text):
    out = b""
    for label in [l for l in text.split(".") if l]:
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def header(id_, flags, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", id_, flags, qd, an, ns, ar)


def opt(size=1232, version=0, do=False, ext=0):
    return b"\x00" + struct.pack(">HHBBHH", 41, size, ext, version, 0x8000 if do else 0, 0)


def question(qname, qtype=1, qclass=1):
    return name(qname) + struct.pack(">HH", qtype, qclass)


def rr(owner, rtype, ttl, rdata, rclass=1):
    return owner + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata)) + rdata


PTR_Q = b"\xc0\x0c"  # the question's name


def soa(ttl=300, minimum=60):
    rdata = name("ns1.example.com") + name("hostmaster.example.com")
    rdata += struct.pack(">IIIII", 2024010101, 7200, 900, 1209600, minimum)
    return rr(name("example.com"), 6, ttl, rdata)


QUERIES = {
    "a": header(0x1234, 0x0100) + question("www.example.com"),
    "a-edns-do": header(0x1235, 0x0100, ar=1) + question("WwW.Example.COM") + opt(4096, do=True),
    "aaaa-cluster": header(7, 0x0110, ar=1) + question("kubernetes.default.svc.cluster.local", 28) + opt(512),
    "root-ns": header(8, 0x0000) + question(".", 2),
    "ptr-compressed": header(9, 0x0100) + b"\xc0\x04" + struct.pack(">HH", 12, 1),
    "two-questions": header(10, 0x0100, qd=2) + question("a.example") + question("b.example"),
    "chaos": header(11, 0x0100) + question("version.bind", 16, 3),
    "notify": header(12, 0x2000) + question("example.com", 6),
    "edns-v1": header(13, 0x0100, ar=1) + question("x.example") + opt(1232, version=1),
    "two-opt": header(14, 0x0100, ar=2) + question("x.example") + opt() + opt(),
    "long-name": header(15, 0x0100) + question(".".join(["a" * 63] * 3 + ["b" * 61])),
    "axfr": header(16, 0x0000) + question("example.com", 252),
}


def responses():
    q = question("www.example.com")
    a = rr(PTR_Q, 1, 300, bytes([192, 0, 2, 1]))
    out = {
        "a": header(0x1234, 0x8180, an=1) + q + a,
        "a-opt-do": header(0x1234, 0x81a0, an=2, ar=1) + q + a
        + rr(PTR_Q, 1, 60, bytes([192, 0, 2, 2])) + opt(1232, do=True),
        "cname-chain": header(1, 0x8180, an=2) + question("alias.example.com")
        + rr(PTR_Q, 5, 120, name("www.example.com")) + rr(b"\xc0\x2f", 1, 30, bytes([10, 0, 0, 1])),
        "nxdomain-soa": header(2, 0x8183, ns=1, ar=1) + question("nope.example.com") + soa() + opt(),
        "nodata-soa": header(3, 0x8180, ns=1) + question("www.example.com", 28) + soa(3600, 5),
        "nxdomain-no-soa": header(4, 0x8183) + question("nope.example.com"),
        "servfail": header(5, 0x8182, ar=1) + q + opt(),
        "truncated": header(6, 0x8380) + q,
        "zero-ttl": header(7, 0x8180, an=1) + q + rr(PTR_Q, 1, 0, bytes([192, 0, 2, 9])),
        "aaaa": header(8, 0x8180, an=1) + question("v6.example.com", 28)
        + rr(PTR_Q, 28, 86400, bytes(range(16))),
        "txt": header(9, 0x8180, an=1) + question("t.example.com", 16)
        + rr(PTR_Q, 16, 50, b"\x05hello\x05world"),
        "badvers": header(10, 0x8180, ar=1) + q + opt(1232, ext=1),
    }
    # One control byte in front (see fuzz_targets/upstream_response.rs): vary it.
    return {k: bytes([i * 37 % 256]) + v for i, (k, v) in enumerate(out.items())}


def framed(*msgs):
    return b"".join(struct.pack(">H", len(m)) + m for m in msgs)


def write(target, items):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for key, data in items.items():
        with open(os.path.join(d, key), "wb") as f:
            f.write(data)


def read(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


def main():
    write("query_ingress", QUERIES)
    write("upstream_response", responses())
    qs = list(QUERIES.values())
    write("tcp_framing", {
        "pipelined": b"\x12\x34" + framed(*qs[:4]),
        "empty-frame": b"\x00\x01" + framed(b"", qs[0]),
        "partial": b"\xff\xff" + framed(qs[1]) + b"\x00\x40" + qs[2][:10],
        "bogus-length": b"\x00\x07" + b"\xff\xff" + qs[0],
    })
    write("config_toml", {
        "default": read("host/src/config/default.toml"),
        "reference": read("docs/config-reference.toml"),
        "rich": read("host/src/config/testdata/rich.toml"),
    })
    write("aks_json", {
        "overlay": read("deploy/kubernetes/overlays/aks-localdns/localdnsconfig.json"),
        "round-trip": read("host/src/config/testdata/round-trip.json"),
        "empty": b"{}",
    })


if __name__ == "__main__":
    main()
