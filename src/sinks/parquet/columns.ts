/**
 * Column buffers: the rows of one open file that are not yet in a row group, stored column by column in
 * flat typed arrays (no object per row), plus their binary form in the journal.
 *
 * `exchange` and `symbol` are constant within a file (they are partition keys), so they take no memory
 * per row. Numbers live in Float64Arrays; long and timestamp columns become BigInt64Arrays only when a
 * row group is encoded.
 */
import { Bytes } from "./bytes.ts";
import type { ColumnSource } from "hyparquet-writer";
import {
  baseAmount,
  type BookChange,
  type Funding,
  type Gap,
  type Liquidation,
  type MarketEvent,
  type Trade,
  type BookTicker,
} from "../../core/events.ts";
import type { Column, TableName } from "../../core/tables.ts";
import { encodingOf } from "./schema.ts";

const INITIAL_CAPACITY = 256;

/**
 * Next capacity for at least `needed` values: x4 while small, then x2 (fewer reallocations and copies as a
 * busy file fills a row group), but no more than `limit` when that is enough. The sink seals a row group as
 * soon as a buffer holds a row group's rows, so a buffer of a table it seals never needs more than a row
 * group plus one event: doubling past that (16,384 rows and a 20-level depth message made 32,768) allocated,
 * copied and page-faulted twice the memory for a few rows, on every busy file.
 */
function grown(capacity: number, needed: number, limit: number): number {
  let next = capacity;
  while (next < needed) next *= next < 16_384 ? 4 : 2;
  // Within a factor of two of the limit, go straight to it: one copy instead of two.
  return needed <= limit && next * 2 > limit ? limit : next;
}

/** Rows of one event that a buffer is sized for beyond a row group (a depth message; a snapshot may need more). */
export const EVENT_ROWS_SLACK = 1024;

/** Values of constant columns, taken from the partition. */
export interface Constants {
  readonly exchange: string;
  readonly symbol: string;
}

interface ColumnBuffer {
  readonly column: Column;
  /** The writer's input for the first `count` rows. */
  data(count: number, report: IntegerReport): ColumnSource["data"];
  /** Forgets the first `count` rows (they are in a row group now). */
  discard(count: number, remaining: number): void;
  /** Gives back capacity a burst grew, so memory follows the steady state (the sink calls it every flush interval, not per row group: shrinking after every row group meant growing again each time). */
  trim?(): void;
  encode(out: ByteBuilder, from: number, to: number): void;
  /**
   * `coded`: a journal record of version 3 on (only symbol columns differ, see SymbolColumn); `runs`: the
   * record holds this column as runs (version 4, RunColumn), whatever this buffer keeps it as.
   */
  decode(input: ByteReader, rows: number, coded: boolean, runs: boolean): void;
}

/** Counts integer columns' values that were not integers (a connector bug), stored truncated or as 0. */
export interface IntegerReport {
  invalid: number;
}

/** Repairs values[from...] of an integer column in place: non-integers truncated (non-finite as 0) and counted. */
function repairIntegers(values: Float64Array, from: number, report: IntegerReport): void {
  for (let i = from; i < values.length; i++) {
    const value = values[i]!;
    if (!Number.isSafeInteger(value)) {
      report.invalid++;
      values[i] = Number.isFinite(value) ? Math.trunc(value) : 0;
    }
  }
}

function toInt64(value: number, report: IntegerReport): bigint {
  if (Number.isSafeInteger(value)) return BigInt(value);
  report.invalid++;
  return Number.isFinite(value) ? BigInt(Math.trunc(value)) : 0n;
}

export class NumberColumn implements ColumnBuffer {
  private values = new Float64Array(INITIAL_CAPACITY);
  /** 1 where the value is null; only for nullable columns. */
  private nulls: Uint8Array | undefined;
  length = 0;

  constructor(
    readonly column: Column,
    private readonly growthLimit = Number.POSITIVE_INFINITY,
  ) {
    if (column.nullable) this.nulls = new Uint8Array(INITIAL_CAPACITY);
  }

  push(value: number): void {
    if (this.length === this.values.length) this.resize(grown(this.values.length, this.length + 1, this.growthLimit));
    this.values[this.length++] = value;
  }

  /** Makes room for `count` more values and returns the array to write them into, from the old length. */
  extend(count: number): Float64Array {
    const needed = this.length + count;
    if (needed > this.values.length) this.resize(grown(this.values.length, needed, this.growthLimit));
    this.length = needed;
    return this.values;
  }

  pushOptional(value: number | undefined): void {
    if (this.length === this.values.length) this.resize(grown(this.values.length, this.length + 1, this.growthLimit));
    this.nulls![this.length] = value === undefined ? 1 : 0;
    this.values[this.length++] = value ?? 0;
  }

  data(count: number, report: IntegerReport): ColumnSource["data"] {
    const { values, nulls } = this;
    const integer = this.column.kind !== "double";
    if (nulls) {
      const out: (number | bigint | null)[] = new Array(count);
      for (let i = 0; i < count; i++) {
        out[i] = nulls[i] === 1 ? null : integer ? toInt64(values[i]!, report) : values[i]!;
      }
      return out;
    }
    const out = values.slice(0, count);
    if (!integer) return out;
    // Required integers are DELTA_BINARY_PACKED, which takes numbers; only repair what is not an integer.
    repairIntegers(out, 0, report);
    return out;
  }

  /** Values the column has room for without growing. */
  get capacity(): number {
    return this.values.length;
  }

  /** Values [from, from + count) (a view; row-group encoding, see row-group.ts). */
  head(from: number, count: number): Float64Array {
    return this.values.subarray(from, from + count);
  }

  /** Values [from, from + count) of an integer column, non-integers repaired and counted as in data(). */
  integers(from: number, count: number, report: IntegerReport): Float64Array {
    const values = this.values.subarray(from, from + count);
    for (let i = 0; i < count; i++) {
      if (!Number.isSafeInteger(values[i]!)) {
        // A copy: the buffer keeps what it was given.
        const out = values.slice();
        repairIntegers(out, i, report);
        return out;
      }
    }
    return values;
  }

  discard(count: number, remaining: number): void {
    this.values.copyWithin(0, count, count + remaining);
    this.nulls?.copyWithin(0, count, count + remaining);
    this.length = remaining;
  }

  trim(): void {
    if (this.values.length > INITIAL_CAPACITY * 4 && this.length < this.values.length / 4) {
      this.resize(Math.max(INITIAL_CAPACITY, this.length * 2));
    }
  }

  encode(out: ByteBuilder, from: number, to: number): void {
    if (this.nulls) out.bytes(this.nulls.subarray(from, to));
    out.float64s(this.values.subarray(from, to));
  }

  decode(input: ByteReader, rows: number, _coded: boolean, runs: boolean): void {
    if (runs) {
      readRuns(input, rows, (value, count) => {
        for (let i = 0; i < count; i++) this.push(value);
      });
      return;
    }
    const nulls = this.nulls ? input.bytes(rows) : undefined;
    const values = input.float64s(rows);
    for (let i = 0; i < rows; i++) {
      if (nulls) this.pushOptional(nulls[i] === 1 ? undefined : values[i]!);
      else this.push(values[i]!);
    }
  }

  private resize(capacity: number): void {
    const values = new Float64Array(capacity);
    values.set(this.values.subarray(0, Math.min(this.length, capacity)));
    this.values = values;
    if (this.nulls) {
      const nulls = new Uint8Array(capacity);
      nulls.set(this.nulls.subarray(0, Math.min(this.length, capacity)));
      this.nulls = nulls;
    }
  }
}

export class BooleanColumn implements ColumnBuffer {
  private values = new Uint8Array(INITIAL_CAPACITY);
  length = 0;

  constructor(
    readonly column: Column,
    private readonly growthLimit = Number.POSITIVE_INFINITY,
  ) {}

  push(value: boolean): void {
    if (this.length === this.values.length) this.resize(grown(this.values.length, this.length + 1, this.growthLimit));
    this.values[this.length++] = value ? 1 : 0;
  }

  /** Appends `count` copies of a value. */
  pushRepeated(value: boolean, count: number): void {
    const needed = this.length + count;
    if (needed > this.values.length) this.resize(grown(this.values.length, needed, this.growthLimit));
    const values = this.values;
    const code = value ? 1 : 0;
    for (let i = this.length; i < needed; i++) values[i] = code;
    this.length = needed;
  }

  /** Values [from, from + count) as 0/1 (a view). */
  head(from: number, count: number): Uint8Array {
    return this.values.subarray(from, from + count);
  }

  data(count: number): ColumnSource["data"] {
    const out: boolean[] = new Array(count);
    for (let i = 0; i < count; i++) out[i] = this.values[i] === 1;
    return out;
  }

  discard(count: number, remaining: number): void {
    this.values.copyWithin(0, count, count + remaining);
    this.length = remaining;
  }

  trim(): void {
    if (this.values.length > INITIAL_CAPACITY * 4 && this.length < this.values.length / 4) {
      this.resize(Math.max(INITIAL_CAPACITY, this.length * 2));
    }
  }

  encode(out: ByteBuilder, from: number, to: number): void {
    out.bytes(this.values.subarray(from, to));
  }

  decode(input: ByteReader, rows: number, _coded: boolean, runs: boolean): void {
    if (runs) {
      readRuns(input, rows, (value, count) => this.pushRepeated(value === 1, count));
      return;
    }
    const values = input.bytes(rows);
    for (let i = 0; i < rows; i++) this.push(values[i] === 1);
  }

  private resize(capacity: number): void {
    const values = new Uint8Array(capacity);
    values.set(this.values.subarray(0, Math.min(this.length, capacity)));
    this.values = values;
  }
}

/** Strings are kept as the events' own string references. */
export class StringColumn implements ColumnBuffer {
  private values: string[] = [];

  constructor(readonly column: Column) {}

  push(value: string): void {
    this.values.push(value);
  }

  pushRepeated(value: string, count: number): void {
    for (let i = 0; i < count; i++) this.values.push(value);
  }

  data(count: number): ColumnSource["data"] {
    return this.values.slice(0, count);
  }

  /** Values [from, from + count) (no copy when from is 0: the caller reads only the first `count`). */
  head(from: number, count: number): readonly string[] {
    return from === 0 ? this.values : this.values.slice(from, from + count);
  }

  discard(count: number): void {
    this.values.splice(0, count);
  }

  encode(out: ByteBuilder, from: number, to: number): void {
    out.json(this.values.slice(from, to));
  }

  decode(input: ByteReader, rows: number): void {
    const values = input.json();
    if (!Array.isArray(values) || values.length !== rows || values.some((value) => typeof value !== "string")) {
      throw new Error(`journal: column ${this.column.name} does not hold ${rows} strings`);
    }
    for (const value of values as string[]) this.values.push(value);
  }
}

/**
 * A low-cardinality string column (`symbol` kind: side, gap stream and reason): each row is a byte code
 * into the values seen so far, so a depth message's ~20 sides are one fill, and the row group's
 * dictionary comes from the codes without hashing strings. The journal form is the strings, as for
 * StringColumn.
 */
export class SymbolColumn implements ColumnBuffer {
  private codes = new Uint8Array(INITIAL_CAPACITY);
  private readonly known: string[] = [];
  private readonly codeOf = new Map<string, number>();
  length = 0;

  constructor(
    readonly column: Column,
    private readonly growthLimit = Number.POSITIVE_INFINITY,
  ) {}

  private code(value: string): number {
    let code = this.codeOf.get(value);
    if (code === undefined) {
      // More distinct values than a byte holds means this is no symbol column; fail loudly (EncodeError).
      if (this.known.length === 255) throw new Error(`column ${this.column.name}: more than 255 distinct values`);
      code = this.known.length;
      this.known.push(value);
      this.codeOf.set(value, code);
    }
    return code;
  }

  push(value: string): void {
    this.pushRepeated(value, 1);
  }

  pushRepeated(value: string, count: number): void {
    const code = this.code(value);
    const needed = this.length + count;
    if (needed > this.codes.length) {
      const codes = new Uint8Array(grown(this.codes.length, needed, this.growthLimit));
      codes.set(this.codes.subarray(0, this.length));
      this.codes = codes;
    }
    const codes = this.codes;
    for (let i = this.length; i < needed; i++) codes[i] = code;
    this.length = needed;
  }

  /**
   * Distinct values of rows [from, from + count) in order of appearance, and for each code the index of its
   * value among them (-1 for codes not in those rows): row-group.ts encodes the indexes from the codes.
   */
  dictionary(from: number, count: number): { dictionary: string[]; indexOf: Int16Array } {
    const indexOf = new Int16Array(this.known.length).fill(-1);
    const dictionary: string[] = [];
    const codes = this.codes;
    for (let i = from; i < from + count; i++) {
      const code = codes[i]!;
      if (indexOf[code]! < 0) {
        indexOf[code] = dictionary.length;
        dictionary.push(this.known[code]!);
        if (dictionary.length === this.known.length) break;
      }
    }
    return { dictionary, indexOf };
  }

  /** Codes of rows [from, from + count) (a view). */
  head(from: number, count: number): Uint8Array {
    return this.codes.subarray(from, from + count);
  }

  private strings(from: number, to: number): string[] {
    const out: string[] = new Array(to - from);
    for (let i = from; i < to; i++) out[i - from] = this.known[this.codes[i]!]!;
    return out;
  }

  data(count: number): ColumnSource["data"] {
    return this.strings(0, count);
  }

  discard(count: number, remaining: number): void {
    this.codes.copyWithin(0, count, count + remaining);
    this.length = remaining;
  }

  trim(): void {
    if (this.codes.length > INITIAL_CAPACITY * 4 && this.length < this.codes.length / 4) {
      const codes = new Uint8Array(Math.max(INITIAL_CAPACITY, this.length * 2));
      codes.set(this.codes.subarray(0, this.length));
      this.codes = codes;
    }
  }

  /** The values this column knows (JSON), then one code byte per row. */
  encode(out: ByteBuilder, from: number, to: number): void {
    out.json(this.known);
    out.bytes(this.codes.subarray(from, to));
  }

  decode(input: ByteReader, rows: number, coded: boolean): void {
    const values = input.json();
    if (coded) {
      if (!Array.isArray(values) || values.some((value) => typeof value !== "string")) {
        throw new Error(`journal: column ${this.column.name} does not list its values`);
      }
      const codes = input.bytes(rows);
      for (let i = 0; i < rows; i++) {
        const value = (values as string[])[codes[i]!];
        if (value === undefined) throw new Error(`journal: column ${this.column.name} has a code without a value`);
        this.push(value);
      }
      return;
    }
    if (!Array.isArray(values) || values.length !== rows || values.some((value) => typeof value !== "string")) {
      throw new Error(`journal: column ${this.column.name} does not hold ${rows} strings`);
    }
    for (const value of values as string[]) this.push(value);
  }
}

/** A column whose value is the same in every row of the file (a partition key). */
export class ConstantColumn implements ColumnBuffer {
  constructor(
    readonly column: Column,
    readonly value: string,
  ) {}

  data(count: number): ColumnSource["data"] {
    return new Array<string>(count).fill(this.value);
  }

  discard(): void {}
  encode(): void {}
  decode(): void {}
}

/**
 * Columns whose value is the same for every row of one event, stored once per event (RunColumn): an L2
 * message's timestamps, sequence number and snapshot flag are 25 of an L2 row's 50 bytes.
 */
export const PER_EVENT_COLUMNS: Readonly<Partial<Record<TableName, readonly string[]>>> = {
  l2: ["timestamp", "local_timestamp", "is_snapshot", "sequence"],
};

/** Reads what RunColumn.encode wrote, `rows` rows in all, handing each run to `push`. */
function readRuns(input: ByteReader, rows: number, push: (value: number, count: number) => void): void {
  const count = input.uint32();
  const values = input.float64s(count);
  const lengths = input.float64s(count);
  let total = 0;
  for (let i = 0; i < count; i++) {
    const length = lengths[i]!;
    if (!Number.isSafeInteger(length) || length < 1) throw new Error("journal: a run without rows");
    total += length;
  }
  if (total !== rows) throw new Error(`journal: runs hold ${total} rows, the record ${rows}`);
  for (let i = 0; i < count; i++) push(values[i]!, lengths[i]!);
}

/** Rows as runs: `runs` values, values[i] repeated lengths[i] times (RunColumn.runsOf). */
export interface RowRuns {
  values: Float64Array;
  lengths: Float64Array;
  runs: number;
}

const rowRuns: RowRuns = { values: new Float64Array(1024), lengths: new Float64Array(1024), runs: 0 };
/** Reused memory for rows expanded from runs (one column at a time; see RunColumn.expand). */
let expandedNumbers = new Float64Array(1024);
let expandedFlags = new Uint8Array(1024);

/**
 * A required integer, timestamp or boolean column stored as runs: one value and the end row of each run
 * of equal values. An L2 message's ~20 rows are one run, so appending is one store instead of twenty and
 * the memory (in the buffer and in pages faulted in during a burst) is a twentieth. Rows are expanded
 * into reused memory when a row group reads them; journal records (version 4) hold the runs, and the
 * journal header says which columns they are, so a journal of either form replays into either layout.
 */
export class RunColumn implements ColumnBuffer {
  private values = new Float64Array(64);
  /** End (exclusive) of each run, in rows from the start of the buffer. */
  private ends = new Float64Array(64);
  private runs = 0;
  length = 0;

  constructor(readonly column: Column) {
    if (column.nullable || !(column.kind === "long" || column.kind === "timestamp" || column.kind === "boolean")) {
      throw new Error(`column ${column.name}: a ${column.nullable ? "nullable " : ""}${column.kind} column cannot be stored as runs`);
    }
  }

  /** Appends `rows` rows of one value (booleans as 1 and 0). */
  pushRun(value: number, rows: number): void {
    if (rows <= 0) return;
    const last = this.runs - 1;
    if (last >= 0 && this.values[last] === value) {
      this.ends[last] = this.length + rows;
    } else {
      if (this.runs === this.values.length) this.resize(this.runs * 2);
      this.values[this.runs] = value;
      this.ends[this.runs] = this.length + rows;
      this.runs++;
    }
    this.length += rows;
  }

  /** Index of the run holding row `row` (row < length). */
  private runOf(row: number): number {
    const ends = this.ends;
    let low = 0;
    let high = this.runs - 1;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (ends[middle]! > row) high = middle;
      else low = middle + 1;
    }
    return low;
  }

  /** Rows [from, from + count) as numbers, in reused memory: valid until the next expansion of any run column. */
  expand(from: number, count: number): Float64Array {
    if (expandedNumbers.length < count) expandedNumbers = new Float64Array(Math.max(count, expandedNumbers.length * 2));
    return this.fillRows(expandedNumbers.subarray(0, count), from);
  }

  /** Rows [from, from + count) of a boolean column as 0/1 bytes, in reused memory (as expand()). */
  flags(from: number, count: number): Uint8Array {
    if (expandedFlags.length < count) expandedFlags = new Uint8Array(Math.max(count, expandedFlags.length * 2));
    return this.fillRows(expandedFlags.subarray(0, count), from);
  }

  /** Writes rows [from, from + out.length) into `out`, one fill per run. */
  private fillRows<T extends Float64Array | Uint8Array>(out: T, from: number): T {
    const { values, ends } = this;
    const end = from + out.length;
    let row = from;
    for (let run = out.length === 0 ? 0 : this.runOf(from); row < end; run++) {
      const runEnd = Math.min(ends[run]!, end);
      out.fill(values[run]!, row - from, runEnd - from);
      row = runEnd;
    }
    return out;
  }

  /** Rows [from, from + count) of an integer column, non-integers repaired and counted as NumberColumn does. */
  integers(from: number, count: number, report: IntegerReport): Float64Array {
    const values = this.expand(from, count);
    repairIntegers(values, 0, report);
    return values;
  }

  /**
   * The runs over rows [from, from + count), cut to that range, in reused memory (valid until the next call
   * on any run column): each run's value, repaired and counted per row as integers() does, and its length
   * (at least 1). For encoders that work per run instead of per row (row-group.ts).
   */
  runsOf(from: number, count: number, report: IntegerReport): RowRuns {
    const first = count > 0 ? this.runOf(from) : 0;
    const last = count > 0 ? this.runOf(from + count - 1) : -1;
    const runs = last - first + 1;
    if (rowRuns.values.length < runs) {
      const capacity = Math.max(runs, rowRuns.values.length * 2);
      rowRuns.values = new Float64Array(capacity);
      rowRuns.lengths = new Float64Array(capacity);
    }
    const { values, lengths } = rowRuns;
    for (let run = first; run <= last; run++) {
      const start = run === 0 ? 0 : this.ends[run - 1]!;
      const length = Math.min(this.ends[run]!, from + count) - Math.max(start, from);
      let value = this.values[run]!;
      if (!Number.isSafeInteger(value)) {
        report.invalid += length;
        value = Number.isFinite(value) ? Math.trunc(value) : 0;
      }
      values[run - first] = value;
      lengths[run - first] = length;
    }
    rowRuns.runs = runs;
    return rowRuns;
  }

  data(count: number, report: IntegerReport): ColumnSource["data"] {
    if (this.column.kind === "boolean") return Array.from(this.flags(0, count), (flag) => flag === 1);
    return this.integers(0, count, report).slice();
  }

  discard(count: number, remaining: number): void {
    if (count > 0 && this.runs > 0) {
      // Runs that end at or before `count` go; the one holding row `count` (if any) is kept, shortened.
      const first = count >= this.length ? this.runs : this.runOf(count);
      const kept = this.runs - first;
      this.values.copyWithin(0, first, this.runs);
      this.ends.copyWithin(0, first, this.runs);
      for (let i = 0; i < kept; i++) this.ends[i] = this.ends[i]! - count;
      this.runs = kept;
    }
    this.length = remaining;
  }

  trim(): void {
    if (this.values.length > 1024 && this.runs < this.values.length / 4) this.resize(Math.max(64, this.runs * 2));
  }

  /** Rows [from, to) as runs: their number, then each run's value, then each run's row count (float64s). */
  encode(out: ByteBuilder, from: number, to: number): void {
    const first = to > from ? this.runOf(from) : 0;
    const last = to > from ? this.runOf(to - 1) : -1;
    const count = last - first + 1;
    out.uint32(count);
    out.float64s(this.values.subarray(first, first + count));
    if (expandedNumbers.length < count) expandedNumbers = new Float64Array(Math.max(count, expandedNumbers.length * 2));
    const lengths = expandedNumbers.subarray(0, count);
    for (let run = first; run <= last; run++) {
      const start = run === 0 ? 0 : this.ends[run - 1]!;
      lengths[run - first] = Math.min(this.ends[run]!, to) - Math.max(start, from);
    }
    out.float64s(lengths);
  }

  decode(input: ByteReader, rows: number, _coded: boolean, runs: boolean): void {
    if (runs) {
      readRuns(input, rows, (value, count) => this.pushRun(value, count));
      return;
    }
    if (this.column.kind === "boolean") {
      const flags = input.bytes(rows);
      for (let i = 0; i < rows; i++) this.pushRun(flags[i] === 1 ? 1 : 0, 1);
    } else {
      const values = input.float64s(rows);
      for (let i = 0; i < rows; i++) this.pushRun(values[i]!, 1);
    }
  }

  private resize(capacity: number): void {
    const values = new Float64Array(capacity);
    values.set(this.values.subarray(0, this.runs));
    const ends = new Float64Array(capacity);
    ends.set(this.ends.subarray(0, this.runs));
    this.values = values;
    this.ends = ends;
  }
}

/** How a file's buffer is laid out beyond its columns. */
export interface TableBufferOptions {
  /** Capacity a column stops growing at while that is enough (see grown()). */
  readonly growthLimit?: number;
  /** Columns stored as runs (PER_EVENT_COLUMNS of the table). */
  readonly perEvent?: readonly string[];
}

/** The pending rows of one file. */
export class TableBuffer {
  readonly columns: readonly ColumnBuffer[];
  rows = 0;

  constructor(
    readonly definition: readonly Column[],
    private readonly constants: Constants,
    private readonly options: TableBufferOptions = {},
  ) {
    const growthLimit = options.growthLimit ?? Number.POSITIVE_INFINITY;
    this.columns = definition.map((column): ColumnBuffer => {
      if (column.name === "exchange") return new ConstantColumn(column, constants.exchange);
      if (column.name === "symbol") return new ConstantColumn(column, constants.symbol);
      if (options.perEvent?.includes(column.name)) return new RunColumn(column);
      switch (column.kind) {
        case "symbol":
          return new SymbolColumn(column, growthLimit);
        case "string":
          return new StringColumn(column);
        case "double":
        case "long":
        case "timestamp":
          return new NumberColumn(column, growthLimit);
        case "boolean":
          return new BooleanColumn(column, growthLimit);
      }
    });
  }

  /** An empty buffer of the same table and layout. */
  emptyLike(): TableBuffer {
    return new TableBuffer(this.definition, this.constants, this.options);
  }

  /** Names of the columns kept as runs (journal records hold them as runs too). */
  get runColumns(): string[] {
    return this.columns.filter((buffer) => buffer instanceof RunColumn).map((buffer) => buffer.column.name);
  }

  column<T extends ColumnBuffer>(name: string, type: new (...args: never[]) => T): T {
    const found = this.columns.find((buffer) => buffer.column.name === name);
    if (!(found instanceof type)) throw new Error(`column ${name} is not a ${type.name}`);
    return found;
  }

  /** Writer input for the first `count` rows. */
  columnData(count: number, report: IntegerReport): ColumnSource[] {
    return this.columns.map((buffer) => ({
      name: buffer.column.name,
      data: buffer.data(count, report),
      encoding: encodingOf(buffer.column),
      // Page indexes are left out: recovery rebuilds footers from journaled row-group metadata alone.
      offsetIndex: false,
    }));
  }

  discard(count: number): void {
    const remaining = this.rows - count;
    for (const buffer of this.columns) buffer.discard(count, remaining);
    this.rows = remaining;
  }

  trim(): void {
    for (const buffer of this.columns) buffer.trim?.();
  }

  /** Rows [from, to) in the journal's binary form. */
  encodeRows(out: ByteBuilder, from: number, to: number): void {
    out.uint32(to - from);
    for (const buffer of this.columns) buffer.encode(out, from, to);
  }

  /** `runs`: the columns the record holds as runs (journal header's `perEvent`). */
  decodeRows(input: ByteReader, coded: boolean, runs: readonly string[] = []): number {
    const rows = input.uint32();
    for (const buffer of this.columns) {
      const asRuns = runs.includes(buffer.column.name);
      if (asRuns && !(buffer instanceof NumberColumn || buffer instanceof BooleanColumn || buffer instanceof RunColumn)) {
        throw new Error(`journal: column ${buffer.column.name} cannot be held as runs`);
      }
      buffer.decode(input, rows, coded, asRuns);
    }
    this.rows += rows;
    return rows;
  }
}

/** Appends one event's rows to a buffer of its table; returns how many rows it added. */
export type RowAppender = (event: MarketEvent) => number;

export function rowAppender(table: TableName, buffer: TableBuffer): RowAppender {
  if (table === "l2") return bookAppender(buffer);
  const timestamp = buffer.column("timestamp", NumberColumn);
  const localTimestamp = buffer.column("local_timestamp", NumberColumn);
  switch (table) {
    case "trades":
    case "liquidations": {
      const id = buffer.column("id", StringColumn);
      const side = buffer.column("side", SymbolColumn);
      const price = buffer.column("price", NumberColumn);
      const amount = buffer.column("amount", NumberColumn);
      const base = buffer.column("base_amount", NumberColumn);
      return (event) => {
        const trade = event as Trade | Liquidation;
        timestamp.push(trade.timestamp);
        localTimestamp.push(trade.localTimestamp);
        id.push(trade.id);
        side.push(trade.side);
        price.push(trade.price);
        amount.push(trade.amount);
        base.push(baseAmount(trade, trade.price, trade.amount));
        buffer.rows++;
        return 1;
      };
    }
    case "bbo": {
      const bidPrice = buffer.column("bid_price", NumberColumn);
      const bidAmount = buffer.column("bid_amount", NumberColumn);
      const askPrice = buffer.column("ask_price", NumberColumn);
      const askAmount = buffer.column("ask_amount", NumberColumn);
      return (event) => {
        const bbo = event as BookTicker;
        timestamp.push(bbo.timestamp);
        localTimestamp.push(bbo.localTimestamp);
        bidPrice.push(bbo.bidPrice);
        bidAmount.push(bbo.bidAmount);
        askPrice.push(bbo.askPrice);
        askAmount.push(bbo.askAmount);
        buffer.rows++;
        return 1;
      };
    }
    case "funding": {
      const markPrice = buffer.column("mark_price", NumberColumn);
      const indexPrice = buffer.column("index_price", NumberColumn);
      const fundingRate = buffer.column("funding_rate", NumberColumn);
      const nextFundingTime = buffer.column("next_funding_time", NumberColumn);
      const currentFundingRate = buffer.column("current_funding_rate", NumberColumn);
      return (event) => {
        const funding = event as Funding;
        timestamp.push(funding.timestamp);
        localTimestamp.push(funding.localTimestamp);
        markPrice.pushOptional(funding.markPrice);
        indexPrice.pushOptional(funding.indexPrice);
        fundingRate.pushOptional(funding.fundingRate);
        nextFundingTime.pushOptional(funding.nextFundingTime);
        currentFundingRate.pushOptional(funding.currentFundingRate);
        buffer.rows++;
        return 1;
      };
    }
    case "gaps": {
      const stream = buffer.column("stream", SymbolColumn);
      const reason = buffer.column("reason", SymbolColumn);
      const detail = buffer.column("detail", StringColumn);
      return (event) => {
        const gap = event as Gap;
        timestamp.push(gap.timestamp);
        localTimestamp.push(gap.localTimestamp);
        stream.push(gap.stream);
        reason.push(gap.reason);
        detail.push(gap.detail);
        buffer.rows++;
        return 1;
      };
    }
  }
}

/** L2 rows: per-level columns row by row, the message's own fields (PER_EVENT_COLUMNS) as one run each. */
function bookAppender(buffer: TableBuffer): RowAppender {
  const timestamp = buffer.column("timestamp", RunColumn);
  const localTimestamp = buffer.column("local_timestamp", RunColumn);
  const isSnapshot = buffer.column("is_snapshot", RunColumn);
  const sequence = buffer.column("sequence", RunColumn);
  const side = buffer.column("side", SymbolColumn);
  const price = buffer.column("price", NumberColumn);
  const amount = buffer.column("amount", NumberColumn);
  const base = buffer.column("base_amount", NumberColumn);
  // One capacity check per event and column, then plain stores: a depth message is ~20 rows.
  const levels = (book: BookChange, flat: readonly number[], row: number, prices: Float64Array, amounts: Float64Array, bases: Float64Array): void => {
    for (let i = 0; i + 1 < flat.length; i += 2, row++) {
      const levelPrice = flat[i]!;
      const levelAmount = flat[i + 1]!;
      prices[row] = levelPrice;
      amounts[row] = levelAmount;
      bases[row] = baseAmount(book, levelPrice, levelAmount);
    }
  };
  // A snapshot without a level says "the book is now empty": one row without a side, NaN price and
  // amounts, so that readers still reset the book (the same row as QuestDB's, docs/data-model.md).
  const emptySnapshot = (book: BookChange): number => {
    timestamp.pushRun(book.timestamp, 1);
    localTimestamp.pushRun(book.localTimestamp, 1);
    sequence.pushRun(book.sequence, 1);
    isSnapshot.pushRun(1, 1);
    side.push("");
    price.push(Number.NaN);
    amount.push(Number.NaN);
    base.push(Number.NaN);
    buffer.rows += 1;
    return 1;
  };
  return (event) => {
    const book = event as BookChange;
    const bidRows = book.bids.length >> 1;
    const askRows = book.asks.length >> 1;
    const rows = bidRows + askRows;
    if (rows === 0) return book.isSnapshot ? emptySnapshot(book) : 0;
    const first = price.length;
    timestamp.pushRun(book.timestamp, rows);
    localTimestamp.pushRun(book.localTimestamp, rows);
    sequence.pushRun(book.sequence, rows);
    isSnapshot.pushRun(book.isSnapshot ? 1 : 0, rows);
    side.pushRepeated("bid", bidRows);
    side.pushRepeated("ask", askRows);
    const prices = price.extend(rows);
    const amounts = amount.extend(rows);
    const bases = base.extend(rows);
    levels(book, book.bids, first, prices, amounts, bases);
    levels(book, book.asks, first + bidRows, prices, amounts, bases);
    buffer.rows += rows;
    return rows;
  };
}

/** Journal records: little-endian; float arrays are 8-byte aligned relative to the start. */
export class ByteBuilder extends Bytes {
  constructor(memory: number | ArrayBuffer = 4096) {
    super(memory);
  }

  uint32(value: number): void {
    this.ensure(4);
    this.dataView.setUint32(this.length, value, true);
    this.length += 4;
  }

  /** A float64 at any alignment (a row position). */
  float64(value: number): void {
    this.ensure(8);
    this.dataView.setFloat64(this.length, value, true);
    this.length += 8;
  }

  /** Writes a uint32 at an earlier position (a length or checksum filled in afterwards). */
  setUint32(position: number, value: number): void {
    this.dataView.setUint32(position, value, true);
  }

  float64s(values: Float64Array): void {
    const padding = (8 - (this.length % 8)) % 8;
    this.ensure(padding + values.length * 8);
    this.buffer.fill(0, this.length, this.length + padding);
    this.length += padding;
    new Float64Array(this.buffer.buffer, this.length, values.length).set(values);
    this.length += values.length * 8;
  }

  json(value: unknown): void {
    const encoded = new TextEncoder().encode(JSON.stringify(value));
    this.uint32(encoded.length);
    this.bytes(encoded);
  }
}

/** Reads what ByteBuilder wrote; `base` is where the builder's position 0 is, for float alignment. */
export class ByteReader {
  private readonly view: DataView;

  constructor(
    private readonly source: Uint8Array,
    public position: number,
    private readonly base: number,
    private readonly end: number,
  ) {
    this.view = new DataView(source.buffer, source.byteOffset, source.byteLength);
  }

  private need(count: number): void {
    if (this.position + count > this.end) throw new Error("journal: record is shorter than its contents");
  }

  uint8(): number {
    this.need(1);
    return this.source[this.position++]!;
  }

  uint32(): number {
    this.need(4);
    const value = this.view.getUint32(this.position, true);
    this.position += 4;
    return value;
  }

  bytes(count: number): Uint8Array {
    this.need(count);
    const value = this.source.subarray(this.position, this.position + count);
    this.position += count;
    return value;
  }

  float64s(count: number): Float64Array {
    this.position += (8 - ((this.position - this.base) % 8)) % 8;
    this.need(count * 8);
    // Copy: the record may sit at any offset of the file buffer.
    const copy = this.source.slice(this.position, this.position + count * 8);
    this.position += count * 8;
    return new Float64Array(copy.buffer, 0, count);
  }

  json(): unknown {
    const length = this.uint32();
    return JSON.parse(new TextDecoder().decode(this.bytes(length)));
  }

  get remaining(): number {
    return this.end - this.position;
  }
}
