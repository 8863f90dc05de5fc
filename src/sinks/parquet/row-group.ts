/**
 * Row-group encoding straight from the column buffers (columns.ts), for the tables whose columns are all
 * required (l2, trades, bbo, liquidations, gaps): one data page (v2) per column chunk, the encodings of
 * schema.ts (doubles and booleans PLAIN, integers DELTA_BINARY_PACKED, `symbol` kinds RLE_DICTIONARY,
 * strings PLAIN), the same statistics hyparquet-writer computes, compressed by the file's codec.
 *
 * Why not hyparquet-writer's generic `write()`: it takes JS arrays, samples every column for a dictionary,
 * builds BigInts for 64-bit deltas and sorts out page boundaries value by value, which made encoding a
 * 16,384-row L2 row group cost 50-100 ms on the event loop (~200 k rows/s). Here Float64Array bytes are
 * the PLAIN page as they are, deltas are packed with 32-bit arithmetic, and the encoder is about ten times
 * faster. Page headers and the footer are thrift.ts's, byte for byte what hyparquet-writer writes, so files
 * are the same format; tests/parquet-row-group.test.ts reads them back with hyparquet and DuckDB.
 *
 * Page layout (https://parquet.apache.org/docs/file-format/data-pages/encodings/): DELTA_BINARY_PACKED
 * blocks of 128 values in 4 miniblocks of 32; a chunk whose adjusted deltas need more than 32 bits (never
 * the case for timestamps and sequence numbers of one file) is written PLAIN instead.
 */
import type { ColumnChunk, CompressionCodec, Encoding, RowGroup } from "hyparquet";
import type { ByteWriter } from "hyparquet-writer";
import { snappyCompress } from "hyparquet-writer/src/snappy.js";
import type { Column } from "../../core/tables.ts";
import { BooleanColumn, ConstantColumn, NumberColumn, RunColumn, StringColumn, SymbolColumn, type IntegerReport, type TableBuffer } from "./columns.ts";
import { Bytes } from "./bytes.ts";
import { COMPRESSORS } from "./schema.ts";
import { writeDataPageV2Header, writeDictionaryPageHeader } from "./thrift.ts";

/** True when every column is required: the tables this encoder handles (funding has nullable columns). */
export function fastEncodable(columns: readonly Column[]): boolean {
  return columns.every((column) => !column.nullable);
}

const COMPRESS: Readonly<Record<string, (input: Uint8Array) => Uint8Array>> = {
  ZSTD: COMPRESSORS.ZSTD,
  SNAPPY: snappyCompress,
};

const scratch = new Bytes();
const utf8 = new TextEncoder();
const INT64_SCRATCH = new BigInt64Array(1);

// ── value encodings ──

function plainInt64s(out: Bytes, values: Float64Array): void {
  out.ensure(values.length * 8);
  const view = new DataView(out.buffer.buffer, out.buffer.byteOffset);
  for (let i = 0; i < values.length; i++) {
    INT64_SCRATCH[0] = BigInt(values[i]!);
    view.setBigInt64(out.length, INT64_SCRATCH[0]!, true);
    out.length += 8;
  }
}

function plainBooleans(out: Bytes, values: Uint8Array): void {
  out.ensure((values.length + 7) >> 3);
  const buffer = out.buffer;
  const whole = values.length & ~7;
  // Values are 0 or 1: eight of them make one byte, LSB first.
  for (let i = 0; i < whole; i += 8) {
    buffer[out.length++] =
      values[i]! | (values[i + 1]! << 1) | (values[i + 2]! << 2) | (values[i + 3]! << 3) |
      (values[i + 4]! << 4) | (values[i + 5]! << 5) | (values[i + 6]! << 6) | (values[i + 7]! << 7);
  }
  if (whole < values.length) {
    let byte = 0;
    for (let i = whole; i < values.length; i++) byte |= values[i]! << (i - whole);
    buffer[out.length++] = byte;
  }
}

function plainStrings(out: Bytes, values: readonly string[], count: number): void {
  for (let i = 0; i < count; i++) {
    const value = values[i]!;
    out.ensure(4 + value.length * 3);
    const start = out.length;
    out.length += 4;
    const written = utf8.encodeInto(value, out.buffer.subarray(out.length)).written;
    out.length += written;
    out.buffer[start] = written & 0xff;
    out.buffer[start + 1] = (written >>> 8) & 0xff;
    out.buffer[start + 2] = (written >>> 16) & 0xff;
    out.buffer[start + 3] = (written >>> 24) & 0xff;
  }
}

const BLOCK = 128;
const MINIBLOCK = 32;
const deltas = new Float64Array(BLOCK);
const widths = new Uint8Array(4);
const miniblockMaxima = new Float64Array(4);

/**
 * DELTA_BINARY_PACKED of safe integers (stored in a Float64Array). Returns false, writing nothing, when an
 * adjusted delta needs more than 32 bits.
 */
export function deltaBinaryPacked(out: Bytes, values: Float64Array): boolean {
  const count = values.length;
  const start = out.length;
  out.uleb128(BLOCK);
  out.uleb128(BLOCK / MINIBLOCK);
  out.uleb128(count);
  out.zigzag(count > 0 ? values[0]! : 0);
  for (let first = 1; first < count; first += BLOCK) {
    const n = Math.min(count, first + BLOCK) - first;
    // One pass: deltas, their minimum and each miniblock's maximum.
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    const miniblocks = Math.ceil(n / MINIBLOCK);
    for (let m = 0; m < miniblocks; m++) {
      let miniblockMax = Number.NEGATIVE_INFINITY;
      const end = Math.min(n, (m + 1) * MINIBLOCK);
      for (let i = m * MINIBLOCK; i < end; i++) {
        const delta = values[first + i]! - values[first + i - 1]!;
        deltas[i] = delta;
        if (delta < min) min = delta;
        if (delta > miniblockMax) miniblockMax = delta;
      }
      miniblockMaxima[m] = miniblockMax;
      if (miniblockMax > max) max = miniblockMax;
    }
    if (!writeBlockHeader(out, min, max, miniblocks)) {
      // Undone, so the caller can write PLAIN instead.
      out.length = start;
      return false;
    }
    for (let m = 0; m < miniblocks; m++) {
      const width = widths[m]!;
      if (width === 0) continue;
      // LSB-first bit packing of 32 values (missing ones are zero padding), in 32-bit words.
      let word = 0;
      let bits = 0;
      for (let i = m * MINIBLOCK; i < (m + 1) * MINIBLOCK; i++) {
        const value = i < n ? (deltas[i]! - min) >>> 0 : 0;
        word = (word | (value << bits)) >>> 0;
        bits += width;
        if (bits >= 32) {
          out.buffer[out.length++] = word & 0xff;
          out.buffer[out.length++] = (word >>> 8) & 0xff;
          out.buffer[out.length++] = (word >>> 16) & 0xff;
          out.buffer[out.length++] = (word >>> 24) & 0xff;
          bits -= 32;
          word = bits === 0 ? 0 : value >>> (width - bits);
        }
      }
      // 32 values × width bits is a whole number of 32-bit words: nothing is left over.
    }
  }
  return true;
}

/**
 * A block's minimum delta and the bit widths of its 4 miniblocks (from miniblockMaxima, into `widths`),
 * with room for the packed values after them; false, writing nothing, when adjusted deltas need more than
 * 32 bits.
 */
function writeBlockHeader(out: Bytes, min: number, max: number, miniblocks: number): boolean {
  if (!(max - min < 2 ** 32) || !Number.isSafeInteger(min)) return false;
  out.zigzag(min);
  for (let m = 0; m < 4; m++) {
    const maxAdjusted = m < miniblocks ? miniblockMaxima[m]! - min : 0;
    widths[m] = maxAdjusted === 0 ? 0 : 32 - Math.clz32(maxAdjusted >>> 0);
  }
  out.ensure(4 + miniblocks * MINIBLOCK * 4);
  for (let m = 0; m < 4; m++) out.buffer[out.length++] = widths[m]!;
  return true;
}

const runStartSlots = new Int32Array(BLOCK);
const runStartDeltas = new Float64Array(BLOCK);
const packedWords = new Uint32Array(MINIBLOCK);

/**
 * deltaBinaryPacked() of values given as runs (values[i] repeated lengths[i] ≥ 1 times, `count` rows in
 * all) without expanding them: a delta is non-zero only where a run starts, so a block of 128 values costs
 * its run starts plus a few words of packing instead of a pass over 128 values. An L2 message's timestamps
 * and sequence are one run of ~20 rows (RunColumn), and were half the time of encoding an L2 row group.
 * The same bytes as deltaBinaryPacked() of the expanded values, and the same refusal.
 */
export function deltaBinaryPackedRuns(out: Bytes, values: Float64Array, lengths: Float64Array, runs: number, count: number): boolean {
  const start = out.length;
  out.uleb128(BLOCK);
  out.uleb128(BLOCK / MINIBLOCK);
  out.uleb128(count);
  out.zigzag(count > 0 ? values[0]! : 0);
  let run = 1;
  let runStart = runs > 0 ? lengths[0]! : count;
  for (let first = 1; first < count; first += BLOCK) {
    const n = Math.min(count, first + BLOCK) - first;
    // The run starts in this block: their slots (row - first) and deltas.
    let starts = 0;
    while (run < runs && runStart < first + n) {
      runStartSlots[starts] = runStart - first;
      runStartDeltas[starts] = values[run]! - values[run - 1]!;
      starts++;
      runStart += lengths[run]!;
      run++;
    }
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    const miniblocks = Math.ceil(n / MINIBLOCK);
    for (let m = 0, s = 0; m < miniblocks; m++) {
      const end = Math.min(n, (m + 1) * MINIBLOCK);
      let miniblockMax = Number.NEGATIVE_INFINITY;
      let startsHere = 0;
      for (; s < starts && runStartSlots[s]! < end; s++, startsHere++) {
        const delta = runStartDeltas[s]!;
        if (delta < min) min = delta;
        if (delta > miniblockMax) miniblockMax = delta;
      }
      // Any other slot lies inside a run: delta 0.
      if (startsHere < end - m * MINIBLOCK) {
        if (min > 0) min = 0;
        if (miniblockMax < 0) miniblockMax = 0;
      }
      miniblockMaxima[m] = miniblockMax;
      if (miniblockMax > max) max = miniblockMax;
    }
    if (!writeBlockHeader(out, min, max, miniblocks)) {
      out.length = start;
      return false;
    }
    // A slot inside a run holds 0 - min; with min 0 (non-decreasing values) only run starts are set.
    const inRun = (0 - min) >>> 0;
    for (let m = 0, s = 0; m < miniblocks; m++) {
      const begin = m * MINIBLOCK;
      const end = Math.min(n, begin + MINIBLOCK);
      const width = widths[m]!;
      if (width === 0) {
        while (s < starts && runStartSlots[s]! < end) s++;
        continue;
      }
      packedWords.fill(0, 0, width);
      if (inRun === 0) {
        for (; s < starts && runStartSlots[s]! < end; s++) packInto(runStartSlots[s]! - begin, (runStartDeltas[s]! - min) >>> 0, width);
      } else {
        for (let slot = begin; slot < end; slot++) {
          if (s < starts && runStartSlots[s] === slot) packInto(slot - begin, (runStartDeltas[s++]! - min) >>> 0, width);
          else packInto(slot - begin, inRun, width);
        }
      }
      // LSB-first, as deltaBinaryPacked() emits its 32-bit words (missing values are zero padding).
      for (let k = 0; k < width; k++) {
        const word = packedWords[k]!;
        out.buffer[out.length++] = word & 0xff;
        out.buffer[out.length++] = (word >>> 8) & 0xff;
        out.buffer[out.length++] = (word >>> 16) & 0xff;
        out.buffer[out.length++] = (word >>> 24) & 0xff;
      }
    }
  }
  return true;
}

/** ORs `value` (< 2^width) into packedWords at bit slot × width. */
function packInto(slot: number, value: number, width: number): void {
  const bit = slot * width;
  const word = bit >>> 5;
  const shift = bit & 31;
  packedWords[word] = packedWords[word]! | (value << shift);
  if (shift + width > 32) packedWords[word + 1] = packedWords[word + 1]! | (value >>> (32 - shift));
}

/** Runs as one value per row, in reused memory (for the PLAIN fallback). */
let expandedRuns = new Float64Array(1024);
function expandRuns(values: Float64Array, lengths: Float64Array, runs: number, count: number): Float64Array {
  if (expandedRuns.length < count) expandedRuns = new Float64Array(Math.max(count, expandedRuns.length * 2));
  const out = expandedRuns.subarray(0, count);
  for (let run = 0, row = 0; run < runs; row += lengths[run]!, run++) out.fill(values[run]!, row, row + lengths[run]!);
  return out;
}

// ── statistics (as hyparquet-writer computes them) ──

interface Statistics {
  min_value?: number | boolean | string;
  max_value?: number | boolean | string;
  null_count: bigint;
  nan_count?: bigint;
}

function doubleStatistics(values: Float64Array): Statistics {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let nan = 0;
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!;
    if (value !== value) nan++;
    else {
      if (value < min) min = value;
      if (value > max) max = value;
    }
  }
  if (nan === values.length) return { null_count: 0n, nan_count: BigInt(nan) };
  // Signed zero per the Parquet spec: min is -0, max is +0.
  return { min_value: min === 0 ? -0 : min, max_value: max === 0 ? 0 : max, null_count: 0n, nan_count: BigInt(nan) };
}

function integerStatistics(values: Float64Array): Statistics {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!;
    if (value < min) min = value;
    if (value > max) max = value;
  }
  return values.length === 0 ? { null_count: 0n } : { min_value: min, max_value: max, null_count: 0n };
}

function booleanStatistics(values: Uint8Array): Statistics {
  let any = 0;
  let all = 1;
  for (let i = 0; i < values.length; i++) {
    any |= values[i]!;
    all &= values[i]!;
  }
  return values.length === 0 ? { null_count: 0n } : { min_value: all === 1, max_value: any === 1, null_count: 0n };
}

/** UTF-8 byte order = code point order; JS `<` compares UTF-16 units, which differs only around surrogates. */
function compareUtf8(left: string, right: string): number {
  if (left === right) return 0;
  const length = Math.min(left.length, right.length);
  for (let i = 0; i < length; i++) {
    const a = left.codePointAt(i)!;
    const b = right.codePointAt(i)!;
    if (a !== b) return a - b;
    if (a > 0xffff) i++;
  }
  return left.length - right.length;
}

function stringStatistics(values: readonly string[], count: number): Statistics {
  if (count === 0) return { null_count: 0n };
  let min = values[0]!;
  let max = values[0]!;
  for (let i = 1; i < count; i++) {
    const value = values[i]!;
    if (compareUtf8(value, min) < 0) min = value;
    if (compareUtf8(value, max) > 0) max = value;
  }
  return { min_value: min, max_value: max, null_count: 0n };
}

// ── pages and column chunks ──

/**
 * A row group is encoded in three steps so that compression, the costliest part, can run off the event
 * loop: plan (page bodies and statistics, synchronous), compress every page (Bun's thread pool, or inline),
 * write (page headers and bodies at the writer's position, chunk metadata with their offsets).
 */
interface PlannedPage {
  readonly kind: "data" | "dictionary";
  /** Uncompressed page body (a copy: the scratch buffer is reused); let go once compressed. */
  body: Uint8Array | undefined;
  /** Uncompressed size in bytes. */
  readonly size: number;
  readonly encoding: Encoding;
  /** Values in the page: rows for a data page, entries for a dictionary page. */
  readonly values: number;
}

interface PlannedChunk {
  readonly column: Column;
  readonly type: "BYTE_ARRAY" | "BOOLEAN" | "DOUBLE" | "INT64";
  readonly encoding: Encoding;
  readonly rows: number;
  readonly statistics: Statistics;
  readonly pages: readonly PlannedPage[];
}

function compressSync(codec: CompressionCodec, bytes: Uint8Array): Uint8Array {
  const compressor = COMPRESS[codec];
  return compressor ? compressor(bytes) : bytes;
}

/** ZSTD on Bun's thread pool (same bytes as the synchronous call); other codecs inline. */
function compressAsync(codec: CompressionCodec, bytes: Uint8Array): Uint8Array | Promise<Uint8Array> {
  return codec === "ZSTD" ? Bun.zstdCompress(bytes) : compressSync(codec, bytes);
}

function dataPage(body: Uint8Array, encoding: Encoding, rows: number): PlannedPage {
  return { kind: "data", body: body.slice(), size: body.length, encoding, values: rows };
}

/**
 * A dictionary page and its RLE_DICTIONARY data page; `writeIndexes` writes the rows' indexes (the RLE/bit-packed
 * hybrid) after the bit width byte.
 */
function dictionaryPages(dictionary: readonly string[], rows: number, writeIndexes: (bitWidth: number) => void): PlannedPage[] {
  scratch.reset();
  plainStrings(scratch, dictionary, dictionary.length);
  const body = scratch.view().slice();
  const dictionaryPage: PlannedPage = { kind: "dictionary", body, size: body.length, encoding: "PLAIN", values: dictionary.length };
  const bitWidth = dictionary.length <= 1 ? 0 : 32 - Math.clz32(dictionary.length - 1);
  scratch.reset();
  scratch.byte(bitWidth);
  writeIndexes(bitWidth);
  return [dictionaryPage, dataPage(scratch.view(), "RLE_DICTIONARY", rows)];
}

/**
 * The RLE/bit-packed hybrid of dictionary indexes, read from byte codes through `indexOf` (code to index)
 * without materializing them: runs of 8 or more equal values as RLE runs, the rest as bit-packed groups of
 * 8 values, zero-padded at the end. This is hyparquet-writer's writeRleBitPackedHybrid, to the byte
 * (tests/parquet-row-group.test.ts), without its per-value calls through a generic writer.
 * https://parquet.apache.org/docs/file-format/data-pages/encodings/#run-length-encoding--bit-packing-hybrid-rle--3
 */
export function writeIndexesRle(out: Bytes, codes: Uint8Array, indexOf: Int16Array, bitWidth: number): void {
  const end = codes.length;
  const valueBytes = (bitWidth + 7) >> 3;
  let packedStart = 0;
  let packedGroups = 0;
  let i = 0;
  while (i < end) {
    const code = codes[i]!;
    let run = 1;
    while (i + run < end && codes[i + run] === code) run++;
    if (run >= 8) {
      if (packedGroups > 0) {
        writeBitPacked(out, codes, indexOf, bitWidth, packedStart, packedGroups);
        packedGroups = 0;
      }
      out.uleb128(run * 2);
      const index = indexOf[code]!;
      out.ensure(valueBytes);
      for (let b = 0; b < valueBytes; b++) out.buffer[out.length++] = (index >> (b * 8)) & 0xff;
      i += run;
    } else {
      if (packedGroups === 0) packedStart = i;
      packedGroups++;
      i += 8;
    }
  }
  if (packedGroups > 0) writeBitPacked(out, codes, indexOf, bitWidth, packedStart, packedGroups);
}

function writeBitPacked(out: Bytes, codes: Uint8Array, indexOf: Int16Array, bitWidth: number, start: number, groups: number): void {
  out.uleb128(groups * 2 + 1);
  if (bitWidth === 0) return;
  const mask = (1 << bitWidth) - 1;
  out.ensure(groups * bitWidth + 1);
  let bits = 0;
  let used = 0;
  for (let i = start; i < start + groups * 8; i++) {
    const value = i < codes.length ? indexOf[codes[i]!]! & mask : 0;
    bits |= value << used;
    used += bitWidth;
    while (used >= 8) {
      out.buffer[out.length++] = bits & 0xff;
      bits >>>= 8;
      used -= 8;
    }
  }
  if (used > 0) out.buffer[out.length++] = bits & 0xff;
}

/** The indexes of a constant column: `count` zeros of bit width 0, as writeIndexesRle writes them. */
function writeConstantIndexes(out: Bytes, count: number): void {
  if (count >= 8) out.uleb128(count * 2);
  else if (count > 0) out.uleb128(3); // one bit-packed group, no value bits
}

/** Step 1: page bodies and statistics of rows [from, from + count). */
/**
 * `borrow`: the caller leaves rows [from, from + count) untouched until the pages are compressed (and, for
 * codecs without compression, written), so PLAIN double pages can be the buffer's own bytes instead of a
 * copy: a copy reads cold memory and writes fresh pages (page faults), ~10 ns a row and column.
 */
function planRowGroup(buffer: TableBuffer, count: number, report: IntegerReport, from: number, borrow: boolean): PlannedChunk[] {
  const chunks: PlannedChunk[] = [];
  for (const source of buffer.columns) {
    const column = source.column;
    if (source instanceof ConstantColumn) {
      const dictionary = [source.value];
      const pages = dictionaryPages(dictionary, count, () => writeConstantIndexes(scratch, count));
      chunks.push({ column, type: "BYTE_ARRAY", encoding: "RLE_DICTIONARY", rows: count, statistics: stringStatistics(dictionary, 1), pages });
    } else if (source instanceof SymbolColumn) {
      const { dictionary, indexOf } = source.dictionary(from, count);
      const codes = source.head(from, count);
      const pages = dictionaryPages(dictionary, count, (bitWidth) => writeIndexesRle(scratch, codes, indexOf, bitWidth));
      const statistics = stringStatistics(dictionary, dictionary.length);
      chunks.push({ column, type: "BYTE_ARRAY", encoding: "RLE_DICTIONARY", rows: count, statistics, pages });
    } else if (source instanceof StringColumn) {
      const values = source.head(from, count);
      scratch.reset();
      plainStrings(scratch, values, count);
      const pages = [dataPage(scratch.view(), "PLAIN", count)];
      chunks.push({ column, type: "BYTE_ARRAY", encoding: "PLAIN", rows: count, statistics: stringStatistics(values, count), pages });
    } else if (source instanceof BooleanColumn || (source instanceof RunColumn && column.kind === "boolean")) {
      const values = source instanceof RunColumn ? source.flags(from, count) : source.head(from, count);
      scratch.reset();
      plainBooleans(scratch, values);
      const pages = [dataPage(scratch.view(), "PLAIN", count)];
      chunks.push({ column, type: "BOOLEAN", encoding: "PLAIN", rows: count, statistics: booleanStatistics(values), pages });
    } else if (source instanceof NumberColumn && column.kind === "double") {
      const values = source.head(from, count);
      // PLAIN doubles are the values' own bytes: the buffer's when borrowed, else one copy of them.
      const body = borrow ? new Uint8Array(values.buffer, values.byteOffset, values.byteLength) : new Uint8Array(values.slice().buffer);
      const pages: PlannedPage[] = [{ kind: "data", body, size: body.length, encoding: "PLAIN", values: count }];
      chunks.push({ column, type: "DOUBLE", encoding: "PLAIN", rows: count, statistics: doubleStatistics(values), pages });
    } else if (source instanceof RunColumn) {
      // Deltas, statistics and the PLAIN fallback straight from the runs (the same bytes as from rows).
      const { values, lengths, runs } = source.runsOf(from, count, report);
      scratch.reset();
      const encoding: Encoding = deltaBinaryPackedRuns(scratch, values, lengths, runs, count) ? "DELTA_BINARY_PACKED" : "PLAIN";
      if (encoding === "PLAIN") plainInt64s(scratch, expandRuns(values, lengths, runs, count));
      const pages = [dataPage(scratch.view(), encoding, count)];
      chunks.push({ column, type: "INT64", encoding, rows: count, statistics: integerStatistics(values.subarray(0, runs)), pages });
    } else if (source instanceof NumberColumn) {
      const values = source.integers(from, count, report);
      scratch.reset();
      const encoding: Encoding = deltaBinaryPacked(scratch, values) ? "DELTA_BINARY_PACKED" : "PLAIN";
      if (encoding === "PLAIN") plainInt64s(scratch, values);
      const pages = [dataPage(scratch.view(), encoding, count)];
      chunks.push({ column, type: "INT64", encoding, rows: count, statistics: integerStatistics(values), pages });
    } else {
      throw new Error(`column ${column.name}: no fast encoding for ${column.kind}`);
    }
  }
  return chunks;
}

/** Step 3: headers and compressed bodies (in plan order) at the writer's position; the row group's metadata. */
function writeRowGroup(writer: ByteWriter, chunks: readonly PlannedChunk[], compressed: readonly Uint8Array[], codec: CompressionCodec): RowGroup {
  const groupStart = writer.offset;
  const columns: ColumnChunk[] = [];
  let totalUncompressed = 0n;
  let next = 0;
  for (const chunk of chunks) {
    const start = writer.offset;
    let dictionaryOffset: number | undefined;
    let dataOffset = start;
    let uncompressed = 0;
    for (const page of chunk.pages) {
      const body = compressed[next++]!;
      const headerStart = writer.offset;
      if (page.kind === "dictionary") {
        dictionaryOffset = headerStart;
        writeDictionaryPageHeader(writer, page.size, body.length, page.values);
      } else {
        dataOffset = headerStart;
        writeDataPageV2Header(writer, page.size, body.length, page.values, page.encoding);
      }
      uncompressed += writer.offset - headerStart + page.size;
      writer.appendBytes(body);
    }
    const column = chunkOf(chunk.column, chunk.type, codec, {
      start,
      end: writer.offset,
      dataOffset,
      dictionaryOffset,
      uncompressed,
      encoding: chunk.encoding,
      rows: chunk.rows,
      statistics: chunk.statistics,
    });
    totalUncompressed += column.meta_data!.total_uncompressed_size;
    columns.push(column);
  }
  return {
    columns,
    total_byte_size: totalUncompressed,
    num_rows: BigInt(chunks[0]?.rows ?? 0),
    total_compressed_size: BigInt(writer.offset - groupStart),
  };
}

function chunkOf(column: Column, type: ColumnChunk["meta_data"] extends infer M ? (M extends { type: infer T } ? T : never) : never, codec: CompressionCodec, parts: {
  readonly start: number;
  readonly end: number;
  readonly dataOffset: number;
  readonly dictionaryOffset?: number;
  readonly uncompressed: number;
  readonly encoding: Encoding;
  readonly statistics: Statistics;
  readonly rows: number;
}): ColumnChunk {
  const encodings: Encoding[] = parts.dictionaryOffset === undefined ? [parts.encoding] : ["PLAIN", parts.encoding];
  return {
    meta_data: {
      type,
      encodings,
      path_in_schema: [column.name],
      codec,
      num_values: BigInt(parts.rows),
      total_compressed_size: BigInt(parts.end - parts.start),
      total_uncompressed_size: BigInt(parts.uncompressed),
      data_page_offset: BigInt(parts.dataOffset),
      dictionary_page_offset: parts.dictionaryOffset === undefined ? undefined : BigInt(parts.dictionaryOffset),
      statistics: parts.statistics as never,
      encoding_stats: [
        ...(parts.dictionaryOffset === undefined ? [] : [{ page_type: "DICTIONARY_PAGE" as const, encoding: "PLAIN" as const, count: 1 }]),
        { page_type: "DATA_PAGE_V2" as const, encoding: parts.encoding, count: 1 },
      ],
    },
    file_offset: BigInt(parts.start),
  };
}

/**
 * Encodes `count` rows of `buffer` from row `from` as one row group at the writer's position and returns
 * its metadata (what hyparquet-writer's ParquetWriter keeps in `row_groups` for the footer).
 */
export function encodeRowGroup(writer: ByteWriter, buffer: TableBuffer, count: number, codec: CompressionCodec, report: IntegerReport, from = 0): RowGroup {
  // Compressed and written before it returns: the rows cannot change meanwhile.
  const chunks = planRowGroup(buffer, count, report, from, true);
  const compressed = chunks.flatMap((chunk) => chunk.pages.map((page) => compressSync(codec, page.body!)));
  return writeRowGroup(writer, chunks, compressed, codec);
}

/**
 * As encodeRowGroup, with ZSTD compression on Bun's thread pool (same bytes). The rows are read before it
 * returns (the caller may discard them at once), unless `borrow` (planRowGroup): then they must stay as
 * they are until the promise settles and the row group is written. The promise gives the function that
 * writes the row group at a writer's position, called when the file's earlier row groups are written.
 */
export function planAndCompressRowGroup(buffer: TableBuffer, count: number, codec: CompressionCodec, report: IntegerReport, from = 0, borrow = false): Promise<RowGroupWrite> {
  const chunks = planRowGroup(buffer, count, report, from, borrow);
  const pages = chunks.flatMap((chunk) => chunk.pages);
  const pending = pages.map((page) => compressAsync(codec, page.body!));
  return Promise.all(pending).then((compressed) => {
    // Only the compressed bodies are kept while the row group waits to be written.
    for (const page of pages) page.body = undefined;
    const bytes = compressed.reduce((sum, body) => sum + body.length, 0) + pages.length * PAGE_HEADER_BYTES_BOUND;
    return Object.assign((writer: ByteWriter) => writeRowGroup(writer, chunks, compressed, codec), { bytes });
  });
}

/** Writes a planned, compressed row group at a writer's position; `bytes`: about how many it writes (at most). */
export type RowGroupWrite = ((writer: ByteWriter) => RowGroup) & { readonly bytes: number };

/** A page header with its statistics (two doubles or short strings) stays well under this. */
const PAGE_HEADER_BYTES_BOUND = 256;
