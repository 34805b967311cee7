//! Upstream faults under load: outage with serve-stale, slow upstream, misbehaving upstream.
