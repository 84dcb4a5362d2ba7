//! Repair: per-document Automerge sync messages inside a batch exchange.
//!
//! A repair only restores the device's view of what the server holds (`server_heads`) and
//! brings the device what it lacks. It never carries the device's changes: those travel as
//! pushes once the repair is done, so every change the server accepts goes through the same
//! staging and policy. The server keeps no sync state between rounds (each answer starts
//! from a fresh `sync::State`); the device keeps its state (encoded) for the duration.

use automerge::sync::{ChunkList, Message, State, SyncDoc};
use automerge::{Automerge, ChangeHash};

use super::knowledge::holds_all;

/// What the device does after receiving the server's repair message.
#[derive(Debug)]
pub(crate) enum DeviceStep {
    /// The device holds every head of the server: `server_heads` is now known again.
    Done { server_heads: Vec<ChangeHash> },
    /// Send `message` in the next round.
    Continue {
        message: Vec<u8>,
        sync_state: Vec<u8>,
    },
    /// The message or the state does not decode, or Automerge refused the changes: fall
    /// back to the whole document.
    Broken,
}

/// The device's first message: heads, a Bloom filter of its changes, no changes.
pub(crate) fn device_opening(doc: &Automerge) -> (Vec<u8>, Vec<u8>) {
    let mut state = State::new();
    let message = doc
        .generate_sync_message(&mut state)
        .map(strip_changes)
        .unwrap_or_else(|| empty_message(doc));
    (message.encode(), state.encode())
}

/// The device applies the server's message (its changes included) and decides whether the
/// repair is over.
pub(crate) fn device_receive(doc: &mut Automerge, sync_state: &[u8], message: &[u8]) -> DeviceStep {
    let Ok(mut state) = State::decode(sync_state) else {
        return DeviceStep::Broken;
    };
    let Ok(message) = Message::decode(message) else {
        return DeviceStep::Broken;
    };
    let server_heads = message.heads.clone();
    if doc.receive_sync_message(&mut state, message).is_err() {
        return DeviceStep::Broken;
    }
    if holds_all(doc, &server_heads) {
        return DeviceStep::Done { server_heads };
    }
    match doc.generate_sync_message(&mut state) {
        Some(next) => DeviceStep::Continue {
            message: strip_changes(next).encode(),
            sync_state: state.encode(),
        },
        None => DeviceStep::Broken,
    }
}

/// The server's first message when it starts a repair: its heads and a Bloom filter.
pub(crate) fn server_opening(doc: &Automerge) -> Vec<u8> {
    let mut state = State::new();
    doc.generate_sync_message(&mut state)
        .unwrap_or_else(|| empty_message(doc))
        .encode()
}

/// The server's answer to a device's message, from a fresh state, and the heads the device
/// says it holds. `None` when the message does not decode. The document does not change:
/// changes in the device's message are dropped.
pub(crate) fn server_answer(
    doc: &mut Automerge,
    message: &[u8],
) -> Option<(Vec<u8>, Vec<ChangeHash>)> {
    let message = strip_changes(Message::decode(message).ok()?);
    let device_heads = message.heads.clone();
    let mut state = State::new();
    doc.receive_sync_message(&mut state, message).ok()?;
    let reply = doc
        .generate_sync_message(&mut state)
        .unwrap_or_else(|| empty_message(doc));
    Some((reply.encode(), device_heads))
}

fn strip_changes(mut message: Message) -> Message {
    message.changes = ChunkList::empty();
    message
}

/// A message with our heads and nothing else, for the (theoretical) case where Automerge
/// has nothing to say on a fresh state.
fn empty_message(doc: &Automerge) -> Message {
    Message {
        heads: doc.get_heads(),
        need: Vec::new(),
        have: Vec::new(),
        changes: ChunkList::empty(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    }
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{ActorId, ROOT};

    use super::*;

    fn edit(doc: &mut Automerge, key: &str) {
        let mut tx = doc.transaction();
        tx.put(ROOT, key, 1).expect("put");
        tx.commit();
    }

    /// Runs a device-initiated repair to its end; returns the rounds it took.
    fn repair(device: &mut Automerge, server: &mut Automerge) -> u32 {
        let (mut message, mut state) = device_opening(device);
        for round in 1..=8 {
            let (reply, _) = server_answer(server, &message).expect("decodes");
            match device_receive(device, &state, &reply) {
                DeviceStep::Done { server_heads } => {
                    assert_eq!(server_heads, server.get_heads());
                    return round;
                }
                DeviceStep::Continue {
                    message: m,
                    sync_state: s,
                } => (message, state) = (m, s),
                DeviceStep::Broken => panic!("broken"),
            }
        }
        panic!("no convergence");
    }

    #[test]
    fn a_device_that_lost_a_document_gets_it_back_in_one_round() {
        let mut server = Automerge::new().with_actor(ActorId::from([1; 16]));
        (0..5).for_each(|i| edit(&mut server, &format!("s{i}")));
        let mut device = Automerge::new().with_actor(ActorId::from([2; 16]));
        assert_eq!(repair(&mut device, &mut server), 1);
        assert_eq!(device.get_heads(), server.get_heads());
    }

    #[test]
    fn diverged_documents_repair_the_download_direction_only() {
        let mut server = Automerge::new().with_actor(ActorId::from([1; 16]));
        edit(&mut server, "base");
        let mut device = server.fork().with_actor(ActorId::from([2; 16]));
        edit(&mut server, "server");
        edit(&mut device, "device");
        let server_before = server.get_heads();
        let rounds = repair(&mut device, &mut server);
        assert!(rounds <= 2, "{rounds}");
        // The device now holds the server's heads; the server gained nothing from the repair.
        assert!(holds_all(&device, &server.get_heads()));
        assert_eq!(server.get_heads(), server_before);
    }

    #[test]
    fn a_server_opening_tells_a_device_with_everything_that_it_is_done() {
        let mut device = Automerge::new().with_actor(ActorId::from([2; 16]));
        edit(&mut device, "a");
        let server = device.fork().with_actor(ActorId::from([1; 16]));
        edit(&mut device, "b");
        let opening = server_opening(&server);
        let state = State::new().encode();
        match device_receive(&mut device, &state, &opening) {
            DeviceStep::Done { server_heads } => assert_eq!(server_heads, server.get_heads()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_broken_not_a_panic() {
        let mut doc = Automerge::new();
        assert!(matches!(
            device_receive(&mut doc, &[], &[0x42, 0xff]),
            DeviceStep::Broken
        ));
        assert!(server_answer(&mut doc, &[1, 2, 3]).is_none());
    }
}
