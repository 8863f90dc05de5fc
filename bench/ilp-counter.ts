/**
 * A stand-in for QuestDB in the benchmarks, run as its own process (`bun bench/ilp-counter.ts`, started by
 * bench/run.ts over IPC): an ILP/TCP listener that counts the rows (lines) it receives, and an HTTP
 * listener answering QuestDB's `/exec` DDL calls with `{"ddl":"OK"}` so the sink starts as it would in
 * production.
 *
 * In lag mode every line's designated timestamp (the last field: exchange time in nanoseconds) is compared
 * with the wall clock at receipt, which is the exchange→QuestDB lag of that row.
 *
 * IPC from the parent: {type:"reset"}, {type:"lag", sinceMicros} (start measuring lag for rows whose
 * timestamp is at or after sinceMicros), {type:"wait", rows, timeoutMs} (answered once that many rows
 * arrived, with the arrival time of the last one), {type:"stats"}.
 */
import type { Socket } from "bun";

interface Counter {
  rows: number;
  bytes: number;
  /** Epoch milliseconds (fractional) of the first and last byte received since the reset. */
  firstAt: number;
  lastAt: number;
  connections: number;
}

const counter: Counter = { rows: 0, bytes: 0, firstAt: 0, lastAt: 0, connections: 0 };
let lagSince = Number.POSITIVE_INFINITY;
let lags: number[] = [];
let waiting: { rows: number; timer: ReturnType<typeof setTimeout> } | undefined;
const epochMs = () => performance.timeOrigin + performance.now();

const NEWLINE = 10;
const SPACE = 32;

/** Partial line carried over from the previous chunk of each connection (lag mode only). */
const carry = new Map<Socket<undefined>, Uint8Array>();

function countLines(data: Uint8Array): number {
  let lines = 0;
  let at = data.indexOf(NEWLINE);
  while (at !== -1) {
    lines++;
    at = data.indexOf(NEWLINE, at + 1);
  }
  return lines;
}

function recordLags(socket: Socket<undefined>, chunk: Uint8Array, nowMs: number): void {
  const previous = carry.get(socket);
  const data = previous ? Buffer.concat([previous, chunk]) : chunk;
  const nowMicros = nowMs * 1000;
  let start = 0;
  let end = data.indexOf(NEWLINE);
  while (end !== -1) {
    let space = end - 1;
    while (space > start && data[space] !== SPACE) space--;
    let nanos = 0;
    for (let i = space + 1; i < end; i++) nanos = nanos * 10 + (data[i]! - 48);
    const micros = Math.floor(nanos / 1000);
    if (micros >= lagSince) lags.push(nowMicros - micros);
    start = end + 1;
    end = data.indexOf(NEWLINE, start);
  }
  if (start < data.length) carry.set(socket, data.slice(start));
  else carry.delete(socket);
}

const ilp = Bun.listen<undefined>({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open() {
      counter.connections++;
    },
    data(socket, data) {
      const now = epochMs();
      if (counter.firstAt === 0) counter.firstAt = now;
      counter.lastAt = now;
      counter.bytes += data.length;
      counter.rows += countLines(data);
      if (Number.isFinite(lagSince)) recordLags(socket, data, now);
      if (waiting && counter.rows >= waiting.rows) {
        clearTimeout(waiting.timer);
        waiting = undefined;
        process.send?.({ type: "reached", rows: counter.rows, at: counter.lastAt });
      }
    },
    close(socket) {
      carry.delete(socket);
    },
  },
});

const http = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/exec") return Response.json({ ddl: "OK" });
    if (url.pathname === "/ping") return new Response(null, { status: 204 });
    return new Response("not found", { status: 404 });
  },
});

function quantile(sorted: readonly number[], q: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

process.on("message", (message: { type: string; sinceMicros?: number; rows?: number; timeoutMs?: number }) => {
  switch (message.type) {
    case "reset":
      Object.assign(counter, { rows: 0, bytes: 0, firstAt: 0, lastAt: 0 });
      lagSince = Number.POSITIVE_INFINITY;
      lags = [];
      carry.clear();
      process.send?.({ type: "reset" });
      return;
    case "lag":
      lagSince = message.sinceMicros ?? 0;
      lags = [];
      process.send?.({ type: "lag" });
      return;
    case "wait": {
      const rows = message.rows ?? 0;
      if (counter.rows >= rows) {
        process.send?.({ type: "reached", rows: counter.rows, at: counter.lastAt });
        return;
      }
      const timer = setTimeout(() => {
        waiting = undefined;
        process.send?.({ type: "timeout", rows: counter.rows, at: counter.lastAt });
      }, message.timeoutMs ?? 60_000);
      waiting = { rows, timer };
      return;
    }
    case "stats": {
      const sorted = lags.slice().sort((a, b) => a - b);
      process.send?.({
        type: "stats",
        ...counter,
        lag: { samples: sorted.length, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.at(-1) },
      });
      return;
    }
    case "stop":
      ilp.stop(true);
      http.stop(true);
      process.exit(0);
  }
});

process.send?.({ type: "listening", ilpPort: ilp.port, httpPort: http.port });
