//! The harness's JSON reports (`harness eval --json PATH`, `harness cuda
//! --json`) as the gate reads them: the `report` crate's types and parsers,
//! shared with the harness that writes them. Re-exports only.
//!
//! May use: nothing else of the crate.

pub use ::report::{
    parse_cuda, parse_eval, CudaReport, EvalReport, FailedSample, Metrics, Prediction,
    SampleResult, Settings, Versions, SCHEMA_VERSION,
};
