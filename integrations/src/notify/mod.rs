//! Notifiers: one file per kind; [`NotifiersConfig`] picks them from the config.

pub mod console;

use std::sync::Arc;

use serde::Deserialize;
use warden_engine::config::Problem;
use warden_engine::ports::Notifier;

/// The `[notifier]` table: `[[notifier.KIND]]` arrays.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifiersConfig {
    /// `[[notifier.console]]`: lines on standard output.
    #[serde(default)]
    pub console: Vec<toml::Spanned<console::ConsoleConfig>>,
}

impl NotifiersConfig {
    /// True when no notifier is configured.
    pub fn is_empty(&self) -> bool {
        self.console.is_empty()
    }

    /// Builds every configured notifier; `json` selects JSON lines for the console.
    pub fn build(&self, json: bool) -> Result<Vec<Arc<dyn Notifier>>, Vec<Problem>> {
        let mut out: Vec<Arc<dyn Notifier>> = Vec::new();
        let mut problems = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for c in &self.console {
            let name = c.get_ref().name.clone().unwrap_or_else(|| "console".into());
            if names.contains(&name) {
                problems.push(Problem::at(
                    c.span(),
                    format!("notifier name '{name}' is used twice: give each a unique 'name'"),
                ));
                continue;
            }
            names.push(name.clone());
            out.push(Arc::new(console::ConsoleNotifier::new(name, json)));
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }
}
