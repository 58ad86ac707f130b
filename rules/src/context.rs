//! How the store and the clock reach the native functions while a rule runs.
//!
//! Native functions are registered once per [`RuleEngine`](crate::RuleEngine), but
//! the store (`&dyn SeriesQuery`) and `now` change with every evaluation, and Rhai
//! gives a native function no borrowed per-call state. So [`EvalCx::enter`] puts a
//! pointer to the evaluation's context into a thread-local for exactly the
//! duration of one synchronous Rhai call, and the guard it returns puts the
//! previous value back when dropped (also on unwind). Rhai runs a call on the
//! calling thread and never hands values to other threads, so every native
//! function that reads the context runs while the guard, and therefore the
//! context it points to, is alive. [`with_eval`] only lends the context to a
//! closure that cannot keep the reference.
//!
//! The time budget works the same way: [`DEADLINE`] holds the instant the running
//! call must end by, and the engine's `on_progress` hook reads it.
//!
//! Loading a file uses a second, safe thread-local ([`LoadCx`]) that collects the
//! `rule(...)` calls of the file's top level.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rhai::EvalAltResult;
use warden_engine::model::{MetricName, Timestamp};
use warden_engine::ports::SeriesQuery;

use crate::diag::Diagnostic;
use crate::load::RuleDraft;
use crate::vector::Element;

thread_local! {
    /// The running evaluation's [`EvalCx`], type- and lifetime-erased; null when none.
    static EVAL: Cell<*const ()> = const { Cell::new(std::ptr::null()) };
    /// When the running Rhai call must stop.
    pub(crate) static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The file being loaded, if any.
    static LOAD: RefCell<Option<LoadCx>> = const { RefCell::new(None) };
}

/// Store reads shared by rules evaluated in one cycle (see
/// [`RuleEngine::evaluate_with`](crate::RuleEngine::evaluate_with)): each
/// selection, and each window function over a selection, is read once per `now`,
/// and every rule sees the same snapshot of it. Make one per cycle and drop it
/// after: it holds what it read until then.
#[derive(Default)]
pub struct ReadCache(RefCell<HashMap<String, Arc<Vec<Element>>>>);

impl ReadCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many reads it holds.
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    /// True when it holds no read.
    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReadCache({} reads)", self.len())
    }
}

/// What native functions need during one evaluation.
pub(crate) struct EvalCx<'q> {
    /// The store.
    pub query: &'q dyn SeriesQuery,
    /// The evaluation time (unix ms).
    pub now: Timestamp,
    /// Reads shared with the other rules of the cycle.
    cache: &'q ReadCache,
    /// Every metric name the rule asked for, for [`Evaluation::metrics_read`](crate::Evaluation).
    touched: RefCell<BTreeSet<MetricName>>,
}

impl<'q> EvalCx<'q> {
    /// A context over `query` as of `now`, sharing reads through `cache`.
    pub fn new(query: &'q dyn SeriesQuery, now: Timestamp, cache: &'q ReadCache) -> Self {
        Self {
            query,
            now,
            cache,
            touched: RefCell::new(BTreeSet::new()),
        }
    }

    /// The elements cached under `key` (for this `now`), computing them with
    /// `read` on a miss.
    pub fn cached(
        &self,
        key: String,
        read: impl FnOnce() -> Result<Vec<Element>, Box<EvalAltResult>>,
    ) -> Result<Arc<Vec<Element>>, Box<EvalAltResult>> {
        let key = format!("{key} at {}", self.now);
        if let Some(hit) = self.cache.0.borrow().get(&key) {
            return Ok(hit.clone());
        }
        // `read` may call back into the context (never into the cache), so the
        // cache is not borrowed while it runs.
        let value = Arc::new(read()?);
        self.cache.0.borrow_mut().insert(key, value.clone());
        Ok(value)
    }

    /// Makes this context the current one until the guard is dropped.
    pub fn enter(&self, deadline: Instant) -> EvalGuard<'_> {
        let prev = EVAL.replace(self as *const EvalCx<'q> as *const ());
        let prev_deadline = DEADLINE.replace(Some(deadline));
        EvalGuard {
            prev,
            prev_deadline,
            _cx: PhantomData,
        }
    }

    /// Records that the rule read `metric`.
    pub fn touch(&self, metric: &MetricName) {
        let mut t = self.touched.borrow_mut();
        if !t.contains(metric) {
            t.insert(metric.clone());
        }
    }

    /// The metrics read so far, sorted.
    pub fn touched(&self) -> Vec<MetricName> {
        self.touched.borrow().iter().cloned().collect()
    }
}

/// Keeps an [`EvalCx`] current; restores the previous one when dropped.
pub(crate) struct EvalGuard<'a> {
    prev: *const (),
    prev_deadline: Option<Instant>,
    _cx: PhantomData<&'a ()>,
}

impl Drop for EvalGuard<'_> {
    fn drop(&mut self) {
        EVAL.set(self.prev);
        DEADLINE.set(self.prev_deadline);
    }
}

/// Runs `f` with the current evaluation context, or fails with a message naming
/// `what` when no rule is being evaluated (for example at a file's top level).
pub(crate) fn with_eval<R>(
    what: &str,
    f: impl FnOnce(&EvalCx<'_>) -> R,
) -> Result<R, Box<EvalAltResult>> {
    let p = EVAL.get();
    if p.is_null() {
        return Err(format!(
            "{what}() reads the store, so it can only run inside a rule's `when` (or an expression being evaluated), not at a file's top level"
        )
        .into());
    }
    // SAFETY: `p` was stored by `EvalCx::enter` from a live `&EvalCx`, and the
    // `EvalGuard` that borrows that context resets the pointer before the borrow
    // ends, so a non-null `p` points to a live context on this thread. `f` is
    // higher-ranked over the reference's lifetime, so it cannot keep it.
    let cx = unsafe { &*(p as *const EvalCx<'_>) };
    Ok(f(cx))
}

/// What the `rule(...)` calls of a file being loaded collect.
pub(crate) struct LoadCx {
    /// The file, for diagnostics.
    pub file: PathBuf,
    /// Rules accepted so far, in file order.
    pub rules: Vec<RuleDraft>,
    /// Problems found so far.
    pub diags: Vec<Diagnostic>,
}

/// Keeps a [`LoadCx`] current; [`LoadGuard::finish`] takes it back.
pub(crate) struct LoadGuard {
    prev_deadline: Option<Instant>,
}

impl LoadGuard {
    /// Starts loading `file`; `rule(...)` calls are collected until `finish`.
    pub fn enter(file: PathBuf, deadline: Instant) -> Self {
        LOAD.set(Some(LoadCx {
            file,
            rules: Vec::new(),
            diags: Vec::new(),
        }));
        let prev_deadline = DEADLINE.replace(Some(deadline));
        Self { prev_deadline }
    }

    /// Ends loading and returns what was collected.
    pub fn finish(self) -> Option<LoadCx> {
        LOAD.take()
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        LOAD.set(None);
        DEADLINE.set(self.prev_deadline);
    }
}

/// Runs `f` with the file being loaded, or `None` when no file is being loaded.
pub(crate) fn with_load<R>(f: impl FnOnce(&mut LoadCx) -> R) -> Option<R> {
    LOAD.with(|l| l.borrow_mut().as_mut().map(f))
}

/// True when the running Rhai call is past its deadline.
pub(crate) fn past_deadline() -> bool {
    DEADLINE.get().is_some_and(|d| Instant::now() > d)
}
