// Shared helpers for the JS automerge-repo 2.5.6 peers: interop scenarios (tests/js/*.mjs),
// the benchmark load worker and the reference server (tests/bench/).
//
// Contract of every scenario script: one JSON line on stdout (`{"ok":true,...}` or
// `{"ok":false,"error":...}`), a human-readable message on stderr when it fails, exit status 0 on
// success, 1 on failure (including the overall deadline) and 2 on bad usage. Nothing waits
// without a deadline.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

import {
  Repo,
  ImmutableString,
  isImmutableString,
  encodeHeads,
  isValidAutomergeUrl,
} from "@automerge/automerge-repo";
import {
  WebSocketClientAdapter,
  WebSocketServerAdapter,
} from "@automerge/automerge-repo-network-websocket";
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs";
import { WebSocketServer } from "ws";

export {
  Repo,
  ImmutableString,
  encodeHeads,
  isValidAutomergeUrl,
  WebSocketClientAdapter,
  WebSocketServerAdapter,
  NodeFSStorageAdapter,
  WebSocketServer,
};

// ---------------------------------------------------------------------------------------------
// Command line, results, deadlines

let scriptName = "script";
const networkErrors = [];
let networkErrorTotal = 0;

/**
 * Parses `process.argv` with node:util's parseArgs. `options` uses parseArgs' format; every
 * option is a string unless it says `type: "boolean"`. Exits 2 with `usage` on bad input.
 */
export function cli(name, options, usage) {
  scriptName = name;
  const all = { help: { type: "boolean", default: false }, ...options };
  for (const spec of Object.values(all)) spec.type ??= "string";
  let values;
  try {
    ({ values } = parseArgs({ options: all, strict: true, allowPositionals: false }));
  } catch (e) {
    process.stderr.write(`${name}: ${e.message}\n${usage}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  return values;
}

/** Reads an integer option, exiting 2 when it is not a non-negative integer. */
export function intOpt(values, key, usage) {
  const n = Number(values[key]);
  if (!Number.isInteger(n) || n < 0) usageError(`--${key} must be a non-negative integer`, usage);
  return n;
}

export function usageError(message, usage) {
  process.stderr.write(`${scriptName}: ${message}\n${usage ?? ""}\n`);
  process.exit(2);
}

export function requireWsUrl(values, usage) {
  const url = values.url;
  if (!url || !/^wss?:\/\//.test(url)) usageError("--url ws://HOST:PORT/PATH is required", usage);
  return url;
}

/**
 * The URL of client `who` ("b", "c"): `--url-<who>` when given (a Jemput server wants one token
 * per client: each is its own officer's device), else `--url`.
 */
export function clientUrl(values, who) {
  const url = values[`url-${who}`] ?? values.url;
  if (url !== undefined && !/^wss?:\/\//.test(url)) usageError(`--url-${who} must be a ws:// or wss:// URL`);
  return url;
}

/**
 * What makes a document a Jemput document the server accepts: a known schema and a region in
 * the test officers' district (Tegalrejo, Kota Yogyakarta). Scalars, not Text, as the SDK writes.
 */
export function jemputDocument(schema = "jemput/visit@1") {
  return {
    schema: new ImmutableString(schema),
    region: {
      district: new ImmutableString("34.71.01"),
      village: new ImmutableString("34.71.01.1001"),
    },
  };
}

let finished = false;

/** Prints the one-line JSON result and exits 0. */
export function succeed(fields) {
  finish(0, { ok: true, script: scriptName, ...fields });
}

/** Prints `{"ok":false,...}` on stdout, the message on stderr, and exits 1. */
export function fail(message, fields = {}) {
  const recent = networkErrors.slice(-5);
  process.stderr.write(`${scriptName}: FAILED: ${message}\n`);
  if (recent.length) process.stderr.write(`${scriptName}: recent network errors: ${recent.join("; ")}\n`);
  finish(1, { ok: false, script: scriptName, error: message, ...fields, network_errors: recent });
}

function finish(code, obj) {
  if (finished) return;
  finished = true;
  process.stdout.write(`${JSON.stringify(obj)}\n`, () => process.exit(code));
  // stdout is synchronous for files and pipes on Linux; this is only a backstop.
  setTimeout(() => process.exit(code), 2000).unref();
}

/**
 * Arms the overall deadline: when it fires the script fails with `describe()`'s text. Also
 * installs the guard against the client adapter's rethrown socket errors.
 */
export function deadline(ms, describe = () => "") {
  installNetworkErrorGuard();
  const timer = setTimeout(() => {
    const extra = describe();
    fail(`overall deadline of ${ms} ms passed${extra ? `: ${extra}` : ""}`);
  }, ms);
  return timer;
}

/** Runs `main`, turning any thrown error into a failure result. */
export function run(main) {
  main().catch(e => fail(e?.stack ?? String(e)));
}

// The 2.5.6 WebSocket client adapter rethrows every socket error except ECONNREFUSED from an
// event handler, i.e. as an uncaught exception, and `send` throws "Websocket not ready" while a
// socket is closing. Those are expected whenever a server stops or restarts; record them and
// let the adapter retry. Anything else is a bug: fail with it.
const TRANSIENT_CODES = new Set([
  "ECONNRESET", "ECONNREFUSED", "EPIPE", "ECONNABORTED", "ETIMEDOUT", "EHOSTUNREACH",
]);
const TRANSIENT_MESSAGES = [
  /WebSocket was closed before the connection was established/,
  /Websocket not ready/,
  /socket hang up/,
  /Unexpected server response/,
  /Opening handshake has timed out/,
];

export function isTransientNetworkError(err) {
  if (!err) return false;
  if (TRANSIENT_CODES.has(err.code)) return true;
  const msg = String(err.message ?? err);
  return TRANSIENT_MESSAGES.some(re => re.test(msg));
}

let guardInstalled = false;
export function installNetworkErrorGuard() {
  if (guardInstalled) return;
  guardInstalled = true;
  const handler = err => {
    if (isTransientNetworkError(err)) {
      networkErrorTotal += 1;
      networkErrors.push(`${err.code ?? ""} ${String(err.message ?? err)}`.trim());
      if (networkErrors.length > 1000) networkErrors.splice(0, 500);
      return;
    }
    fail(`unexpected exception: ${err?.stack ?? String(err)}`);
  };
  process.on("uncaughtException", handler);
  process.on("unhandledRejection", handler);
}

export function networkErrorCount() {
  return networkErrorTotal;
}

export function recentNetworkErrors(n) {
  return networkErrors.slice(-n);
}

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

/**
 * Polls `predicate` every `intervalMs` until it returns a truthy value (returned) or `timeoutMs`
 * passes (throws an Error naming `what` and, if given, `describe()`'s current state).
 */
export async function waitFor(predicate, { timeoutMs, intervalMs = 25, what, describe } = {}) {
  const start = Date.now();
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() - start >= timeoutMs) {
      const state = describe ? `; ${describe()}` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${state}`);
    }
    await sleep(intervalMs);
  }
}

/** A fresh temporary directory under the OS temp dir, or `dir` itself (created) when given. */
export function dirOrTemp(dir, prefix) {
  if (dir) {
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  }
  return fs.mkdtempSync(path.join(os.tmpdir(), `jemput-${prefix}-`));
}

export function removeDir(dir) {
  try {
    fs.rmSync(dir, { recursive: true, force: true });
  } catch {
    // best effort
  }
}

// ---------------------------------------------------------------------------------------------
// Storage

/** In-memory StorageAdapter: a client with storage (a storageId, not ephemeral) but no disk. */
export class MemoryStorageAdapter {
  #data = new Map();
  static #key = key => key.join("\u0000");
  async load(key) {
    return this.#data.get(MemoryStorageAdapter.#key(key))?.data;
  }
  async save(key, data) {
    this.#data.set(MemoryStorageAdapter.#key(key), { key, data });
  }
  async remove(key) {
    this.#data.delete(MemoryStorageAdapter.#key(key));
  }
  #matching(prefix) {
    const p = MemoryStorageAdapter.#key(prefix);
    return [...this.#data.entries()].filter(([k]) => k === p || k.startsWith(`${p}\u0000`));
  }
  async loadRange(prefix) {
    return this.#matching(prefix).map(([, v]) => ({ key: v.key, data: v.data }));
  }
  async removeRange(prefix) {
    for (const [k] of this.#matching(prefix)) this.#data.delete(k);
  }
}

// ---------------------------------------------------------------------------------------------
// Clients

/**
 * One automerge-repo client: a Repo with its own peer id, optional storage (`storageDir` for
 * NodeFS, `memory: true` for in-memory, neither for an ephemeral peer) and, when `url` is given,
 * a WebSocket client adapter. Tracks the server's peer id and, per document, the heads the
 * server last told us it has (from the synchronizer's sync states).
 */
export class Client {
  constructor({ name, url, storageDir, memory = false, peerId, retryMs = 1000 }) {
    this.name = name;
    this.url = url;
    this.retryMs = retryMs;
    this.serverPeerId = undefined;
    this.connectedCount = 0;
    this.rawServerHeads = new Map(); // documentId -> heads (hex) the server last said it has
    const storage = storageDir
      ? new NodeFSStorageAdapter(storageDir)
      : memory
        ? new MemoryStorageAdapter()
        : undefined;
    this.repo = new Repo({
      storage,
      network: [],
      ...(peerId ? { peerId } : {}),
      sharePolicy: async () => true,
    });
    this.repo.networkSubsystem.on("peer", ({ peerId: p }) => {
      this.serverPeerId = p;
      this.connectedCount += 1;
    });
    this.repo.networkSubsystem.on("peer-disconnected", ({ peerId: p }) => {
      if (p === this.serverPeerId) this.serverPeerId = undefined;
    });
    this.headsWaiters = new Map(); // documentId -> Set of callbacks run on each server heads update
    this.repo.synchronizer.on("sync-state", ({ peerId: p, documentId, syncState }) => {
      if (p === this.serverPeerId && syncState.theirHeads) {
        // Raw (hex) heads: encoding them on every sync message would cost the load worker dearly.
        this.rawServerHeads.set(documentId, syncState.theirHeads);
        for (const fn of this.headsWaiters.get(documentId) ?? []) fn();
      }
    });
    if (url) this.connect(url);
  }

  get peerId() {
    return this.repo.peerId;
  }

  /** The heads (encoded like `handle.heads()`) the server last said it has for a document. */
  serverHeads(documentId) {
    const raw = this.rawServerHeads.get(documentId);
    return raw ? encodeHeads(raw) : undefined;
  }

  /** Adds a WebSocket client adapter (a Repo without network goes online). */
  connect(url = this.url) {
    this.url = url;
    this.adapter = new WebSocketClientAdapter(url, this.retryMs);
    this.repo.networkSubsystem.addNetworkAdapter(this.adapter);
  }

  get connected() {
    return this.serverPeerId !== undefined;
  }

  async waitConnected(timeoutMs) {
    await waitFor(() => this.connected, {
      timeoutMs,
      what: `client ${this.name} to complete the join/peer handshake with ${this.url}`,
    });
    return this.serverPeerId;
  }

  /** Waits until the server's sync state says it has exactly this handle's current heads. */
  waitServerHas(handle, timeoutMs) {
    const id = handle.documentId;
    const has = () => headsEqual(this.serverHeads(id), handle.heads());
    if (has()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiters = this.headsWaiters.get(id) ?? new Set();
      this.headsWaiters.set(id, waiters);
      const done = err => {
        waiters.delete(check);
        clearTimeout(timer);
        clearInterval(poll); // a local change can make the heads equal without a sync-state event
        err ? reject(err) : resolve();
      };
      const check = () => has() && done();
      waiters.add(check);
      const poll = setInterval(check, 250);
      const timer = setTimeout(() => done(new Error(
        `timed out after ${timeoutMs} ms waiting for the server to acknowledge heads of ${handle.url} ` +
          `from client ${this.name}: local ${JSON.stringify(handle.heads())}, server ${JSON.stringify(this.serverHeads(id))}`,
      )), timeoutMs);
    });
  }

  /**
   * `find` that fails with a clear message: waits up to `timeoutMs` for the handle to be ready
   * and rejects if the server answered `doc-unavailable` (or nobody answered).
   */
  async find(url, timeoutMs) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    try {
      return await this.repo.find(url, { signal: abort.signal });
    } catch (e) {
      if (abort.signal.aborted) {
        throw new Error(`client ${this.name}: find(${url}) not ready within ${timeoutMs} ms`);
      }
      throw new Error(`client ${this.name}: find(${url}) failed: ${e.message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * `find` for load generation: tolerates a `doc-unavailable` (or a disconnection that makes the
   * Repo give up) by waiting for the document to arrive and, failing that, asking again, until
   * `timeoutMs`. Counts the retries in `this.findRetries`.
   */
  async findPatiently(url, timeoutMs) {
    const start = Date.now();
    const left = () => timeoutMs - (Date.now() - start);
    for (;;) {
      const handle = await this.find(url, Math.max(1, left())).catch(() => undefined);
      if (handle) return handle;
      if (left() <= 0) throw new Error(`client ${this.name}: ${url} still unavailable after ${timeoutMs} ms`);
      this.findRetries = (this.findRetries ?? 0) + 1;
      const cached = this.repo.handles[url.replace(/^automerge:/, "").split("#")[0]];
      // A reconnection re-requests documents the Repo holds: give that a moment first.
      const ready = cached
        ? await Promise.race([cached.whenReady(["ready"]).then(() => true), sleep(Math.min(2000, Math.max(1, left()))).then(() => false)])
        : false;
      if (ready) return cached;
      if (cached) this.repo.delete(url); // forget the unavailable handle; the next find asks again
      await sleep(Math.min(200, Math.max(1, left())));
    }
  }

  /** Disconnects the network and writes every loaded document to storage. */
  async shutdown() {
    try {
      await this.repo.shutdown();
    } catch (e) {
      if (!isTransientNetworkError(e)) throw e;
    }
    if (this.repo.storageSubsystem) {
      // The Repo also saves each changed document on a 100 ms throttle that nobody awaits, and
      // NodeFS writes files in place: a process that exits during such a write leaves a
      // truncated chunk, which loads as an empty document. Let those saves finish first.
      await sleep(300);
      await this.repo.flush();
    }
  }
}

export function headsEqual(a, b) {
  if (!a || !b || a.length !== b.length) return false;
  const x = [...a].sort();
  const y = [...b].sort();
  return x.every((h, i) => h === y[i]);
}

/** The document as plain JSON (Text and ImmutableString both become strings). */
export function plain(doc) {
  return JSON.parse(JSON.stringify(doc));
}

/** Reads a string field written either as Text (a JS string) or as an ImmutableString. */
export function str(v) {
  if (isImmutableString(v)) return v.val;
  return typeof v === "string" ? v : undefined;
}
