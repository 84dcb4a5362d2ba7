// Interop scenario: a client creates documents while no server is reachable, syncs them once the
// server is up, and a second client finds them with their full content.
//
// Phases (the state directory carries client A's NodeFS storage and state.json between them, so
// a Rust test can start and stop the server in between):
//   create  A (NodeFS storage in STATE/a, no network) creates --docs application-like documents,
//           edits each --changes times, flushes to disk, writes STATE/state.json. No server
//           needed. With --url, A's Repo also has a WebSocket adapter pointed at that URL, for a
//           server that is not running yet (the client's retry path); it does not wait for it.
//   sync    A restarts on the same storage and peer id, connects, loads (finds) every document
//           and waits until the server acknowledges A's heads for each; then a second client B
//           (no storage, new peer id) finds every document and must see exactly the content and
//           heads A created.
//   verify  a fresh client C (no storage, new peer id) finds every document and checks content
//           and heads (e.g. after the server restarted).
//   all     create, then sync (server must be up).
//   create-and-wait
//           A's Repo points at --url from the start, creates the documents while the server is
//           down (STATE/state.json appears once they are on disk), then waits for the server to
//           come up (client retry every second), syncs and verifies as in `sync`.
//
// Usage: node offline-create.mjs --phase create|sync|verify|all|create-and-wait --state-dir DIR
//        [--url ws://127.0.0.1:PORT/v1/ws] [--docs 3] [--changes 4] [--timeout-ms 60000]
// Prints one JSON line; exits 0 on success, 1 on failure or deadline, 2 on bad usage.
import fs from "node:fs";
import path from "node:path";
import {
  cli, intOpt, deadline, run, succeed, usageError, sleep,
  Client, ImmutableString, headsEqual, plain,
  clientUrl, jemputDocument,
} from "./lib.mjs";

const USAGE = "usage: node offline-create.mjs --phase create|sync|verify|all|create-and-wait --state-dir DIR [--url ws://HOST:PORT/v1/ws] [--url-b URL] [--docs N] [--changes N] [--timeout-ms MS]";
const opts = cli("offline-create", {
  phase: {},
  "state-dir": {},
  url: {},
  "url-b": {},
  docs: { default: "3" },
  changes: { default: "4" },
  "timeout-ms": { default: "60000" },
}, USAGE);
const phase = opts.phase;
const PHASES = ["create", "sync", "verify", "all", "create-and-wait"];
if (!PHASES.includes(phase)) usageError(`--phase must be one of ${PHASES.join(", ")}`, USAGE);
if (!opts["state-dir"]) usageError("--state-dir is required", USAGE);
const url = opts.url;
if (url !== undefined && !/^wss?:\/\//.test(url)) usageError("--url must be a ws:// URL", USAGE);
if (phase !== "create" && !url) usageError(`--url is required for --phase ${phase}`, USAGE);
const docs = intOpt(opts, "docs", USAGE);
const changes = intOpt(opts, "changes", USAGE);
const timeoutMs = intOpt(opts, "timeout-ms", USAGE);
const stateDir = opts["state-dir"];
const storageA = path.join(stateDir, "a");
const stateFile = path.join(stateDir, "state.json");

let stage = "starting";
deadline(timeoutMs, () => `phase ${phase}, stage: ${stage}`);
const started = Date.now();
const left = () => Math.max(1, timeoutMs - (Date.now() - started));

/** Creates the documents on client A (already constructed) and writes state.json. */
async function createDocs(a) {
  stage = "creating documents";
  const handles = [];
  for (let d = 0; d < docs; d++) {
    const h = a.repo.create({
      ...jemputDocument("jemput/application@1"),
      trackingCode: new ImmutableString(`JPT-TEST-${String(d).padStart(4, "0")}-${Date.now() % 10000}`),
      status: new ImmutableString("draft"),
      applicant: { name: `Warga Sintetis ${d}`, nik: new ImmutableString("3471010101900001") },
      fields: {},
      history: [],
      offline: true,
    });
    for (let j = 0; j < changes; j++) {
      h.change(doc => {
        doc.fields[`field${j}`] = `value ${j} of document ${d}`;
        doc.history.push({ at: j, note: new ImmutableString(`edit ${j}`) });
      });
    }
    h.change(doc => {
      doc.status = new ImmutableString("submitted");
    });
    handles.push(h);
  }
  stage = "flushing to disk";
  await a.repo.flush();
  const state = {
    peer_id_a: a.peerId,
    docs: handles.map(h => ({ url: h.url, heads: h.heads(), content: plain(h.doc()) })),
  };
  const tmp = `${stateFile}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(state, null, 1));
  fs.renameSync(tmp, stateFile);
  return { state, handles };
}

function readState() {
  try {
    return JSON.parse(fs.readFileSync(stateFile, "utf8"));
  } catch (e) {
    throw new Error(`cannot read ${stateFile} (run --phase create first): ${e.message}`);
  }
}

/** A client with no storage and a new peer id finds every document and checks it. */
async function verifyWithFreshClient(name, state) {
  const c = new Client({ name, url: clientUrl(opts, "b") });
  stage = `client ${name} connecting`;
  await c.waitConnected(left());
  for (const d of state.docs) {
    stage = `client ${name} finding ${d.url}`;
    const h = await c.find(d.url, left());
    const got = plain(h.doc());
    if (JSON.stringify(got) !== JSON.stringify(d.content)) {
      throw new Error(`client ${name}: ${d.url} has content ${JSON.stringify(got)}, expected ${JSON.stringify(d.content)}`);
    }
    if (!headsEqual(h.heads(), d.heads)) {
      throw new Error(`client ${name}: ${d.url} has heads ${JSON.stringify(h.heads())}, expected ${JSON.stringify(d.heads)}`);
    }
  }
  await c.shutdown();
  return c.peerId;
}

/** Client A (already online or about to be) loads every document and uploads it. */
async function upload(a, state) {
  stage = "client A connecting";
  await a.waitConnected(left());
  const handles = [];
  for (const d of state.docs) {
    stage = `client A loading ${d.url} from its storage`;
    const h = await a.find(d.url, left());
    if (!headsEqual(h.heads(), d.heads)) {
      throw new Error(`client A's storage has heads ${JSON.stringify(h.heads())} for ${d.url}, expected ${JSON.stringify(d.heads)}`);
    }
    handles.push(h);
  }
  for (const h of handles) {
    stage = `waiting for the server to acknowledge ${h.url}`;
    await a.waitServerHas(h, left());
  }
  await a.shutdown();
}

run(async () => {
  fs.mkdirSync(stateDir, { recursive: true });
  if (phase === "create" || phase === "all") {
    if (fs.existsSync(stateFile)) throw new Error(`${stateFile} exists: use a fresh --state-dir`);
    const a = new Client({ name: "A", url: phase === "create" ? url : undefined, storageDir: storageA });
    const { state } = await createDocs(a);
    await a.shutdown();
    if (phase === "create") {
      succeed({ phase, docs: state.docs.length, peer_id: state.peer_id_a, urls: state.docs.map(d => d.url) });
      return;
    }
  }
  if (phase === "create-and-wait") {
    if (fs.existsSync(stateFile)) throw new Error(`${stateFile} exists: use a fresh --state-dir`);
    const a = new Client({ name: "A", url, storageDir: storageA });
    await sleep(200); // let the first connection attempt fail (the server is not up yet)
    if (a.connected) throw new Error(`a server already answers at ${url}: this phase needs it down at first`);
    const { state } = await createDocs(a);
    stage = "client A waiting for the server to come up";
    await upload(a, state);
    const b = await verifyWithFreshClient("B", state);
    succeed({ phase, docs: state.docs.length, peer_ids: [state.peer_id_a, b], urls: state.docs.map(d => d.url), elapsed_ms: Date.now() - started });
    return;
  }
  const state = readState();
  if (phase === "sync" || phase === "all") {
    const a = new Client({ name: "A", url, storageDir: storageA, peerId: state.peer_id_a });
    await upload(a, state);
    const b = await verifyWithFreshClient("B", state);
    succeed({ phase, docs: state.docs.length, peer_ids: [state.peer_id_a, b], urls: state.docs.map(d => d.url), elapsed_ms: Date.now() - started });
    return;
  }
  // verify
  const c = await verifyWithFreshClient("C", state);
  succeed({ phase, docs: state.docs.length, peer_id: c, urls: state.docs.map(d => d.url), elapsed_ms: Date.now() - started });
});
