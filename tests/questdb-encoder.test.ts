/**
 * The hand-built ILP encoder against the official client: the same rows must be the same bytes
 * (seeded random events with hostile strings, non-finite and extreme numbers, edge timestamps), every
 * line must parse strictly back to the original values, and the columns must be exactly the shared
 * schema's.
 */
import { describe, expect, test } from "bun:test";
import { baseAmount, type MarketEvent } from "../src/core/events.ts";
import { IlpEncoder } from "../src/sinks/questdb/encoder.ts";
import { TABLES, TABLE_OF_EVENT, type ColumnKind } from "../src/core/tables.ts";
import { IlpStreamParser, SchemaTracker, type IlpRow } from "./support/ilp-server.ts";
import { lineEnds, partitionByTable, rowsByTable, tableOfLine } from "../src/sinks/questdb/lines.ts";
import type { TableName } from "../src/core/tables.ts";
import { HOSTILE_STRINGS, RandomEvents, T0, bbo, book, funding, gap, liquidation, seededRandom, trade } from "./support/questdb-events.ts";
import { appendReferenceRows, createReferenceBuffer } from "./support/questdb-reference.ts";

function encodeOne(event: MarketEvent, maxLineBytes = 1 << 30): { bytes: Uint8Array; rows: number; encoder: IlpEncoder } {
  const encoder = new IlpEncoder({ maxLineBytes, initialBytes: 64 });
  const rows = encoder.encode(event);
  return { bytes: encoder.take() ?? new Uint8Array(0), rows, encoder };
}

const reference = createReferenceBuffer();

function referenceBytes(event: MarketEvent): Uint8Array {
  const buffer = reference.reset();
  appendReferenceRows(buffer, event);
  return Uint8Array.from(buffer.toBufferView() ?? []);
}

function parseAll(bytes: Uint8Array): IlpRow[] {
  const rows: IlpRow[] = [];
  const parser = new IlpStreamParser(new SchemaTracker(), (row) => rows.push(row));
  parser.feed(bytes);
  if (parser.failed) throw new Error(parser.failed);
  expect(parser.pendingBytes).toBe(0);
  return rows;
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("latin1");

describe("IlpEncoder writes the client's bytes", () => {
  test("for 20,000 seeded random events of every type", () => {
    const random = new RandomEvents(20260101);
    // One encoder for the whole run, as in the sink: exercises buffer growth and the symbol cache.
    const encoder = new IlpEncoder({ maxLineBytes: 1 << 30, initialBytes: 256 });
    let rows = 0;
    for (let i = 0; i < 20_000; i++) {
      const event = random.next();
      const written = encoder.encode(event);
      expect(written).toBeGreaterThanOrEqual(0);
      rows += written;
      const mine = encoder.take() ?? new Uint8Array(0);
      const theirs = referenceBytes(event);
      if (hex(mine) !== hex(theirs)) {
        throw new Error(`event ${i} (${event.type}) differs:\nours:   ${JSON.stringify(hex(mine))}\nclient: ${JSON.stringify(hex(theirs))}`);
      }
    }
    expect(rows).toBeGreaterThan(20_000);
  });

  test("for hostile strings in every string and symbol position", () => {
    for (const text of HOSTILE_STRINGS) {
      const events: MarketEvent[] = [
        trade(1, { id: text, symbol: text === "" ? "X" : text }),
        liquidation(2, { id: text }),
        gap(3, { detail: text, symbol: text }),
        book(4, { symbol: text }),
      ];
      for (const event of events) expect(hex(encodeOne(event).bytes)).toBe(hex(referenceBytes(event)));
    }
  });

  test("for non-finite values, extreme numbers and edge timestamps", () => {
    const events: MarketEvent[] = [
      trade(1, { price: Number.NaN, amount: Number.POSITIVE_INFINITY }),
      trade(2, { price: 1e21, amount: 5e-324, timestamp: 0, localTimestamp: 0 }),
      trade(3, { price: -0, amount: 2 ** 53, timestamp: -1000, localTimestamp: 2 ** 53 - 1 }),
      bbo(4, { bidPrice: Number.NEGATIVE_INFINITY, askAmount: 1.7976931348623157e308 }),
      funding(5, { markPrice: undefined, fundingRate: Number.NaN, nextFundingTime: 1.5 }),
      book(6, { bids: [Number.NaN, 1, 100, Number.POSITIVE_INFINITY, 99, 2], sequence: 2 ** 60 }),
      book(7, { bids: [], asks: [], isSnapshot: true, sequence: Number.NaN }),
      book(8, { amountUnit: "quote", contractValue: 100, bids: [0, 5, 25_000.5, 3] }),
    ];
    for (const event of events) expect(hex(encodeOne(event).bytes)).toBe(hex(referenceBytes(event)));
  });
});

/** Doubles of every shape the number printer distinguishes, seeded. */
function seededDoubles(seed: number, count: number): number[] {
  const random = seededRandom(seed);
  const bits = new Float64Array(1);
  const words = new Uint32Array(bits.buffer);
  const out: number[] = [
    0, -0, 0.1, 0.2, 0.1 + 0.2, 1e-6, 1e-7, 9.999999999999999e-7, 1.0000000000000002e-6, 0.000001, 0.0000015,
    1e15, 1e15 - 0.5, 999999999999999.9, 99999999999999.98, 123456789012345.6, 4503599627370495.5, 2 ** 31 - 0.5,
    2 ** 31 + 0.5, 21474836.47, 214748364.7, 1.005, 65000.1, 1e21, 1e21 - 65536, 123456789012345680000, 5e-324,
    1.7976931348623157e308, 2 ** 53, 2 ** 53 + 2, 0.30000000000000004, 1 / 3, 2 / 3, Math.PI, 100.25, 0.01 * 3,
    Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY,
  ];
  while (out.length < count) {
    const roll = random();
    let value: number;
    if (roll < 0.3) {
      // A venue's decimal: up to 15 digits, up to 20 of them after the point.
      const decimals = Math.floor(random() * 21);
      value = Math.round(random() * 10 ** Math.floor(random() * 16)) / 10 ** decimals;
    } else if (roll < 0.45) {
      value = Number((random() * 10 ** (Math.floor(random() * 30) - 10)).toPrecision(1 + Math.floor(random() * 17)));
    } else if (roll < 0.6) {
      words[0] = Math.floor(random() * 2 ** 32);
      words[1] = Math.floor(random() * 2 ** 32);
      value = bits[0]!;
    } else if (roll < 0.75) {
      value = random() * 10 ** (Math.floor(random() * 26) - 9);
    } else if (roll < 0.9) {
      // Products and quotients as base amounts make them (many digits).
      value = (Math.round(random() * 1e5) / 1e3) * [0.01, 0.1, 0.001, 1e-6, 3, 10, 100][Math.floor(random() * 7)]!;
      if (random() < 0.5) value /= Math.round(random() * 1e6) / 10;
    } else {
      // A neighbour (one unit in the last place) of a short decimal.
      bits[0] = Math.round(random() * 1e6) / 10 ** Math.floor(random() * 8);
      words[0] = (words[0]! + (random() < 0.5 ? 1 : -1)) >>> 0;
      value = bits[0]!;
    }
    out.push(random() < 0.3 ? -value : value);
  }
  return out;
}

describe("reading our lines back (lines.ts)", () => {
  test("2,000 seeded random events with hostile strings: lines, tables and a split by table match the rows", () => {
    const random = new RandomEvents(20260422);
    const encoder = new IlpEncoder({ maxLineBytes: 1 << 30, initialBytes: 256 });
    for (let i = 0; i < 2_000; i++) encoder.encode(random.next());
    const rowsWritten = encoder.rows;
    const bytes = encoder.take()!;
    const rows = parseAll(bytes);
    expect(rows).toHaveLength(rowsWritten);
    const ends = lineEnds(bytes);
    expect(ends).toHaveLength(rows.length);
    let start = 0;
    const expected: Partial<Record<TableName, number>> = {};
    ends.forEach((end, i) => {
      expect(tableOfLine(bytes, start)).toBe(rows[i]!.table as TableName);
      // Each line on its own parses to the same row: no line was cut at an escaped newline.
      expect(parseAll(bytes.subarray(start, end))).toEqual([rows[i]!]);
      expected[rows[i]!.table as TableName] = (expected[rows[i]!.table as TableName] ?? 0) + 1;
      start = end;
    });
    expect(rowsByTable(bytes)).toEqual(expected);
    const split = partitionByTable(bytes, new Set<TableName>(["trades", "gaps"]));
    expect(split.takenRows).toBe((expected.trades ?? 0) + (expected.gaps ?? 0));
    expect(parseAll(split.taken).map((row) => row.table)).toEqual(rows.filter((row) => row.table === "trades" || row.table === "gaps").map((row) => row.table));
    expect(parseAll(split.kept)).toEqual(rows.filter((row) => row.table !== "trades" && row.table !== "gaps"));
  });
});

describe("IlpEncoder prints doubles as the client does", () => {
  const values = seededDoubles(20260315, 40_000);

  test("40,000 seeded doubles (plain and exponent forms, -0, tiny, huge, non-finite), twice through the cache", () => {
    // One encoder: the second pass prints from the cache of recently printed doubles.
    const encoder = new IlpEncoder({ maxLineBytes: 1 << 30, initialBytes: 128 });
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i + 3 < values.length; i += 4) {
        const event = bbo(i, { bidPrice: values[i]!, bidAmount: values[i + 1]!, askPrice: values[i + 2]!, askAmount: values[i + 3]! });
        encoder.encode(event);
        const mine = hex(encoder.take() ?? new Uint8Array(0));
        const theirs = hex(referenceBytes(event));
        if (mine !== theirs) throw new Error(`pass ${pass}, values ${values.slice(i, i + 4).join(", ")}:\nours:   ${mine}\nclient: ${theirs}`);
      }
    }
  });

  test("values sharing cache slots never print each other's text", () => {
    // Every value printed right after every other: a stale slot would show up as a wrong number.
    const encoder = new IlpEncoder({ maxLineBytes: 1 << 30 });
    const few = values.slice(0, 3000);
    const random = seededRandom(7);
    for (let i = 0; i < 20_000; i++) {
      const a = few[Math.floor(random() * few.length)]!;
      const b = few[Math.floor(random() * few.length)]!;
      const event = trade(i, { price: a, amount: b, amountUnit: random() < 0.5 ? "base" : "quote", contractValue: random() < 0.5 ? 1 : 0.01 });
      encoder.encode(event);
      expect(hex(encoder.take() ?? new Uint8Array(0))).toBe(hex(referenceBytes(event)));
    }
  });
});

describe("IlpEncoder book rows", () => {
  test("3,000 seeded books mixing finite and non-finite levels, every unit and contract value", () => {
    const random = seededRandom(99);
    const values = seededDoubles(4242, 5000);
    const encoder = new IlpEncoder({ maxLineBytes: 1 << 30, initialBytes: 256 });
    const side = (): number[] => {
      const flat: number[] = [];
      const levels = Math.floor(random() * 9);
      for (let k = 0; k < levels; k++) {
        const roll = random();
        // Mostly plain levels; some with a non-finite or odd value anywhere in the row.
        const odd = (): number => (random() < 0.4 ? [Number.NaN, Number.POSITIVE_INFINITY, -Number.MAX_VALUE][Math.floor(random() * 3)]! : values[Math.floor(random() * values.length)]!);
        const price = roll < 0.15 ? odd() : Math.round((100 + random() * 50) * 10) / 10;
        const amount = roll > 0.85 ? odd() : Math.round(random() * 9000) / 1000;
        flat.push(price, amount);
      }
      return flat;
    };
    for (let i = 0; i < 3000; i++) {
      const event = book(i, {
        bids: side(),
        asks: side(),
        isSnapshot: random() < 0.2,
        amountUnit: random() < 0.5 ? "base" : "quote",
        contractValue: [1, 0.01, 100, 0.1][Math.floor(random() * 4)]!,
      });
      encoder.encode(event);
      const mine = hex(encoder.take() ?? new Uint8Array(0));
      const theirs = hex(referenceBytes(event));
      if (mine !== theirs) throw new Error(`book ${i} differs:\nours:   ${JSON.stringify(mine)}\nclient: ${JSON.stringify(theirs)}`);
    }
  });

  test("a non-finite level between finite ones, at the start and at the end", () => {
    const nan = Number.NaN;
    const patterns: number[][] = [
      [1.5, 1, nan, 2, 3.5, 3, 4.5, 4],
      [nan, 1, 2.5, 2, 3.5, 3, nan, 4, 5.5, 5],
      [1.5, 1, 2.5, 2, nan, nan],
      [1.5, nan, 2.5, 2, 3.5, Number.POSITIVE_INFINITY, 4.5, 4, 5.5, 5],
      [nan, nan, nan, nan],
    ];
    for (const bids of patterns) {
      for (const contractValue of [1, 0.01]) {
        const event = book(1, { bids, asks: bids.slice().reverse(), contractValue, amountUnit: "base" });
        expect(hex(encodeOne(event).bytes)).toBe(hex(referenceBytes(event)));
      }
    }
  });
});

describe("IlpEncoder chunks", () => {
  test("large chunks taken out and recycled keep their bytes; later chunks are right", () => {
    const random = new RandomEvents(5150);
    const sizes = seededRandom(77);
    const encoder = new IlpEncoder({ maxLineBytes: 1 << 30, initialBytes: 64 << 10 });
    const reference = createReferenceBuffer();
    const held: Array<{ chunk: Uint8Array; copy: string }> = [];
    const given = new Set<ArrayBufferLike>();
    let expected = "";
    let reused = 0;
    // Chunks of very different sizes: small (sliced), large (handed over, or copied into recycled memory).
    const nextTarget = () => [2 << 10, 70 << 10, 150 << 10, 300 << 10][Math.floor(sizes() * 4)]!;
    let target = nextTarget();
    for (let i = 0; i < 30_000; i++) {
      const event = random.next();
      encoder.encode(event);
      const buffer = reference.reset();
      appendReferenceRows(buffer, event);
      expected += hex(Uint8Array.from(buffer.toBufferView() ?? []));
      if (encoder.position < target) continue;
      target = nextTarget();
      const chunk = encoder.take()!;
      expect(hex(chunk)).toBe(expected);
      expected = "";
      expect(chunk.byteOffset).toBe(0);
      if (given.has(chunk.buffer)) reused++;
      held.push({ chunk, copy: hex(chunk) });
      // Chunks still held are never written to, whatever was recycled meanwhile.
      for (const entry of held) expect(hex(entry.chunk)).toBe(entry.copy);
      if (held.length > 3) {
        const old = held.shift()!.chunk;
        given.add(old.buffer);
        encoder.recycle(old);
      }
    }
    expect(hex(encoder.take() ?? new Uint8Array(0))).toBe(expected);
    expect(reused).toBeGreaterThan(5);
  });
});

describe("IlpEncoder output parses strictly back to the event", () => {
  test("hostile strings round-trip exactly; lone surrogates become U+FFFD", () => {
    for (const text of HOSTILE_STRINGS) {
      const rows = parseAll(encodeOne(trade(1, { id: text, symbol: text === "" ? "X" : text })).bytes);
      expect(rows).toHaveLength(1);
      const expected = Buffer.from(text, "utf8").toString("utf8"); // what UTF-8 can carry
      expect(rows[0]!.fields.id).toEqual({ kind: "string", value: expected });
      expect(rows[0]!.symbols.symbol).toBe(text === "" ? "X" : expected);
      const gapRow = parseAll(encodeOne(gap(2, { detail: text })).bytes)[0]!;
      expect(gapRow.fields.detail).toEqual({ kind: "string", value: expected });
    }
  });

  test("an empty symbol value and non-finite doubles are sent as NULL (column left out) and counted", () => {
    const { bytes, encoder } = encodeOne(trade(1, { symbol: "", price: Number.NaN, amount: Number.NEGATIVE_INFINITY }));
    const row = parseAll(bytes)[0]!;
    expect(row.symbols).toEqual({ exchange: "BINANCE_FUTURES", side: "sell" });
    expect(Object.keys(row.fields).sort()).toEqual(["id", "local_timestamp"]);
    expect(encoder.nullifiedValues).toBe(4); // symbol, price, amount, base_amount (NaN * x)
  });

  test("an L2 event is one row per level with the shared columns on each", () => {
    const event = book(9, { bids: [100.5, 2, 100.25, 0], asks: [101, 3.5], isSnapshot: true, contractValue: 0.01 });
    const { bytes, rows } = encodeOne(event);
    expect(rows).toBe(3);
    const parsed = parseAll(bytes);
    expect(parsed.map((row) => [row.symbols.side, row.fields.price, row.fields.amount])).toEqual([
      ["bid", { kind: "double", value: 100.5 }, { kind: "double", value: 2 }],
      ["bid", { kind: "double", value: 100.25 }, { kind: "double", value: 0 }],
      ["ask", { kind: "double", value: 101 }, { kind: "double", value: 3.5 }],
    ]);
    for (const row of parsed) {
      expect(row.table).toBe("l2");
      expect(row.symbols.exchange).toBe("OKX_SWAP");
      expect(row.fields.is_snapshot).toEqual({ kind: "boolean", value: true });
      expect(row.fields.sequence).toEqual({ kind: "long", value: BigInt(event.sequence) });
      expect(row.fields.local_timestamp).toEqual({ kind: "timestamp", value: BigInt(event.localTimestamp) });
      expect(row.timestamp).toBe(BigInt(event.timestamp) * 1000n);
      const price = (row.fields.price as { value: number }).value;
      const amount = (row.fields.amount as { value: number }).value;
      expect(row.fields.base_amount).toEqual({ kind: "double", value: baseAmount(event, price, amount) });
    }
  });

  test("an empty snapshot is kept as one row without side or price", () => {
    const parsed = parseAll(encodeOne(book(1, { isSnapshot: true, bids: [], asks: [] })).bytes);
    expect(parsed).toHaveLength(1);
    expect(parsed[0]!.symbols.side).toBeUndefined();
    expect(Object.keys(parsed[0]!.fields).sort()).toEqual(["is_snapshot", "local_timestamp", "sequence"]);
    expect(encodeOne(book(1, { isSnapshot: false, bids: [], asks: [] })).rows).toBe(0);
  });
});

describe("IlpEncoder columns are the shared schema", () => {
  const ILP_KIND: Record<ColumnKind, string> = {
    symbol: "symbol",
    string: "string",
    double: "double",
    long: "long",
    timestamp: "timestamp",
    boolean: "boolean",
  };
  const examples: MarketEvent[] = [trade(1), book(2), bbo(3), funding(4), liquidation(5, { id: "L1" }), gap(6)];
  for (const event of examples) {
    const table = TABLE_OF_EVENT[event.type];
    test(`${table}: every column of tables.ts with its kind, timestamp designated`, () => {
      const row = parseAll(encodeOne(event).bytes)[0]!;
      expect(row.table).toBe(table);
      const sent: Record<string, string> = {};
      for (const name of Object.keys(row.symbols)) sent[name] = "symbol";
      for (const [name, value] of Object.entries(row.fields)) sent[name] = value.kind;
      const expected: Record<string, string> = {};
      for (const column of TABLES[table]) if (column.name !== "timestamp") expected[column.name] = ILP_KIND[column.kind];
      expect(sent).toEqual(expected);
      expect(row.timestamp).toBe(BigInt(event.timestamp) * 1000n);
    });
  }
});

describe("IlpEncoder rejects what ILP cannot carry, writing nothing", () => {
  test("event or receive time that is not an integer number of microseconds", () => {
    for (const bad of [1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      const encoder = new IlpEncoder({ maxLineBytes: 32_768 });
      expect(encoder.encode(trade(1, { timestamp: bad }))).toBe(-1);
      expect(encoder.encode(trade(1, { localTimestamp: bad }))).toBe(-1);
      expect(encoder.position).toBe(0);
      expect(encoder.lastRejection).toContain("microseconds");
    }
  });

  test("a row longer than the server's line limit, without touching rows already written", () => {
    const encoder = new IlpEncoder({ maxLineBytes: 1024, initialBytes: 64 });
    expect(encoder.encode(trade(1))).toBe(1);
    const before = encoder.position;
    expect(encoder.encode(trade(2, { id: "x".repeat(2000) }))).toBe(-1);
    expect(encoder.lastRejection).toContain("longer than the 1024 bytes");
    expect(encoder.position).toBe(before);
    expect(encoder.rows).toBe(1);
    expect(encoder.encode(trade(3))).toBe(1);
    expect(parseAll(encoder.take()!).map((row) => (row.fields.id as { value: string }).value)).toEqual(["t1", "t3"]);
  });

  test("T0 sanity: designated timestamps are nanoseconds", () => {
    const row = parseAll(encodeOne(trade(0)).bytes)[0]!;
    expect(row.timestamp).toBe(BigInt(T0) * 1000n);
  });
});
