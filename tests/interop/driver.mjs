// Runs a batch of operations through the TypeScript package's CheckpointClient and prints one JSON
// answer per operation: {"ok": value} or {"error": {"name", "message"}}.
//
// Usage: node driver.mjs <folder holding node_modules>   (request on stdin)
// Request: {"url": "file:///abs/dir" | "sqlite:///abs/db" | "memory://" | null, "ops": [op, ...]}
// (null: TS resolves the store from its environment, config file and working directory)
//
// Ops (arguments are the TS client's, camelCase):
//   {"op": "claim", "ns", "key", "ownerRunId"?, "leaseMs"?}
//   {"op": "touch", "ns", "key", "leaseToken", "extendMs"?}
//   {"op": "done", "ns", "key", "leaseToken", "result"?, "resultRef"?}   (no "result": left undefined)
//   {"op": "abandon", "ns", "key", "leaseToken"}
//   {"op": "abandonOwned", "ownerRunId", "namespace"?}
//   {"op": "get", "ns", "key"}        {"op": "reset", "ns", "key"}
//   {"op": "list", "ns", "status"?}   {"op": "gc", "olderThan"?}
//   {"op": "segments", "keys": [...]}        -> safeKeySegment of each key
//   {"op": "namespacesValid", "names": [...]} -> whether TS accepts each as a namespace
//   {"op": "stringify", "values": [...]}      -> [{"pretty": JSON.stringify(v, null, 2), "compact": ...}]
//   {"op": "waitPast", "ms"}                  -> waits until Date.now() > ms (lease expiry)
// A "leaseToken" of {"from": i} means the leaseToken returned by op number i of this batch.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const folder = process.argv[2];
if (!folder) {
  process.stderr.write("usage: node driver.mjs <folder with node_modules>\n");
  process.exit(2);
}
const dist = join(folder, "node_modules", "mooncat-checkpoint", "dist");
// File URLs reach modules that the package's export map does not list (sanitize.js).
const { CheckpointClient } = await import(pathToFileURL(join(dist, "index.js")).href);
const { safeKeySegment, assertNamespace } = await import(pathToFileURL(join(dist, "sanitize.js")).href);

const request = JSON.parse(readFileSync(0, "utf8"));
// A store TS cannot open fails every op that needs it, each with TS's own error.
let client = null;
let clientError = null;
try {
  client = new CheckpointClient({ url: request.url });
} catch (e) {
  clientError = e;
}
const answers = [];

function store() {
  if (clientError) throw clientError;
  return client;
}

function token(op) {
  const t = op.leaseToken;
  if (t !== null && typeof t === "object" && Number.isInteger(t.from)) {
    const earlier = answers[t.from];
    if (!earlier || !("ok" in earlier) || !earlier.ok) throw new Error(`op #${t.from} gave no lease token`);
    return earlier.ok.leaseToken;
  }
  return t;
}

async function run(op) {
  switch (op.op) {
    case "claim": {
      const opts = {};
      if (op.ownerRunId !== undefined) opts.ownerRunId = op.ownerRunId;
      if (op.leaseMs !== undefined) opts.leaseMs = op.leaseMs;
      return store().claim(op.ns, op.key, opts);
    }
    case "touch": {
      const opts = { leaseToken: token(op) };
      if (op.extendMs !== undefined) opts.extendMs = op.extendMs;
      return store().touch(op.ns, op.key, opts);
    }
    case "done": {
      const opts = { leaseToken: token(op) };
      if ("result" in op) opts.result = op.result;
      if ("resultRef" in op) opts.resultRef = op.resultRef;
      return store().done(op.ns, op.key, opts);
    }
    case "abandon":
      return store().abandon(op.ns, op.key, { leaseToken: token(op) });
    case "abandonOwned": {
      const opts = { ownerRunId: op.ownerRunId };
      if (op.namespace !== undefined) opts.namespace = op.namespace;
      return store().abandonOwned(opts);
    }
    case "get":
      return store().get(op.ns, op.key);
    case "reset":
      return store().reset(op.ns, op.key);
    case "list":
      return store().list(op.ns, op.status === undefined ? {} : { status: op.status });
    case "gc":
      return store().gc(op.olderThan === undefined ? {} : { olderThan: op.olderThan });
    case "segments":
      return op.keys.map((key) => safeKeySegment(key));
    case "namespacesValid":
      return op.names.map((name) => {
        try {
          assertNamespace(name);
          return true;
        } catch {
          return false;
        }
      });
    case "stringify":
      return op.values.map((v) => ({ pretty: JSON.stringify(v, null, 2), compact: JSON.stringify(v) }));
    case "waitPast":
      while (Date.now() <= op.ms) await new Promise((resolve) => setTimeout(resolve, 2));
      return Date.now();
    default:
      throw new Error(`unknown op ${JSON.stringify(op.op)}`);
  }
}

try {
  for (const op of request.ops) {
    try {
      const value = await run(op);
      answers.push({ ok: value === undefined ? null : value });
    } catch (e) {
      answers.push({ error: { name: e?.name ?? "Error", message: String(e?.message ?? e) } });
    }
  }
} finally {
  await client?.close();
}
process.stdout.write(JSON.stringify(answers));
