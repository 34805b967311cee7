//! Exposure: client ACL, per-client rate limit, TCP limits under slow clients.
