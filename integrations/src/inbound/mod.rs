//! Parsers of inbound payloads (what external systems push to warden). Each parser
//! takes the raw body and returns normalized alerts or a reason naming the problem;
//! none of them panics on any input (property-tested).

pub mod alertmanager;
