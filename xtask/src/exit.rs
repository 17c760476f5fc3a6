//! Exit codes: part of the CLI contract (README "Exit codes"). Every error
//! type maps itself to one of these; nothing else of the crate is used here.

/// A step failed.
pub const FAILED: u8 = 1;
/// Bad input: spec, lock, arguments (the message names file:line:column).
pub const BAD_INPUT: u8 = 2;
/// The Docker engine is unreachable, or the connection to it was lost in
/// the middle of a command.
pub const DOCKER_UNREACHABLE: u8 = 3;
/// A host port is taken.
pub const PORT_TAKEN: u8 = 4;
/// A volume's host source is missing.
pub const VOLUME_MISSING: u8 = 5;
/// GPUs were requested but are not available.
pub const GPU_UNAVAILABLE: u8 = 6;
/// The environment was not ready in time.
pub const NOT_READY: u8 = 7;
/// The regression gate found a regression (or a missing baseline).
pub const REGRESSION: u8 = 8;
