/**
 * ILP line encoding, on its own: the same normalized events (Binance-like depth changes of about 20 levels
 * and trades) turned into InfluxDB line protocol and written to one TCP socket of the QuestDB stand-in, by
 *   - the official client's buffer (`@questdb/nodejs-client` SenderBuffer, protocol version 1),
 *   - xtrader's encoder (src/sinks/questdb/encoder.ts, byte-identical to the client: tested in
 *     tests/questdb-encoder.test.ts; the byte counts printed here must agree too),
 *   - a minimal hand-built writer (template strings, encodeInto), the ceiling.
 *
 *   bun bench/ilp-encode.ts --ilp 127.0.0.1:PORT [--events 20000] [--rounds 5]
 *
 * Reports rows per second of wall time and per CPU-second ("per core"), medians of the rounds; prints one
 * JSON line.
 */
import { parseArgs } from "node:util";
import { SenderOptions, createBuffer } from "@questdb/nodejs-client";
import { baseAmount, type BookChange, type MarketEvent, type Trade } from "../src/core/events.ts";
import { IlpEncoder } from "../src/sinks/questdb/encoder.ts";
import { seededRandom } from "./lib/market.ts";
import { median } from "./lib/proc.ts";

export interface EncodeVariant {
  readonly rowsPerSecond: number;
  readonly rowsPerCpuSecond: number;
  readonly bytes: number;
}

export interface IlpEncodeResult {
  readonly rows: number;
  readonly official: EncodeVariant;
  readonly xtrader: EncodeVariant;
  readonly handBuilt: EncodeVariant;
}

function events(count: number): { list: MarketEvent[]; rows: number } {
  const random = seededRandom(11);
  const list: MarketEvent[] = [];
  let rows = 0;
  let time = Date.UTC(2026, 0, 5) * 1000;
  for (let i = 0; i < count; i++) {
    time += 1000 + Math.floor(random() * 5000);
    if (i % 5 === 4) {
      const trade: Trade = {
        type: "trade", exchange: "BINANCE_FUTURES", symbol: "BTCUSDT", timestamp: time, localTimestamp: time + 800,
        id: String(5_000_000 + i), side: random() < 0.5 ? "buy" : "sell", price: Math.round((65_000 + random() * 50) * 10) / 10,
        amount: Math.round(random() * 2000) / 1000, amountUnit: "base", contractValue: 1,
      };
      list.push(trade);
      rows++;
      continue;
    }
    const side = () => {
      const flat: number[] = [];
      const levels = 6 + Math.floor(random() * 9);
      for (let k = 0; k < levels; k++) flat.push(Math.round((65_000 + (random() - 0.5) * 40) * 10) / 10, random() < 0.14 ? 0 : Math.round(random() * 9000) / 1000);
      return flat;
    };
    const book: BookChange = {
      type: "book_change", exchange: "BINANCE_FUTURES", symbol: "BTCUSDT", timestamp: time, localTimestamp: time + 700,
      isSnapshot: false, sequence: 8_000_000_000 + i * 7, bids: side(), asks: side(), amountUnit: "base", contractValue: 1,
    };
    list.push(book);
    rows += (book.bids.length + book.asks.length) / 2;
  }
  return { list, rows };
}

type Writer = (bytes: Uint8Array) => void;

function officialRun(list: readonly MarketEvent[], write: Writer): number {
  const buffer = createBuffer(new SenderOptions("tcp::addr=127.0.0.1:9009;protocol_version=1;init_buf_size=4194304;max_buf_size=1073741824"));
  let bytes = 0;
  const flush = () => {
    const view = buffer.toBufferView();
    bytes += view.length;
    write(view);
    buffer.reset();
  };
  for (let i = 0; i < list.length; i++) {
    const event = list[i]!;
    if (event.type === "trade") {
      buffer.table("trades").symbol("exchange", event.exchange).symbol("symbol", event.symbol).symbol("side", event.side);
      buffer.timestampColumn("local_timestamp", event.localTimestamp, "us").stringColumn("id", event.id);
      buffer.floatColumn("price", event.price).floatColumn("amount", event.amount).floatColumn("base_amount", baseAmount(event, event.price, event.amount));
      buffer.at(event.timestamp, "us");
    } else if (event.type === "book_change") {
      for (const [flat, side] of [[event.bids, "bid"], [event.asks, "ask"]] as const) {
        for (let k = 0; k < flat.length; k += 2) {
          buffer.table("l2").symbol("exchange", event.exchange).symbol("symbol", event.symbol).symbol("side", side);
          buffer.timestampColumn("local_timestamp", event.localTimestamp, "us").booleanColumn("is_snapshot", event.isSnapshot);
          buffer.floatColumn("price", flat[k]!).floatColumn("amount", flat[k + 1]!).floatColumn("base_amount", baseAmount(event, flat[k]!, flat[k + 1]!));
          buffer.intColumn("sequence", event.sequence).at(event.timestamp, "us");
        }
      }
    }
    if ((i & 1023) === 1023) flush();
  }
  flush();
  return bytes;
}

function xtraderRun(list: readonly MarketEvent[], write: Writer): number {
  const encoder = new IlpEncoder({ maxLineBytes: 32_768 });
  let bytes = 0;
  for (let i = 0; i < list.length; i++) {
    encoder.encode(list[i]!);
    if ((i & 1023) === 1023) {
      const chunk = encoder.take();
      if (chunk) {
        bytes += chunk.length;
        write(chunk);
      }
    }
  }
  const chunk = encoder.take();
  if (chunk) {
    bytes += chunk.length;
    write(chunk);
  }
  return bytes;
}

function handBuiltRun(list: readonly MarketEvent[], write: Writer): number {
  const encoder = new TextEncoder();
  const out = new Uint8Array(8 << 20);
  let length = 0;
  let bytes = 0;
  const put = (text: string) => {
    length += encoder.encodeInto(text, out.subarray(length)).written;
  };
  const flush = () => {
    bytes += length;
    write(out.subarray(0, length));
    length = 0;
  };
  for (let i = 0; i < list.length; i++) {
    const event = list[i]!;
    if (event.type === "trade") {
      put(`trades,exchange=${event.exchange},symbol=${event.symbol},side=${event.side} local_timestamp=${event.localTimestamp}t,id="${event.id}",price=${event.price},amount=${event.amount},base_amount=${event.amount * event.contractValue} ${event.timestamp}000\n`);
    } else if (event.type === "book_change") {
      const head = `l2,exchange=${event.exchange},symbol=${event.symbol},side=`;
      const tail = `,sequence=${event.sequence}i ${event.timestamp}000\n`;
      const mid = ` local_timestamp=${event.localTimestamp}t,is_snapshot=${event.isSnapshot ? "t" : "f"},price=`;
      for (let k = 0; k < event.bids.length; k += 2) put(`${head}bid${mid}${event.bids[k]},amount=${event.bids[k + 1]},base_amount=${event.bids[k + 1]}${tail}`);
      for (let k = 0; k < event.asks.length; k += 2) put(`${head}ask${mid}${event.asks[k]},amount=${event.asks[k + 1]},base_amount=${event.asks[k + 1]}${tail}`);
    }
    if (length > out.length - 65_536) flush();
  }
  flush();
  return bytes;
}

export async function ilpEncode(options: { ilp: string; events: number; rounds: number }): Promise<IlpEncodeResult> {
  const [hostname, port] = options.ilp.split(":");
  const queue: Uint8Array[] = [];
  let drainWaiter: (() => void) | undefined;
  const socket = await Bun.connect({
    hostname: hostname!,
    port: Number(port),
    socket: {
      data() {},
      drain(s) {
        while (queue.length > 0) {
          const chunk = queue[0]!;
          const written = s.write(chunk);
          if (written < chunk.length) {
            queue[0] = chunk.subarray(written);
            return;
          }
          queue.shift();
        }
        drainWaiter?.();
      },
    },
  });
  // Copies: every variant reuses its buffer after handing it over.
  const write: Writer = (bytes) => {
    if (queue.length > 0) {
      queue.push(bytes.slice());
      return;
    }
    const written = socket.write(bytes);
    if (written < bytes.length) queue.push(bytes.slice(written));
  };
  const drained = () => (queue.length === 0 ? Promise.resolve() : new Promise<void>((resolve) => (drainWaiter = resolve)));
  const { list, rows } = events(options.events);
  const variants = { official: officialRun, xtrader: xtraderRun, handBuilt: handBuiltRun } as const;
  const samples = new Map<string, { wall: number[]; cpu: number[]; bytes: number }>();
  for (let round = 0; round < options.rounds; round++) {
    for (const [name, run] of Object.entries(variants)) {
      await drained();
      const cpuBefore = process.cpuUsage();
      const started = performance.now();
      const bytes = run(list, write);
      await drained();
      const wall = (performance.now() - started) / 1000;
      const cpu = process.cpuUsage(cpuBefore);
      const entry = samples.get(name) ?? { wall: [], cpu: [], bytes };
      entry.wall.push(rows / wall);
      entry.cpu.push(rows / ((cpu.user + cpu.system) / 1e6));
      samples.set(name, entry);
    }
  }
  socket.end();
  const variant = (name: string): EncodeVariant => {
    const entry = samples.get(name)!;
    return { rowsPerSecond: median(entry.wall), rowsPerCpuSecond: median(entry.cpu), bytes: entry.bytes };
  };
  return { rows, official: variant("official"), xtrader: variant("xtrader"), handBuilt: variant("handBuilt") };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { ilp: { type: "string" }, events: { type: "string", default: "20000" }, rounds: { type: "string", default: "5" } },
  });
  if (!values.ilp) throw new Error("--ilp host:port is required (bench/run.ts starts the QuestDB stand-in)");
  console.log(JSON.stringify(await ilpEncode({ ilp: values.ilp, events: Number(values.events), rounds: Number(values.rounds) })));
  process.exit(0);
}
