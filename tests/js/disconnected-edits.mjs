// Interop scenario: concurrent edits while one client is disconnected converge on reconnect.
//
// A and B (separate NodeFS storage, separate peer ids) share --docs documents through the
// server. B goes offline (its Repo shuts down; its storage stays), reopens its storage with no
// network and edits every document while A, still online, edits the same documents: different
// keys (A's `a`, B's `b`), the same key (`shared`), the same list and the same text. Once the
// server has A's edits, B reconnects: by default as a new Repo on the same storage and peer id
// that finds every document again (a device whose app restarts); with --reconnect same-repo the
// offline Repo gets a WebSocket adapter instead. Both must end with identical heads and content
// holding every edit, and both see the `shared` conflict (both values).
//
// Usage: node disconnected-edits.mjs --url ws://127.0.0.1:PORT/v1/ws [--docs 3] [--changes 4]
//        [--reconnect new-repo|same-repo] [--timeout-ms 60000] [--state-dir DIR]
// Prints one JSON line; exits 0 when converged, 1 on failure or deadline, 2 on bad usage.
import path from "node:path";
import { getConflicts, splice } from "@automerge/automerge-repo";
import {
  cli, intOpt, requireWsUrl, deadline, run, succeed, usageError, waitFor, sleep,
  Client, ImmutableString, headsEqual, plain, str, dirOrTemp, removeDir,
  clientUrl, jemputDocument,
} from "./lib.mjs";

const USAGE = "usage: node disconnected-edits.mjs --url ws://HOST:PORT/v1/ws [--url-b URL] [--docs N] [--changes N] [--reconnect new-repo|same-repo] [--timeout-ms MS] [--state-dir DIR]";
const opts = cli("disconnected-edits", {
  url: {},
  "url-b": {},
  docs: { default: "3" },
  changes: { default: "4" },
  reconnect: { default: "new-repo" },
  "timeout-ms": { default: "60000" },
  "state-dir": {},
}, USAGE);
const url = requireWsUrl(opts, USAGE);
const urlB = clientUrl(opts, "b");
const docs = intOpt(opts, "docs", USAGE);
const changes = intOpt(opts, "changes", USAGE);
const timeoutMs = intOpt(opts, "timeout-ms", USAGE);
if (docs < 1 || changes < 1) usageError("--docs and --changes must be at least 1", USAGE);
if (!["new-repo", "same-repo"].includes(opts.reconnect)) usageError("--reconnect must be new-repo or same-repo", USAGE);

let stage = "starting";
deadline(timeoutMs, () => `stage: ${stage}`);
const started = Date.now();
const left = () => Math.max(1, timeoutMs - (Date.now() - started));

function complete(doc) {
  const list = (doc?.list ?? []).map(str);
  return (
    doc &&
    Object.keys(doc.a ?? {}).length === changes &&
    Object.keys(doc.b ?? {}).length === changes &&
    list.filter(x => x?.startsWith("A")).length === changes &&
    list.filter(x => x?.startsWith("B")).length === changes &&
    doc.title?.startsWith("A>") &&
    doc.title?.endsWith("<B")
  );
}

function sharedConflicts(doc) {
  return Object.values(getConflicts(doc, "shared") ?? {}).map(str).sort();
}

run(async () => {
  const stateDir = dirOrTemp(opts["state-dir"], "disconnected");
  const storageB = path.join(stateDir, "b");
  const a = new Client({ name: "A", url, storageDir: path.join(stateDir, "a") });
  let b = new Client({ name: "B", url: urlB, storageDir: storageB });
  const peerB = b.peerId;

  stage = "connecting";
  await a.waitConnected(Math.min(left(), 20000));
  await b.waitConnected(Math.min(left(), 20000));

  stage = "A creates the shared documents";
  const handlesA = [];
  for (let d = 0; d < docs; d++) {
    handlesA.push(a.repo.create({
      ...jemputDocument(),
      title: `document ${d}`,
      shared: new ImmutableString("initial"),
      a: {},
      b: {},
      list: [],
    }));
  }
  for (const h of handlesA) await a.waitServerHas(h, left());
  stage = "B finds the shared documents";
  const first = [];
  for (const h of handlesA) first.push(await b.find(h.url, left()));
  for (const [i, h] of first.entries()) {
    if (!headsEqual(h.heads(), handlesA[i].heads())) throw new Error(`B found ${h.url} with other heads than A`);
  }

  stage = "B disconnects";
  await b.shutdown();
  b = new Client({ name: "B (offline)", storageDir: storageB, peerId: peerB });
  const handlesB = [];
  for (const h of handlesA) {
    stage = `B loads ${h.url} from its storage while offline`;
    handlesB.push(await b.find(h.url, left()));
  }

  stage = "concurrent edits";
  for (let j = 0; j < changes; j++) {
    for (const [i, h] of handlesA.entries()) {
      h.change(doc => {
        doc.a[`k${j}`] = j;
        doc.list.push(new ImmutableString(`A${j}`));
        if (j === 0) {
          doc.shared = new ImmutableString("from A");
          splice(doc, ["title"], 0, 0, "A>");
        }
      });
      handlesB[i].change(doc => {
        doc.b[`k${j}`] = j;
        doc.list.push(new ImmutableString(`B${j}`));
        if (j === 0) {
          doc.shared = new ImmutableString("from B");
          splice(doc, ["title"], doc.title.length, 0, "<B");
        }
      });
    }
    await sleep(20);
  }
  stage = "the server takes A's edits while B is offline";
  for (const h of handlesA) await a.waitServerHas(h, left());
  for (const [i, h] of handlesB.entries()) {
    if (Object.keys(h.doc().a).length !== 0) throw new Error(`offline B already has A's edits of ${h.url}`);
    if (headsEqual(h.heads(), handlesA[i].heads())) throw new Error("A and B did not diverge");
  }

  stage = "B reconnects";
  if (opts.reconnect === "same-repo") {
    b.connect(urlB);
  } else {
    await b.shutdown();
    b = new Client({ name: "B (reconnected)", url: urlB, storageDir: storageB, peerId: peerB });
    handlesB.length = 0;
  }
  await b.waitConnected(Math.min(left(), 20000));
  if (opts.reconnect === "new-repo") {
    // A 2.5.6 client syncs only documents it has loaded: find each one again.
    for (const h of handlesA) handlesB.push(await b.find(h.url, left()));
  }

  stage = "waiting for convergence";
  await waitFor(
    () => handlesA.every((ha, i) => {
      const hb = handlesB[i];
      return complete(ha.doc()) && complete(hb.doc()) && headsEqual(ha.heads(), hb.heads());
    }),
    {
      timeoutMs: left(),
      what: "A and B to converge after B reconnected",
      describe: () => handlesA
        .map((ha, i) => `${ha.documentId}: A ${JSON.stringify(plain(ha.doc()))} B ${JSON.stringify(plain(handlesB[i].doc()))}`)
        .join(" | "),
    },
  );
  const shared = [];
  for (const [i, ha] of handlesA.entries()) {
    const da = ha.doc();
    const db = handlesB[i].doc();
    const pa = JSON.stringify(plain(da));
    const pb = JSON.stringify(plain(db));
    if (pa !== pb) throw new Error(`same heads but different content for ${ha.url}: ${pa} vs ${pb}`);
    const ca = sharedConflicts(da);
    const cb = sharedConflicts(db);
    if (JSON.stringify(ca) !== JSON.stringify(["from A", "from B"]) || JSON.stringify(cb) !== JSON.stringify(ca)) {
      throw new Error(`conflict on "shared" not visible on both sides of ${ha.url}: A ${JSON.stringify(ca)}, B ${JSON.stringify(cb)}`);
    }
    shared.push(str(da.shared));
  }

  const elapsed = Date.now() - started;
  await a.shutdown();
  await b.shutdown();
  if (!opts["state-dir"]) removeDir(stateDir);
  succeed({
    docs,
    changes_per_client: changes,
    reconnect: opts.reconnect,
    elapsed_ms: elapsed,
    peer_ids: [a.peerId, peerB],
    urls: handlesA.map(h => h.url),
    heads: handlesA.map(h => h.heads()),
    shared_winner: shared,
  });
});
