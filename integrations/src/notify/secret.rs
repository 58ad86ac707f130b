//! Secrets in config: given inline, as `*_env = "VAR"` or as `*_file = "PATH"`,
//! held in a [`Secret`] whose `Debug` and `Display` never show the value.

use std::fmt;
use std::path::PathBuf;

/// A secret value; printing it prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_string();
        }
        text.replace(&self.0, "***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Resolves a secret given one of three ways; `what` names the key in errors
/// (`routing_key`).
pub fn resolve(
    what: &str,
    inline: Option<&String>,
    env: Option<&String>,
    file: Option<&PathBuf>,
) -> Result<Option<Secret>, String> {
    let given = [inline.is_some(), env.is_some(), file.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if given > 1 {
        return Err(format!(
            "give only one of '{what}', '{what}_env' and '{what}_file'"
        ));
    }
    if let Some(v) = inline {
        return Ok(Some(Secret::new(v.clone())));
    }
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim().to_string()))),
            _ => Err(format!(
                "'{what}_env' names the environment variable '{var}', which is not set or empty"
            )),
        };
    }
    if let Some(path) = file {
        return match std::fs::read_to_string(path) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim().to_string()))),
            Ok(_) => Err(format!("'{what}_file' '{}' is empty", path.display())),
            Err(e) => Err(format!(
                "cannot read '{what}_file' '{}': {e}",
                path.display()
            )),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("xoxb-123456");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(
            s.scrub("url https://h/xoxb-123456/x"),
            "url https://h/***/x"
        );
    }

    #[test]
    fn one_source_only() {
        let v = "a".to_string();
        assert!(resolve("k", Some(&v), Some(&v), None).is_err());
        assert_eq!(resolve("k", None, None, None).unwrap(), None);
        let e = resolve(
            "k",
            None,
            Some(&"WARDEN_TEST_UNSET_VAR_X".to_string()),
            None,
        )
        .unwrap_err();
        assert!(e.contains("WARDEN_TEST_UNSET_VAR_X"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "s3cr3t\n").unwrap();
        assert_eq!(
            resolve("k", None, None, Some(&p))
                .unwrap()
                .unwrap()
                .expose(),
            "s3cr3t"
        );
    }
}
