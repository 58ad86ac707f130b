//! End-to-end tests of the `warden` binary: each starts the real daemon on a free
//! loopback port with a temporary config, rule files and store, and talks to it over
//! HTTP and through its console output.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step should fail the test

mod api_auth;
mod cli;
mod databases;
mod fixtures;
mod harness;
mod lifecycle;
mod notifications;
mod probes;
mod remediation;
mod storm;
