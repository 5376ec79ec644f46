//! Three Raft nodes over the transport (placeholder).
