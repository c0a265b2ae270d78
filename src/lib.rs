//! taskbench: publish real Celery task messages through selectable code paths and measure each one.
//!
//! The modules form layers that import downward only (ARCHITECTURE.md has the map, and
//! `tests/layers.rs` keeps it): the shared words (`catalog`, `endpoint`, `error`, `human`, `message`,
//! `settle`, `stage`, `facts`) -> `scenario` -> `record` -> `engine` -> `sink` -> `backend` -> `summary` ->
//! `profile` -> `run` -> `report` -> `cli`.

pub mod backend;
pub mod catalog;
pub mod cli;
pub mod endpoint;
pub mod engine;
pub mod error;
pub mod facts;
pub mod human;
pub mod message;
pub mod profile;
pub mod record;
pub mod report;
pub mod run;
pub mod scenario;
pub mod settle;
pub mod sink;
pub mod stage;
pub mod summary;
