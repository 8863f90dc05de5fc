/**
 * OKX `books` on the book-sync engine (kit/book-sync.ts): the seqId/prevSeqId chain and the CRC32
 * checksum (kit/sequence/okx.ts), the WebSocket snapshot that comes after a (re)subscribe, the REST
 * snapshot (GET /api/v5/market/books) taken when none comes, aligned with the buffered updates, and
 * the words of its gaps rows and log lines. Rules in docs/venues/okx.md.
 */
import { nowMicros } from "../core/clock.ts";
import type { GapReason, MarketEvent } from "../core/events.ts";
import type { FaultLog } from "../core/fault-log.ts";
import type { Logger } from "../core/log.ts";
import type { OrderBook } from "../core/order-book.ts";
import type { Subscription } from "../core/subscriptions.ts";
import { snapshotBodyBytes } from "./http-body.ts";
import { BookSync, type BookSyncHost, type BookSyncOptions } from "./kit/book-sync.ts";
import { okxChecksum, SeqIdChain } from "./kit/sequence/okx.ts";
import type { SequenceVerdict } from "./kit/sequence/verdict.ts";
import { bookChange, flatten, okxTime, type Level, type OkxInstrumentContext } from "./okx-normalize.ts";
import type { ScannedOkxBook } from "./okx-scan.ts";

/** One item of a `books` message (or the REST answer), fields as received. */
export interface BookData {
  asks?: unknown;
  bids?: unknown;
  ts?: unknown;
  checksum?: unknown;
  prevSeqId?: unknown;
  seqId?: unknown;
  /** Set here, not by OKX: when the frame was read (kept with an update buffered for a REST snapshot). */
  receivedAt?: number;
}

/** A snapshot whose levels have been read. */
interface OkxSnapshot {
  readonly data: BookData;
  readonly bids: number[];
  readonly asks: number[];
  /** For a REST one, the earlier of its own time and the first update beyond it (see runFetch). */
  readonly ts: number;
  readonly receivedAt: number;
  /** From REST: how many buffered updates it may already hold (undefined: from the WebSocket). */
  readonly buffered: number | undefined;
}

/** What a book needs of its subscription (okx.ts's SubState). */
export interface OkxBookSub {
  readonly subscription: Subscription;
  readonly instrument: { readonly instId: string };
  readonly context: OkxInstrumentContext;
  readonly failed: boolean;
  /** Channel arguments not yet acknowledged since the last subscribe. */
  readonly unacked: number;
  readonly connection: { readonly isOpen: boolean } | undefined;
}

type RestAnswer = { ok: true; data: unknown } | { ok: false; error: string; retryAfterMs: number | undefined; oversized?: true };

/** What a book needs of its connector (built once per connector). */
export interface OkxBookPort<S extends OkxBookSub> {
  readonly log: Logger;
  readonly faults: FaultLog;
  readonly stopped: boolean;
  /** How long after a books ack we wait for the WebSocket snapshot before using REST. */
  readonly snapshotWaitMs: number;
  readonly limits: { readonly bookDepth: number; readonly restOverlapUpdates: number; readonly checksumDepth: number; readonly booksPath: string };
  emit(sub: S, event: MarketEvent): void;
  emitGap(sub: S, reason: GapReason, detail: string): void;
  parseError(sub: S, what: string): void;
  /** Unsubscribes and subscribes the book again; false when the op budget is spent. */
  resubscribe(sub: S): boolean;
  /** Waits for the per-IP REST books spacing. */
  reserveRest(): Promise<void>;
  getJson(path: string, maxBytes: number): Promise<RestAnswer>;
  /** A sleep that stop() cuts short. */
  delay(ms: number): Promise<void>;
}

const NO_LEVELS: number[] = [];

export class OkxBook<S extends OkxBookSub> implements BookSyncHost<BookData, OkxSnapshot> {
  readonly subscriptions: readonly Subscription[];
  readonly sync: BookSync<BookData, OkxSnapshot>;
  private readonly chain = new SeqIdChain();
  /**
   * The level arrays as received, for the checksum (no copies: references into the parsed frames). Kept
   * only while `tracking`: OKX sends checksum 0 (absent) since its deprecation, and keeping every level's
   * text for nothing would cost a Map update per level.
   */
  private readonly rawBids = new Map<number, Level>();
  private readonly rawAsks = new Map<number, Level>();
  /** rawBids/rawAsks are kept for this book (decided at each snapshot); scanned frames skip such books. */
  tracking = false;
  /** A non-zero checksum was seen on this subscription: every later snapshot is tracked. */
  private checksumsSeen = false;
  /** A REST snapshot is being fetched (or its failure retried). */
  private fetching = false;
  /** The wait for a WebSocket snapshot after the ack. */
  private waitTimer: ReturnType<typeof setTimeout> | undefined;
  /** The update in hand: its receive time, whether its levels came flattened (okx-scan.ts), its levels once read. */
  private at = 0;
  private flat = false;
  private bids = NO_LEVELS;
  private asks = NO_LEVELS;
  private ts = 0;

  constructor(
    private readonly port: OkxBookPort<S>,
    private readonly sub: S,
    options: Omit<BookSyncOptions, "name" | "faults">,
  ) {
    this.subscriptions = [sub.subscription];
    this.sync = new BookSync(this, { ...options, name: sub.subscription.key, faults: port.faults });
  }

  get phase(): "idle" | "awaiting" | "live" {
    return this.sync.phase;
  }

  // ── messages ──

  /** A books message (JSON path) for this subscription. */
  onMessage(action: unknown, data: BookData, receivedAt: number): void {
    if (typeof data.seqId !== "number" || typeof data.prevSeqId !== "number") {
      this.port.parseError(this.sub, "book message without seqId/prevSeqId");
      this.sync.unreadable("book message without seqId/prevSeqId");
      return;
    }
    if (action === "snapshot") {
      this.onWsSnapshot(data, receivedAt);
      return;
    }
    if (action !== "update") {
      this.port.parseError(this.sub, `unknown books action '${String(action)}'`);
      return;
    }
    const phase = this.sync.phase;
    if (phase === "idle") return;
    data.receivedAt = receivedAt;
    if (phase === "awaiting" && !this.fetching) {
      // Updates before the ack belong to the subscription we just dropped; after the ack, an update
      // without a snapshot means none is coming (OKX is removing it): take the snapshot from REST.
      if (this.sub.unacked > 0) return;
      this.sync.delta(data);
      this.fetchSnapshot();
      return;
    }
    this.sync.delta(data);
  }

  /** A books update read by okx-scan.ts (levels already flattened and checked, checksum 0): the hot path. */
  onScanned(book: ScannedOkxBook, receivedAt: number): void {
    this.at = receivedAt;
    this.flat = true;
    this.sync.delta(book);
    this.flat = false;
  }

  /** The books subscription was acknowledged: wait a moment for the WebSocket snapshot, then use REST. */
  onAck(): void {
    if (this.sync.phase !== "awaiting" || this.fetching || this.waitTimer) return;
    const epoch = this.sync.epoch;
    this.waitTimer = setTimeout(() => {
      this.waitTimer = undefined;
      if (this.sync.epoch === epoch && this.sync.phase === "awaiting" && !this.fetching && !this.sub.failed) {
        this.port.log.info(`${this.sub.subscription.key}: no WebSocket snapshot within ${this.port.snapshotWaitMs} ms; using REST`);
        this.fetchSnapshot();
      }
    }, this.port.snapshotWaitMs);
  }

  private onWsSnapshot(data: BookData, receivedAt: number): void {
    const phase = this.sync.phase;
    if (phase === "idle") return;
    // An empty snapshot is what a removed snapshot may look like: REST decides.
    const empty = Array.isArray(data.bids) && Array.isArray(data.asks) && data.bids.length === 0 && data.asks.length === 0;
    const bids = empty ? undefined : flatten(data.bids);
    const asks = empty ? undefined : flatten(data.asks);
    const ts = okxTime(data.ts);
    if (bids && asks && !Number.isNaN(ts)) {
      this.sync.snapshotInBand({ data, bids, asks, ts, receivedAt, buffered: undefined });
      return;
    }
    if (!empty) this.port.parseError(this.sub, "malformed book snapshot");
    if (phase === "live") this.sync.unreadable("malformed book snapshot");
    else this.fetchSnapshot();
  }

  // ── snapshots ──

  /**
   * REST snapshot, aligned with the buffered updates as OKX describes for the removal of the WS snapshot
   * (https://www.okx.com/docs-v5/log_en, "Delist initial snapshot and checksum field"): a snapshot older
   * than the first buffered update's prevSeqId is fetched again; updates with seqId <= snapshot seqId
   * are dropped; the first one applied must satisfy prevSeqId <= snapshot seqId < seqId.
   */
  private fetchSnapshot(): void {
    if (this.fetching || this.sync.phase !== "awaiting") return;
    this.fetching = true;
    clearTimeout(this.waitTimer);
    this.waitTimer = undefined;
    void this.runFetch(this.sync.epoch);
  }

  private async runFetch(epoch: number): Promise<void> {
    const { port, sub } = this;
    const key = sub.subscription.key;
    const depth = port.limits.bookDepth;
    const current = () => !port.stopped && !sub.failed && this.sync.epoch === epoch && this.fetching;
    for (let tooOld = 0; ; ) {
      await port.reserveRest();
      if (!current()) return;
      const result = await port.getJson(`${port.limits.booksPath}?instId=${encodeURIComponent(sub.instrument.instId)}&sz=${depth}`, snapshotBodyBytes(depth));
      if (!current()) return;
      const snapshot = result.ok && Array.isArray(result.data) ? (result.data[0] as BookData | undefined) : undefined;
      // More levels than asked for (and than the venue serves) is a broken or hostile answer, not a book.
      const tooDeep =
        (Array.isArray(snapshot?.bids) && snapshot.bids.length > depth) || (Array.isArray(snapshot?.asks) && snapshot.asks.length > depth);
      const bids = tooDeep ? undefined : flatten(snapshot?.bids);
      const asks = tooDeep ? undefined : flatten(snapshot?.asks);
      const ts = okxTime(snapshot?.ts);
      if (typeof snapshot?.seqId !== "number" || !bids || !asks || Number.isNaN(ts)) {
        const why = tooDeep ? `more than the ${depth} levels a side asked for` : result.ok ? "response without a valid book" : result.error;
        if (tooDeep || (!result.ok && result.oversized)) sub.subscription.stats.parseErrors++;
        this.sync.snapshotFailed(epoch, why, result.ok ? undefined : result.retryAfterMs);
        return;
      }
      const seqId = snapshot.seqId;
      const buffered = this.sync.pending;
      const first = buffered[0];
      if (first && seqId < (first.prevSeqId as number)) {
        // OKX's REST book is cached (~50 ms); it can predate what we buffered. Ask again.
        if (++tooOld % 20 === 0) port.log.warn(`${key}: REST snapshot keeps predating the stream (${tooOld} tries)`);
        await port.delay(Math.min(50 * tooOld, 1000));
        if (!current()) return;
        continue;
      }
      // The snapshot's time is that of the state it holds, which is no later than the first update beyond
      // it: then ordering rows by (timestamp, sequence) never puts that update before the snapshot.
      const next = buffered.find((update) => typeof update.seqId === "number" && update.seqId > seqId);
      const nextTime = next === undefined ? Number.NaN : okxTime(next.ts);
      const time = Number.isNaN(nextTime) ? ts : Math.min(ts, nextTime);
      this.sync.snapshotArrived(epoch, { data: snapshot, bids, asks, ts: time, receivedAt: nowMicros(), buffered: buffered.length });
      return;
    }
  }

  // ── engine hooks ──

  judge(update: BookData): SequenceVerdict {
    if (!this.flat) this.at = update.receivedAt!;
    if (!this.chain.started) return "no_snapshot";
    return this.chain.next(update.prevSeqId as number, update.seqId as number);
  }

  begin(snapshot: OkxSnapshot, buffered: number): void {
    this.fetching = false;
    clearTimeout(this.waitTimer);
    this.waitTimer = undefined;
    const fromRest = snapshot.buffered !== undefined;
    this.chain.start(snapshot.data.seqId as number, fromRest, fromRest ? buffered + this.port.limits.restOverlapUpdates : 0);
    if (typeof snapshot.data.checksum === "number" && snapshot.data.checksum !== 0) this.checksumsSeen = true;
    this.tracking = this.checksumsSeen;
  }

  resetSequence(): void {
    this.chain.reset();
    this.rawBids.clear();
    this.rawAsks.clear();
    this.tracking = false;
  }

  canRequestSnapshot(): boolean {
    return !this.port.stopped && !this.sub.failed && this.sub.connection?.isOpen === true;
  }

  /** A fresh snapshot: a resubscription, or REST when the subscribe budget is spent (or a REST failure is retried). */
  acquireSnapshot(epoch: number): void {
    if (this.fetching) {
      void this.runFetch(epoch);
      return;
    }
    if (this.port.resubscribe(this.sub)) return;
    // Out of subscribe budget: keep the subscription and take the snapshot from REST instead.
    this.port.log.warn(`${this.sub.subscription.key}: subscribe budget spent; resyncing from the REST snapshot`);
    this.fetchSnapshot();
  }

  cancelled(): void {
    this.fetching = false;
    clearTimeout(this.waitTimer);
    this.waitTimer = undefined;
  }

  applySnapshot(book: OrderBook, snapshot: OkxSnapshot): void {
    this.applyLevels(book, snapshot.bids, snapshot.asks, snapshot.data);
  }

  applyDelta(book: OrderBook, update: BookData): boolean {
    const flat = this.flat;
    const bids = flat ? (update.bids as number[]) : flatten(update.bids);
    const asks = flat ? (update.asks as number[]) : flatten(update.asks);
    const ts = flat ? (update.ts as number) : okxTime(update.ts);
    if (!bids || !asks || Number.isNaN(ts)) {
      this.port.parseError(this.sub, "malformed book update");
      return false;
    }
    this.bids = bids;
    this.asks = asks;
    this.ts = ts;
    this.applyLevels(book, bids, asks, update);
    return true;
  }

  /** checksum 0 (or absent) means "not sent" since OKX deprecated it; a non-zero one must match. */
  verify(_book: OrderBook, item: BookData | OkxSnapshot): string | undefined {
    const checksum = "data" in item ? item.data.checksum : item.checksum;
    if (typeof checksum !== "number" || checksum === 0) return undefined;
    if (!this.tracking) {
      // The first non-zero checksum on a book whose level texts were not kept (all before were 0): verify
      // from a fresh snapshot on, which is tracked from now on.
      this.checksumsSeen = true;
      return `first non-zero checksum ${checksum} at seqId ${this.chain.seqId}; the book's level texts were not kept, so it restarts from a snapshot to verify`;
    }
    const ours = okxChecksum(this.topLevels(this.rawBids, true), this.topLevels(this.rawAsks, false));
    return ours === checksum ? undefined : `checksum ${checksum} from OKX, ${ours} from our book at seqId ${this.chain.seqId}`;
  }

  emitSnapshot(snapshot: OkxSnapshot): void {
    const seqId = snapshot.data.seqId as number;
    this.port.emit(this.sub, bookChange(this.sub.context, true, seqId, snapshot.ts, snapshot.receivedAt, snapshot.bids, snapshot.asks));
    if (snapshot.buffered !== undefined) {
      this.port.log.debug(`${this.sub.subscription.key}: REST snapshot seqId ${seqId}; replaying ${snapshot.buffered} buffered update(s)`);
    }
  }

  emitDelta(update: BookData): void {
    // The idle heartbeat (no levels) only proves the chain; nothing to store.
    if (this.bids.length === 0 && this.asks.length === 0) return;
    this.port.emit(this.sub, bookChange(this.sub.context, false, update.seqId as number, this.ts, this.at, this.bids, this.asks));
  }

  gap(reason: GapReason, detail: string): void {
    this.port.emitGap(this.sub, reason, detail);
  }

  describe(verdict: SequenceVerdict | "unreadable", update: BookData): string {
    const last = this.chain.seqId;
    if (verdict === "gap") return `prevSeqId ${update.prevSeqId} does not follow seqId ${last} (update seqId ${update.seqId})`;
    if (verdict === "backwards") {
      return `update seqId ${update.seqId} is still not above the REST snapshot's seqId ${last} after ${this.port.limits.restOverlapUpdates} later updates: the snapshot's seqId was wrong or the ids went back`;
    }
    return `malformed book update seqId ${update.seqId}`;
  }

  skipped(verdict: SequenceVerdict, update: BookData): void {
    this.port.log.debug(`${this.sub.subscription.key}: ${verdict} update seqId ${update.seqId} ignored`);
  }

  crossedDetail(book: OrderBook, item: BookData | OkxSnapshot): string {
    const seqId = "data" in item ? item.data.seqId : item.seqId;
    return `best bid ${book.bids.best()} >= best ask ${book.asks.best()} after seqId ${seqId}`;
  }

  crossedSnapshotTolerated(): void {
    // OKX: "Best ask price may be lower than the best bid price during the pre-open period."
    this.port.log.info(`${this.sub.subscription.key}: the snapshot itself is crossed (pre-open auction?); tolerated until it uncrosses`);
  }

  bufferOverflowed(count: number): void {
    this.port.log.warn(`${this.sub.subscription.key}: ${count} updates buffered waiting for a snapshot; starting over`);
  }

  resyncLine(reason: GapReason, detail: string): string {
    return `${this.sub.subscription.key}: resync (${reason}): ${detail}`;
  }

  brakeLine(count: number, delayMs: number): string {
    return `${this.sub.subscription.key}: resync ${count} in a row: fresh snapshot in ${Math.ceil(delayMs / 1000)} s`;
  }

  snapshotFailedDetail(why: string): string {
    return `REST snapshot failed: ${why}`;
  }

  snapshotFailureLogged(why: string, delayMs: number): void {
    this.port.log.warn(`${this.sub.subscription.key}: REST snapshot failed (${why}); retrying in ${delayMs} ms`);
  }

  // ── levels ──

  /** Applies flattened levels to the book and, while the book is tracked, the level texts to the raw maps. */
  private applyLevels(book: OrderBook, bids: readonly number[], asks: readonly number[], data: BookData): void {
    book.apply(bids, asks);
    if (!this.tracking) return;
    trackLevels(this.rawBids, bids, data.bids as Level[]);
    trackLevels(this.rawAsks, asks, data.asks as Level[]);
  }

  private topLevels(raw: Map<number, Level>, descending: boolean): Level[] {
    const prices = [...raw.keys()].sort((a, b) => (descending ? b - a : a - b));
    const depth = Math.min(prices.length, this.port.limits.checksumDepth);
    const out: Level[] = new Array(depth);
    for (let i = 0; i < depth; i++) out[i] = raw.get(prices[i]!)!;
    return out;
  }
}

function trackLevels(raw: Map<number, Level>, flat: readonly number[], levels: readonly Level[]): void {
  for (let i = 0; i < levels.length; i++) {
    const price = flat[2 * i]!;
    if (flat[2 * i + 1] === 0) raw.delete(price);
    else raw.set(price, levels[i]!);
  }
}
