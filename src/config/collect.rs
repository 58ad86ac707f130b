//! Deserializing a whole TOML file while collecting every error, not just the
//! first: serde stops at the first error, so after each one the offending key (or
//! array entry) is taken out of the parsed document and deserialization runs
//! again, up to a limit. An error a removal causes (`missing field` for a key
//! that was taken out) is dropped, and that table goes too. Keys taken
//! out fall back to their defaults, so the checks made after parsing still run
//! over everything that did parse.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

/// One error with the byte range it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpannedError {
    /// Byte range in the text, if known.
    pub span: Option<Range<usize>>,
    /// The parser's message.
    pub message: String,
}

/// More than anyone wants to read in one go.
const MAX_ERRORS: usize = 100;

/// Deserializes `text` into `T`. On errors, returns them all (by position) and
/// the value deserialized from what was left, if anything was.
pub fn deserialize<T: DeserializeOwned>(text: &str) -> (Option<T>, Vec<SpannedError>) {
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let errors = syntax
            .into_iter()
            .map(|e| SpannedError {
                span: e.span(),
                message: e.message().trim().to_string(),
            })
            .collect();
        return (None, errors);
    }
    let mut root: Spanned<DeValue<'_>> = {
        let span = root.span();
        Spanned::new(span, DeValue::Table(root.into_inner()))
    };
    let mut errors: Vec<SpannedError> = Vec::new();
    // (table span, key taken out of it)
    let mut taken: Vec<(Range<usize>, String)> = Vec::new();
    let mut attempts = 0;
    loop {
        let de = toml::de::ValueDeserializer::from(root.clone());
        let err = match T::deserialize(de) {
            Ok(v) => {
                errors.sort_by_key(|e| e.span.as_ref().map_or(0, |s| s.start));
                return (Some(v), errors);
            }
            Err(e) => e,
        };
        attempts += 1;
        let span = err.span();
        let removed = span.as_ref().and_then(|s| remove_innermost(&mut root, s));
        match removed {
            Some((node, parent, key)) => {
                let message = err.message().trim().to_string();
                let caused = missing_field(&message)
                    .is_some_and(|f| taken.iter().any(|(t, k)| *t == node && k == f));
                if !caused {
                    errors.push(SpannedError {
                        span: span.clone(),
                        message,
                    });
                }
                taken.push((parent, key));
            }
            None => {
                errors.push(SpannedError {
                    span,
                    message: err.message().trim().to_string(),
                });
                break;
            }
        }
        if errors.len() >= MAX_ERRORS || attempts >= 4 * MAX_ERRORS {
            break;
        }
    }
    errors.sort_by_key(|e| e.span.as_ref().map_or(0, |s| s.start));
    (None, errors)
}

/// The field of serde's "missing field `x`".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer != &(0..0)
}

/// The text a value covers: a table's own span is only its `[header]`, so its
/// keys and values count too.
fn extent(v: &Spanned<DeValue<'_>>) -> Range<usize> {
    let mut r = v.span();
    let mut widen = |o: Range<usize>| {
        if o != (0..0) {
            r.start = r.start.min(o.start);
            r.end = r.end.max(o.end);
        }
    };
    match v.get_ref() {
        DeValue::Table(t) => {
            for (k, child) in t.iter() {
                widen(k.span());
                widen(extent(child));
            }
        }
        DeValue::Array(items) => {
            for child in items.iter() {
                widen(extent(child));
            }
        }
        _ => {}
    }
    r
}

/// Removes the deepest key or array entry of `node` whose text contains `span`
/// (a table's key counts as part of its entry). Returns the removed node's span,
/// its parent's and its key (empty for an array entry), or `None` when only
/// `node` itself contains it.
fn remove_innermost(
    node: &mut Spanned<DeValue<'_>>,
    span: &Range<usize>,
) -> Option<(Range<usize>, Range<usize>, String)> {
    let parent_span = node.span();
    match node.get_mut() {
        DeValue::Table(table) => {
            let hit = table
                .iter()
                .find(|(k, v)| {
                    let e = extent(v);
                    let entry = k.span().start.min(e.start)..k.span().end.max(e.end);
                    contains(&entry, span)
                })
                .map(|(k, _)| k.get_ref().clone().into_owned());
            let key = hit?;
            let child = table.get_mut(key.as_str())?;
            // Deeper first: an array's own span is its first entry's header.
            if let Some(found) = remove_innermost(child, span) {
                return Some(found);
            }
            let removed = table.remove(key.as_str())?;
            Some((removed.span(), parent_span, key))
        }
        DeValue::Array(items) => {
            let index = items.iter().position(|v| contains(&extent(v), span))?;
            if let Some(found) = remove_innermost(&mut items.as_mut()[index], span) {
                return Some(found);
            }
            let removed = items[index].span();
            let mut rest = DeArray::new();
            for (i, item) in items.iter().enumerate() {
                if i != index {
                    rest.push(item.clone());
                }
            }
            *items = rest;
            Some((removed, parent_span, String::new()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
        #[serde(default)]
        a: Option<A>,
        #[serde(default)]
        item: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct A {
        #[serde(default)]
        x: u32,
        #[serde(default)]
        y: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        #[serde(default)]
        kind: Option<u32>,
        #[serde(default)]
        n: u32,
    }

    fn errors(text: &str) -> (bool, Vec<(usize, usize, String)>) {
        let (v, e) = deserialize::<File>(text);
        let e = e
            .into_iter()
            .map(|e| {
                let (l, c) = warden_engine::config::line_col(text, e.span.unwrap_or(0..0).start);
                (l, c, e.message)
            })
            .collect();
        (v.is_some(), e)
    }

    #[test]
    fn every_error_is_reported_once() {
        let text = "[a]\nx = \"no\"\nz = 1\ny = -1\n\n[[item]]\nname = \"a\"\nn = \"x\"\n\n[[item]]\nn = 2\n\n[[item]]\nname = \"ok\"\n\n[bogus]\n";
        let (parsed, e) = errors(text);
        assert!(parsed, "what is left still deserializes");
        let lines: Vec<(usize, usize)> = e.iter().map(|(l, c, _)| (*l, *c)).collect();
        assert_eq!(
            lines,
            [(2, 5), (3, 1), (4, 5), (8, 5), (10, 1), (16, 2)],
            "{e:#?}"
        );
        assert!(e[1].2.contains("unknown field `z`"), "{e:#?}");
        assert!(e[4].2.contains("missing field `name`"), "{e:#?}");
        assert!(e[5].2.contains("unknown field `bogus`"), "{e:#?}");
    }

    #[test]
    fn a_bad_required_key_is_one_error() {
        // `name` is wrong (one error), not also missing; the second entry
        // really lacks it.
        let (_, e) = errors("[[item]]\nname = 1\nkind = \"x\"\n[[item]]\nn = 1\n");
        let got: Vec<(usize, usize)> = e.iter().map(|(l, c, _)| (*l, *c)).collect();
        assert_eq!(got, [(2, 8), (3, 8), (4, 1)], "{e:#?}");
        assert!(e[2].2.contains("missing field `name`"));
    }

    #[test]
    fn syntax_errors_come_alone() {
        let (parsed, e) = errors("[a\nx = 1\n");
        assert!(!parsed);
        assert_eq!(e[0].0, 1);
    }

    #[test]
    fn a_clean_file_has_no_errors() {
        let (parsed, e) = errors("[a]\nx = 1\n[[item]]\nname = \"a\"\n");
        assert!(parsed);
        assert!(e.is_empty());
    }
}
