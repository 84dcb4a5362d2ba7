//! Property: whatever the interleaving of device edits, server edits, scope changes, lost
//! requests, lost replies, duplicated, late and abandoned requests and repairs, once the
//! network behaves again every device converges with the server (same heads, same number of
//! changes per document), no acknowledged change is lost, and no change appears twice or from
//! nowhere.
//!
//! The network is simulated and stepped with a virtual clock: each device has at most one
//! attempt in flight, with a deadline; an attempt the device gave up on may still reach the
//! server later (and its reply is then lost).

mod batch_support;

use std::collections::{BTreeMap, BTreeSet};

use automerge::{Automerge, ChangeHash, ReadDoc};
use batch_support::{Device, actor, doc_id, get, put};
use jemput_sync_protocol::DocumentId;
use jemput_sync_protocol::batch::memory::Verdict;
use jemput_sync_protocol::batch::{
    CompensationReason, DocKnowledge, MemoryServer, PushEntry, ServerConfig, decode_response,
};
use proptest::prelude::*;

const SERVER: u8 = 0xff;
const DEVICES: usize = 2;
/// Documents 0..3 are created by the server, 3 and 4 by devices 0 and 1.
const DOCS: u32 = 5;
/// Virtual milliseconds before a device gives up on an attempt.
const TIMEOUT: u64 = 3_000;

#[derive(Debug, Clone)]
enum Action {
    DeviceEdit {
        device: usize,
        doc: u32,
        value: u8,
    },
    ServerEdit {
        doc: u32,
        value: u8,
    },
    /// The device sends (or re-sends) its pending request.
    Send {
        device: usize,
    },
    /// The in-flight attempt reaches the server, with this fate.
    Deliver {
        device: usize,
        fate: Fate,
    },
    /// A copy of an earlier request of the device reaches the server late; the device gets
    /// the reply too (and must ignore it unless it answers its pending request).
    LateCopy {
        device: usize,
        which: usize,
    },
    /// The device gives up on its pending request and will plan a new one.
    Abandon {
        device: usize,
    },
    Hide {
        device: usize,
        doc: u32,
    },
    Show {
        device: usize,
        doc: u32,
    },
    /// The device's copy of a document is lost (storage corruption).
    LoseDocument {
        device: usize,
        doc: u32,
    },
    /// The server wrongly believes the device holds its current heads, then the document
    /// changes: the next delivery misses dependencies on the device, which falls back to
    /// repair. (A wrong row with no later change would go unnoticed: knowledge must never
    /// overstate what a device holds, and no protocol step makes it do so.)
    WrongKnowledge {
        device: usize,
        doc: u32,
    },
    /// Virtual time passes.
    Wait {
        millis: u64,
    },
}

#[derive(Debug, Clone, Copy)]
enum Fate {
    Ok,
    LoseRequest,
    LoseReply,
    /// The server receives the request twice; the device gets one reply.
    Duplicate,
}

fn action() -> impl Strategy<Value = Action> {
    let device = 0..DEVICES;
    let doc = 0..DOCS;
    let fate = prop_oneof![
        4 => Just(Fate::Ok),
        1 => Just(Fate::LoseRequest),
        2 => Just(Fate::LoseReply),
        1 => Just(Fate::Duplicate),
    ];
    prop_oneof![
        6 => (device.clone(), doc.clone(), 0u8..6)
            .prop_map(|(device, doc, value)| Action::DeviceEdit { device, doc, value }),
        3 => (doc.clone(), 0u8..6).prop_map(|(doc, value)| Action::ServerEdit { doc, value }),
        5 => device.clone().prop_map(|device| Action::Send { device }),
        5 => (device.clone(), fate).prop_map(|(device, fate)| Action::Deliver { device, fate }),
        1 => (device.clone(), 0usize..8)
            .prop_map(|(device, which)| Action::LateCopy { device, which }),
        1 => device.clone().prop_map(|device| Action::Abandon { device }),
        1 => (device.clone(), doc.clone()).prop_map(|(device, doc)| Action::Hide { device, doc }),
        1 => (device.clone(), doc.clone()).prop_map(|(device, doc)| Action::Show { device, doc }),
        1 => (device.clone(), doc.clone())
            .prop_map(|(device, doc)| Action::LoseDocument { device, doc }),
        1 => (device.clone(), doc)
            .prop_map(|(device, doc)| Action::WrongKnowledge { device, doc }),
        2 => (0u64..4_000).prop_map(|millis| Action::Wait { millis }),
    ]
}

/// One request on the wire.
#[derive(Debug, Clone)]
struct Attempt {
    body: Vec<u8>,
    deadline: u64,
}

/// The whole simulated world.
struct World {
    now: u64,
    server: MemoryServer,
    devices: Vec<Device>,
    in_flight: Vec<Option<Attempt>>,
    /// Every request body each device sent, for late copies.
    sent: Vec<Vec<Vec<u8>>>,
    /// Changes each device created, per document.
    created: BTreeMap<(usize, DocumentId), BTreeSet<ChangeHash>>,
    /// Changes lost with a document the device deleted or lost before pushing them.
    excused: BTreeSet<ChangeHash>,
    /// Heads the server acknowledged, per document.
    acknowledged: Vec<(DocumentId, Vec<ChangeHash>)>,
    hidden: BTreeSet<(usize, DocumentId)>,
}

fn status_policy() -> jemput_sync_protocol::batch::memory::Policy {
    Box::new(|_, merged: &mut Automerge| {
        if get(merged, "status").as_deref() == Some("approved") {
            put(merged, "status", "submitted");
            Verdict::Compensate(CompensationReason::StatusTransition)
        } else {
            Verdict::Accept
        }
    })
}

/// What an edit writes: a status (approved is compensated by the server) or a field.
fn value(n: u8, now: u64) -> (&'static str, String) {
    match n {
        0 => ("status", "approved".to_string()),
        1 => ("status", "submitted".to_string()),
        n => ("field", format!("v{n} at {now}")),
    }
}

fn device_wire_id(device: usize) -> u64 {
    device as u64 + 1
}

impl World {
    fn new() -> Self {
        let mut server = MemoryServer::new(
            ServerConfig {
                epoch: 3,
                max_response_bytes: 2_000,
                ..ServerConfig::default()
            },
            actor(SERVER),
        )
        .with_policy(status_policy());
        for i in 0..3 {
            server.edit(doc_id(i), |doc| put(doc, "schema", "jemput/application@1"));
        }
        Self {
            now: 0,
            server,
            devices: (0..DEVICES)
                .map(|d| Device::new(device_wire_id(d)))
                .collect(),
            in_flight: vec![None; DEVICES],
            sent: vec![Vec::new(); DEVICES],
            created: BTreeMap::new(),
            excused: BTreeSet::new(),
            acknowledged: Vec::new(),
            hidden: BTreeSet::new(),
        }
    }

    fn step(&mut self, action: &Action) {
        self.now += 10;
        match *action {
            Action::DeviceEdit {
                device,
                doc,
                value: v,
            } => {
                let id = doc_id(doc);
                // A device creates its own document once (ids are random in real life, and
                // a second creation would reuse its actor's sequence numbers).
                let create = doc == 3 + device as u32 && !self.created.contains_key(&(device, id));
                let dev = &mut self.devices[device];
                if !dev.docs.contains_key(&id) && !create {
                    return;
                }
                let (key, value) = value(v, self.now);
                let before = dev.docs.get(&id).map(Automerge::get_heads);
                dev.edit(id, key, &value);
                let after = dev.docs[&id].get_heads();
                // Writing the value a key already holds makes no change.
                if before.as_ref() != Some(&after) {
                    self.created.entry((device, id)).or_default().extend(after);
                }
            }
            Action::ServerEdit { doc, value: v } => {
                let id = doc_id(doc);
                if self.server.document(&id).is_none() && doc >= 3 {
                    return;
                }
                let (key, value) = value(v, self.now);
                self.server.edit(id, |d| put(d, key, &value));
            }
            Action::Send { device } => {
                if self.in_flight[device].is_none() {
                    let body = self.devices[device].request();
                    self.sent[device].push(body.clone());
                    self.in_flight[device] = Some(Attempt {
                        body,
                        deadline: self.now + TIMEOUT,
                    });
                }
            }
            Action::Deliver { device, fate } => {
                let Some(attempt) = self.in_flight[device].take() else {
                    return;
                };
                let late = self.now > attempt.deadline;
                match fate {
                    Fate::LoseRequest => {}
                    Fate::LoseReply => {
                        self.serve(device, &attempt.body);
                    }
                    Fate::Ok | Fate::Duplicate => {
                        let reply = self.serve(device, &attempt.body);
                        let reply = if matches!(fate, Fate::Duplicate) {
                            self.serve(device, &attempt.body)
                        } else {
                            reply
                        };
                        // A device that timed out no longer listens on that connection.
                        if !late {
                            self.receive(device, &reply);
                        }
                    }
                }
            }
            Action::LateCopy { device, which } => {
                let Some(body) = self.sent[device].get(which).cloned() else {
                    return;
                };
                let reply = self.serve(device, &body);
                self.receive(device, &reply);
            }
            Action::Abandon { device } => {
                self.devices[device].state.abandon_pending();
                self.in_flight[device] = None;
            }
            Action::Hide { device, doc } => {
                self.server.hide(device_wire_id(device), doc_id(doc));
                self.hidden.insert((device, doc_id(doc)));
            }
            Action::Show { device, doc } => {
                self.server.show(device_wire_id(device), doc_id(doc));
                self.hidden.remove(&(device, doc_id(doc)));
            }
            Action::LoseDocument { device, doc } => {
                let id = doc_id(doc);
                let dev = &mut self.devices[device];
                if dev.docs.remove(&id).is_some() {
                    dev.state.document_lost(id);
                    self.excuse_unpushed(device, id);
                }
            }
            Action::WrongKnowledge { device, doc } => {
                let id = doc_id(doc);
                if let Some(heads) = self.server.document(&id).map(Automerge::get_heads) {
                    *self.server.knowledge_mut(device_wire_id(device), id) = DocKnowledge {
                        confirmed: heads,
                        pending: None,
                    };
                    let value = format!("after {}", self.now);
                    self.server.edit(id, |d| put(d, "field", &value));
                }
            }
            Action::Wait { millis } => self.now += millis,
        }
    }

    /// The server handles a body; the answer is what goes back on the wire.
    fn serve(&mut self, device: usize, body: &[u8]) -> Vec<u8> {
        match self.server.handle(device_wire_id(device), body) {
            Ok(reply) => reply,
            // A late copy of an old request whose key was reused cannot happen: keys are unique.
            Err(e) => panic!("server refused a device request: {e}"),
        }
    }

    fn receive(&mut self, device: usize, reply: &[u8]) {
        let pushed: Vec<PushEntry> = self.devices[device]
            .state
            .pending
            .as_ref()
            .map(|p| p.push.clone())
            .unwrap_or_default();
        let Ok(effects) = self.devices[device].receive(reply) else {
            // A reply to a request the device no longer waits for.
            return;
        };
        for push in &pushed {
            if effects.acknowledged.contains(&push.document_id) {
                let on_server = self.server.document(&push.document_id).expect("stored");
                assert!(
                    on_server.get_missing_deps(&push.heads).is_empty(),
                    "acknowledged changes of {} are on the server",
                    push.document_id
                );
                self.acknowledged
                    .push((push.document_id, push.heads.clone()));
            }
        }
        for id in &effects.lost_local_changes {
            self.excuse_unpushed(device, *id);
        }
    }

    /// Changes the device made to `id` that the server does not have are gone with the
    /// device's copy.
    fn excuse_unpushed(&mut self, device: usize, id: DocumentId) {
        let on_server = self.server.document(&id);
        if let Some(hashes) = self.created.get(&(device, id)) {
            for hash in hashes {
                let stored = on_server.is_some_and(|d| d.get_change_by_hash(hash).is_some());
                if !stored {
                    self.excused.insert(*hash);
                }
            }
        }
    }

    /// Repairs the network and lets every device sync until a pass in which no device has
    /// anything to send or receives anything.
    fn settle(&mut self) {
        for (device, id) in std::mem::take(&mut self.hidden) {
            self.server.show(device_wire_id(device), id);
        }
        self.in_flight = vec![None; DEVICES];
        for _round in 0..12 {
            // Refusals here are stale ones (a replayed answer from while a document was out
            // of scope); the officer retries them.
            for device in &mut self.devices {
                device.state.retry_refused();
            }
            let mut quiet = true;
            for device in 0..DEVICES {
                for _ in 0..20 {
                    let had_work = self.devices[device].state.needs_sync();
                    let body = self.devices[device].request();
                    let reply = self.serve(device, &body);
                    self.receive(device, &reply);
                    let response = decode_response(&reply).expect("valid response");
                    let received = !response.updates.is_empty()
                        || !response.removed.is_empty()
                        || !response.repair.is_empty();
                    quiet &= !had_work && !received;
                    if !self.devices[device].state.needs_sync() {
                        break;
                    }
                }
            }
            if quiet {
                return;
            }
        }
        panic!("the world did not settle");
    }

    fn check(&self) {
        let server_docs: Vec<DocumentId> = self.server.document_ids().copied().collect();
        for device in &self.devices {
            for id in &server_docs {
                let on_server = self.server.document(id).expect("listed");
                let Some(doc) = device.docs.get(id) else {
                    panic!("device {} lacks {id}", device.id);
                };
                assert_eq!(doc.get_heads(), on_server.get_heads(), "heads of {id}");
                assert_eq!(
                    doc.get_changes(&[]).len(),
                    on_server.get_changes(&[]).len(),
                    "change count of {id}"
                );
            }
            assert_eq!(device.docs.len(), server_docs.len(), "no extra documents");
        }
        for (id, heads) in &self.acknowledged {
            let on_server = self.server.document(id).expect("stored");
            assert!(
                on_server.get_missing_deps(heads).is_empty(),
                "acked {id} kept"
            );
        }
        let all_created: BTreeSet<ChangeHash> = self.created.values().flatten().copied().collect();
        for ((_, id), hashes) in &self.created {
            for hash in hashes.difference(&self.excused) {
                let on_server = self.server.document(id).expect("pushed");
                assert!(
                    on_server.get_change_by_hash(hash).is_some(),
                    "change {hash} of {id} reached the server"
                );
            }
        }
        // Every change on the server was made by a device or by the server: nothing appears
        // from nowhere, and Automerge's dedup by hash means nothing appears twice.
        for id in &server_docs {
            let doc = self.server.document(id).expect("listed");
            let changes = doc.get_changes(&[]);
            let distinct: BTreeSet<ChangeHash> = changes.iter().map(|c| c.hash()).collect();
            assert_eq!(distinct.len(), changes.len());
            for change in &changes {
                assert!(
                    change.actor_id() == &actor(SERVER) || all_created.contains(&change.hash()),
                    "change {} of {id} has an origin",
                    change.hash()
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(128),
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    })]

    #[test]
    fn devices_and_server_converge(actions in prop::collection::vec(action(), 1..60)) {
        let mut world = World::new();
        for action in &actions {
            world.step(action);
        }
        world.settle();
        world.check();
    }
}

#[test]
fn a_scripted_storm_converges() {
    use Action::*;
    let mut world = World::new();
    let script = [
        Send { device: 0 },
        Deliver {
            device: 0,
            fate: Fate::Ok,
        },
        Send { device: 1 },
        Deliver {
            device: 1,
            fate: Fate::Ok,
        },
        DeviceEdit {
            device: 0,
            doc: 0,
            value: 0,
        },
        DeviceEdit {
            device: 1,
            doc: 0,
            value: 3,
        },
        DeviceEdit {
            device: 0,
            doc: 3,
            value: 2,
        },
        ServerEdit { doc: 0, value: 4 },
        Send { device: 0 },
        Deliver {
            device: 0,
            fate: Fate::LoseReply,
        },
        Send { device: 0 },
        Deliver {
            device: 0,
            fate: Fate::Duplicate,
        },
        Send { device: 1 },
        Wait { millis: 5_000 },
        Deliver {
            device: 1,
            fate: Fate::Ok,
        },
        Hide { device: 1, doc: 1 },
        WrongKnowledge { device: 1, doc: 0 },
        ServerEdit { doc: 0, value: 5 },
        LoseDocument { device: 0, doc: 2 },
        Send { device: 1 },
        Deliver {
            device: 1,
            fate: Fate::Ok,
        },
        LateCopy {
            device: 0,
            which: 0,
        },
        Abandon { device: 1 },
        Show { device: 1, doc: 1 },
    ];
    for action in &script {
        world.step(action);
    }
    world.settle();
    world.check();
    let doc = world.server.document(&doc_id(0)).expect("doc");
    assert_eq!(get(doc, "status").as_deref(), Some("submitted"));
}
