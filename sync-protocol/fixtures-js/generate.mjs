// Captures the bytes the real automerge-repo 2.5.6 JS classes put on a WebSocket, for the
// golden tests of jemput-sync-protocol (../tests/golden.rs).
//
// A real Repo behind a real WebSocketServerAdapter talks to real Repos behind
// WebSocketClientAdapters over localhost; every binary frame in both directions is recorded
// at the server's sockets. The few messages JS never sends by itself (`leave`, a `join`
// without `supportedProtocolVersions`, tagged byte strings, a count ≥ 2^32) are encoded with
// the same cbor helper the adapters use (or, for the tag, cbor-x with its default options).
//
// Usage: npm ci && node generate.mjs   (writes ../tests/fixtures/js-messages.json)

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import {
  Repo,
  cbor,
  documentIdToBinary,
  generateAutomergeUrl,
  interpretAsDocumentId,
  parseAutomergeUrl,
  stringifyAutomergeUrl,
} from "@automerge/automerge-repo";
import {
  WebSocketClientAdapter,
  WebSocketServerAdapter,
} from "@automerge/automerge-repo-network-websocket";
import { Encoder } from "cbor-x";
import { WebSocket, WebSocketServer } from "ws";

const here = dirname(fileURLToPath(import.meta.url));
const OUT = join(here, "..", "tests", "fixtures", "js-messages.json");

/** Keys are arrays of strings; values Uint8Arrays. Enough for a Repo to have a storageId. */
class MemoryStorage {
  #data = new Map();
  #key = k => k.join("\u0000");
  async load(k) {
    return this.#data.get(this.#key(k));
  }
  async save(k, v) {
    this.#data.set(this.#key(k), v);
  }
  async remove(k) {
    this.#data.delete(this.#key(k));
  }
  async loadRange(prefix) {
    const p = this.#key(prefix);
    return [...this.#data]
      .filter(([k]) => k.startsWith(p))
      .map(([k, data]) => ({ key: k.split("\u0000"), data }));
  }
  async removeRange(prefix) {
    const p = this.#key(prefix);
    for (const k of [...this.#data.keys()]) if (k.startsWith(p)) this.#data.delete(k);
  }
}

/** Every frame seen at the server, in order. */
const frames = [];

async function until(what, predicate, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise(r => setTimeout(r, 10));
  }
}

function decoded() {
  return frames.map(f => ({ ...f, msg: cbor.decode(f.bytes) }));
}

function find(what, pred) {
  const hit = decoded().find(f => pred(f.msg, f.dir));
  if (!hit) throw new Error(`no frame for ${what}`);
  return hit;
}

/** The matching frame with the largest `data`. */
function largest(what, pred) {
  const hits = decoded().filter(f => pred(f.msg, f.dir));
  if (hits.length === 0) throw new Error(`no frame for ${what}`);
  return hits.reduce((x, y) => (y.msg.data.byteLength > x.msg.data.byteLength ? y : x));
}

function seen(pred) {
  return decoded().some(f => pred(f.msg, f.dir));
}

/** The JSON view of what cbor-x decodes: bytes as {"$bytes": hex}, undefined kept. */
function jsView(value) {
  return JSON.parse(
    JSON.stringify(value, (_key, v) => {
      if (v === undefined) return { $undefined: true };
      if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString("hex") };
      if (v && v.type === "Buffer" && Array.isArray(v.data))
        return { $bytes: Buffer.from(v.data).toString("hex") };
      return v;
    }),
  );
}

// ----------------------------------------------------------------------------------------
// The server: a Repo with storage and heads gossip, behind WebSocketServerAdapter.

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
await new Promise(r => wss.once("listening", r));
// Registered before the adapter's listeners, so it sees (and wraps) every socket first.
wss.on("connection", socket => {
  const send = socket.send.bind(socket);
  socket.send = (data, ...rest) => {
    frames.push({ dir: "server->client", bytes: new Uint8Array(Buffer.from(data)) });
    return send(data, ...rest);
  };
  socket.on("message", data => {
    frames.push({ dir: "client->server", bytes: new Uint8Array(data) });
  });
});
const url = `ws://127.0.0.1:${wss.address().port}`;

const server = new Repo({
  network: [new WebSocketServerAdapter(wss)],
  storage: new MemoryStorage(),
  peerId: "jemput-fixture-server",
  enableRemoteHeadsGossiping: true,
  sharePolicy: async () => true,
});

const client = (peerId, { storage }) =>
  new Repo({
    network: [new WebSocketClientAdapter(url)],
    storage: storage ? new MemoryStorage() : undefined,
    peerId,
    enableRemoteHeadsGossiping: true,
  });

// A: a device with storage. Creates and edits a document, broadcasts presence.
const a = client("peer-fixture-a", { storage: true });
await until("peer for A", () => seen(m => m.type === "peer" && m.targetId === "peer-fixture-a"));
const handle = a.create({ schema: "jemput/application@1", status: "draft" });
handle.change(d => {
  d.service = "DUKCAPIL-KTP-EL-BARU";
});
await until("sync from A", () =>
  seen((m, dir) => m.type === "sync" && m.senderId === "peer-fixture-a" && dir === "client->server"),
);
await until("sync to A", () =>
  seen(m => m.type === "sync" && m.targetId === "peer-fixture-a"),
);
handle.broadcast({ presence: "typing" });
await until("ephemeral from A", () => seen(m => m.type === "ephemeral"));
const storageIdA = await a.storageId();

// B: another device with storage; heads gossip about A; asks for a document nobody has.
const b = client("peer-fixture-b", { storage: true });
await until("peer for B", () => seen(m => m.type === "peer" && m.targetId === "peer-fixture-b"));
b.subscribeToRemotes([storageIdA]);
await until("subscription from B", () =>
  seen(m => m.type === "remote-subscription-change" && m.add),
);
await b.find(handle.url);
// A changes the document again: the server tells B about A's new heads.
handle.change(d => {
  d.status = "submitted";
});
await until("remote-heads-changed to B", () =>
  seen(m => m.type === "remote-heads-changed" && m.targetId === "peer-fixture-b"),
);
const missing = generateAutomergeUrl();
await b.find(missing).then(
  () => {
    throw new Error("a random document was found");
  },
  () => {},
);
await until("doc-unavailable to B", () => seen(m => m.type === "doc-unavailable"));

// C: a browser tab without storage: `storageId: undefined, isEphemeral: true`.
const c = client("peer-fixture-c", { storage: false });
await until("peer for C", () => seen(m => m.type === "peer" && m.targetId === "peer-fixture-c"));

// An old client offering only version "2": the server answers with an error.
const raw = new WebSocket(url);
await new Promise(r => raw.once("open", r));
raw.send(cbor.encode({ type: "join", senderId: "peer-fixture-old", supportedProtocolVersions: ["2"] }));
await until("error", () => seen(m => m.type === "error"));

// ----------------------------------------------------------------------------------------
// Fixtures.

const fixtures = [];
function add(name, source, dir, bytes) {
  fixtures.push({
    name,
    source,
    direction: dir,
    hex: Buffer.from(bytes).toString("hex"),
    js: jsView(cbor.decode(bytes)),
  });
}
function captured(name, what, pred) {
  const f = find(what, pred);
  add(name, "captured at the server's socket", f.dir, f.bytes);
}

const c2s = (type, extra = () => true) => (m, dir) =>
  dir === "client->server" && m.type === type && extra(m);
const s2c = (type, extra = () => true) => (m, dir) =>
  dir === "server->client" && m.type === type && extra(m);

captured("join-with-storage", "join from A", c2s("join", m => m.senderId === "peer-fixture-a"));
captured("join-without-storage", "join from C", c2s("join", m => m.senderId === "peer-fixture-c"));
add("join-unsupported-version", "cbor.encode from a raw WebSocket client, captured at the server",
  "client->server", find("old join", c2s("join", m => m.senderId === "peer-fixture-old")).bytes);
captured("peer", "peer to A", s2c("peer", m => m.targetId === "peer-fixture-a"));
captured("error-unsupported-version", "error", s2c("error"));
const syncFromA = largest("sync from A", c2s("sync", m => m.senderId === "peer-fixture-a"));
add("sync-from-client", "captured at the server's socket (A's largest sync)", syncFromA.dir,
  syncFromA.bytes);
captured("sync-from-server", "sync to A", s2c("sync", m => m.targetId === "peer-fixture-a"));
captured("request", "request from B", c2s("request"));
captured("doc-unavailable", "doc-unavailable to B", s2c("doc-unavailable"));
captured("ephemeral", "ephemeral from A", c2s("ephemeral"));
captured("remote-subscription-change-add", "subscribe", c2s("remote-subscription-change", m => m.add));
captured("remote-subscription-change-from-server", "subscription forwarded by the server",
  s2c("remote-subscription-change"));
captured("remote-heads-changed", "heads to B", s2c("remote-heads-changed"));

const synthetic = "synthetic: automerge-repo's cbor.encode (as the adapters call it)";
add("leave", synthetic, "client->server", cbor.encode({ type: "leave", senderId: "peer-fixture-a" }));
add("join-without-versions", synthetic, "client->server",
  cbor.encode({ type: "join", senderId: "peer-fixture-d", peerMetadata: {} }));
const ephemeral = find("ephemeral", c2s("ephemeral")).msg;
add("ephemeral-count-above-2^32", synthetic, "client->server",
  cbor.encode({ ...ephemeral, count: 2 ** 32 + 7 }));
// Repo has no unsubscribe API; this is the shape its change-remote-subs handler sends.
add("remote-subscription-change-remove", synthetic, "client->server",
  cbor.encode({ type: "remote-subscription-change", targetId: "jemput-fixture-server",
    add: undefined, remove: [storageIdA], senderId: "peer-fixture-b" }));
const sync = syncFromA.msg;
add("sync-tagged-uint8array", "synthetic: cbor-x Encoder with default options (tag 64)",
  "client->server", new Encoder({ useRecords: false }).encode(sync));

// Document ids as JS writes and reads them.
const ids = [];
const addId = (input, note) => {
  const documentId = interpretAsDocumentId(input);
  ids.push({ input, note, documentId, hex: Buffer.from(documentIdToBinary(documentId)).toString("hex") });
};
for (let i = 0; i < 8; i++) addId(parseAutomergeUrl(generateAutomergeUrl()).documentId, "Repo.create()'s generator");
addId(interpretAsDocumentId(new Uint8Array(16)), "all zero bytes (leading '1's)");
addId(interpretAsDocumentId(new Uint8Array(16).fill(255)), "all 0xff bytes");
addId(handle.url, "automerge: URL");
addId(stringifyAutomergeUrl({ documentId: handle.documentId, heads: handle.heads() }), "URL with heads");
addId("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "legacy UUID (interpretAsDocumentId)");
addId("F47AC10B-58CC-4372-A567-0E02B2C3D479", "legacy UUID, upper case");

const pkg = name =>
  JSON.parse(readFileSync(join(here, "node_modules", name, "package.json"), "utf8")).version;
const output = {
  comment:
    "Generated by sync-protocol/fixtures-js/generate.mjs; do not edit. `js` is what cbor-x " +
    "decodes from `hex`, bytes as {\"$bytes\": hex} and undefined as {\"$undefined\": true}.",
  versions: {
    node: process.version,
    "@automerge/automerge-repo": pkg("@automerge/automerge-repo"),
    "@automerge/automerge-repo-network-websocket": pkg("@automerge/automerge-repo-network-websocket"),
    "@automerge/automerge": pkg("@automerge/automerge"),
    "cbor-x": pkg("cbor-x"),
  },
  fixtures,
  ids,
};
mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(OUT, JSON.stringify(output, null, 2) + "\n");
console.log(`wrote ${fixtures.length} fixtures to ${OUT}`);

// The client adapters retry forever; nothing else is worth waiting for.
raw.close();
process.exit(0);
