/**
 * The ceilings xtrader is measured against, run as their own process by bench/run.ts:
 *
 *   bun bench/ceiling-client.ts --urls ws://..,ws://.. --expect N [--warm W] [--ilp 127.0.0.1:PORT]
 *
 * - (a) without --ilp: Bun's WebSocket client receiving the frames and calling JSON.parse on each, nothing
 *   else: the fastest any collector on this runtime can take these frames in.
 * - (b) with --ilp: the same, plus a minimal hand-built InfluxDB line protocol writer (one row per level or
 *   trade, values copied from the frame, no validation, no book) sending to the counting server over one
 *   TCP socket: the fastest way to get these frames into QuestDB.
 *
 * Opens one connection per URL (the load server deals streams to them the way xtrader's connectors group
 * them). With --warm, the first W messages are a warm-up (handled the same way, then
 * {"type":"warm"} is printed) and the measurement starts with the next one. Prints one JSON line when
 * `expect` measured messages were handled:
 * {"type":"done","messages":N,"firstAt":ms,"lastAt":ms,"cpuMicros":µs} (epoch milliseconds; CPU time
 * between the first and the last message).
 */
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    urls: { type: "string" },
    expect: { type: "string" },
    warm: { type: "string", default: "0" },
    ilp: { type: "string" },
  },
});
const urls = (args.urls ?? "").split(",").filter(Boolean);
const expected = Number(args.expect);
const warmUp = Number(args.warm);
if (urls.length === 0 || !(expected > 0) || !(warmUp >= 0)) {
  console.error("usage: bun bench/ceiling-client.ts --urls ws://..[,..] --expect N [--warm W] [--ilp host:port]");
  process.exit(2);
}
const epochMs = () => performance.timeOrigin + performance.now();

// ── (b): a minimal ILP writer ──

const encoder = new TextEncoder();
let out = new Uint8Array(1 << 20);
let length = 0;
let ilpSocket: Awaited<ReturnType<typeof Bun.connect>> | undefined;
let pending: Uint8Array[] = [];
let flushScheduled = false;

function put(text: string): void {
  if (length + text.length * 3 > out.length) {
    flush();
    if (text.length * 3 > out.length) out = new Uint8Array(text.length * 3);
  }
  length += encoder.encodeInto(text, out.subarray(length)).written;
}

function flush(): void {
  if (length === 0 || !ilpSocket) return;
  const chunk = out.slice(0, length);
  length = 0;
  if (pending.length > 0) {
    pending.push(chunk);
    return;
  }
  const written = ilpSocket.write(chunk);
  if (written < chunk.length) pending.push(chunk.subarray(written));
}

function scheduleFlush(): void {
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(() => {
    flushScheduled = false;
    flush();
  });
}

type Level = [string | number, string | number, ...unknown[]];

function levels(table: string, tags: string, side: string, list: Level[], sequence: number, timestampMs: number, priceAt: number): void {
  for (const level of list) {
    put(`${table},${tags},side=${side} price=${level[priceAt]},amount=${level[priceAt + 1] === undefined ? 0 : level[priceAt + 1]},sequence=${sequence}i ${timestampMs}000000\n`);
  }
}

// biome-ignore lint: frame shapes are the venues'
function writeRows(message: any): void {
  if (message.stream !== undefined) {
    const data = message.data;
    if (data.e === "depthUpdate") {
      const tags = `exchange=BINANCE_FUTURES,symbol=${data.s}`;
      levels("l2", tags, "bid", data.b, data.u, data.T, 0);
      levels("l2", tags, "ask", data.a, data.u, data.T, 0);
    } else {
      put(`trades,exchange=BINANCE_FUTURES,symbol=${data.s},side=${data.m ? "sell" : "buy"} id="${data.a}",price=${data.p},amount=${data.q} ${data.T}000000\n`);
    }
  } else if (message.arg !== undefined) {
    const book = message.data[0];
    const tags = `exchange=OKX_SWAP,symbol=${message.arg.instId}`;
    levels("l2", tags, "bid", book.bids, book.seqId, Number(book.ts), 0);
    levels("l2", tags, "ask", book.asks, book.seqId, Number(book.ts), 0);
  } else {
    const book = message.params.data;
    const tags = `exchange=DERIBIT,symbol=${book.instrument_name}`;
    levels("l2", tags, "bid", book.bids, book.change_id, book.timestamp, 1);
    levels("l2", tags, "ask", book.asks, book.change_id, book.timestamp, 1);
  }
}

if (args.ilp) {
  const [hostname, port] = args.ilp.split(":");
  ilpSocket = await Bun.connect({
    hostname: hostname!,
    port: Number(port),
    socket: {
      data() {},
      drain(socket) {
        while (pending.length > 0) {
          const chunk = pending[0]!;
          const written = socket.write(chunk);
          if (written < chunk.length) {
            pending[0] = chunk.subarray(written);
            return;
          }
          pending.shift();
        }
      },
    },
  });
}

// ── receive ──

let warmLeft = warmUp;
let messages = 0;
let firstAt = 0;
let cpuAtFirst = 0;
const withIlp = ilpSocket !== undefined;
let sink = 0;

function onMessage(event: MessageEvent): void {
  if (warmLeft > 0) {
    handle(event);
    if (--warmLeft === 0) {
      flush();
      console.log(JSON.stringify({ type: "warm" }));
    }
    return;
  }
  if (messages === 0) {
    firstAt = epochMs();
    const cpu = process.cpuUsage();
    cpuAtFirst = cpu.user + cpu.system;
  }
  handle(event);
  if (++messages === expected) {
    flush();
    const lastAt = epochMs();
    const cpu = process.cpuUsage();
    console.log(JSON.stringify({ type: "done", messages, firstAt, lastAt, cpuMicros: cpu.user + cpu.system - cpuAtFirst, sink }));
    // Let the ILP tail drain before exiting; the parent closes us.
  }
}

function handle(event: MessageEvent): void {
  const message = JSON.parse(event.data as string);
  if (withIlp) {
    writeRows(message);
    if (length > 256 << 10) flush();
    else scheduleFlush();
  } else if (message === null) {
    sink++;
  }
}

let opened = 0;
for (const url of urls) {
  const socket = new WebSocket(url);
  socket.onmessage = onMessage;
  socket.onopen = () => {
    if (++opened === urls.length) console.log(JSON.stringify({ type: "open" }));
  };
  socket.onerror = () => {
    console.error(`ceiling client: connection to ${url} failed`);
    process.exit(1);
  };
}
