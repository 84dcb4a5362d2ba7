// Interop scenario: two automerge-repo 2.5.6 clients converge through the server.
//
// Client A (its own NodeFS storage, its own peer id) creates --docs documents and makes
// --changes changes to each; client B (separate storage and peer id) finds every document and
// makes its own --changes changes (to its own keys and to a shared list); both must end with
// identical heads and identical content that holds every change of both.
//
// By default B looks a document up only after the server acknowledged A's heads for it, so a
// `doc-unavailable` is a server bug. --find-early makes B ask while A's upload may still be in
// flight (the server must wait for A instead of answering `doc-unavailable`).
//
// Usage: node converge.mjs --url ws://127.0.0.1:PORT/v1/ws [--docs 3] [--changes 5]
//        [--timeout-ms 60000] [--find-early] [--state-dir DIR]
// Prints one JSON line; exits 0 when converged, 1 on failure or deadline, 2 on bad usage.
import {
  cli, intOpt, requireWsUrl, deadline, run, succeed, usageError, waitFor, sleep,
  Client, ImmutableString, headsEqual, plain, dirOrTemp, removeDir,
  clientUrl, jemputDocument,
} from "./lib.mjs";
import path from "node:path";

const USAGE = "usage: node converge.mjs --url ws://HOST:PORT/v1/ws [--url-b URL] [--docs N] [--changes N] [--timeout-ms MS] [--find-early] [--state-dir DIR]";
const opts = cli("converge", {
  url: {},
  "url-b": {},
  docs: { default: "3" },
  changes: { default: "5" },
  "timeout-ms": { default: "60000" },
  "find-early": { type: "boolean", default: false },
  "state-dir": {},
}, USAGE);
const url = requireWsUrl(opts, USAGE);
const urlB = clientUrl(opts, "b");
const docs = intOpt(opts, "docs", USAGE);
const changes = intOpt(opts, "changes", USAGE);
const timeoutMs = intOpt(opts, "timeout-ms", USAGE);
if (docs < 1 || changes < 1) usageError("--docs and --changes must be at least 1", USAGE);

let stage = "starting";
deadline(timeoutMs, () => `stage: ${stage}`);
const started = Date.now();
const left = () => Math.max(1, timeoutMs - (Date.now() - started));

function complete(doc) {
  return (
    doc &&
    Object.keys(doc.a ?? {}).length === changes &&
    Object.keys(doc.b ?? {}).length === changes &&
    (doc.log?.length ?? 0) === 2 * changes
  );
}

run(async () => {
  const stateDir = dirOrTemp(opts["state-dir"], "converge");
  const a = new Client({ name: "A", url, storageDir: path.join(stateDir, "a") });
  const b = new Client({ name: "B", url: urlB, storageDir: path.join(stateDir, "b") });

  stage = "connecting";
  await a.waitConnected(Math.min(left(), 20000));
  await b.waitConnected(Math.min(left(), 20000));

  stage = "A creates and edits";
  const handlesA = [];
  for (let d = 0; d < docs; d++) {
    const h = a.repo.create({
      ...jemputDocument(),
      kind: new ImmutableString("jemput/interop-test@1"),
      title: `document ${d} by A`, // a plain string: JS Automerge 3 stores it as Text
      a: {},
      b: {},
      log: [],
    });
    handlesA.push(h);
  }
  const bFinds = [];
  for (let j = 0; j < changes; j++) {
    for (const h of handlesA) {
      h.change(doc => {
        doc.a[`k${j}`] = j;
        doc.log.push(new ImmutableString(`A${j}`));
      });
    }
    if (j === 0 && opts["find-early"]) {
      stage = "B finds early";
      for (const h of handlesA) bFinds.push(b.find(h.url, left()));
    }
    await sleep(30); // several sync messages rather than one batch
  }

  if (!opts["find-early"]) {
    stage = "waiting for the server to acknowledge A's documents";
    for (const h of handlesA) await a.waitServerHas(h, left());
    stage = "B finds";
    for (const h of handlesA) bFinds.push(b.find(h.url, left()));
  }
  const handlesB = await Promise.all(bFinds);

  stage = "B edits";
  for (let j = 0; j < changes; j++) {
    for (const h of handlesB) {
      h.change(doc => {
        doc.b[`k${j}`] = j;
        doc.log.push(new ImmutableString(`B${j}`));
      });
    }
    await sleep(30);
  }

  stage = "waiting for convergence";
  await waitFor(
    () => handlesA.every((ha, i) => {
      const hb = handlesB[i];
      return complete(ha.doc()) && complete(hb.doc()) && headsEqual(ha.heads(), hb.heads());
    }),
    {
      timeoutMs: left(),
      what: "both clients to hold every change of every document",
      describe: () => handlesA
        .map((ha, i) => `${ha.documentId}: A ${JSON.stringify(plain(ha.doc()))} B ${JSON.stringify(plain(handlesB[i].doc()))}`)
        .join(" | "),
    },
  );
  for (let i = 0; i < docs; i++) {
    const pa = JSON.stringify(plain(handlesA[i].doc()));
    const pb = JSON.stringify(plain(handlesB[i].doc()));
    if (pa !== pb) throw new Error(`same heads but different content for ${handlesA[i].url}: ${pa} vs ${pb}`);
  }

  const elapsed = Date.now() - started;
  await a.shutdown();
  await b.shutdown();
  if (!opts["state-dir"]) removeDir(stateDir);
  succeed({
    docs,
    changes_per_client: changes,
    elapsed_ms: elapsed,
    peer_ids: [a.peerId, b.peerId],
    urls: handlesA.map(h => h.url),
    heads: handlesA.map(h => h.heads()),
  });
});
