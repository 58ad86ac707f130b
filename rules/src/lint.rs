//! The load-time check for calls to functions that do not exist.
//!
//! Rhai only finds out at run time that a function is missing, which for a `when`
//! closure means at the first evaluation, possibly at 3 a.m. So after compiling,
//! every call in the file (closures and helper `fn`s included) is checked against
//! the functions the engine knows, the file's own `fn`s and its variables (which
//! may hold closures). An unknown name is reported with the closest known name;
//! a known function called with a number of arguments it never takes is reported
//! with the numbers it does take. Literal arguments of warden's functions are
//! checked too where their type is certain to fail at run time: a window that is
//! not a duration string (or not a valid one), a metric name that is not a
//! string, a label list that is not a list, a count that is not a number.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use rhai::{AST, ASTNode, Engine, Expr, FnCallExpr, Position, Stmt};

use crate::diag::{Diagnostic, did_you_mean};

/// Names Rhai handles itself, with any number of arguments.
const KEYWORDS: [&str; 10] = [
    "print",
    "debug",
    "type_of",
    "Fn",
    "call",
    "curry",
    "is_shared",
    "is_def_var",
    "is_def_fn",
    "eval",
];

/// The functions an engine knows: name → the argument counts it takes.
pub(crate) struct KnownFns {
    arities: HashMap<String, BTreeSet<usize>>,
}

impl KnownFns {
    /// Everything registered in `engine`, its packages included.
    pub fn of(engine: &Engine) -> Self {
        let mut arities: HashMap<String, BTreeSet<usize>> = HashMap::new();
        for (name, n) in engine.collect_fn_metadata(
            None,
            |info| Some((info.metadata.name.to_string(), info.metadata.num_params)),
            true,
        ) {
            arities.entry(name).or_default().insert(n);
        }
        Self { arities }
    }

    /// Names a user could have meant (no operators, getters or internals).
    fn suggestions(&self) -> impl Iterator<Item = &str> + Clone {
        self.arities.keys().map(String::as_str).filter(|n| {
            n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    }
}

/// Names the script itself defines: functions, variables and map keys.
struct Local {
    fns: HashMap<String, BTreeSet<usize>>,
    vars: HashSet<String>,
    props: HashSet<String>,
}

fn locals(ast: &AST) -> Local {
    let mut fns: HashMap<String, BTreeSet<usize>> = HashMap::new();
    let mut vars = HashSet::new();
    for f in ast.iter_functions() {
        fns.entry(f.name.to_string())
            .or_default()
            .insert(f.params.len());
        vars.extend(f.params.iter().map(|p| p.to_string()));
    }
    let mut props = HashSet::new();
    ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Stmt(Stmt::Var(x, ..))) => {
                vars.insert(x.0.name.to_string());
            }
            Some(ASTNode::Stmt(Stmt::For(x, ..))) => {
                vars.insert(x.0.name.to_string());
                if let Some(i) = &x.1 {
                    vars.insert(i.name.to_string());
                }
            }
            Some(ASTNode::Expr(Expr::Map(x, ..))) => {
                props.extend(x.0.iter().map(|(k, _)| k.name.to_string()));
            }
            _ => {}
        }
        true
    });
    Local { fns, vars, props }
}

/// Problems with the calls in `ast`, each at the call's position.
pub(crate) fn check(ast: &AST, known: &KnownFns, file: &Path) -> Vec<Diagnostic> {
    let local = locals(ast);
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let call: Option<(&FnCallExpr, Position, bool)> = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(x, pos)))
            | Some(ASTNode::Stmt(Stmt::FnCall(x, pos))) => Some((x, *pos, false)),
            Some(ASTNode::Expr(Expr::MethodCall(x, pos))) => Some((x, *pos, true)),
            _ => None,
        };
        if let Some((call, pos, method)) = call
            && let Some(msg) = check_call(call, method, known, &local)
            && seen.insert((pos.line(), pos.position()))
        {
            out.push(Diagnostic::at(file, pos, None, msg));
        }
        true
    });
    out.sort_by_key(|d| (d.line, d.col));
    out
}

fn check_call(call: &FnCallExpr, method: bool, known: &KnownFns, local: &Local) -> Option<String> {
    let name = call.name.as_str();
    if call.is_operator_call() || !call.namespace.is_empty() || KEYWORDS.contains(&name) {
        return None;
    }
    // What the call can match, counted in written arguments: a native function
    // called as a method gets the object as its first parameter, while a script
    // function called as a method gets it as `this`.
    let argc = call.args.len();
    let native = known
        .arities
        .get(name)
        .into_iter()
        .flatten()
        .filter_map(|n| n.checked_sub(usize::from(method)));
    let script = local.fns.get(name).into_iter().flatten().copied();
    let takes: BTreeSet<usize> = native.chain(script).collect();
    if takes.is_empty() {
        if local.vars.contains(name) || (method && local.props.contains(name)) {
            return None;
        }
        let candidates = known
            .suggestions()
            .chain(local.fns.keys().map(String::as_str));
        return Some(match did_you_mean(name, candidates) {
            Some(s) => format!("unknown function '{name}' (did you mean '{s}'?)"),
            None => format!("unknown function '{name}'"),
        });
    }
    if local.vars.contains(name) {
        return None;
    }
    if takes.contains(&argc) {
        if method || local.fns.contains_key(name) {
            return None;
        }
        return check_literal_args(name, &call.args);
    }
    let list: Vec<String> = takes.iter().map(usize::to_string).collect();
    Some(format!(
        "'{name}' is called with {argc} argument{}, but takes {}",
        if argc == 1 { "" } else { "s" },
        list.join(" or ")
    ))
}

/// What a literal argument is, for messages.
fn literal_kind(e: &Expr) -> Option<&'static str> {
    match e {
        Expr::IntegerConstant(..) | Expr::FloatConstant(..) => Some("a number"),
        Expr::BoolConstant(..) => Some("a bool"),
        Expr::StringConstant(..) => Some("a string"),
        Expr::Array(..) => Some("an array"),
        Expr::Map(..) => Some("a map"),
        Expr::Unit(..) => Some("()"),
        Expr::DynamicConstant(d, _) if d.is_string() => Some("a string"),
        Expr::DynamicConstant(d, _) if d.is_array() => Some("an array"),
        Expr::DynamicConstant(d, _) if d.is_map() => Some("a map"),
        _ => None,
    }
}

fn literal_string(e: &Expr) -> Option<String> {
    match e {
        Expr::StringConstant(s, _) => Some(s.to_string()),
        Expr::DynamicConstant(d, _) if d.is_string() => Some(d.to_string()),
        _ => None,
    }
}

/// Window functions: the position of their window argument.
const WINDOW_ARG: [(&str, usize); 19] = [
    ("avg_over", 1),
    ("min_over", 1),
    ("max_over", 1),
    ("sum_over", 1),
    ("count_over", 1),
    ("stddev_over", 1),
    ("last_over", 1),
    ("changes", 1),
    ("resets", 1),
    ("deriv", 1),
    ("delta", 1),
    ("increase", 1),
    ("rate", 1),
    ("irate", 1),
    ("quantile_over", 2),
    ("predict_linear", 1),
    ("offset", 1),
    ("absent", 1),
    ("consecutive_failures", usize::MAX),
];

/// Literal arguments of warden's functions that can only fail at run time: a
/// window that is not a duration string, a series name that is not a string, a
/// label list that is not an array, a count that is not a number.
fn check_literal_args(name: &str, args: &[Expr]) -> Option<String> {
    let kind = |i: usize| args.get(i).and_then(literal_kind);
    if let Some(&(_, w)) = WINDOW_ARG.iter().find(|(n, _)| *n == name) {
        if let Some(k) = kind(0)
            && k != "a string"
        {
            return Some(format!(
                "{name}(): the first argument must be series(...) or a metric name, not {k}"
            ));
        }
        if let Some(arg) = args.get(w) {
            if let Some(text) = literal_string(arg) {
                match warden_engine::duration::parse(&text) {
                    Ok(d) if d.is_zero() => {
                        return Some(format!("{name}(): the window must be longer than 0"));
                    }
                    Ok(_) => {}
                    Err(e) => return Some(format!("{name}(): {e}")),
                }
            } else if let Some(k) = kind(w) {
                return Some(format!(
                    "{name}(): the window must be a duration string like \"5m\", not {k}"
                ));
            }
        }
        let number_at = match name {
            "quantile_over" => Some((1, "the quantile")),
            "predict_linear" => Some((2, "seconds_ahead")),
            "consecutive_failures" => Some((1, "the count")),
            _ => None,
        };
        if let Some((i, what)) = number_at
            && let Some(k) = kind(i)
            && k != "a number"
        {
            return Some(format!("{name}(): {what} must be a number, not {k}"));
        }
        return None;
    }
    match name {
        "series" => {
            if let Some(text) = args.first().and_then(literal_string) {
                if !crate::vector::is_metric_name(&text) {
                    return Some(format!(
                        "series(): invalid metric name '{text}': use letters, digits, '_' and ':', not starting with a digit"
                    ));
                }
            } else if let Some(k) = kind(0) {
                return Some(format!(
                    "series(): the metric name must be a string, not {k}"
                ));
            }
            match kind(1) {
                Some("a map") | None => None,
                Some(k) => Some(format!(
                    "series(): the label matchers must be a map #{{ label: \"value\" }}, not {k}"
                )),
            }
        }
        "on" | "ignoring" => list_arg(name, kind(1)),
        _ if name.ends_with("_by") || name.ends_with("_without") => list_arg(name, kind(1)),
        "topk" | "bottomk" => match kind(1) {
            Some("a number") | None => None,
            Some(k) => Some(format!("{name}(): k must be a number, not {k}")),
        },
        _ => None,
    }
}

fn list_arg(name: &str, kind: Option<&str>) -> Option<String> {
    match kind {
        Some("an array") | None => None,
        Some(k) => Some(format!(
            "{name}(): the labels must be a list [\"instance\", ...], not {k}"
        )),
    }
}
