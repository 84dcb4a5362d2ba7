//! Who may do what to a document, decided per batch of changes: which keys a role may write,
//! which status transitions it may make, and how the server puts back what it may not.
//!
//! Policy never drops a change (that would leave the sender diverged forever). The change is
//! merged, judged against the document as it was, and anything it was not allowed to do is
//! undone by a compensating change the server writes as its own actor.

pub mod plain;
pub mod report;
pub mod rules;

pub use rules::{Judgement, Refusal, Restore, Rule, admit, judge};
