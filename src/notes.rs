//! Remediation attempts told to the receivers their alert is routed to: a
//! PagerDuty change event, a Slack note. Best effort, off the runner's task: a
//! failed note is logged and tried once more; it never holds up an action.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;
use warden_engine::notify::NotifyHandle;
use warden_engine::ports::{ActionNote, ActionNotes, Notifier, NotifyError};

/// Routes notes like alerts: the receivers of the routes the labels match.
pub struct RoutedNotes {
    notify: NotifyHandle,
    notifiers: Vec<Arc<dyn Notifier>>,
    tracker: TaskTracker,
}

impl RoutedNotes {
    /// Notes for `notifiers`, routed by `notify`'s routes.
    pub fn new(
        notify: NotifyHandle,
        notifiers: Vec<Arc<dyn Notifier>>,
        tracker: TaskTracker,
    ) -> Self {
        Self {
            notify,
            notifiers,
            tracker,
        }
    }
}

impl ActionNotes for RoutedNotes {
    fn tell(&self, note: ActionNote) {
        let receivers = self.notify.lock().plan().routes.receivers(&note.labels);
        let note = Arc::new(note);
        for n in self
            .notifiers
            .iter()
            .filter(|n| receivers.iter().any(|r| r == n.name()))
        {
            let n = n.clone();
            let note = note.clone();
            self.tracker.spawn(async move {
                for attempt in 0..2 {
                    match n.action_note(&note).await {
                        Ok(_) => return,
                        Err(NotifyError::Retryable { reason, retry_after }) if attempt == 0 => {
                            tracing::warn!(receiver = n.name(), %reason, "remediation note failed; trying once more");
                            tokio::time::sleep(retry_after.unwrap_or(Duration::from_secs(2)).min(Duration::from_secs(30))).await;
                        }
                        Err(e) => {
                            tracing::warn!(receiver = n.name(), error = %e, id = note.id, "remediation note not delivered");
                            return;
                        }
                    }
                }
            });
        }
    }
}
