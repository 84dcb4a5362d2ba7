// Reference JS sync server: automerge-repo 2.5.6 set up like its sync-server example (NodeFS
// storage, WebSocket server adapter, sharePolicy false: it only syncs documents a peer asks for).
// Usage: node tests/bench/peers/js-reference-server.mjs --port 0 --data-dir DIR
// Prints `listening on PORT` once bound and ready; any WebSocket path works (e.g. /v1/ws).
import { once } from "node:events";
import os from "node:os";
import { parseArgs } from "node:util";
import { Repo, WebSocketServerAdapter, NodeFSStorageAdapter, WebSocketServer, waitFor } from "../../js/lib.mjs";

const { values } = parseArgs({ options: { port: { type: "string", default: "0" }, "data-dir": { type: "string" } } });
if (!values["data-dir"]) throw new Error("usage: js-reference-server.mjs --port PORT --data-dir DIR");
const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(values.port) });
const adapter = new WebSocketServerAdapter(wss);
const repo = new Repo({
  network: [adapter],
  storage: new NodeFSStorageAdapter(values["data-dir"]),
  peerId: `storage-server-${os.hostname()}`,
  sharePolicy: async () => false,
});
await once(wss, "listening");
await waitFor(() => adapter.peerId !== undefined, { timeoutMs: 10000, what: "the adapter to attach" });
console.log(`listening on ${wss.address().port}`);
const stop = () => { wss.close(); repo.shutdown().finally(() => process.exit(0)); setTimeout(() => process.exit(0), 3000).unref(); };
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
