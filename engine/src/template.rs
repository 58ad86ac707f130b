//! Templates in action configs: `{{name}}` placeholders parsed once, at config
//! load, and rendered per request.
//!
//! A placeholder names an alert label, `value`, `rule`, or a variable an action
//! adds (`replicas`). Unlike annotation templates, a variable the request does not
//! have is an error, not an empty string: an empty argument or path segment in a
//! remediation is never what was meant (`rm -rf /var/lib/{{db}}`).

use std::fmt;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template variable '{0}' is not set: the alert has no label '{0}'")]
pub struct MissingVar(pub String);

/// True for names a placeholder may use: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_var_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

impl Template {
    /// Parses `text`. `{{ name }}` (spaces allowed) is a placeholder; an unclosed
    /// `{{` or a name that is not `[a-zA-Z_][a-zA-Z0-9_]*` is an error.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(format!(
                    "'{text}' has an unclosed '{{{{': write placeholders as '{{{{instance}}}}'"
                ));
            };
            let name = after[..close].trim();
            if !is_var_name(name) {
                return Err(format!(
                    "'{{{{{name}}}}}' in '{text}' is not a placeholder: use a label name, 'value', 'rule' or 'replicas'"
                ));
            }
            pieces.push(Piece::Var(name.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Self { pieces })
    }

    /// A template with no placeholders.
    pub fn literal(text: impl Into<String>) -> Self {
        Self {
            pieces: vec![Piece::Text(text.into())],
        }
    }

    /// The variables it uses, in order of appearance.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(v) => Some(v.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// True when the template is exactly one placeholder, e.g. `"{{replicas}}"`.
    pub fn single_var(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [Piece::Var(v)] => Some(v),
            _ => None,
        }
    }

    /// Renders with `lookup`, passing every value through `escape` first.
    pub fn render_with(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
        escape: impl Fn(&str) -> String,
    ) -> Result<String, MissingVar> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v) => {
                    let value = lookup(v).ok_or_else(|| MissingVar(v.clone()))?;
                    out.push_str(&escape(&value));
                }
            }
        }
        Ok(out)
    }

    /// Renders with `lookup`, values as they are.
    pub fn render(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<String, MissingVar> {
        self.render_with(lookup, str::to_string)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.pieces {
            match p {
                Piece::Text(t) => f.write_str(t)?,
                Piece::Var(v) => write!(f, "{{{{{v}}}}}")?,
            }
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for Template {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Template::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A value as a template variable: whole numbers without decimals, others as Rust
/// writes them (shortest exact form), `NaN`, `+Inf`, `-Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let t = Template::parse("/srv/{{ instance }}/x-{{value}}").unwrap();
        assert_eq!(t.vars().collect::<Vec<_>>(), vec!["instance", "value"]);
        let r = t
            .render(|v| match v {
                "instance" => Some("web-1".into()),
                "value" => Some("3".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(r, "/srv/web-1/x-3");
        assert_eq!(t.to_string(), "/srv/{{instance}}/x-{{value}}");
        assert_eq!(
            t.render(|_| None).unwrap_err(),
            MissingVar("instance".into())
        );
        assert_eq!(
            Template::parse("{{replicas}}").unwrap().single_var(),
            Some("replicas")
        );
        assert!(Template::parse("a {{b").is_err());
        assert!(Template::parse("{{ $(rm) }}").is_err());
        assert_eq!(Template::parse("plain").unwrap().vars().count(), 0);
    }

    #[test]
    fn formats_values() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::NAN), "NaN");
    }
}
