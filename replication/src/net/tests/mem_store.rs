//! An in-memory log store and state machine (placeholder).
