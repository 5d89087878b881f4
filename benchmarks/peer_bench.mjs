// Runs the benchmark workloads through the npm package `mooncat-checkpoint` and prints one JSON object.
//
// Usage: node peer_bench.mjs --url sqlite://<path>|file://<path> --n N --workload W [--namespace NS] [--prefilled 1]
// Workloads: cycle (claim+done per key), rerun (claim on keys already done), list, gc.
// With --prefilled 1 the store already holds the records a workload needs (keys k0..k<N-1>: done for
// rerun and list, expired claims for gc), written in the shared format by the other implementation.
// Resolve the package from a node_modules folder passed as MOONCAT_PEER_MODULES (or next to cwd).
//
// Every timing covers only the workload itself; start-up and set-up (e.g. creating done records for the
// rerun workload) are outside the clock.

import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";

function parseArgs(argv) {
  const out = { n: 1000, workload: "cycle", namespace: "bench" };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, "");
    out[name] = argv[i + 1];
  }
  out.n = Number(out.n);
  if (!out.url) throw new Error("--url is required");
  if (!Number.isInteger(out.n) || out.n <= 0) throw new Error("--n must be a positive integer");
  return out;
}

async function loadPeer() {
  const modules = resolve(process.env.MOONCAT_PEER_MODULES ?? join(process.cwd(), "node_modules"));
  // The package exports only an `import` condition, so resolve its entry file from package.json.
  const require = createRequire(join(modules, "noop.js"));
  const manifest = require.resolve("mooncat-checkpoint/package.json");
  const { main } = require(manifest);
  return import(pathToFileURL(join(manifest, "..", main)).href);
}

const keyOf = (i) => `k${i}`;

async function fillDone(client, ns, n) {
  for (let i = 0; i < n; i++) {
    const c = await client.claim(ns, keyOf(i));
    await client.done(ns, keyOf(i), { leaseToken: c.leaseToken, result: { i } });
  }
}

async function fillExpired(client, ns, n) {
  for (let i = 0; i < n; i++) await client.claim(ns, keyOf(i), { leaseMs: 1 });
  await new Promise((r) => setTimeout(r, 20));
}

function timed(ops, seconds, extra = {}) {
  return { ops, seconds, perSecond: ops / seconds, ...extra };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const { CheckpointClient } = await loadPeer();
  const client = new CheckpointClient({ url: args.url });
  const ns = args.namespace;
  const n = args.n;
  const prefilled = args.prefilled === "1";
  let out;
  try {
    if (args.workload === "cycle") {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        const c = await client.claim(ns, keyOf(i));
        await client.done(ns, keyOf(i), { leaseToken: c.leaseToken, result: { i } });
      }
      out = timed(n, (performance.now() - t0) / 1000);
    } else if (args.workload === "rerun") {
      if (!prefilled) await fillDone(client, ns, n);
      const t0 = performance.now();
      let done = 0;
      for (let i = 0; i < n; i++) if ((await client.claim(ns, keyOf(i))).kind === "done") done++;
      out = timed(n, (performance.now() - t0) / 1000, { done });
    } else if (args.workload === "list") {
      if (!prefilled) await fillDone(client, ns, n);
      const t0 = performance.now();
      const records = await client.list(ns);
      out = timed(records.length, (performance.now() - t0) / 1000);
    } else if (args.workload === "gc") {
      if (!prefilled) await fillExpired(client, ns, n);
      const t0 = performance.now();
      const removed = await client.gc();
      out = timed(removed, (performance.now() - t0) / 1000);
    } else {
      throw new Error(`unknown workload ${args.workload}`);
    }
  } finally {
    await client.close();
  }
  out.workload = args.workload;
  out.node = process.version;
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + "\n");
  process.exit(1);
});
