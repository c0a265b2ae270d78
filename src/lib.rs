//! taskbench: publish real Celery task messages through selectable code paths and measure each one.
//!
//! Flow: `scenario` (parse, check, plan) -> `backend` (a publisher per backend x path) -> `engine`
//! (closed/open loop, one sample per publish) -> `record` (HDR histograms, errors) -> `report` (table,
//! summary.json, .hgrm). `cli` wires them to the command line.

pub mod backend;
pub mod cli;
pub mod engine;
pub mod message;
pub mod profile;
pub mod record;
pub mod report;
pub mod scenario;
pub mod sink;
pub mod stage;
