/**
 * Hand-built InfluxDB line protocol (ILP, protocol version 1 = text) encoder for the hot path.
 *
 * The official client encodes ~180k rows/s; this writes the same bytes (tests/questdb-encoder.test.ts
 * compares against the client's SenderBufferV1 on many seeded random rows) at several times that, because:
 * - bytes go straight into one growable Uint8Array, no per-row objects or intermediate strings except
 *   String(x) for non-integer doubles;
 * - escaped symbol values (exchange, instrument, side...) are encoded once and cached;
 * - an L2 event writes its row prefix (table, symbols, local_timestamp, is_snapshot) and tail
 *   (sequence, designated timestamp) once and copies them for every further level.
 *
 * Wire rules (https://questdb.com/docs/ingestion/ilp/advanced-settings/ and .../ilp/columnset-types/):
 * - `table,sym=v,... field=v,... <designated timestamp in ns>\n`, symbols before fields;
 * - symbol values escape space, comma, equals, \n, \r and backslash with a backslash;
 * - string values are double-quoted and escape ", \n, \r and backslash;
 * - doubles as JS prints them, LONG with suffix `i`, TIMESTAMP columns in µs with suffix `t`,
 *   booleans `t`/`f`; the designated timestamp is in nanoseconds (our µs followed by `000`);
 * - NULL is expressed by leaving the column out. ILP has no NaN/Infinity that QuestDB stores as a
 *   number, so a non-finite double is sent as NULL (column omitted) and counted in `nullifiedValues`;
 *   an empty symbol value is also sent as NULL.
 * Rows that cannot be carried at all (event or receive time not an integer µs, a line longer than the
 * server accepts) are rejected whole: nothing of the event is written and `lastRejection` says why.
 */
import type { BookChange, Funding, Gap, MarketEvent } from "../../core/events.ts";

const UTF8 = new TextEncoder();
const bytesOf = (text: string): Uint8Array => UTF8.encode(text);

const BACKSLASH = 92;
/** Characters escaped with a backslash in symbol values (unquoted). */
const SYMBOL_ESCAPES = new Uint8Array(128);
for (const ch of " ,=\n\r\\") SYMBOL_ESCAPES[ch.charCodeAt(0)] = 1;
/** Characters escaped with a backslash inside quoted string values. */
const STRING_ESCAPES = new Uint8Array(128);
for (const ch of '"\n\r\\') STRING_ESCAPES[ch.charCodeAt(0)] = 1;

const POW10: readonly number[] = Array.from({ length: 17 }, (_, i) => 10 ** i);
/** Integer-valued doubles below this print as plain digits in JS, so the digit writer can be used. */
const PLAIN_INTEGER_LIMIT = 1e15;
const INT64_LIMIT = 2 ** 63;

// Pre-encoded fragments. Every row starts `table,exchange=` and has `local_timestamp` as first field,
// so every later field is introduced with a comma.
const F = {
  trades: bytesOf("trades,exchange="),
  l2: bytesOf("l2,exchange="),
  bbo: bytesOf("bbo,exchange="),
  funding: bytesOf("funding,exchange="),
  liquidations: bytesOf("liquidations,exchange="),
  gaps: bytesOf("gaps,exchange="),
  symbol: bytesOf(",symbol="),
  side: bytesOf(",side="),
  stream: bytesOf(",stream="),
  reason: bytesOf(",reason="),
  localTimestamp: bytesOf(" local_timestamp="),
  id: bytesOf(',id="'),
  detail: bytesOf(',detail="'),
  quote: bytesOf('"'),
  price: bytesOf(",price="),
  amount: bytesOf(",amount="),
  baseAmount: bytesOf(",base_amount="),
  isSnapshotTrue: bytesOf(",is_snapshot=t"),
  isSnapshotFalse: bytesOf(",is_snapshot=f"),
  sequence: bytesOf(",sequence="),
  bidPrice: bytesOf(",bid_price="),
  bidAmount: bytesOf(",bid_amount="),
  askPrice: bytesOf(",ask_price="),
  askAmount: bytesOf(",ask_amount="),
  markPrice: bytesOf(",mark_price="),
  indexPrice: bytesOf(",index_price="),
  fundingRate: bytesOf(",funding_rate="),
  nextFundingTime: bytesOf(",next_funding_time="),
  currentFundingRate: bytesOf(",current_funding_rate="),
  bid: bytesOf("bid"),
  ask: bytesOf("ask"),
} as const;

const CH_SPACE = 32;
const CH_NEWLINE = 10;
const CH_ZERO = 48;
const CH_MINUS = 45;
const CH_I = 105; // LONG suffix
const CH_T = 116; // TIMESTAMP suffix

/** Upper bound of the bytes one printed number takes (JS prints at most ~24 characters). */
const NUMBER_MAX_BYTES = 32;
const SYMBOL_CACHE_LIMIT = 4096;

export interface EncoderOptions {
  /** Longest line the server accepts (QuestDB line.tcp.max.measurement.size, default 32768). */
  readonly maxLineBytes: number;
  readonly initialBytes?: number;
}

export class IlpEncoder {
  private buffer: Uint8Array;
  /** Bytes written since the last take(). */
  position = 0;
  /** Rows written since the last take(). */
  rows = 0;
  /** Non-finite doubles and empty symbols sent as NULL since construction. */
  nullifiedValues = 0;
  /** Why the last encode() returned -1. */
  lastRejection = "";
  private readonly maxLineBytes: number;
  private readonly symbolCache = new Map<string, Uint8Array>();

  constructor(options: EncoderOptions) {
    this.maxLineBytes = options.maxLineBytes;
    this.buffer = new Uint8Array(options.initialBytes ?? 1 << 20);
  }

  /**
   * Appends the rows of one event. Returns the number of rows written, or -1 when the event was rejected
   * (nothing written; see lastRejection).
   */
  encode(event: MarketEvent): number {
    if (!Number.isSafeInteger(event.timestamp) || !Number.isSafeInteger(event.localTimestamp)) {
      this.lastRejection = `${event.type} event with a timestamp that is not an integer number of microseconds (timestamp=${event.timestamp}, localTimestamp=${event.localTimestamp})`;
      return -1;
    }
    const start = this.position;
    const rowsBefore = this.rows;
    let longestLine: number;
    switch (event.type) {
      case "book_change":
        longestLine = this.book(event);
        break;
      case "trade":
        longestLine = this.tradeLike(F.trades, event.exchange, event.symbol, event.side, event);
        break;
      case "liquidation":
        longestLine = this.tradeLike(F.liquidations, event.exchange, event.symbol, event.side, event);
        break;
      case "bbo":
        longestLine = this.bbo(event);
        break;
      case "funding":
        longestLine = this.funding(event);
        break;
      case "gap":
        longestLine = this.gap(event);
        break;
    }
    if (longestLine > this.maxLineBytes) {
      this.rollback(start, rowsBefore);
      this.lastRejection = `${event.type} row of ${longestLine} bytes is longer than the ${this.maxLineBytes} bytes QuestDB accepts in one line (QUESTDB_MAX_LINE_BYTES)`;
      return -1;
    }
    return this.rows - rowsBefore;
  }

  /** Undoes everything written after `position`/`rows` (an event that does not fit the buffer bound). */
  rollback(position: number, rows: number): void {
    this.position = position;
    this.rows = rows;
  }

  /** Copies out what was written and starts over; undefined when nothing was written. */
  take(): Uint8Array | undefined {
    if (this.position === 0) return undefined;
    const bytes = this.buffer.slice(0, this.position);
    this.position = 0;
    this.rows = 0;
    return bytes;
  }

  // ---- tables ---------------------------------------------------------------------------------------

  /** trades and liquidations: same columns. Returns the line length. */
  private tradeLike(
    table: Uint8Array,
    exchange: string,
    symbol: string,
    side: string,
    event: { id: string; price: number; amount: number; amountUnit: "base" | "quote"; contractValue: number; timestamp: number; localTimestamp: number },
  ): number {
    this.ensure(256 + event.id.length * 3 + exchange.length * 6 + symbol.length * 6);
    const start = this.position;
    this.bytes(table);
    this.symbolValue(exchange);
    this.symbolField(F.symbol, symbol);
    this.symbolField(F.side, side);
    this.bytes(F.localTimestamp);
    this.integer(event.localTimestamp);
    this.buffer[this.position++] = CH_T;
    this.bytes(F.id);
    this.stringValue(event.id);
    this.bytes(F.quote);
    const scaled = event.amount * event.contractValue;
    const base = event.amountUnit === "base" ? scaled : event.price > 0 ? scaled / event.price : 0;
    this.optionalDouble(F.price, event.price);
    this.optionalDouble(F.amount, event.amount);
    this.optionalDouble(F.baseAmount, base);
    this.designatedTimestamp(event.timestamp);
    this.rows++;
    return this.position - start;
  }

  private bbo(event: MarketEvent & { type: "bbo" }): number {
    this.ensure(256 + event.exchange.length * 6 + event.symbol.length * 6);
    const start = this.position;
    this.bytes(F.bbo);
    this.symbolValue(event.exchange);
    this.symbolField(F.symbol, event.symbol);
    this.bytes(F.localTimestamp);
    this.integer(event.localTimestamp);
    this.buffer[this.position++] = CH_T;
    this.optionalDouble(F.bidPrice, event.bidPrice);
    this.optionalDouble(F.bidAmount, event.bidAmount);
    this.optionalDouble(F.askPrice, event.askPrice);
    this.optionalDouble(F.askAmount, event.askAmount);
    this.designatedTimestamp(event.timestamp);
    this.rows++;
    return this.position - start;
  }

  private funding(event: Funding): number {
    this.ensure(256 + event.exchange.length * 6 + event.symbol.length * 6);
    const start = this.position;
    this.bytes(F.funding);
    this.symbolValue(event.exchange);
    this.symbolField(F.symbol, event.symbol);
    this.bytes(F.localTimestamp);
    this.integer(event.localTimestamp);
    this.buffer[this.position++] = CH_T;
    if (event.markPrice !== undefined) this.optionalDouble(F.markPrice, event.markPrice);
    if (event.indexPrice !== undefined) this.optionalDouble(F.indexPrice, event.indexPrice);
    if (event.fundingRate !== undefined) this.optionalDouble(F.fundingRate, event.fundingRate);
    const next = event.nextFundingTime;
    if (next !== undefined) {
      if (Number.isSafeInteger(next)) {
        this.bytes(F.nextFundingTime);
        this.integer(next);
        this.buffer[this.position++] = CH_T;
      } else {
        this.nullifiedValues++;
      }
    }
    if (event.currentFundingRate !== undefined) this.optionalDouble(F.currentFundingRate, event.currentFundingRate);
    this.designatedTimestamp(event.timestamp);
    this.rows++;
    return this.position - start;
  }

  private gap(event: Gap): number {
    this.ensure(256 + event.detail.length * 3 + event.exchange.length * 6 + event.symbol.length * 6);
    const start = this.position;
    this.bytes(F.gaps);
    this.symbolValue(event.exchange);
    this.symbolField(F.symbol, event.symbol);
    this.symbolField(F.stream, event.stream);
    this.symbolField(F.reason, event.reason);
    this.bytes(F.localTimestamp);
    this.integer(event.localTimestamp);
    this.buffer[this.position++] = CH_T;
    this.bytes(F.detail);
    this.stringValue(event.detail);
    this.bytes(F.quote);
    this.designatedTimestamp(event.timestamp);
    this.rows++;
    return this.position - start;
  }

  /** One row per level. Returns the longest line written. */
  private book(event: BookChange): number {
    let longest = this.levels(event, event.bids, F.bid);
    longest = Math.max(longest, this.levels(event, event.asks, F.ask));
    if (event.isSnapshot && event.bids.length < 2 && event.asks.length < 2) {
      // An empty snapshot means "the book is now empty": keep that fact as one row without side/price.
      longest = this.emptySnapshot(event);
    }
    return longest;
  }

  private levels(event: BookChange, levels: readonly number[], side: Uint8Array): number {
    const count = levels.length >> 1;
    if (count === 0) return 0;
    const headBytes = 128 + event.exchange.length * 6 + event.symbol.length * 6;
    this.ensure(headBytes + count * (headBytes + 3 * (NUMBER_MAX_BYTES + 16) + 2 * NUMBER_MAX_BYTES + 32));
    const buffer = this.buffer;
    const scale = event.contractValue;
    const inBase = event.amountUnit === "base";
    // Offsets of the first row's shared head (table..is_snapshot) and tail (sequence..newline).
    let headStart = -1;
    let headEnd = 0;
    let tailStart = 0;
    let tailEnd = 0;
    let longest = 0;
    for (let i = 0; i + 1 < levels.length; i += 2) {
      const price = levels[i]!;
      const amount = levels[i + 1]!;
      const scaled = amount * scale;
      const base = inBase ? scaled : price > 0 ? scaled / price : 0;
      const rowStart = this.position;
      if (headStart >= 0 && Number.isFinite(price) && Number.isFinite(amount) && Number.isFinite(base)) {
        buffer.copyWithin(this.position, headStart, headEnd);
        this.position += headEnd - headStart;
        this.double(price);
        this.bytes(F.amount);
        this.double(amount);
        this.bytes(F.baseAmount);
        this.double(base);
        buffer.copyWithin(this.position, tailStart, tailEnd);
        this.position += tailEnd - tailStart;
      } else {
        // First row (writes the shared parts) or a level with a non-finite value (written in full).
        this.bookHead(event, side);
        const fast = Number.isFinite(price) && Number.isFinite(amount) && Number.isFinite(base);
        if (fast) {
          // The shared head ends with ",price=" so the following rows can continue with the number.
          this.bytes(F.price);
          const sharedHeadEnd = this.position;
          this.double(price);
          this.bytes(F.amount);
          this.double(amount);
          this.bytes(F.baseAmount);
          this.double(base);
          const rowTailStart = this.position;
          this.bookTail(event);
          headStart = rowStart;
          headEnd = sharedHeadEnd;
          tailStart = rowTailStart;
          tailEnd = this.position;
        } else {
          this.optionalDouble(F.price, price);
          this.optionalDouble(F.amount, amount);
          this.optionalDouble(F.baseAmount, base);
          this.bookTail(event);
        }
      }
      this.rows++;
      const length = this.position - rowStart;
      if (length > longest) longest = length;
    }
    return longest;
  }

  private emptySnapshot(event: BookChange): number {
    this.ensure(256 + event.exchange.length * 6 + event.symbol.length * 6);
    const start = this.position;
    this.bytes(F.l2);
    this.symbolValue(event.exchange);
    this.symbolField(F.symbol, event.symbol);
    this.bytes(F.localTimestamp);
    this.integer(event.localTimestamp);
    this.buffer[this.position++] = CH_T;
    this.bytes(F.isSnapshotTrue);
    this.bookTail(event);
    this.rows++;
    return this.position - start;
  }

  /** `l2,exchange=..,symbol=..,side=.. local_timestamp=..t,is_snapshot=.` */
  private bookHead(event: BookChange, side: Uint8Array): void {
    this.bytes(F.l2);
    this.symbolValue(event.exchange);
    this.symbolField(F.symbol, event.symbol);
    this.bytes(F.side);
    this.bytes(side);
    this.bytes(F.localTimestamp);
    this.integer(event.localTimestamp);
    this.buffer[this.position++] = CH_T;
    this.bytes(event.isSnapshot ? F.isSnapshotTrue : F.isSnapshotFalse);
  }

  /** `,sequence=..i <timestamp ns>\n` */
  private bookTail(event: BookChange): void {
    const sequence = event.sequence;
    if (Number.isInteger(sequence) && Math.abs(sequence) < INT64_LIMIT) {
      this.bytes(F.sequence);
      this.longDigits(sequence);
      this.buffer[this.position++] = CH_I;
    } else {
      this.nullifiedValues++;
    }
    this.designatedTimestamp(event.timestamp);
  }

  // ---- values ---------------------------------------------------------------------------------------

  /** ` <µs>000\n`: the designated timestamp in nanoseconds, as the client's v1 buffer prints it. */
  private designatedTimestamp(micros: number): void {
    const buffer = this.buffer;
    buffer[this.position++] = CH_SPACE;
    this.integer(micros);
    if (micros !== 0) {
      buffer[this.position++] = CH_ZERO;
      buffer[this.position++] = CH_ZERO;
      buffer[this.position++] = CH_ZERO;
    }
    buffer[this.position++] = CH_NEWLINE;
  }

  private optionalDouble(name: Uint8Array, value: number): void {
    if (Number.isFinite(value)) {
      this.bytes(name);
      this.double(value);
    } else {
      this.nullifiedValues++;
    }
  }

  /** A finite double exactly as Number.prototype.toString prints it. */
  private double(value: number): void {
    if (value === Math.trunc(value) && value < PLAIN_INTEGER_LIMIT && value > -PLAIN_INTEGER_LIMIT) {
      this.integer(value);
      return;
    }
    const text = String(value);
    const buffer = this.buffer;
    let position = this.position;
    for (let i = 0; i < text.length; i++) buffer[position++] = text.charCodeAt(i);
    this.position = position;
  }

  /** A 64-bit integer as the client prints it (toString): digits for safe integers, else String(). */
  private longDigits(value: number): void {
    if (Number.isSafeInteger(value)) {
      this.integer(value);
      return;
    }
    const text = String(value);
    for (let i = 0; i < text.length; i++) this.buffer[this.position++] = text.charCodeAt(i);
  }

  /** Decimal digits of a safe integer (|value| < 2^53), no allocation. */
  private integer(value: number): void {
    const buffer = this.buffer;
    let position = this.position;
    let n = value;
    if (n < 0) {
      buffer[position++] = CH_MINUS;
      n = -n;
    }
    let digits = 1;
    while (digits < 16 && n >= POW10[digits]!) digits++;
    let cursor = position + digits;
    while (n >= 10) {
      const quotient = Math.floor(n / 10);
      buffer[--cursor] = CH_ZERO + (n - quotient * 10);
      n = quotient;
    }
    buffer[--cursor] = CH_ZERO + n;
    this.position = position + digits;
  }

  /** `name` then the escaped symbol value; an empty value is sent as NULL (both left out). */
  private symbolField(name: Uint8Array, value: string): void {
    if (value.length === 0) {
      this.nullifiedValues++;
      return;
    }
    this.bytes(name);
    this.symbolValue(value);
  }

  private symbolValue(value: string): void {
    let encoded = this.symbolCache.get(value);
    if (encoded === undefined) {
      const mark = this.position;
      this.escaped(value, SYMBOL_ESCAPES);
      encoded = this.buffer.slice(mark, this.position);
      this.position = mark;
      if (this.symbolCache.size >= SYMBOL_CACHE_LIMIT) this.symbolCache.clear();
      this.symbolCache.set(value, encoded);
    }
    this.bytes(encoded);
  }

  private stringValue(value: string): void {
    this.escaped(value, STRING_ESCAPES);
  }

  /**
   * UTF-8 with backslash escapes for the flagged ASCII characters. A lone surrogate becomes U+FFFD, as
   * Buffer.write (used by the client) encodes it. The caller reserved 3 bytes per UTF-16 unit.
   */
  private escaped(value: string, escapes: Uint8Array): void {
    const buffer = this.buffer;
    let position = this.position;
    const length = value.length;
    for (let i = 0; i < length; i++) {
      const code = value.charCodeAt(i);
      if (code < 0x80) {
        if (escapes[code] === 1) buffer[position++] = BACKSLASH;
        buffer[position++] = code;
      } else if (code < 0x800) {
        buffer[position++] = 0xc0 | (code >> 6);
        buffer[position++] = 0x80 | (code & 0x3f);
      } else if (code >= 0xd800 && code <= 0xdfff) {
        const next = i + 1 < length ? value.charCodeAt(i + 1) : 0;
        if (code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          const point = 0x10000 + ((code - 0xd800) << 10) + (next - 0xdc00);
          buffer[position++] = 0xf0 | (point >> 18);
          buffer[position++] = 0x80 | ((point >> 12) & 0x3f);
          buffer[position++] = 0x80 | ((point >> 6) & 0x3f);
          buffer[position++] = 0x80 | (point & 0x3f);
          i++;
        } else {
          buffer[position++] = 0xef;
          buffer[position++] = 0xbf;
          buffer[position++] = 0xbd;
        }
      } else {
        buffer[position++] = 0xe0 | (code >> 12);
        buffer[position++] = 0x80 | ((code >> 6) & 0x3f);
        buffer[position++] = 0x80 | (code & 0x3f);
      }
    }
    this.position = position;
  }

  private bytes(fragment: Uint8Array): void {
    const buffer = this.buffer;
    let position = this.position;
    for (let i = 0; i < fragment.length; i++) buffer[position++] = fragment[i]!;
    this.position = position;
  }

  /** Makes room for `extra` more bytes (an upper bound the caller computed). */
  private ensure(extra: number): void {
    const needed = this.position + extra;
    if (needed <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < needed) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buffer.subarray(0, this.position));
    this.buffer = grown;
  }
}
