/**
 * The growing byte buffer under the Parquet sink's encoders: page bodies (row-group.ts), journal records
 * (columns.ts ByteBuilder) and Thrift compact structs (thrift.ts). It doubles when full (one copy each
 * time) and is written at `length`.
 */
export class Bytes {
  buffer: Uint8Array;
  /** Over `buffer`, renewed when it grows. */
  protected dataView: DataView;
  length = 0;

  constructor(memory: number | ArrayBuffer = 1 << 16) {
    this.buffer = typeof memory === "number" ? new Uint8Array(memory) : new Uint8Array(memory);
    this.dataView = new DataView(this.buffer.buffer);
  }

  reset(): void {
    this.length = 0;
  }

  ensure(extra: number): void {
    if (this.length + extra <= this.buffer.length) return;
    const next = new Uint8Array(Math.max(this.buffer.length * 2, this.length + extra));
    next.set(this.buffer.subarray(0, this.length));
    this.buffer = next;
    this.dataView = new DataView(next.buffer);
  }

  byte(value: number): void {
    this.ensure(1);
    this.buffer[this.length++] = value;
  }

  bytes(value: Uint8Array): void {
    this.ensure(value.length);
    this.buffer.set(value, this.length);
    this.length += value.length;
  }

  /** Unsigned LEB128 of a non-negative safe integer (by division: no 32-bit wrap). */
  uleb128(value: number): void {
    this.ensure(8);
    while (value >= 0x80) {
      this.buffer[this.length++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    this.buffer[this.length++] = value;
  }

  /** Zig-zag LEB128 of a signed 64-bit integer; numbers past 2^52 go through BigInt. */
  zigzag(value: number | bigint): void {
    const small = Number(value);
    if (small < 2 ** 52 && small > -(2 ** 52)) {
      this.uleb128(small >= 0 ? small * 2 : -small * 2 - 1);
      return;
    }
    const big = BigInt(value);
    let zigzag = BigInt.asUintN(64, (big << 1n) ^ (big >> 63n));
    this.ensure(10);
    while (zigzag >= 0x80n) {
      this.buffer[this.length++] = Number(zigzag & 0x7fn) | 0x80;
      zigzag >>= 7n;
    }
    this.buffer[this.length++] = Number(zigzag);
  }

  /** The bytes written so far (a view: copy before reusing the buffer). */
  view(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }
}
