//! warden's on-call terminal dashboard (`warden tui`).
//!
//! Not built yet: the crate exists so the workspace has its final shape. It will
//! hold the dashboard's state, update and view, and an API client.
