//! placeholder
pub mod pause;
