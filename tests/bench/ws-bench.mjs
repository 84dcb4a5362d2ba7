// WebSocket sync benchmark: the same JS automerge-repo 2.5.6 client workload against `jemput
// serve`, the reference JS sync server and a samod 0.16 server, one after another, each started
// fresh (fresh data directory, port 0). See tests/bench/README.md and docs/BENCHMARKS.md.
//
// For each server kind and size (CLIENTSxDOCSxCHANGES) it spreads the clients over --workers
// js-load.mjs processes, waits until they are connected and every document is shared (setup),
// sends "go", and measures until every client holds every change of every document it holds:
//   - time to converge (go -> last client done), and the setup time before it;
//   - server CPU (utime+stime of /proc/PID/stat, in clock ticks) during the change phase divided
//     by the changes applied (clients x docs x changes), and its CPU over the whole run;
//   - server peak RSS (VmHWM of /proc/PID/status) at the end of the run;
//   - the clients' CPU in the change phase, to show they were not the limit.
// A run still going at --deadline-s is reported as "did not finish" with the fraction of changes
// seen. Prints a Markdown table with ratios to jemput's figures for the same size.
//
// Usage: node tests/bench/ws-bench.mjs [--servers jemput,js-reference,samod]
//          [--sizes 10x10x10,20x10x10,40x10x10,100x10x10,200x10x10,200x25x20]
//          [--sizes-jemput ...] [--sizes-js-reference ...] [--sizes-samod ...] [--workers 4]
//          [--share 2] [--deadline-s auto|SECONDS] [--client-storage memory|none] [--nice 0]
//          [--out results.json] [--url-query token=...]
//          [--jemput-bin PATH] [--samod-bin PATH] [--database-url postgres://...]
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, "target");
const KINDS = ["jemput", "js-reference", "samod"];

const USAGE = `usage: node tests/bench/ws-bench.mjs [--servers ${KINDS.join(",")}] [--sizes CxDxN,...]
  [--sizes-jemput ...] [--sizes-js-reference ...] [--sizes-samod ...] [--workers 4] [--share 2]
  [--deadline-s auto|SECONDS] [--client-storage memory|none] [--nice 0] [--out FILE.json]
  [--url-query QUERY] [--jemput-bin PATH] [--samod-bin PATH]
  [--database-url URL]`;

let values;
try {
  ({ values } = parseArgs({
    options: {
      servers: { type: "string", default: KINDS.join(",") },
      sizes: { type: "string", default: "10x10x10,20x10x10,40x10x10,100x10x10,200x10x10,200x25x20" },
      "sizes-jemput": { type: "string" },
      "sizes-js-reference": { type: "string" },
      "sizes-samod": { type: "string" },
      workers: { type: "string", default: "4" },
      share: { type: "string", default: "2" },
      "deadline-s": { type: "string", default: "auto" },
      "client-storage": { type: "string", default: "memory" },
      nice: { type: "string", default: "0" },
      out: { type: "string" },
      "url-query": { type: "string" },
      "jemput-bin": { type: "string", default: path.join(TARGET, "release/jemput") },
      "samod-bin": { type: "string", default: path.join(TARGET, "release/examples/samod-server") },
      "database-url": { type: "string" },
      help: { type: "boolean", default: false },
    },
  }));
} catch (e) {
  console.error(`${e.message}\n${USAGE}`);
  process.exit(2);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

function parseSizes(text) {
  return text.split(",").filter(Boolean).map(s => {
    const m = /^(\d+)x(\d+)x(\d+)$/.exec(s.trim());
    if (!m) {
      console.error(`bad size ${s}: want CLIENTSxDOCSxCHANGES\n${USAGE}`);
      process.exit(2);
    }
    return { clients: +m[1], docs: +m[2], changes: +m[3], label: `${m[1]}×${m[2]}×${m[3]}` };
  });
}
const servers = values.servers.split(",").filter(Boolean);
for (const s of servers) {
  if (!KINDS.includes(s)) {
    console.error(`unknown server kind ${s}\n${USAGE}`);
    process.exit(2);
  }
}
const sizesFor = kind => parseSizes(values[`sizes-${kind}`] ?? values.sizes);
// samod's cost grows with connections x documents per event: it does not finish 100x10x10, so
// larger sizes would only burn their whole deadline. Run them only when --sizes-samod asks.
const SAMOD_MAX_CLIENT_DOCS = 100 * 10;
const skipReason = (kind, size) =>
  kind === "samod" && !values["sizes-samod"] && size.clients * size.docs > SAMOD_MAX_CLIENT_DOCS
    ? "not run: samod does not finish 100×10×10 (--sizes-samod to force)"
    : null;
const WORKERS = Math.max(1, Number(values.workers));
const SHARE = Math.max(1, Number(values.share));
// Per-run deadline (setup + changes). "auto": 60 s + 8 ms per applied change, enough for the
// JS clients themselves (about 4-5 ms of client CPU per change on this kind of machine).
const deadlineMs = size =>
  values["deadline-s"] === "auto"
    ? Math.round(60000 + 8 * size.clients * size.docs * size.changes)
    : Number(values["deadline-s"]) * 1000;
if (values["deadline-s"] !== "auto" && !(Number(values["deadline-s"]) > 0)) {
  console.error(`--deadline-s must be a number of seconds or auto\n${USAGE}`);
  process.exit(2);
}
const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

const log = msg => process.stderr.write(`[ws-bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const sleep = ms => new Promise(r => setTimeout(r, ms));

// Every child we start, so that nothing outlives the driver.
const children = new Set();
function track(child) {
  children.add(child);
  child.on("exit", () => children.delete(child));
  return child;
}
function killAll() {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}
process.on("exit", killAll);
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    log(`${sig}: stopping`);
    killAll();
    process.exit(130);
  });
}

// ---------------------------------------------------------------------------------------------
// /proc

function cpuMs(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK; // utime, stime (fields 14, 15)
  } catch {
    return NaN;
  }
}

function statusKb(pid, key) {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

function machine() {
  const sh = (cmd, args) => {
    try {
      return execFileSync(cmd, args, { stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
    } catch {
      return "?";
    }
  };
  const model = /Model name:\s*(.*)/.exec(sh("lscpu", []))?.[1] ?? os.cpus()[0]?.model ?? "?";
  return {
    nproc: sh("nproc", []),
    cpu: model.trim(),
    memory_gib: (os.totalmem() / 2 ** 30).toFixed(1),
    date: new Date().toISOString().slice(0, 10),
    node: process.version,
    kernel: os.release(),
  };
}

// ---------------------------------------------------------------------------------------------
// Servers

function serverCommand(kind, dataDir) {
  switch (kind) {
    case "jemput": {
      const args = ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir];
      if (values["database-url"]) args.push("--database-url", values["database-url"]);
      return { cmd: values["jemput-bin"], args, re: /listening on https?:\/\/[^\s]*:(\d+)/ };
    }
    case "js-reference":
      return {
        cmd: process.execPath,
        args: [path.join(HERE, "peers/js-reference-server.mjs"), "--port", "0", "--data-dir", dataDir],
        re: /listening on (\d+)/,
      };
    case "samod":
      return { cmd: values["samod-bin"], args: ["--port", "0", "--data-dir", dataDir], re: /listening on (\d+)/ };
    default:
      throw new Error(kind);
  }
}

/**
 * Jemput wants a token on every WebSocket: create one officer in the documents' district with
 * the real admin CLI, log in and enrol a device; every bench client uses that device's token
 * (each client still has its own peer id and its own Automerge actors).
 */
async function enrolBenchDevice(port, dataDir) {
  const password = "bench-password-long-enough";
  const args = ["admin", "--data-dir", dataDir, "user", "add", "bench", "--role", "officer",
    "--region", "34.71.01", "--password-stdin"];
  if (values["database-url"]) args.push("--database-url", values["database-url"]);
  await new Promise((resolve, reject) => {
    const child = spawn(values["jemput-bin"], args, { stdio: ["pipe", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", d => { err += d; });
    child.on("exit", code => (code === 0 ? resolve() : reject(new Error(`jemput admin: ${err}`))));
    child.stdin.end(`${password}\n`);
  });
  const base = `http://127.0.0.1:${port}`;
  const json = { "content-type": "application/json" };
  const login = await fetch(`${base}/v1/auth/login`, {
    method: "POST", headers: json, body: JSON.stringify({ username: "bench", password }),
  });
  if (!login.ok) throw new Error(`login: ${login.status} ${await login.text()}`);
  const { token } = await login.json();
  const enrol = await fetch(`${base}/v1/devices`, {
    method: "POST", headers: { ...json, authorization: `Bearer ${token}` },
    body: JSON.stringify({ label: "bench" }),
  });
  if (!enrol.ok) throw new Error(`enrol: ${enrol.status} ${await enrol.text()}`);
  return (await enrol.json()).device_token;
}

function missingBinary(kind) {
  const { cmd } = serverCommand(kind, "/nonexistent");
  return kind !== "js-reference" && !fs.existsSync(cmd) ? cmd : null;
}

async function startServer(kind, dataDir) {
  const { cmd, args, re } = serverCommand(kind, dataDir);
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" };
  const child = track(spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env }));
  const tail = [];
  const keep = line => {
    tail.push(line);
    if (tail.length > 30) tail.shift();
  };
  readline.createInterface({ input: child.stderr }).on("line", keep);
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} did not print its port within 30 s`)), 30000);
    const rl = readline.createInterface({ input: child.stdout });
    rl.on("line", line => {
      keep(line);
      const m = re.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.on("exit", code => {
      clearTimeout(timer);
      reject(new Error(`${kind} exited (${code}) before listening: ${tail.join(" | ")}`));
    });
  });
  return { child, port, tail };
}

async function stopProcess(child, graceMs, selfExitMs = 0) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise(r => child.once("exit", r));
  // A worker told to "stop" reports and exits by itself: give it that chance first.
  if (selfExitMs > 0) await Promise.race([exited, sleep(selfExitMs)]);
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timedOut = await Promise.race([exited.then(() => false), sleep(graceMs).then(() => true)]);
  if (timedOut) {
    child.kill("SIGKILL");
    await Promise.race([exited, sleep(2000)]);
  }
}

// ---------------------------------------------------------------------------------------------
// One run

function splitClients(total) {
  // As many workers as asked, each with at least SHARE clients (documents are shared in-worker).
  const n = Math.max(1, Math.min(WORKERS, Math.floor(total / SHARE)));
  const out = [];
  let first = 0;
  for (let i = 0; i < n; i++) {
    const k = Math.floor(total / n) + (i < total % n ? 1 : 0);
    out.push({ first, clients: k });
    first += k;
  }
  return out;
}

async function runOnce(kind, size) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `jemput-bench-${kind}-`));
  const result = {
    server: kind, size: size.label, clients: size.clients, docs: size.docs, changes: size.changes,
    share: SHARE, applied_changes: size.clients * size.docs * size.changes,
    finished: false,
    // Other work on the machine shows up in the times: keep the 1-minute load average with it.
    loadavg_before: +os.loadavg()[0].toFixed(2),
  };
  const started = Date.now();
  const DEADLINE_MS = deadlineMs(size);
  result.deadline_s = DEADLINE_MS / 1000;
  const left = () => DEADLINE_MS - (Date.now() - started);
  let server;
  const workers = [];
  try {
    server = await startServer(kind, dataDir);
    const pid = server.child.pid;
    let query = values["url-query"] ? `?${values["url-query"]}` : "";
    if (kind === "jemput" && !values["url-query"]) {
      query = `?token=${encodeURIComponent(await enrolBenchDevice(server.port, dataDir))}`;
    }
    const url = `ws://127.0.0.1:${server.port}/v1/ws${query}`;
    log(`${kind} ${size.label}: server pid ${pid} on port ${server.port}`);

    for (const part of splitClients(size.clients)) {
      const args = [
        path.join(HERE, "js-load.mjs"), "--url", url, "--clients", String(part.clients),
        "--first", String(part.first), "--docs", String(size.docs), "--changes", String(size.changes),
        "--share", String(SHARE), "--timeout-ms", String(DEADLINE_MS + 30000),
        "--client-storage", values["client-storage"],
      ];
      // --nice N lowers the clients' priority so the server wins when both want the CPU; not by
      // default: on a shared machine niced clients starve behind other work, not the server.
      const child = track(values.nice === "0"
        ? spawn(process.execPath, args, { stdio: ["pipe", "pipe", "pipe"] })
        : spawn("nice", ["-n", values.nice, process.execPath, ...args], { stdio: ["pipe", "pipe", "pipe"] }));
      const w = { child, part, state: "starting", last: {}, errors: [`worker ${part.first}..${part.first + part.clients - 1}:`] };
      readline.createInterface({ input: child.stdout }).on("line", line => {
        let msg;
        try {
          msg = JSON.parse(line);
        } catch {
          return;
        }
        w.last = msg;
        if (msg.type === "connected") w.state = "connected";
        else if (msg.type === "ready") { w.state = "ready"; w.setupMs = msg.setup_ms; }
        else if (msg.type === "done") { w.state = "done"; w.doneAt = msg.at; }
        else if (msg.type === "error") { w.state = "error"; w.errors.push(msg.error); }
        else if (msg.type === "stopped") w.stopped = msg;
      });
      readline.createInterface({ input: child.stderr }).on("line", line => {
        w.errors.push(line);
        if (w.errors.length > 20) w.errors.shift();
      });
      child.on("exit", code => {
        if (w.state !== "done" && w.state !== "stopped") {
          w.state = "error";
          w.errors.push(`worker exited with ${code}`);
        }
      });
      workers.push(w);
    }
    const failed = () => {
      if (server.child.exitCode !== null || server.child.signalCode !== null) {
        return { errors: [`the server exited (${server.child.exitCode ?? server.child.signalCode}): ${server.tail.slice(-3).join(" | ")}`] };
      }
      return workers.find(w => w.state === "error");
    };
    const waitAll = async (state, what) => {
      while (!workers.every(w => w.state === state || w.state === "done")) {
        const f = failed();
        if (f) throw new Error(`during ${what}: ${f.errors.slice(-3).join(" | ")}`);
        if (left() <= 0) return false;
        await sleep(50);
      }
      return true;
    };

    const setupOk = await waitAll("ready", "setup");
    const sumProgress = key => workers.reduce((s, w) => s + (w.last[key] ?? 0), 0);
    if (!setupOk) {
      result.stage = "setup";
      result.fraction = 0;
      result.note = `setup did not finish: ${sumProgress("connected")}/${size.clients} connected, ` +
        `${sumProgress("held_docs")}/${size.clients * size.docs * SHARE} document copies held`;
      result.server_cpu_total_ms = cpuMs(pid);
      result.peak_rss_mb = statusKb(pid, "VmHWM") / 1024;
      return result;
    }
    result.setup_ms = Date.now() - started;
    const cpuGo = cpuMs(pid);
    const clientCpuGo = workers.reduce((s, w) => s + cpuMs(w.child.pid), 0);
    const goAt = Date.now();
    for (const w of workers) w.child.stdin.write("go\n");
    log(`${kind} ${size.label}: setup ${(result.setup_ms / 1000).toFixed(1)} s, go`);

    let lastLog = { at: Date.now(), server: cpuGo, clients: clientCpuGo, seen: 0 };
    result.timeline = [];
    for (;;) {
      if (workers.every(w => w.state === "done")) break;
      const f = failed();
      if (f) throw new Error(`during the changes: ${f.errors.slice(-3).join(" | ")}`);
      if (left() <= 0) break;
      if (Date.now() - lastLog.at >= 5000) {
        const now = { at: Date.now(), server: cpuMs(pid), clients: workers.reduce((s, w) => s + cpuMs(w.child.pid), 0), seen: sumProgress("changes_seen") };
        const dt = now.at - lastLog.at;
        const point = {
          t_s: Math.round((now.at - goAt) / 1000),
          changes_seen: now.seen,
          server_cores: +((now.server - lastLog.server) / dt).toFixed(2),
          client_cores: +((now.clients - lastLog.clients) / dt).toFixed(2),
          network_errors: sumProgress("network_errors"),
          connected: sumProgress("connected"),
        };
        result.timeline.push(point);
        log(`${kind} ${size.label}: ${now.seen}/${sumProgress("changes_seen_expected")} changes seen; last ${(dt / 1000).toFixed(0)} s: server ${point.server_cores} cores, clients ${point.client_cores} cores; ${point.connected} connected, ${point.network_errors} network errors`);
        lastLog = now;
      }
      await sleep(50);
    }
    const end = Date.now();
    const cpuEnd = cpuMs(pid);
    const clientCpuEnd = workers.reduce((s, w) => s + cpuMs(w.child.pid), 0);
    result.finished = workers.every(w => w.state === "done");
    const doneAt = result.finished ? Math.max(...workers.map(w => w.doneAt)) : end;
    result.converge_ms = doneAt - goAt;
    result.server_cpu_ms = cpuEnd - cpuGo;
    result.server_cpu_total_ms = cpuEnd;
    result.client_cpu_ms = clientCpuEnd - clientCpuGo;
    const seen = sumProgress("changes_seen");
    const expected = sumProgress("changes_seen_expected");
    result.fraction = expected ? seen / expected : 0;
    // Changes the server applied: all of them when finished; otherwise estimate from what the
    // holders saw (each change is seen by SHARE holders, its writer included).
    const applied = result.finished ? result.applied_changes : seen / SHARE;
    result.cpu_ms_per_change = applied > 0 ? result.server_cpu_ms / applied : NaN;
    result.peak_rss_mb = statusKb(pid, "VmHWM") / 1024;
    if (!result.finished) result.stage = "changes";
    return result;
  } catch (e) {
    result.error = e.message;
    if (server?.tail?.length) result.server_log = server.tail.slice(-5);
    return result;
  } finally {
    for (const w of workers) {
      try {
        w.child.stdin.end("stop\n");
      } catch {
        // gone
      }
    }
    await Promise.all(workers.map(w => stopProcess(w.child, 3000, 5000)));
    if (!result.finished) {
      const stuck = workers.flatMap(w => w.stopped?.stuck_sample ?? []);
      if (stuck.length) result.stuck_sample = stuck.slice(0, 20);
      const errs = workers.flatMap(w => w.stopped?.last_network_errors ?? []);
      if (errs.length) result.last_network_errors = errs.slice(0, 10);
    }
    if (server) await stopProcess(server.child, 10000);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Report

const fmt = (x, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : "–");
const ratio = (x, base) => (Number.isFinite(x) && Number.isFinite(base) && base > 0 ? `${(x / base).toFixed(1)}×` : "–");

function table(results) {
  const lines = [
    "| server | clients×docs×changes | converged | time to converge (s) | setup (s) | server CPU ms/change | server CPU total (s) | peak RSS (MB) | clients CPU (cores) | time vs jemput | CPU/change vs jemput | RSS vs jemput |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    const base = results.find(b => b.server === "jemput" && b.size === r.size && b.finished);
    let converged;
    if (r.skipped) converged = r.skipped;
    else if (r.error) converged = `error: ${r.error.replace(/\|/g, "/").slice(0, 120)}`;
    else if (r.finished) converged = "yes";
    else converged = `did not finish in ${fmt(r.deadline_s, 0)} s (${fmt(100 * r.fraction, 0)} % of changes seen${r.note ? `; ${r.note}` : ""})`;
    const timeCell = r.finished ? fmt(r.converge_ms / 1000) : r.converge_ms !== undefined ? `> ${fmt(r.converge_ms / 1000)}` : "–";
    const cpuCell = r.finished ? fmt(r.cpu_ms_per_change, 2) : Number.isFinite(r.cpu_ms_per_change) ? `~${fmt(r.cpu_ms_per_change, 2)}` : "–";
    const clientCores = r.converge_ms ? r.client_cpu_ms / r.converge_ms : NaN;
    const isBase = r.server === "jemput";
    lines.push(`| ${r.server} | ${r.size} | ${converged} | ${timeCell} | ${r.setup_ms !== undefined ? fmt(r.setup_ms / 1000) : "–"} | ${cpuCell} | ${fmt((r.server_cpu_total_ms ?? NaN) / 1000)} | ${fmt(r.peak_rss_mb, 0)} | ${fmt(clientCores, 2)} | ${isBase || !base ? "–" : r.finished ? ratio(r.converge_ms, base.converge_ms) : "∞"} | ${isBase || !base ? "–" : ratio(r.cpu_ms_per_change, base.cpu_ms_per_change)} | ${isBase || !base ? "–" : ratio(r.peak_rss_mb, base.peak_rss_mb)} |`);
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------

const m = machine();
log(`machine: ${m.nproc} cores, ${m.cpu}, ${m.memory_gib} GiB, ${m.date}, node ${m.node}`);
const results = [];
const sizeOrder = [];
for (const kind of servers) for (const s of sizesFor(kind)) if (!sizeOrder.includes(s.label)) sizeOrder.push(s.label);
// Size by size, so jemput's figure for a size exists before the others are compared with it.
for (const label of sizeOrder) {
  for (const kind of servers) {
    const size = sizesFor(kind).find(s => s.label === label);
    if (!size) continue;
    const skip = skipReason(kind, size);
    if (skip) {
      results.push({ server: kind, size: label, skipped: skip });
      continue;
    }
    const missing = missingBinary(kind);
    if (missing) {
      log(`${kind}: ${missing} not built, skipped`);
      results.push({ server: kind, size: label, skipped: `not run: ${path.relative(ROOT, missing)} not built` });
      continue;
    }
    log(`${kind} ${label}: starting`);
    const r = await runOnce(kind, size);
    log(`${kind} ${label}: ${r.error ? `error: ${r.error}` : r.finished ? `converged in ${fmt(r.converge_ms / 1000)} s, ${fmt(r.cpu_ms_per_change, 2)} ms CPU/change, peak RSS ${fmt(r.peak_rss_mb, 0)} MB` : `did not finish (${fmt(100 * r.fraction, 0)} %)`}`);
    results.push(r);
    await sleep(1000);
  }
}
const ordered = KINDS.filter(k => servers.includes(k)).flatMap(k =>
  sizeOrder.map(label => results.find(r => r.server === k && r.size === label)).filter(Boolean));

const loads = results.filter(r => r.loadavg_before !== undefined).map(r => r.loadavg_before);
const header = `Machine: ${m.nproc} cores (${m.cpu}), ${m.memory_gib} GiB RAM, ${m.date}, Node ${m.node}` +
  (loads.length ? `; 1-min load average before the runs ${Math.min(...loads)}–${Math.max(...loads)}. ` : ". ") +
  `Workload: each document shared by ${SHARE} clients, changes written in turn; ${WORKERS} client worker processes (nice ${values.nice}), client storage ${values["client-storage"]}; deadline per run ${values["deadline-s"] === "auto" ? "60 s + 8 ms per change" : `${values["deadline-s"]} s`}.`;
console.log(`${header}\n\n${table(ordered)}`);
if (values.out) fs.writeFileSync(values.out, JSON.stringify({ machine: m, share: SHARE, workers: WORKERS, deadline_s: values["deadline-s"], client_storage: values["client-storage"], nice: values.nice, results: ordered }, null, 2));
process.exit(0);
