//! Command-line interface: clap definitions and dispatch to the pod layer. Thin by design.
pub mod network;
