/**
 * What each stage of the request path costs, from a CPU profile of the router under
 * load and a sampled allocation profile: `bench:hot` and `npm run bench` print it.
 *
 * Each CPU sample is counted once, at the innermost frame on its stack that belongs to
 * a known part (a pipeline stage's module, the audit, usage, metrics or proxy code, the
 * store client, Hono): a sample inside Node's socket code called from the forward
 * stage is the forward stage's; one in the Redis client, whoever called it, is the
 * store client's. Samples in no known part are Node's own work for the request (HTTP
 * parsing, sockets, timers) or the garbage collector's, shown as such. The profiler
 * itself slows the run (sampling every 100 µs: about +45 % CPU here), so each part's
 * share of the profile is applied to the CPU per request measured without it in the
 * same run; a row under ~1 % is noise.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}
interface HeapNode {
  selfSize: number;
  children: HeapNode[];
}
export interface HeapProfile {
  head: HeapNode;
}

/** Parts of the path, matched on a frame's script URL, first match wins. */
const PARTS: [string, RegExp][] = [
  ["guard", /router\/src\/(pipeline\/guard|edge\/|client-ip)|shared\/src\/hostname/],
  ["resolve", /router\/src\/(pipeline\/resolve|tenant-cache\/)/],
  ["credentials", /router\/src\/pipeline\/credentials|shared\/src\/crypto\/(api-key|session)/],
  ["decide", /router\/src\/pipeline\/decide|shared\/src\/policy\//],
  ["limits", /router\/src\/(pipeline\/limits|limits\/)/],
  ["branding", /router\/src\/(pipeline\/branding|branding\/)/],
  ["sign context", /shared\/src\/crypto\/context|sdk\/src\/context/],
  ["forward", /router\/src\/(pipeline\/forward|proxy\/)/],
  ["audit", /router\/src\/audit\//],
  ["metering", /router\/src\/usage\//],
  ["metrics", /router\/src\/ops\/|prom-client/],
  ["store client (Redis)", /shared\/src\/cache\/|ioredis|redis-parser|cluster-key-slot/],
  ["exchange + runner", /router\/src\/(pipeline\/|app\.ts|errors\.ts)/],
  ["Hono + Node adapter", /node_modules\/(hono|@hono\/node-server)\//],
];
const GC = "garbage collector";
const NODE = "Node (HTTP parsing, sockets, timers)";
export const STAGE_ROWS = [...PARTS.map(([name]) => name), NODE, GC];

export interface StageCosts {
  /** µs of CPU per request, by row of STAGE_ROWS. */
  perRequest: Map<string, number>;
  /** All of the profile's CPU (idle excluded), µs per request. */
  total: number;
}

export function stageCosts(profile: CpuProfile, requests: number): StageCosts {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  // Each node's part, decided once: its own if it has one, else its caller's.
  const partOf = new Map<number, string | null>();
  const resolve = (id: number): string | null => {
    const known = partOf.get(id);
    if (known !== undefined) return known;
    const frame = (byId.get(id) as ProfileNode).callFrame;
    let part: string | null = null;
    if (frame.functionName === "(garbage collector)") part = GC;
    else if (frame.functionName === "(idle)" || frame.functionName === "(program)") part = null;
    else {
      for (const [name, pattern] of PARTS)
        if (pattern.test(frame.url)) {
          part = name;
          break;
        }
      if (part === null) {
        const up = parent.get(id);
        part = up === undefined ? NODE : (resolve(up) ?? NODE);
      }
    }
    partOf.set(id, part);
    return part;
  };
  const micros = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    // A sample's time is the gap to the next one.
    const us = profile.timeDeltas[i + 1] ?? 0;
    const id = profile.samples[i] as number;
    const frame = (byId.get(id) as ProfileNode).callFrame.functionName;
    if (frame === "(idle)" || frame === "(program)") continue;
    const part = resolve(id) ?? NODE;
    micros.set(part, (micros.get(part) ?? 0) + us);
    total += us;
  }
  const perRequest = new Map<string, number>();
  for (const row of STAGE_ROWS) perRequest.set(row, (micros.get(row) ?? 0) / requests);
  return { perRequest, total: total / requests };
}

/** Bytes allocated in all (the sampled estimate, young-generation garbage included). */
export function allocatedBytes(profile: HeapProfile): number {
  let bytes = 0;
  const stack = [profile.head];
  while (stack.length > 0) {
    const node = stack.pop() as HeapNode;
    bytes += node.selfSize;
    stack.push(...node.children);
  }
  return bytes;
}

/**
 * The table, as printed lines: each part's share of the profile, and that share of
 * `measuredUs` (the CPU per request measured without the profiler).
 */
export function formatStageCosts(costs: StageCosts, bytesPerRequest: number | null, measuredUs: number): string[] {
  const lines = ["stage                                   µs/req  share"];
  for (const row of STAGE_ROWS) {
    const share = (costs.perRequest.get(row) ?? 0) / costs.total;
    lines.push(`${row.padEnd(38)} ${(share * measuredUs).toFixed(1).padStart(6)}  ${(100 * share).toFixed(0).padStart(4)} %`);
  }
  lines.push(`${"total (measured without the profiler)".padEnd(38)} ${measuredUs.toFixed(1).padStart(6)}`);
  if (bytesPerRequest !== null) lines.push(`allocated per request: ${(bytesPerRequest / 1024).toFixed(1)} KiB (sampled)`);
  return lines;
}

/** The table, as markdown lines (as `formatStageCosts`). */
export function stageTable(costs: StageCosts, bytesPerRequest: number, measuredUs: number): string[] {
  const lines = ["| stage | µs/req | share |", "|---|---:|---:|"];
  for (const row of STAGE_ROWS) {
    const share = (costs.perRequest.get(row) ?? 0) / costs.total;
    lines.push(`| ${row} | ${(share * measuredUs).toFixed(1)} | ${(100 * share).toFixed(0)} % |`);
  }
  lines.push(
    `| total (measured without the profiler) | ${measuredUs.toFixed(1)} | |`,
    "",
    `Allocated per request: ${(bytesPerRequest / 1024).toFixed(1)} KiB (sampled heap profile, young-generation garbage included).`,
  );
  return lines;
}
