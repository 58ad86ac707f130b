//! Which labels a rule's alerts can carry, found by reading its `when` closure,
//! so `warden rules check` can tell a placeholder that names a label no alert will
//! ever have (`{{mountpoint}}` after `sum_by(v, ["instance"])`).
//!
//! The analysis is deliberately conservative: it only concludes anything from
//! forms whose labels are certain (an aggregation with a literal label list, a
//! bool or number, `absent(series(...))`, `without_label`, …) and answers "any
//! label" for everything else (a plain `series()`, loops, helper closures held in
//! variables), so it never reports a placeholder that could be filled.

use std::collections::{BTreeSet, HashMap};

use rhai::{AST, Expr, FnCallExpr, Map, Stmt, StmtBlock};

/// The labels an alert instance can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Any label may be there.
    Any,
    /// Exactly these labels, at most.
    Exactly(BTreeSet<String>),
    /// Any label but these.
    Without(BTreeSet<String>),
}

impl Shape {
    fn none() -> Self {
        Shape::Exactly(BTreeSet::new())
    }

    /// A value that may have either shape.
    fn union(self, other: Shape) -> Shape {
        match (self, other) {
            (Shape::Exactly(a), Shape::Exactly(b)) => Shape::Exactly(&a | &b),
            (Shape::Without(a), Shape::Without(b)) => Shape::Without(&a & &b),
            (Shape::Without(a), Shape::Exactly(b)) | (Shape::Exactly(b), Shape::Without(a)) => {
                Shape::Without(&a - &b)
            }
            _ => Shape::Any,
        }
    }

    fn with(self, label: &str) -> Shape {
        match self {
            Shape::Exactly(mut s) => {
                s.insert(label.to_string());
                Shape::Exactly(s)
            }
            Shape::Without(mut s) => {
                s.remove(label);
                Shape::Without(s)
            }
            Shape::Any => Shape::Any,
        }
    }

    fn without(self, labels: &BTreeSet<String>) -> Shape {
        match self {
            Shape::Exactly(s) => Shape::Exactly(&s - labels),
            Shape::Without(s) => Shape::Without(&s | labels),
            Shape::Any => Shape::Without(labels.clone()),
        }
    }

    /// True when an instance can never carry `label`.
    pub fn lacks(&self, label: &str) -> bool {
        match self {
            Shape::Any => false,
            Shape::Exactly(s) => !s.contains(label),
            Shape::Without(s) => s.contains(label),
        }
    }
}

const AGGREGATIONS: [&str; 6] = ["sum", "min", "max", "avg", "count", "stddev"];
const COMPARISONS_AND_ARITHMETIC: [&str; 11] =
    [">", "<", ">=", "<=", "==", "!=", "+", "-", "*", "/", "%"];
/// Functions whose result has the labels of their first argument.
const KEEP_FIRST: [&str; 25] = [
    "avg_over",
    "min_over",
    "max_over",
    "sum_over",
    "count_over",
    "stddev_over",
    "last_over",
    "changes",
    "resets",
    "deriv",
    "delta",
    "increase",
    "rate",
    "irate",
    "quantile_over",
    "predict_linear",
    "offset",
    "consecutive_failures",
    "topk",
    "bottomk",
    "abs",
    "on",
    "ignoring",
    "and",
    "unless",
];

/// How deep helper functions are followed.
const MAX_DEPTH: usize = 4;

/// Reads the shapes of the functions of one AST.
pub(crate) struct Shapes {
    /// Each script function's parameters and top-level statements, by (name,
    /// number of parameters).
    bodies: HashMap<(String, usize), (Vec<String>, Vec<Stmt>)>,
}

/// `(line, column)` of a position, for ordering.
fn at(p: rhai::Position) -> (usize, usize) {
    (p.line().unwrap_or(0), p.position().unwrap_or(0))
}

impl Shapes {
    pub fn new(ast: &AST) -> Self {
        // Rhai does not export the type of a function's body, but `AST::walk`
        // visits the top-level statements of the main body and then of each
        // function, in `iter_fn_def` order; each function's start and end
        // positions tell which run of statements is its own. The walk lends
        // its nodes only to the callback, so the statements are copied.
        let mut top: Vec<Stmt> = Vec::new();
        ast.walk(&mut |path: &[rhai::ASTNode]| {
            if let [rhai::ASTNode::Stmt(s)] = path {
                top.push((*s).clone());
            }
            true
        });
        let mut rest = top.into_iter().skip(ast.statements().len()).peekable();
        let mut bodies = HashMap::new();
        for def in ast.iter_fn_def() {
            let (start, end) = (at(def.body.start_position()), at(def.body.end_position()));
            let mut stmts = Vec::new();
            if end == (0, 0) {
                // A closure written as one expression (`|| series("x") > 1`)
                // has no end position and one statement.
                stmts.extend(rest.next_if(|s| at(s.position()) >= start));
            } else {
                while let Some(s) = rest.next_if(|s| {
                    let p = at(s.position());
                    p >= start && p <= end
                }) {
                    stmts.push(s);
                }
            }
            let params = def.params.iter().map(|p| p.to_string()).collect();
            bodies.insert((def.name.to_string(), def.params.len()), (params, stmts));
        }
        Self { bodies }
    }

    /// The shape of what script function `name` (with `params` parameters, the
    /// captured variables of a closure included) returns.
    pub fn of_fn(&self, name: &str, params: usize) -> Shape {
        self.fn_shape(name, params, 0)
    }

    fn fn_shape(&self, name: &str, params: usize, depth: usize) -> Shape {
        if depth > MAX_DEPTH {
            return Shape::Any;
        }
        let Some((names, body)) = self.bodies.get(&(name.to_string(), params)) else {
            return Shape::Any;
        };
        if body.is_empty() {
            // Nothing to go by (or statements not told apart): assume anything.
            return Shape::Any;
        }
        let vars: HashMap<String, Shape> = names.iter().map(|p| (p.clone(), Shape::Any)).collect();
        self.block(body, vars, depth)
    }

    fn nested(&self, body: &StmtBlock, vars: HashMap<String, Shape>, depth: usize) -> Shape {
        self.block(body.statements(), vars, depth)
    }

    fn block(&self, stmts: &[Stmt], mut vars: HashMap<String, Shape>, depth: usize) -> Shape {
        let Some((last, init)) = stmts.split_last() else {
            return Shape::none();
        };
        for s in init {
            match s {
                Stmt::Var(x, ..) => {
                    let shape = self.expr(&x.1, &vars, depth);
                    vars.insert(x.0.name.to_string(), shape);
                }
                Stmt::Noop(_) | Stmt::Expr(_) | Stmt::FnCall(..) => {}
                // Loops, assignments, early returns: the value is not certain.
                _ => return Shape::Any,
            }
        }
        match last {
            Stmt::Expr(e) => self.expr(e, &vars, depth),
            Stmt::FnCall(call, _) => self.call(call, false, &vars, depth),
            Stmt::Return(Some(e), ..) => self.expr(e, &vars, depth),
            Stmt::If(flow, _) => self
                .nested(&flow.body, vars.clone(), depth)
                .union(self.nested(&flow.branch, vars, depth)),
            Stmt::Block(b) => self.nested(b, vars, depth),
            _ => Shape::Any,
        }
    }

    fn expr(&self, e: &Expr, vars: &HashMap<String, Shape>, depth: usize) -> Shape {
        match e {
            Expr::BoolConstant(..)
            | Expr::IntegerConstant(..)
            | Expr::FloatConstant(..)
            | Expr::Unit(..)
            | Expr::And(..)
            | Expr::Or(..) => Shape::none(),
            Expr::Variable(x, ..) => vars.get(x.1.as_str()).cloned().unwrap_or(Shape::Any),
            Expr::Stmt(block) => self.nested(block, vars.clone(), depth),
            Expr::FnCall(call, _) => self.call(call, false, vars, depth),
            Expr::MethodCall(call, _) => self.call(call, true, vars, depth),
            _ => Shape::Any,
        }
    }

    fn call(
        &self,
        call: &FnCallExpr,
        method: bool,
        vars: &HashMap<String, Shape>,
        depth: usize,
    ) -> Shape {
        if method || !call.namespace.is_empty() {
            return Shape::Any;
        }
        let name = call.name.as_str();
        let args = &call.args;
        let arg = |i: usize| {
            args.get(i)
                .map_or(Shape::Any, |a| self.expr(a, vars, depth))
        };
        if COMPARISONS_AND_ARITHMETIC.contains(&name) {
            return match args.len() {
                1 => arg(0),
                2 if is_number(&args[0]) => arg(1),
                2 => arg(0),
                _ => Shape::Any,
            };
        }
        if AGGREGATIONS.contains(&name) && args.len() == 1 {
            return Shape::none();
        }
        if let Some(base) = name.strip_suffix("_by")
            && AGGREGATIONS.contains(&base)
            && args.len() == 2
        {
            return string_list(&args[1]).map_or(Shape::Any, Shape::Exactly);
        }
        if let Some(base) = name.strip_suffix("_without")
            && AGGREGATIONS.contains(&base)
            && args.len() == 2
        {
            return match string_list(&args[1]) {
                Some(drop) => arg(0).without(&drop),
                None => Shape::Any,
            };
        }
        match (name, args.len()) {
            ("absent", 1 | 2) => absent_labels(&args[0]).map_or(Shape::Any, Shape::Exactly),
            ("or", 2) => arg(0).union(arg(1)),
            ("with_label", 3) => match string(&args[1]) {
                Some(k) => arg(0).with(&k),
                None => Shape::Any,
            },
            ("without_label", 2) => match string(&args[1]) {
                Some(k) => arg(0).without(&BTreeSet::from([k])),
                None => Shape::Any,
            },
            ("vector", 1) if is_number(&args[0]) => Shape::none(),
            ("scalar" | "len" | "is_empty", 1) => Shape::none(),
            (n, _) if KEEP_FIRST.contains(&n) && !args.is_empty() => arg(0),
            (n, argc) if self.bodies.contains_key(&(n.to_string(), argc)) => {
                self.fn_shape(n, argc, depth + 1)
            }
            _ => Shape::Any,
        }
    }
}

fn is_number(e: &Expr) -> bool {
    matches!(e, Expr::IntegerConstant(..) | Expr::FloatConstant(..))
}

fn string(e: &Expr) -> Option<String> {
    match e {
        Expr::StringConstant(s, _) => Some(s.to_string()),
        Expr::DynamicConstant(d, _) if d.is_string() => Some(d.to_string()),
        _ => None,
    }
}

/// The strings of a literal array of strings.
fn string_list(e: &Expr) -> Option<BTreeSet<String>> {
    match e {
        Expr::Array(items, _) => items.iter().map(string).collect(),
        Expr::DynamicConstant(d, _) => d
            .clone()
            .try_cast::<rhai::Array>()?
            .iter()
            .map(|v| {
                v.clone()
                    .into_immutable_string()
                    .ok()
                    .map(|s| s.to_string())
            })
            .collect(),
        _ => None,
    }
}

/// The labels `absent(series("x", #{ a: "b" }))` gives: its equality matchers.
fn absent_labels(e: &Expr) -> Option<BTreeSet<String>> {
    match e {
        Expr::StringConstant(..) => Some(BTreeSet::new()),
        Expr::FnCall(call, _) if call.name == "series" && call.namespace.is_empty() => {
            match call.args.len() {
                1 => Some(BTreeSet::new()),
                2 => match &call.args[1] {
                    Expr::Map(m, _) => Some(
                        m.0.iter()
                            .filter(|(_, v)| string(v).is_some())
                            .map(|(k, _)| k.name.to_string())
                            .collect(),
                    ),
                    Expr::DynamicConstant(d, _) => {
                        let map = d.clone().try_cast::<Map>()?;
                        Some(
                            map.iter()
                                .filter(|(_, v)| v.is_string())
                                .map(|(k, _)| k.to_string())
                                .collect(),
                        )
                    }
                    _ => None,
                },
                _ => None,
            }
        }
        _ => None,
    }
}

/// The label names the placeholders of `template` use (`{{value}}` aside).
pub(crate) fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        let name = after[..close].trim();
        let name = name
            .strip_prefix("$labels.")
            .or_else(|| name.strip_prefix('$'))
            .unwrap_or(name);
        if name != "value" && crate::vector::is_label_name(name) {
            out.push(name.to_string());
        }
        rest = &after[close + 2..];
    }
    out
}
