//! [`RuleEngine`]: the sandboxed Rhai engine with warden's functions, and the entry
//! points that compile and evaluate rules.
//!
//! The sandbox: Rhai has no file, network or process access unless it is
//! registered, and none is; `eval` and `import` are disabled and modules cannot be
//! resolved; variables must be declared (strict mode); operations, call depth,
//! expression depth and string/array/map sizes are bounded; and every call runs
//! under a wall-clock budget checked from Rhai's progress hook. Map sizes are also
//! checked wherever a map reaches Rust, because Rhai does not check `m[k] = v`.
//! The budget is checked between Rhai operations, so one native call (a large
//! store read) runs to its end before the rule is stopped.
//! `print` and `debug` go to `tracing` (target `warden_rules::script`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, module_resolvers::DummyModuleResolver};
use warden_engine::model::Timestamp;
use warden_engine::ports::SeriesQuery;

use crate::context::{EvalCx, ReadCache, past_deadline};
use crate::diag::{Diagnostic, Phase};
use crate::eval::{instances, outcome};
use crate::lint::KnownFns;
use crate::rule::{Evaluation, ExprValue, Rule, RuleFile};
use crate::{aggregate, load, ops, select, vector, window};

/// The sandbox's bounds. The defaults suit rules evaluated every few seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Rhai operations per call (default 1,000,000).
    pub max_operations: u64,
    /// Nested function calls (default 32).
    pub max_call_levels: usize,
    /// Expression nesting at top level and inside functions (default 64 and 32).
    pub max_expr_depths: (usize, usize),
    /// Bytes in a string (default 64 KiB).
    pub max_string_size: usize,
    /// Items in an array (default 100,000).
    pub max_array_size: usize,
    /// Entries in a map (default 10,000).
    pub max_map_size: usize,
    /// Wall-clock time one evaluation of a rule may take (default 250 ms).
    pub time_budget: Duration,
    /// Wall-clock time a file's top level may take while loading (default 1 s).
    pub load_budget: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 1_000_000,
            max_call_levels: 32,
            max_expr_depths: (64, 32),
            max_string_size: 64 * 1024,
            max_array_size: 100_000,
            max_map_size: 10_000,
            time_budget: Duration::from_millis(250),
            load_budget: Duration::from_secs(1),
        }
    }
}

/// How often (in Rhai operations) the progress hook looks at the clock.
const CLOCK_EVERY_OPS: u64 = 256;

/// Compiles and evaluates rule files. `Send + Sync`: share one per daemon.
pub struct RuleEngine {
    pub(crate) engine: Engine,
    pub(crate) known: KnownFns,
    pub(crate) limits: Limits,
}

impl Default for RuleEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl RuleEngine {
    /// An engine with the default [`Limits`].
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// An engine with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        let mut e = Engine::new();
        e.set_max_operations(limits.max_operations)
            .set_max_call_levels(limits.max_call_levels)
            .set_max_expr_depths(limits.max_expr_depths.0, limits.max_expr_depths.1)
            .set_max_string_size(limits.max_string_size)
            .set_max_array_size(limits.max_array_size)
            .set_max_map_size(limits.max_map_size)
            .set_max_variables(1024)
            .set_max_modules(0)
            .set_strict_variables(true)
            .set_module_resolver(DummyModuleResolver::new())
            .disable_symbol("eval")
            .disable_symbol("import")
            .disable_symbol("export");
        e.on_print(|s| tracing::info!(target: "warden_rules::script", "{s}"))
            .on_debug(|s, _src, pos| tracing::debug!(target: "warden_rules::script", "{s} ({pos})"))
            .on_progress(|ops| {
                (ops % CLOCK_EVERY_OPS == 0 && past_deadline()).then_some(Dynamic::UNIT)
            });
        vector::register(&mut e);
        select::register(&mut e, limits.max_map_size);
        ops::register(&mut e);
        window::register(&mut e);
        aggregate::register(&mut e);
        load::register(&mut e, limits.max_map_size);
        let known = KnownFns::of(&e);
        Self {
            engine: e,
            known,
            limits,
        }
    }

    /// The limits this engine enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles one rule file: compile once, check the calls, run the top level
    /// once to collect its `rule(name, #{...})` calls.
    pub fn compile_file(&self, path: &Path) -> Result<RuleFile, Vec<Diagnostic>> {
        let src = std::fs::read_to_string(path).map_err(|e| {
            vec![Diagnostic {
                file: path.to_path_buf(),
                line: 0,
                col: 0,
                rule: None,
                message: format!("cannot read the file: {e}"),
            }]
        })?;
        self.compile_source(path, &src)
    }

    /// Compiles rule-file text; `path` names it in diagnostics and on its rules.
    pub fn compile_source(&self, path: &Path, src: &str) -> Result<RuleFile, Vec<Diagnostic>> {
        load::compile(self, path, src)
    }

    /// Evaluates `rule`'s `when` against `query` as of `now` (unix ms), on the
    /// calling thread, within the time budget.
    pub fn evaluate(
        &self,
        rule: &Rule,
        query: &dyn SeriesQuery,
        now: Timestamp,
    ) -> Result<Evaluation, Diagnostic> {
        self.evaluate_with(rule, query, now, &ReadCache::new())
    }

    /// Evaluates several rules as of the same `now`, sharing their store reads
    /// (see [`evaluate_with`](Self::evaluate_with)).
    pub fn evaluate_many(
        &self,
        rules: &[Arc<Rule>],
        query: &dyn SeriesQuery,
        now: Timestamp,
    ) -> Vec<Result<Evaluation, Diagnostic>> {
        let cache = ReadCache::new();
        rules
            .iter()
            .map(|r| self.evaluate_with(r, query, now, &cache))
            .collect()
    }

    /// Like [`evaluate`](Self::evaluate), reading the store through `cache`: the
    /// rules of one cycle that share a cache read each selection, and each window
    /// function over one, once for all of them, and all see the same snapshot. With
    /// many rules over the same metrics this is several times faster. Each rule
    /// still has its own time budget.
    pub fn evaluate_with(
        &self,
        rule: &Rule,
        query: &dyn SeriesQuery,
        now: Timestamp,
        cache: &ReadCache,
    ) -> Result<Evaluation, Diagnostic> {
        let fail = |e: &rhai::EvalAltResult| {
            Diagnostic::from_eval(&rule.file, Some(&rule.name), e, &self.limits, Phase::Eval)
                .or_at(rule.line, rule.col)
        };
        let at_rule = |msg: String| Diagnostic {
            file: rule.file.clone(),
            line: rule.line,
            col: rule.col,
            rule: Some(rule.name.clone()),
            message: msg,
        };
        let cx = EvalCx::new(query, now, cache);
        let result = {
            let _guard = cx.enter(Instant::now() + self.limits.time_budget);
            rule.when
                .call::<Dynamic>(&self.engine, &rule.ast, ())
                .and_then(|v| outcome(v, self.limits.max_array_size))
        };
        let result = result.map_err(|e| fail(&e))?;
        Ok(Evaluation {
            instances: instances(rule, result).map_err(at_rule)?,
            metrics_read: cx.touched(),
        })
    }

    /// Evaluates a Rhai expression (or a short script) against `query` as of
    /// `now`, for expression tests and a query console. Diagnostics name the file
    /// `<expr>`.
    pub fn eval_expr(
        &self,
        src: &str,
        query: &dyn SeriesQuery,
        now: Timestamp,
    ) -> Result<ExprValue, Diagnostic> {
        let file = PathBuf::from("<expr>");
        let ast = self
            .engine
            .compile(src)
            .map_err(|e| Diagnostic::from_parse(&file, src, &e))?;
        if let Some(d) = crate::lint::check(&ast, &self.known, &file)
            .into_iter()
            .next()
        {
            return Err(d);
        }
        let cache = ReadCache::new();
        let cx = EvalCx::new(query, now, &cache);
        let _guard = cx.enter(Instant::now() + self.limits.time_budget);
        self.engine
            .eval_ast::<Dynamic>(&ast)
            .and_then(|v| outcome(v, self.limits.max_array_size))
            .map(ExprValue::from)
            .map_err(|e| Diagnostic::from_eval(&file, None, &e, &self.limits, Phase::Eval))
    }
}
