// Benchmark load worker: runs many automerge-repo 2.5.6 clients in one Node process against one
// sync server. The driver (ws-bench.mjs) runs several of these so the clients are not the limit.
//
// Workload (per worker; clients are numbered --first .. --first+--clients-1 in the whole run):
//   - every client is its own Repo (own peer id, in-memory storage so it has a storageId like a
//     browser with IndexedDB) with one WebSocket connection to --url;
//   - setup: every client creates --docs documents (a small form: schema, owner, `f` map); once
//     the server has acknowledged a document's heads, the next --share - 1 clients of this
//     worker (a ring) `find` it, so every document is held by --share clients;
//   - changes (after the driver says "go"): every document receives --changes changes in turn:
//     change j sets field `f.c<j>` and is written by holder (j mod --share) only after that
//     holder has seen change j-1, so every change must travel client -> server -> the other
//     holders before the next one can be made (a conversation, not one batched upload);
//   - converged: every client holds all --changes fields of every document it holds. The server
//     applies docs x clients x changes changes in total (the creation changes are not counted).
//
// Protocol with the driver: JSON lines on stdout — {"type":"connected"}, {"type":"ready"},
// {"type":"progress"} every second, {"type":"done"}, {"type":"error"}; on stdin "go" starts the
// change phase and "stop" (or EOF) ends the process. Every wait has a deadline (--timeout-ms).
//
// Usage: node js-load.mjs --url ws://127.0.0.1:PORT/v1/ws --clients 50 --first 0 --docs 10
//        --changes 10 [--share 2] [--client-storage memory|none] [--timeout-ms 300000]
//        [--connect-batch 25] [--setup-concurrency 32]
import readline from "node:readline";
import {
  cli, intOpt, requireWsUrl, usageError, installNetworkErrorGuard, networkErrorCount, recentNetworkErrors,
  Client, ImmutableString,
} from "../js/lib.mjs";

const USAGE = "usage: node js-load.mjs --url ws://HOST:PORT/v1/ws --clients K --first N --docs D --changes C [--share S] [--client-storage memory|none] [--timeout-ms MS]";
const opts = cli("js-load", {
  url: {},
  clients: {},
  first: { default: "0" },
  docs: {},
  changes: {},
  share: { default: "2" },
  "client-storage": { default: "memory" },
  "timeout-ms": { default: "300000" },
  "connect-batch": { default: "25" },
  "setup-concurrency": { default: "32" },
}, USAGE);
const url = requireWsUrl(opts, USAGE);
const K = intOpt(opts, "clients", USAGE);
const first = intOpt(opts, "first", USAGE);
const D = intOpt(opts, "docs", USAGE);
const C = intOpt(opts, "changes", USAGE);
const S = intOpt(opts, "share", USAGE);
const timeoutMs = intOpt(opts, "timeout-ms", USAGE);
const connectBatch = Math.max(1, intOpt(opts, "connect-batch", USAGE));
const setupConcurrency = Math.max(1, intOpt(opts, "setup-concurrency", USAGE));
if (K < 1 || D < 1 || C < 1 || S < 1) usageError("--clients, --docs, --changes, --share must be >= 1", USAGE);
if (S > K) usageError(`--share ${S} needs at least that many clients in one worker (got ${K})`, USAGE);
if (!["memory", "none"].includes(opts["client-storage"])) usageError("--client-storage must be memory or none", USAGE);

installNetworkErrorGuard();
const t0 = Date.now();
const left = () => Math.max(1, timeoutMs - (Date.now() - t0));
const emit = obj => process.stdout.write(`${JSON.stringify({ ...obj, at: Date.now() })}\n`);
let phase = "connecting";

// Wall-clock deadline of the whole worker: report and exit rather than hang.
setTimeout(() => {
  emit({ type: "error", error: `worker deadline ${timeoutMs} ms passed in phase ${phase}`, ...progress() });
  process.exit(1);
}, timeoutMs).unref();

const clients = [];
/** Per held document: { handle, rank, seen, written:Set } for each client. */
const held = []; // entries {client, handle, rank, seen}
let seenTotal = 0;
let heldDone = 0;
let goAt;
let doneAt;

function progress() {
  return {
    clients: K,
    connected: clients.filter(c => c.connected).length,
    held_docs: held.length,
    held_docs_expected: K * D * S,
    held_docs_done: heldDone,
    changes_seen: seenTotal,
    changes_seen_expected: K * D * S * C,
    network_errors: networkErrorCount(),
    find_retries: clients.reduce((n, c) => n + (c.findRetries ?? 0), 0),
  };
}

function fieldCount(doc) {
  return doc?.f ? Object.keys(doc.f).length : 0;
}

/** Called on every change of a held document: record progress, write our turn if it is ours. */
function onChange(entry) {
  const n = fieldCount(entry.handle.doc());
  if (n > entry.seen) {
    seenTotal += n - entry.seen;
    entry.seen = n;
    if (n === C) {
      heldDone += 1;
      if (heldDone === held.length && goAt !== undefined && doneAt === undefined) {
        doneAt = Date.now();
        emit({ type: "done", converge_ms: doneAt - goAt, ...progress() });
        void stopProfile?.();
      }
    }
  }
  maybeWrite(entry);
}

function maybeWrite(entry) {
  if (goAt === undefined) return;
  const n = entry.seen;
  if (n >= C || n % S !== entry.rank || entry.written.has(n)) return;
  entry.written.add(n);
  // Out of the change event: make the next change as a user would, right after seeing one.
  setImmediate(() => {
    entry.handle.change(doc => {
      doc.f[`c${n}`] = new ImmutableString(`value ${n} from client ${entry.client.index}`);
    });
  });
}

function hold(client, handle, rank) {
  const entry = { client, handle, rank, seen: 0, written: new Set() };
  entry.seen = fieldCount(handle.doc());
  held.push(entry);
  handle.on("change", () => onChange(entry));
  return entry;
}

// Developer aid: JS_LOAD_CPU_PROFILE=FILE writes a V8 CPU profile of the change phase.
let stopProfile;
async function startProfile(file) {
  const { Session } = await import("node:inspector/promises");
  const fs = await import("node:fs");
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.start");
  stopProfile = async () => {
    stopProfile = undefined;
    const { profile } = await session.post("Profiler.stop");
    fs.writeFileSync(file, JSON.stringify(profile));
  };
}

async function main() {
  // Connect in batches so a slow server sees a steady stream of handshakes, not a thundering herd.
  for (let i = 0; i < K; i++) {
    const c = new Client({
      name: `c${first + i}`,
      url,
      memory: opts["client-storage"] === "memory",
      retryMs: 5000,
    });
    c.index = first + i;
    clients.push(c);
    if ((i + 1) % connectBatch === 0) {
      await Promise.all(clients.slice(i + 1 - connectBatch, i + 1).map(x => x.waitConnected(left())));
    }
  }
  await Promise.all(clients.map(c => c.waitConnected(left())));
  emit({ type: "connected", ms: Date.now() - t0, ...progress() });
  setInterval(() => emit({ type: "progress", phase, ...progress() }), 1000).unref();

  phase = "setup";
  const owned = clients.map(c =>
    Array.from({ length: D }, (_, d) =>
      c.repo.create({
        // A field-visit document in the bench officer's district: what Jemput accepts (the
        // other servers store anything).
        schema: new ImmutableString("jemput/visit@1"),
        region: {
          district: new ImmutableString("34.71.01"),
          village: new ImmutableString("34.71.01.1001"),
        },
        owner: new ImmutableString(c.name),
        doc: d,
        f: {},
      }),
    ),
  );
  owned.forEach((handles, i) => handles.forEach(h => hold(clients[i], h, 0)));
  // Each document goes to the next S-1 clients in the ring once the server has it; at most
  // --setup-concurrency documents at a time, so that setup does not bury the server.
  const tasks = owned.flatMap((handles, i) => handles.map(h => async () => {
    await clients[i].waitServerHas(h, left());
    for (let r = 1; r < S; r++) {
      const other = clients[(i + r) % K];
      const found = await other.findPatiently(h.url, left());
      hold(other, found, r);
    }
  }));
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(setupConcurrency, tasks.length) }, async () => {
    while (next < tasks.length) await tasks[next++]();
  }));
  emit({ type: "ready", setup_ms: Date.now() - t0, ...progress() });

  phase = "waiting for go";
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", line => {
    const cmd = line.trim();
    if (cmd === "go" && goAt === undefined) {
      phase = "changes";
      goAt = Date.now();
      if (process.env.JS_LOAD_CPU_PROFILE) void startProfile(process.env.JS_LOAD_CPU_PROFILE);
      for (const e of held) maybeWrite(e);
    } else if (cmd === "stop") {
      // For a run that did not finish: which documents are stuck, where, and whose turn it is.
      const stuck = held.filter(e => e.seen < C).slice(0, 10).map(e => ({
        doc: e.handle.documentId,
        client: e.client.index,
        rank: e.rank,
        seen: e.seen,
        my_turn: e.seen % S === e.rank,
        connected: e.client.connected,
      }));
      emit({ type: "stopped", ...progress(), stuck_sample: stuck, last_network_errors: recentNetworkErrors(3) });
      process.exit(0);
    }
  });
  rl.on("close", () => process.exit(0));
}

main().catch(e => {
  emit({ type: "error", error: `${phase}: ${e?.message ?? e}`, ...progress() });
  process.exit(1);
});
// Keep the event loop alive while waiting for the driver.
setInterval(() => {}, 60000);
