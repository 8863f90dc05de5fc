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

const POW10: readonly number[] = Array.from({ length: 23 }, (_, i) => 10 ** i);
/** 1e-6 with 15 significant digits has 20 fractional digits; 10^20 is still an exact double. */
const MAX_FRACTION_DIGITS = 20;
const INT32_LIMIT = 2 ** 31;
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
const CH_POINT = 46;
const CH_I = 105; // LONG suffix
const CH_T = 116; // TIMESTAMP suffix

/** Upper bound of the bytes one printed number takes (JS prints at most ~24 characters). */
const NUMBER_MAX_BYTES = 32;
const SYMBOL_CACHE_LIMIT = 4096;
/** take(): chunks from this size on go into recycled (or recyclable) memory; smaller ones are sliced. */
const RECYCLE_MIN_BYTES = 64 << 10;
const RECYCLE_GRANULE = 64 << 10;
/** Most memory kept for reuse between a chunk's release and the next take(). */
const RECYCLE_POOL_BYTES = 8 << 20;
const DOUBLE_CACHE_BITS = 12;
/** Length byte + text: toString() of a double is at most 25 characters ("-1.2345678901234567e-308"). */
const DOUBLE_CACHE_STRIDE = 32;
const DOUBLE_SCRATCH = new Float64Array(1);
const DOUBLE_WORDS = new Uint32Array(DOUBLE_SCRATCH.buffer);

/** "00" .. "99": two digits per division when printing integers. */
const DIGIT_PAIRS = new Uint8Array(200);
for (let i = 0; i < 100; i++) {
  DIGIT_PAIRS[2 * i] = CH_ZERO + Math.floor(i / 10);
  DIGIT_PAIRS[2 * i + 1] = CH_ZERO + (i % 10);
}

/** Digits of 0 <= n < 2^31. */
function smallDigitCount(n: number): number {
  if (n < 100000) return n < 100 ? (n < 10 ? 1 : 2) : n < 1000 ? 3 : n < 10000 ? 4 : 5;
  return n < 10000000 ? (n < 1000000 ? 6 : 7) : n < 100000000 ? 8 : n < 1000000000 ? 9 : 10;
}

/** Writes the `count` low digits of 0 <= n < 2^31 ending just before `end` (no leading zeros added). */
function writeSmallBackwards(buffer: Uint8Array, end: number, n: number, count: number): void {
  let cursor = end;
  let rest = n | 0;
  let left = count;
  while (left >= 2) {
    const quotient = (rest / 100) | 0;
    const pair = (rest - quotient * 100) << 1;
    buffer[--cursor] = DIGIT_PAIRS[pair + 1]!;
    buffer[--cursor] = DIGIT_PAIRS[pair]!;
    rest = quotient;
    left -= 2;
  }
  if (left === 1) buffer[--cursor] = CH_ZERO + rest;
}

/** Decimal digits of an integer 0 <= n < 2^53 at `position`; returns the position after them. */
function writeUnsigned(buffer: Uint8Array, position: number, n: number): number {
  if (n < INT32_LIMIT) {
    const count = smallDigitCount(n);
    writeSmallBackwards(buffer, position + count, n, count);
    return position + count;
  }
  // Below 2^53: at most 8 digits above the low 8, each part an int32.
  const high = Math.floor(n / 1e8);
  const end = writeUnsigned(buffer, position, high);
  writeSmallBackwards(buffer, end + 8, n - high * 1e8, 8);
  return end + 8;
}

/** Exactly `width` digits of 0 <= n < 10^width (<= 2^53), zero-padded on the left. */
function writePadded(buffer: Uint8Array, position: number, n: number, width: number): number {
  const end = position + width;
  let cursor = end;
  let rest = n;
  while (rest >= INT32_LIMIT) {
    const high = Math.floor(rest / 1e8);
    writeSmallBackwards(buffer, cursor, rest - high * 1e8, 8);
    cursor -= 8;
    rest = high;
  }
  const count = rest === 0 ? 0 : smallDigitCount(rest);
  writeSmallBackwards(buffer, cursor, rest, count);
  for (let i = position; i < cursor - count; i++) buffer[i] = CH_ZERO;
  return end;
}

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
  /** Memory of released chunks, reused by take(). */
  private readonly pool: ArrayBuffer[] = [];
  private poolBytes = 0;
  /** Direct-mapped cache of printed doubles: key per slot (NaN: empty), text at slot * stride (length byte first). */
  private readonly doubleKeys = new Float64Array(1 << DOUBLE_CACHE_BITS).fill(Number.NaN);
  private readonly doubleTexts = new Uint8Array((1 << DOUBLE_CACHE_BITS) * DOUBLE_CACHE_STRIDE);

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

  /**
   * Hands out what was written and starts over; undefined when nothing was written. The returned
   * chunk's ArrayBuffer is its own (its byteLength is the memory it holds):
   * - a small chunk is a copy;
   * - a large chunk that fills at least half the buffer is the buffer itself (no copy), and writing goes
   *   on in memory given back through recycle(), or new memory, sized for a chunk like this one plus a
   *   quarter (so chunks of a steady stream hold about 1.25 times their bytes);
   * - another large chunk is copied into recycled or new memory with a little room to spare.
   * Fresh memory costs page faults and garbage collection, more than the copy; recycled memory neither.
   */
  take(): Uint8Array | undefined {
    const length = this.position;
    if (length === 0) return undefined;
    let bytes: Uint8Array;
    const capacity = this.buffer.length;
    if (length < RECYCLE_MIN_BYTES) {
      bytes = this.buffer.slice(0, length);
    } else if (length >= capacity >> 1) {
      bytes = this.buffer.subarray(0, length);
      this.buffer = new Uint8Array(this.memory(length + (length >> 2), length + (length >> 2)));
    } else {
      bytes = new Uint8Array(this.memory(length, length + (length >> 3)), 0, length);
      bytes.set(this.buffer.subarray(0, length));
    }
    this.position = 0;
    this.rows = 0;
    return bytes;
  }

  /**
   * Gives back the memory of a chunk returned by take() that nobody reads any more (sent and released),
   * for a later take() to fill. Keeps at most RECYCLE_POOL_BYTES; anything else is left to the GC.
   */
  recycle(chunk: Uint8Array): void {
    const memory = chunk.buffer;
    if (!(memory instanceof ArrayBuffer) || memory.byteLength < RECYCLE_MIN_BYTES) return;
    if (memory.byteLength > RECYCLE_POOL_BYTES || this.pool.includes(memory)) return;
    this.pool.push(memory);
    this.poolBytes += memory.byteLength;
    while (this.poolBytes > RECYCLE_POOL_BYTES) this.poolBytes -= this.pool.shift()!.byteLength;
  }

  /**
   * At least `least` bytes of memory: the smallest pooled buffer of at most `least` * 5/4 + a granule,
   * else a new one of `size` rounded up to the granule.
   */
  private memory(least: number, size: number): ArrayBuffer {
    const pool = this.pool;
    const most = least + (least >> 2) + RECYCLE_GRANULE;
    let best = -1;
    for (let i = 0; i < pool.length; i++) {
      const length = pool[i]!.byteLength;
      if (length >= least && length <= most && (best < 0 || length < pool[best]!.byteLength)) best = i;
    }
    if (best < 0) return new ArrayBuffer(Math.ceil(Math.max(size, least) / RECYCLE_GRANULE) * RECYCLE_GRANULE);
    const memory = pool[best]!;
    pool.splice(best, 1);
    this.poolBytes -= memory.byteLength;
    return memory;
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
    // One row more than the levels: the shared head is written ahead for a row that may not come.
    this.ensure(headBytes + (count + 1) * (headBytes + 3 * (NUMBER_MAX_BYTES + 16) + 2 * NUMBER_MAX_BYTES + 32));
    const buffer = this.buffer;
    const scale = event.contractValue;
    const inBase = event.amountUnit === "base";
    // The first complete row gives the shared head (table..",price=") at [headStart, headEnd) and tail
    // (",sequence=..." to the newline) at [tailStart, tailEnd); a copy of the head follows that tail at
    // once, so "tail + next head" is one contiguous template and every further row costs one copy.
    // `ahead`: the head of the next row is already written at the end (taken back if no row uses it).
    let templated = false;
    let ahead = false;
    let headStart = 0;
    let headLength = 0;
    let tailStart = 0;
    let tailEnd = 0;
    let longest = 0;
    for (let i = 0; i + 1 < levels.length; i += 2) {
      const price = levels[i]!;
      const amount = levels[i + 1]!;
      const scaled = amount * scale;
      const base = inBase ? scaled : price > 0 ? scaled / price : 0;
      const finite = Number.isFinite(price) && Number.isFinite(amount) && Number.isFinite(base);
      let rowStart: number;
      if (finite && templated) {
        if (ahead) {
          rowStart = this.position - headLength;
        } else {
          rowStart = this.position;
          buffer.copyWithin(this.position, headStart, headStart + headLength);
          this.position += headLength;
        }
        this.levelNumbers(price, amount, base);
        const position = this.position;
        buffer.copyWithin(position, tailStart, tailEnd + headLength);
        this.position = position + (tailEnd - tailStart) + headLength;
        ahead = true;
        const length = position + (tailEnd - tailStart) - rowStart;
        if (length > longest) longest = length;
      } else {
        if (ahead) {
          this.position -= headLength;
          ahead = false;
          // This row overwrites the template's own head copy: the next finite row makes a new template.
          if (this.position === tailEnd) templated = false;
        }
        rowStart = this.position;
        this.bookHead(event, side);
        if (finite) {
          // The shared head ends with ",price=" so the following rows can continue with the number.
          this.bytes(F.price);
          headStart = rowStart;
          headLength = this.position - rowStart;
          this.levelNumbers(price, amount, base);
          tailStart = this.position;
          this.bookTail(event);
          tailEnd = this.position;
          templated = true;
          buffer.copyWithin(tailEnd, headStart, headStart + headLength);
          this.position = tailEnd + headLength;
          ahead = true;
          if (tailEnd - rowStart > longest) longest = tailEnd - rowStart;
        } else {
          this.optionalDouble(F.price, price);
          this.optionalDouble(F.amount, amount);
          this.optionalDouble(F.baseAmount, base);
          this.bookTail(event);
          if (this.position - rowStart > longest) longest = this.position - rowStart;
        }
      }
      this.rows++;
    }
    if (ahead) this.position -= headLength;
    return longest;
  }

  /** `<price>,amount=<amount>,base_amount=<base>` of a level whose three values are finite. */
  private levelNumbers(price: number, amount: number, base: number): void {
    this.double(price);
    this.bytes(F.amount);
    const amountStart = this.position;
    this.double(amount);
    const amountEnd = this.position;
    this.bytes(F.baseAmount);
    if (base === amount) {
      // Amounts in base units with contract value 1: the same text again (0 and -0 both print "0").
      const buffer = this.buffer;
      let position = this.position;
      for (let i = amountStart; i < amountEnd; i++) buffer[position++] = buffer[i]!;
      this.position = position;
    } else {
      this.double(base);
    }
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

  /**
   * A finite double exactly as Number.prototype.toString prints it (the client's floatColumn does
   * `value.toString()`): integers below 1e15 as digits; decimals of at most 15 significant digits in
   * plain notation through decimalDigits(); anything else (more digits, exponent notation) via String().
   */
  private double(value: number): void {
    // Recently printed doubles (a book's prices recur from message to message) are copied from a
    // direct-mapped cache keyed by the value's bits.
    DOUBLE_SCRATCH[0] = value;
    const slot = Math.imul(DOUBLE_WORDS[0]! ^ DOUBLE_WORDS[1]!, 0x9e3779b1) >>> (32 - DOUBLE_CACHE_BITS);
    const buffer = this.buffer;
    let position = this.position;
    const texts = this.doubleTexts;
    if (this.doubleKeys[slot] === value) {
      let at = slot * DOUBLE_CACHE_STRIDE;
      const end = at + 1 + texts[at]!;
      for (at++; at < end; at++) buffer[position++] = texts[at]!;
      this.position = position;
      return;
    }
    const start = position;
    if (value === Math.trunc(value) && value < PLAIN_INTEGER_LIMIT && value > -PLAIN_INTEGER_LIMIT) {
      this.integer(value);
    } else if (!this.decimalDigits(value)) {
      const text = String(value);
      for (let i = 0; i < text.length; i++) buffer[position++] = text.charCodeAt(i);
      this.position = position;
    }
    const length = this.position - start;
    if (length < DOUBLE_CACHE_STRIDE) {
      this.doubleKeys[slot] = value;
      let at = slot * DOUBLE_CACHE_STRIDE;
      texts[at++] = length;
      for (let i = start; i < start + length; i++) texts[at++] = buffer[i]!;
    }
  }

  /**
   * Writes a finite non-integer double whose shortest round-trip text has at most 15 significant digits
   * and no exponent (1e-6 <= |value| < 1e15), exactly as toString() prints it; returns false (nothing
   * written) for any other value.
   *
   * Why this is toString()'s text: for k = 1, 2, ... the candidate m = round(|value| * 10^k) is checked
   * with m / 10^k === |value| (10^k and m < 10^15 are exact doubles, so the division is the correctly
   * rounded value of the decimal m·10^-k, i.e. what parsing that text gives). If a decimal with k
   * fractional digits and at most 15 significant digits parses to |value|, m is that decimal: it lies
   * within |value|·2^-53·10^k < 0.12 of |value|·10^k, and the product is off by at most 0.0625, so
   * rounding finds it. Two different decimals of at most 15 significant digits never parse to the same
   * double (2^53 > 10^15 · 2), so the first k found gives the unique decimal of at most 15 significant
   * digits that round-trips, which is the shortest one, which toString() prints (without trailing zeros:
   * one would have matched at k - 1). Plain notation: toString uses it for 1e-6 <= |value| < 1e21.
   */
  private decimalDigits(value: number): boolean {
    const magnitude = value < 0 ? -value : value;
    if (!(magnitude >= 1e-6 && magnitude < PLAIN_INTEGER_LIMIT)) return false;
    let k = 1;
    let scale = 10;
    let m = Math.round(magnitude * scale);
    while (m / scale !== magnitude) {
      if (++k > MAX_FRACTION_DIGITS) return false;
      scale = POW10[k]!;
      m = Math.round(magnitude * scale);
      if (m >= PLAIN_INTEGER_LIMIT) return false;
    }
    if (m >= PLAIN_INTEGER_LIMIT) return false;
    // The integer part is floor(|value|): the decimal is at least 10^-k away from an integer, |value|
    // within 0.12·10^-k of it. m and whole·scale are below 2^53, so the fraction is exact.
    const whole = Math.floor(magnitude);
    const buffer = this.buffer;
    let position = this.position;
    if (value < 0) buffer[position++] = CH_MINUS;
    position = writeUnsigned(buffer, position, whole);
    buffer[position++] = CH_POINT;
    this.position = writePadded(buffer, position, m - whole * scale, k);
    return true;
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
    this.position = writeUnsigned(buffer, position, n);
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
