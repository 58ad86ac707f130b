//! warden's rule engine: Rhai rule files compiled once, checked at load, and
//! evaluated against the store in a sandbox.
//!
//! A rule file registers rules with `rule(name, #{ severity, when: || …, … })`;
//! `when` reads series with PromQL-like functions (`series`, `rate`, `avg_over`,
//! `sum_by`, …) and returns a vector of series or a bool. RULES.md in the project
//! docs holds the semantics; each module's doc says how its part behaves.
//!
//! ```
//! use warden_engine::store::SeriesSet;
//! use warden_rules::RuleEngine;
//!
//! let engine = RuleEngine::new();
//! let file = engine
//!     .compile_source(
//!         "rules/up.rhai".as_ref(),
//!         r#"rule("TargetDown", #{ severity: "critical", when: || series("up") == 0 });"#,
//!     )
//!     .expect("compiles");
//! let eval = engine.evaluate(&file.rules[0], &SeriesSet::new(), 0).expect("runs");
//! assert!(eval.instances.is_empty());
//! ```
//!
//! # Layout
//! - [`engine`]: [`RuleEngine`], the sandbox and its [`Limits`], and the entry points.
//! - `load`: compiling a file, collecting its `rule(...)` calls, validating keys.
//! - [`check`]: `warden rules check`: checks across files, placeholders, `remediate`.
//! - `shape`: which labels a rule's alerts can carry (for the placeholder check).
//! - `lint`: the load-time check for unknown functions and wrong argument counts.
//! - `context`: how the store and `now` reach native functions during a call.
//! - `vector`: the `Vector` and [`Element`] values and their helpers.
//! - `select`: `series()` and the label matcher helpers.
//! - `ops`: comparison and arithmetic operators, `on`/`ignoring`, `and`/`or`/`unless`.
//! - `window`: window functions over history (`rate`, `avg_over`, `absent`, …).
//! - `aggregate`: `sum`, `avg`, … with `_by`/`_without`, `topk`.
//! - `eval`: turning `when`'s result into [`Instance`]s.
//! - [`render`]: annotation templates and value formatting.
//! - `diag`: [`Diagnostic`], `file:line:col` messages and did-you-mean.
//! - `rule`: the public result types ([`RuleFile`], [`Rule`], [`Evaluation`], …).
//! - [`testing`]: rule unit tests (`warden rules test`): test files, simulated time, diffs.
//! - `packs/internal.rhai` and `examples/host/rules/host.rhai`: the built-in rule
//!   packs ([`BUILTIN_INTERNAL_PACK`], [`BUILTIN_HOST_PACK`]).
#![warn(missing_docs)]

mod aggregate;
pub mod check;
mod context;
mod diag;
pub mod engine;
mod eval;
mod lint;
mod load;
mod ops;
pub mod render;
mod rule;
mod select;
mod shape;
pub mod testing;
mod vector;
mod window;

pub use context::ReadCache;
pub use diag::Diagnostic;
pub use engine::{Limits, RuleEngine};
pub use rule::{Evaluation, ExprValue, Instance, Rule, RuleFile};
pub use vector::Element;

/// The built-in host pack (`examples/host/rules/host.rhai`, the same file the
/// host rule pack ships and tests): CPU, memory, disk, swap and load alerts for
/// the machine warden runs on. The embedded default loads it.
pub const BUILTIN_HOST_PACK: &str = include_str!("../../examples/host/rules/host.rhai");

/// The pack about warden itself (`packs/internal.rhai`), always loaded: invalid
/// rule files, failing rules, collectors that are down.
pub const BUILTIN_INTERNAL_PACK: &str = include_str!("../packs/internal.rhai");

/// Every `*.rhai` file named by `paths`: files as given, directories read one
/// level deep, each directory's files sorted.
pub fn rule_files(paths: &[std::path::PathBuf]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                let mut v: Vec<std::path::PathBuf> = rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "rhai") && p.is_file())
                    .collect();
                v.sort();
                out.extend(v);
            }
        } else {
            out.push(p.clone());
        }
    }
    out
}
