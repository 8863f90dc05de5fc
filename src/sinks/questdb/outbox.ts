/**
 * Encoded rows on their way to QuestDB, in order, as chunks (one per flush):
 *
 *   unsent (oldest first) → in flight (at most one) → resend window → released
 *
 * ILP over TCP has no acknowledgement: a write that reached our kernel may still be lost when the
 * connection drops (QuestDB restarting, a proxy resetting). So sent chunks stay in the resend window for
 * a while; when the connection is lost they go back to the front of the unsent queue and are sent again
 * after reconnecting (the tables' DEDUP keys make that idempotent). Over HTTP a 204 is an
 * acknowledgement and the window is 0.
 *
 * Every byte here counts against the sink's memory bound (a chunk counts the memory it holds, which
 * for a chunk in recycled memory is a little more than its bytes); chunks in the resend window are the
 * first to go when memory is needed (they have most likely arrived). A chunk released after it was sent
 * (from the resend window, or right after its send completed) is handed to `onRelease`, so its memory
 * can be reused for a later chunk; a chunk given up otherwise is left to the garbage collector.
 */

export interface Chunk {
  readonly bytes: Uint8Array;
  /** Memory held: the byte length of the chunk's ArrayBuffer. */
  readonly size: number;
  readonly rows: number;
  /** Already counted in rowsWritten (this is a re-send). */
  counted: boolean;
  /** performance.now() of the last successful send. */
  sentAt: number;
  /** The pending file of an earlier stop this chunk was read from (deleted once its chunks are sent). */
  readonly file?: string;
}

export class Outbox {
  private unsent: Chunk[] = [];
  private inFlight: Chunk | undefined;
  private window: Chunk[] = [];
  /** Bytes of every chunk held (unsent, in flight, resend window). */
  bytes = 0;
  unsentBytes = 0;
  /** Rows not yet sent since they were last queued (unsent and in flight). */
  pendingRows = 0;

  constructor(private readonly onRelease?: (bytes: Uint8Array) => void) {}

  get pendingChunks(): number {
    return this.unsent.length + (this.inFlight ? 1 : 0);
  }

  push(bytes: Uint8Array, rows: number, file?: string): void {
    this.unsent.push(this.track(bytes, rows, false, file));
  }

  /** Queues a chunk before every other unsent one (what remains of a chunk after a refused line). */
  pushFront(bytes: Uint8Array, rows: number, counted: boolean, file?: string): void {
    this.unsent.unshift(this.track(bytes, rows, counted, file));
  }

  private track(bytes: Uint8Array, rows: number, counted: boolean, file: string | undefined): Chunk {
    const size = bytes.buffer.byteLength;
    this.bytes += size;
    this.unsentBytes += size;
    this.pendingRows += rows;
    return { bytes, size, rows, counted, sentAt: 0, ...(file === undefined ? {} : { file }) };
  }

  /** True when a chunk read from `file` is unsent, in flight or in the resend window (it may be sent again). */
  holdsFile(file: string): boolean {
    const holds = (chunk: Chunk) => chunk.file === file;
    return (this.inFlight !== undefined && holds(this.inFlight)) || this.unsent.some(holds) || this.window.some(holds);
  }

  /** Chunks not yet delivered, in order: the one in flight, then the unsent ones. */
  pending(): readonly Chunk[] {
    return this.inFlight ? [this.inFlight, ...this.unsent] : this.unsent;
  }

  /**
   * Replaces each unsent chunk by what `rewrite` makes of it (undefined: keep it as it is), e.g. without
   * the lines of a table QuestDB refuses. A chunk left with no row is dropped.
   */
  rewriteUnsent(rewrite: (chunk: Chunk) => { bytes: Uint8Array; rows: number } | undefined): void {
    const rewritten: Chunk[] = [];
    for (const chunk of this.unsent) {
      const replacement = rewrite(chunk);
      if (replacement === undefined) {
        rewritten.push(chunk);
        continue;
      }
      this.bytes -= chunk.size;
      this.unsentBytes -= chunk.size;
      this.pendingRows -= chunk.rows;
      if (replacement.rows > 0) rewritten.push(this.track(replacement.bytes, replacement.rows, chunk.counted, chunk.file));
    }
    this.unsent = rewritten;
  }

  /** Moves the oldest unsent chunk in flight. */
  takeNext(): Chunk | undefined {
    if (this.inFlight) throw new Error("a chunk is already in flight");
    const chunk = this.unsent.shift();
    if (!chunk) return undefined;
    this.inFlight = chunk;
    this.unsentBytes -= chunk.size;
    return chunk;
  }

  /** The in-flight chunk arrived (HTTP) or reached the kernel (TCP); keep it for a re-send or release it. */
  sent(chunk: Chunk, now: number, keepForResend: boolean): void {
    if (this.inFlight !== chunk) return;
    this.inFlight = undefined;
    this.pendingRows -= chunk.rows;
    chunk.counted = true;
    chunk.sentAt = now;
    if (keepForResend) this.window.push(chunk);
    else this.release(chunk);
  }

  /** The in-flight chunk will never be accepted (QuestDB rejected its data): forget it. */
  discardInFlight(): Chunk | undefined {
    const chunk = this.inFlight;
    if (!chunk) return undefined;
    this.inFlight = undefined;
    this.pendingRows -= chunk.rows;
    this.bytes -= chunk.size;
    return chunk;
  }

  /**
   * Connection lost: the resend window and the in-flight chunk go back to the front, oldest first.
   * Returns the rows queued again that had already been sent once.
   */
  requeue(): number {
    const back: Chunk[] = [...this.window];
    this.window = [];
    let resentRows = 0;
    for (const chunk of back) resentRows += chunk.rows;
    if (this.inFlight) {
      back.push(this.inFlight);
      this.inFlight = undefined;
    }
    for (const chunk of back) this.unsentBytes += chunk.size;
    this.pendingRows += resentRows; // the in-flight chunk's rows were still pending
    this.unsent = [...back, ...this.unsent];
    return resentRows;
  }

  /** Releases resend-window chunks sent before `cutoff` (performance.now() time). */
  expire(cutoff: number): void {
    while (this.window.length > 0 && this.window[0]!.sentAt <= cutoff) this.release(this.window.shift()!);
  }

  /** Releases the oldest resend-window chunk to make room; false when the window is empty. */
  releaseOldestSent(): boolean {
    const chunk = this.window.shift();
    if (!chunk) return false;
    this.release(chunk);
    return true;
  }

  /** Gives up on everything not yet sent (shutdown while QuestDB is away; the sink keeps it in a file if it can). */
  abandonPending(): { rows: number; neverSentRows: number } {
    let rows = 0;
    let neverSentRows = 0;
    const pending = this.inFlight ? [this.inFlight, ...this.unsent] : this.unsent;
    for (const chunk of pending) {
      rows += chunk.rows;
      if (!chunk.counted) neverSentRows += chunk.rows;
      this.bytes -= chunk.size;
    }
    this.unsent = [];
    this.inFlight = undefined;
    this.unsentBytes = 0;
    this.pendingRows = 0;
    return { rows, neverSentRows };
  }

  /** A sent chunk leaves: its memory is free for reuse (nothing reads it any more). */
  private release(chunk: Chunk): void {
    this.bytes -= chunk.size;
    this.onRelease?.(chunk.bytes);
  }
}
