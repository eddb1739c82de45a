//! The single integration test binary: the real daemon against the simulator on 127.0.0.1.
//!
//! `support` starts daemons and scrapes them; each other module covers one area. Nothing here
//! reaches beyond 127.0.0.1, and every wait is bounded.

mod support;

mod blame;
mod browser;
mod canary;
mod cardinality;
mod config_table;
mod connections;
mod daemon;
mod descriptors;
mod exposition;
mod failures;
mod faults;
mod files;
mod layout;
mod limits;
mod logs;
mod politeness;
mod profiles;
mod resources;
mod router;
mod scrape;
mod service;
mod sim_personalities;
mod sim_writes;
mod soak;
mod status_api;
mod web;
mod write_path;
