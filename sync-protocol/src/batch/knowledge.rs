//! What the server knows each device has, per document, and the bundles built from it.
//!
//! A device never lists the heads of its 500 documents. Instead the server keeps, per
//! (device, document), a [`DocKnowledge`]: heads the device is *known* to hold (it pushed
//! them, or applied a response that delivered them) and heads delivered in the last response
//! that the device has not yet confirmed. The device confirms a response implicitly by
//! sending back the cursor it carried; [`Settlement`] says what the next request means for
//! the pending heads. Knowledge is a lower bound: the device may hold more (a bundle then
//! repeats changes it has, which Automerge ignores), never less (a bundle would then miss
//! dependencies and the device would fall back to repair).

use automerge::{Automerge, ChangeHash, ReadDoc};

use crate::ids::DocumentId;

/// What the server knows one device holds of one document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocKnowledge {
    /// Heads the device certainly holds (their whole history).
    pub confirmed: Vec<ChangeHash>,
    /// Heads the last response delivered; they become `confirmed` when the device sends back
    /// that response's cursor and are dropped otherwise.
    pub pending: Option<Vec<ChangeHash>>,
}

/// What a request says about the response before it, decided by
/// [`ServerExchange::begin`](super::ServerExchange::begin) and applied by the driver to every
/// knowledge row of the device that has `pending` heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The request carries the cursor of the last response: the device applied it, so
    /// `pending` becomes `confirmed`.
    ConfirmPending,
    /// The request carries an older or unknown cursor: the device never applied the last
    /// response (the reply was lost and the device gave up on that request), so `pending`
    /// is dropped.
    DiscardPending,
    /// The request carries no cursor: the device starts from nothing (new install, reset
    /// store), so every knowledge row of the device is deleted.
    ForgetAll,
}

impl DocKnowledge {
    /// The heads the device holds once `settlement` is applied.
    pub fn effective(&self, settlement: Settlement) -> &[ChangeHash] {
        match (settlement, &self.pending) {
            (Settlement::ForgetAll, _) => &[],
            (Settlement::ConfirmPending, Some(pending)) => pending,
            _ => &self.confirmed,
        }
    }

    /// The row after `settlement`: what the driver stores when it settles in bulk.
    pub fn settled(&self, settlement: Settlement) -> DocKnowledge {
        DocKnowledge {
            confirmed: self.effective(settlement).to_vec(),
            pending: None,
        }
    }
}

/// A change to one knowledge row, for the driver to store with the exchange's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnowledgeUpdate {
    /// The document.
    pub document_id: DocumentId,
    /// The new row, or its removal.
    pub change: KnowledgeChange,
}

/// The new value of a knowledge row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnowledgeChange {
    /// Replace the row (insert it if there is none).
    Set(DocKnowledge),
    /// Delete the row: the document left the device's scope.
    Forget,
}

/// Above this size a delta is compared with the whole compressed document, and the smaller
/// is sent (`save()` is DEFLATE-compressed columnar data; `save_after` is a list of change
/// chunks, each compressed only when large).
const COMPARE_WITH_SAVE_ABOVE: usize = 4 * 1024;

/// The changes of `doc` that a peer holding `known` lacks, as one chunk for
/// `load_incremental`: `save_after(known)`, or the whole document (`save()`) when the peer
/// holds nothing or when that is smaller. `None` when the peer lacks nothing.
///
/// Heads in `known` that `doc` does not have are ignored, so the result may repeat changes
/// the peer has; it never leaves out one it lacks.
pub fn bundle_since(doc: &Automerge, known: &[ChangeHash]) -> Option<Vec<u8>> {
    if doc.get_heads().is_empty() {
        return None;
    }
    if known.is_empty() {
        return Some(doc.save());
    }
    let delta = doc.save_after(known);
    if delta.is_empty() {
        return None;
    }
    if delta.len() > COMPARE_WITH_SAVE_ABOVE {
        let whole = doc.save();
        if whole.len() < delta.len() {
            return Some(whole);
        }
    }
    Some(delta)
}

/// True when `doc` holds every change in the history of `heads` and has nothing queued for
/// want of a dependency.
pub fn holds_all(doc: &Automerge, heads: &[ChangeHash]) -> bool {
    doc.get_missing_deps(heads).is_empty()
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{ActorId, ROOT};

    use super::*;

    fn doc_with(actor: u8, edits: usize) -> Automerge {
        let mut doc = Automerge::new().with_actor(ActorId::from([actor; 16]));
        for i in 0..edits {
            let mut tx = doc.transaction();
            tx.put(ROOT, format!("k{i}"), i as i64).expect("put");
            tx.commit();
        }
        doc
    }

    #[test]
    fn settlement_decides_the_effective_heads() {
        let doc = doc_with(1, 2);
        let heads = doc.get_heads();
        let row = DocKnowledge {
            confirmed: Vec::new(),
            pending: Some(heads.clone()),
        };
        assert_eq!(row.effective(Settlement::ConfirmPending), heads.as_slice());
        assert!(row.effective(Settlement::DiscardPending).is_empty());
        assert!(row.effective(Settlement::ForgetAll).is_empty());
        assert_eq!(row.settled(Settlement::ConfirmPending).pending, None);
    }

    #[test]
    fn bundles_hold_exactly_what_is_missing() {
        let doc = doc_with(1, 3);
        assert_eq!(bundle_since(&doc, &doc.get_heads()), None);
        assert_eq!(bundle_since(&Automerge::new(), &[]), None);

        let mut peer = doc_with(1, 0);
        let whole = bundle_since(&doc, &[]).expect("something to send");
        peer.load_incremental(&whole).expect("loads");
        assert_eq!(peer.get_heads(), doc.get_heads());

        let mut later = doc.clone();
        let mut tx = later.transaction();
        tx.put(ROOT, "late", 1).expect("put");
        tx.commit();
        let delta = bundle_since(&later, &doc.get_heads()).expect("delta");
        assert!(delta.len() < whole.len() + 200);
        peer.load_incremental(&delta).expect("loads");
        assert_eq!(peer.get_heads(), later.get_heads());
        assert!(holds_all(&peer, &later.get_heads()));
        assert!(!holds_all(&doc, &later.get_heads()));
    }

    #[test]
    fn unknown_known_heads_only_make_bundles_larger() {
        let doc = doc_with(1, 2);
        let stranger = doc_with(2, 1).get_heads();
        let mut peer = Automerge::new();
        let bundle = bundle_since(&doc, &stranger).expect("everything");
        peer.load_incremental(&bundle).expect("loads");
        assert_eq!(peer.get_heads(), doc.get_heads());
    }
}
