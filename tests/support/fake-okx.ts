/**
 * A fake OKX (public WebSocket /ws/v5/public + the REST routes a collector uses) on top of FakeExchange,
 * speaking OKX's message shapes (https://www.okx.com/docs-v5/en/): subscribe/unsubscribe acks and
 * `event: error` refusals (by request id), text ping/pong, the `books` channel with seqId/prevSeqId (and
 * optionally real checksums), bbo-tbt, trades, funding-rate, mark-price, liquidation-orders, notices,
 * GET /api/v5/public/instruments and GET /api/v5/market/books.
 *
 * A seeded random market generator keeps the TRUE book of each instrument and a record of every trade
 * sent, so tests (and the end-to-end fault suite running the compiled binary) can compare output with
 * the truth. Fault helpers: sequence gaps, duplicated/reordered updates, crossed updates, corrupt
 * checksums, maintenance seqId resets, malformed frames, closes with OKX codes, silence, REST failures.
 */
import { crc32 } from "node:zlib";
import { FakeExchange, type FakeConnection } from "./fake-exchange.ts";
import { seededRandom } from "./random.ts";

export interface FakeOkxInstrument {
  /** e.g. BTC-USDT-SWAP or BTC-USDT. */
  readonly instId: string;
  /** Swaps: face value of one contract (default 0.01) in ctValCcy; linear unless ctType says inverse. */
  readonly ctVal?: string;
  readonly ctMult?: string;
  readonly ctType?: "linear" | "inverse";
  readonly state?: string;
  /** Listed in the instrument list only: no market, subscriptions to it are refused. */
  readonly listedOnly?: boolean;
  /** Market generator: mid price, tick, decimals of the price and size strings, levels per side. */
  readonly mid?: number;
  readonly tick?: number;
  readonly priceDecimals?: number;
  readonly sizeDecimals?: number;
  readonly depth?: number;
}

export interface FakeOkxOptions {
  readonly instruments: readonly FakeOkxInstrument[];
  readonly seed?: number;
  /** Send the initial WebSocket book snapshot on subscribe (OKX is removing it). Default true. */
  readonly wsSnapshot?: boolean;
  /** Send real checksums (default: 0, as OKX does since the 2026 deprecation). */
  readonly checksums?: boolean;
  /** Refuse a whole subscribe request when one argument is bad (default: ack the good ones). */
  readonly rejectWholeBatch?: boolean;
  /** Close connections with 4004 after this long without a frame either way (OKX: 30 s). */
  readonly idleCloseMs?: number;
}

/** [price text, size text] as sent. */
export type FakeLevel = readonly [string, string];

export interface SentTrade {
  readonly instId: string;
  readonly tradeId: string;
  readonly px: string;
  readonly sz: string;
  readonly side: "buy" | "sell";
  readonly ts: string;
}

export interface BookUpdateFrame {
  readonly arg: { channel: "books"; instId: string };
  readonly action: "snapshot" | "update";
  readonly data: [
    {
      asks: string[][];
      bids: string[][];
      ts: string;
      checksum: number;
      prevSeqId: number;
      seqId: number;
    },
  ];
}

export { seededRandom } from "./random.ts";

/** OKX's legacy checksum, written independently of the connector (zip-longest of the top 25). */
export function referenceChecksum(bids: readonly FakeLevel[], asks: readonly FakeLevel[]): number {
  const fields: string[] = [];
  for (let i = 0; i < 25 && (i < bids.length || i < asks.length); i++) {
    if (i < bids.length) fields.push(`${bids[i]![0]}:${bids[i]![1]}`);
    if (i < asks.length) fields.push(`${asks[i]![0]}:${asks[i]![1]}`);
  }
  const unsigned = crc32(Buffer.from(fields.join(":"), "utf8"));
  return unsigned > 0x7fffffff ? unsigned - 0x100000000 : unsigned;
}

export class FakeMarket {
  /** Tick index → level strings; bids < mid < asks always holds in the truth. */
  readonly bids = new Map<number, FakeLevel>();
  readonly asks = new Map<number, FakeLevel>();
  readonly trades: SentTrade[] = [];
  seqId: number;
  mid: number;
  /** The top of book last pushed on bbo-tbt (pushed again only when it changes). */
  lastTopSent = "";
  /** Book frames sent, in order (what the client could have seen). */
  readonly sentBooks: BookUpdateFrame[] = [];
  private nextTradeId: number;
  private readonly tick: number;
  private readonly priceDecimals: number;
  private readonly sizeDecimals: number;
  private readonly depth: number;

  constructor(
    readonly instrument: FakeOkxInstrument,
    private readonly random: () => number,
  ) {
    this.tick = instrument.tick ?? 0.1;
    this.priceDecimals = instrument.priceDecimals ?? 1;
    this.sizeDecimals = instrument.sizeDecimals ?? 3;
    this.depth = instrument.depth ?? 20;
    this.mid = Math.round((instrument.mid ?? 50_000) / this.tick);
    this.seqId = 1_000_000 + Math.floor(random() * 1_000_000);
    this.nextTradeId = 100_000_000 + Math.floor(random() * 1_000_000);
    for (let k = 1; k <= this.depth; k++) {
      if (random() < 0.8) this.bids.set(this.mid - k, this.level(this.mid - k, this.randomSize()));
      if (random() < 0.8) this.asks.set(this.mid + k, this.level(this.mid + k, this.randomSize()));
    }
  }

  get instId(): string {
    return this.instrument.instId;
  }

  price(index: number): string {
    return (index * this.tick).toFixed(this.priceDecimals);
  }

  level(index: number, size: string): FakeLevel {
    return [this.price(index), size];
  }

  randomSize(): string {
    // Trailing zeros kept on purpose: the checksum is over the strings exactly as sent.
    const unit = 10 ** -this.sizeDecimals;
    return (unit + this.random() * 5).toFixed(this.sizeDecimals);
  }

  /** The true book, best first, as numbers (compare with OrderBook.sorted()). */
  truth(): { bids: Array<[number, number]>; asks: Array<[number, number]> } {
    const side = (map: Map<number, FakeLevel>, descending: boolean) =>
      [...map.entries()]
        .sort((a, b) => (descending ? b[0] - a[0] : a[0] - b[0]))
        .map(([, level]) => [Number(level[0]), Number(level[1])] as [number, number]);
    return { bids: side(this.bids, true), asks: side(this.asks, false) };
  }

  /** The top `depth` levels per side as sent strings, best first. */
  top(depth = 400): { bids: FakeLevel[]; asks: FakeLevel[] } {
    const side = (map: Map<number, FakeLevel>, descending: boolean) =>
      [...map.entries()]
        .sort((a, b) => (descending ? b[0] - a[0] : a[0] - b[0]))
        .slice(0, depth)
        .map(([, level]) => level);
    return { bids: side(this.bids, true), asks: side(this.asks, false) };
  }

  checksum(): number {
    const { bids, asks } = this.top(25);
    return referenceChecksum(bids, asks);
  }

  bestBid(): number | undefined {
    return this.bids.size === 0 ? undefined : Math.max(...this.bids.keys());
  }

  bestAsk(): number | undefined {
    return this.asks.size === 0 ? undefined : Math.min(...this.asks.keys());
  }

  /** A random change of 1-4 levels (sometimes moving the mid), applied to the truth; the changed levels. */
  randomChange(): { bids: FakeLevel[]; asks: FakeLevel[] } {
    const bids = new Map<number, FakeLevel>();
    const asks = new Map<number, FakeLevel>();
    const roll = this.random();
    if (roll < 0.1) {
      this.mid++;
      if (this.asks.has(this.mid)) asks.set(this.mid, this.level(this.mid, "0"));
    } else if (roll < 0.2) {
      this.mid--;
      if (this.bids.has(this.mid)) bids.set(this.mid, this.level(this.mid, "0"));
    }
    const count = 1 + Math.floor(this.random() * 4);
    for (let i = 0; i < count; i++) {
      const isBid = this.random() < 0.5;
      const k = 1 + Math.floor(this.random() * this.depth);
      const index = isBid ? this.mid - k : this.mid + k;
      const book = isBid ? this.bids : this.asks;
      const changes = isBid ? bids : asks;
      const remove = book.has(index) && this.random() < 0.35;
      changes.set(index, this.level(index, remove ? "0" : this.randomSize()));
    }
    return this.applyToTruth({ bids: [...bids.entries()], asks: [...asks.entries()] });
  }

  /** Applies changes keyed by tick index to the truth and returns them as levels. */
  applyToTruth(changes: { bids: Array<[number, FakeLevel]>; asks: Array<[number, FakeLevel]> }): {
    bids: FakeLevel[];
    asks: FakeLevel[];
  } {
    for (const [index, level] of changes.bids) {
      if (Number(level[1]) === 0) this.bids.delete(index);
      else this.bids.set(index, level);
    }
    for (const [index, level] of changes.asks) {
      if (Number(level[1]) === 0) this.asks.delete(index);
      else this.asks.set(index, level);
    }
    return { bids: changes.bids.map(([, level]) => level), asks: changes.asks.map(([, level]) => level) };
  }

  newTradeId(): string {
    this.nextTradeId += 1 + Math.floor(this.random() * 3);
    return String(this.nextTradeId);
  }

  nextSeqId(): number {
    // seqId may jump by more than one.
    this.seqId += 1 + Math.floor(this.random() * 4);
    return this.seqId;
  }
}

const toWire = (levels: readonly FakeLevel[]): string[][] => levels.map(([px, sz]) => [px, sz, "0", "1"]);

export class FakeOkx {
  readonly exchange: FakeExchange;
  readonly markets = new Map<string, FakeMarket>();
  wsSnapshot: boolean;
  checksums: boolean;
  rejectWholeBatch: boolean;
  /** instIds whose subscriptions the venue refuses (60018), even though listed. */
  readonly refused = new Set<string>();
  /** When true the server answers nothing: no pong, no data (a hung exchange). */
  silent = false;
  private readonly subscriptions = new Map<FakeConnection, Set<string>>();
  private readonly lastActivity = new Map<FakeConnection, number>();
  private readonly connIds = new Map<FakeConnection, string>();
  private readonly restFaults = new Map<string, number[]>();
  private readonly staleSnapshots = new Map<string, { bids: FakeLevel[]; asks: FakeLevel[]; seqId: number }>();
  private readonly nextBooks: Array<() => Response> = [];
  private dropNext = new Set<string>();
  private corruptNext = new Set<string>();
  private reorder = new Map<string, BookUpdateFrame | "pending">();
  private resetNext = new Map<string, number>();
  private idleTimer: ReturnType<typeof setInterval> | undefined;

  private constructor(readonly options: FakeOkxOptions) {
    this.exchange = FakeExchange.start();
    this.wsSnapshot = options.wsSnapshot ?? true;
    this.checksums = options.checksums ?? false;
    this.rejectWholeBatch = options.rejectWholeBatch ?? false;
    const random = seededRandom(options.seed ?? 1);
    for (const instrument of options.instruments) {
      if (!instrument.listedOnly) this.markets.set(instrument.instId, new FakeMarket(instrument, random));
    }
    this.exchange.onConnection((connection) => {
      this.connIds.set(connection, Math.floor(random() * 0xffffffff).toString(16).padStart(8, "0"));
      this.subscriptions.set(connection, new Set());
      this.lastActivity.set(connection, performance.now());
    });
    this.exchange.onMessage((connection, text) => this.onClientFrame(connection, text));
    this.exchange.rest("GET", "/api/v5/public/instruments", (request) => this.instrumentsRoute(request.query));
    this.exchange.rest("GET", "/api/v5/market/books", (request) => this.booksRoute(request.query));
    if (options.idleCloseMs !== undefined) {
      const limit = options.idleCloseMs;
      this.idleTimer = setInterval(() => {
        for (const connection of this.exchange.openConnections()) {
          if (performance.now() - (this.lastActivity.get(connection) ?? 0) > limit) {
            connection.close(4004, "No data received in 30s");
          }
        }
      }, Math.max(10, limit / 10));
    }
  }

  static start(options: FakeOkxOptions): FakeOkx {
    return new FakeOkx(options);
  }

  /** Environment pointing a connector at this fake. */
  env(exchange: "OKX_SWAP" | "OKX_SPOT"): Record<string, string> {
    return {
      [`XTRADER_${exchange}_WS_URL`]: this.exchange.wsUrl("/ws/v5/public"),
      [`XTRADER_${exchange}_REST_URL`]: this.exchange.httpUrl,
    };
  }

  market(instId: string): FakeMarket {
    const market = this.markets.get(instId);
    if (!market) throw new Error(`no fake market ${instId}`);
    return market;
  }

  /** Open connections subscribed to a channel argument (`books|BTC-USDT`, `liquidation-orders|SWAP`). */
  subscribers(channel: string, key: string): FakeConnection[] {
    const wanted = `${channel}|${key}`;
    return this.exchange.openConnections().filter((connection) => this.subscriptions.get(connection)?.has(wanted));
  }

  /** Resolves once some open connection is subscribed to the argument (after its ack was sent). */
  waitForSubscriber(channel: string, key: string, timeoutMs = 5000): Promise<FakeConnection> {
    return this.exchange.waitFor(() => this.subscribers(channel, key)[0], timeoutMs, `a ${channel} subscriber of ${key}`);
  }

  /** Every JSON frame the clients sent with this op (subscribe/unsubscribe), across connections. */
  clientOps(op: string): Array<{ id?: string; op: string; args: Array<Record<string, string>> }> {
    return this.exchange.connections
      .flatMap((connection) => connection.receivedJson())
      .filter((frame): frame is { id?: string; op: string; args: Array<Record<string, string>> } => (frame as { op?: string }).op === op);
  }

  // ── client frames ──

  private send(connection: FakeConnection, message: unknown): void {
    if (this.silent) return;
    this.lastActivity.set(connection, performance.now());
    connection.send(message);
  }

  private broadcast(channel: string, key: string, message: unknown): void {
    for (const connection of this.subscribers(channel, key)) this.send(connection, message);
  }

  private onClientFrame(connection: FakeConnection, text: string): void {
    this.lastActivity.set(connection, performance.now());
    const connId = this.connIds.get(connection)!;
    if (text === "ping") {
      if (!this.silent) this.send(connection, "pong");
      return;
    }
    let request: { id?: string; op?: string; args?: Array<Record<string, string>> };
    try {
      request = JSON.parse(text);
    } catch {
      this.send(connection, { event: "error", code: "60012", msg: `Invalid request: ${text}`, connId });
      return;
    }
    const id = request.id;
    const withId = (message: Record<string, unknown>) => (id === undefined ? message : { id, ...message });
    if (request.op === "subscribe" && Array.isArray(request.args)) {
      const invalid = request.args.filter((arg) => this.refusal(arg) !== undefined);
      if (invalid.length > 0 && this.rejectWholeBatch) {
        this.send(connection, withId({ event: "error", code: "60018", msg: this.refusal(invalid[0]!), connId }));
        return;
      }
      for (const arg of request.args) {
        const refusal = this.refusal(arg);
        if (refusal !== undefined) {
          this.send(connection, withId({ event: "error", code: "60018", msg: refusal, connId }));
          continue;
        }
        const key = arg.instId ?? arg.instType!;
        this.subscriptions.get(connection)!.add(`${arg.channel}|${key}`);
        this.send(connection, withId({ event: "subscribe", arg, connId }));
        this.initialPush(connection, arg.channel!, key);
      }
      return;
    }
    if (request.op === "unsubscribe" && Array.isArray(request.args)) {
      for (const arg of request.args) {
        this.subscriptions.get(connection)!.delete(`${arg.channel}|${arg.instId ?? arg.instType}`);
        this.send(connection, withId({ event: "unsubscribe", arg, connId }));
      }
      return;
    }
    this.send(connection, withId({ event: "error", code: "60019", msg: `Invalid op: ${String(request.op)}`, connId }));
  }

  private refusal(arg: Record<string, string>): string | undefined {
    const channel = arg.channel;
    const key = arg.instId ?? arg.instType;
    const doesNotExist = `Wrong URL or channel:${channel},${arg.instId ? `instId:${arg.instId}` : `instType:${arg.instType}`} doesn't exist. Please use the correct URL, channel and parameters referring to API document.`;
    if (channel === "liquidation-orders") return arg.instType === "SWAP" ? undefined : doesNotExist;
    if (!["books", "trades", "bbo-tbt", "funding-rate", "mark-price"].includes(channel ?? "")) return doesNotExist;
    if (!key || !this.markets.has(key) || this.refused.has(key)) return doesNotExist;
    const isSwap = key.endsWith("-SWAP");
    if ((channel === "funding-rate" || channel === "mark-price") && !isSwap) return doesNotExist;
    return undefined;
  }

  private initialPush(connection: FakeConnection, channel: string, key: string): void {
    const market = this.markets.get(key);
    if (!market) return;
    if (channel === "books" && this.wsSnapshot) {
      const { bids, asks } = market.top(400);
      const frame: BookUpdateFrame = {
        arg: { channel: "books", instId: key },
        action: "snapshot",
        data: [
          {
            asks: toWire(asks),
            bids: toWire(bids),
            ts: String(Date.now()),
            checksum: this.checksums ? market.checksum() : 0,
            prevSeqId: -1,
            seqId: market.seqId,
          },
        ],
      };
      market.sentBooks.push(frame);
      this.send(connection, frame);
    }
    if (channel === "bbo-tbt") this.send(connection, this.bboFrame(market));
  }

  // ── market data ──

  private bboFrame(market: FakeMarket) {
    const { bids, asks } = market.top(1);
    return {
      arg: { channel: "bbo-tbt", instId: market.instId },
      data: [{ asks: toWire(asks), bids: toWire(bids), ts: String(Date.now()), seqId: market.seqId }],
    };
  }

  /**
   * Sends one book update of `changes` (already applied to the truth by the caller, or applied here
   * when given by tick index), then a bbo-tbt frame when the top changed. Honours pending faults.
   */
  private publishBook(market: FakeMarket, changes: { bids: FakeLevel[]; asks: FakeLevel[] }, options: { checksum?: number } = {}): BookUpdateFrame {
    const prevSeqId = market.seqId;
    const reset = this.resetNext.get(market.instId);
    let seqId: number;
    if (reset !== undefined) {
      this.resetNext.delete(market.instId);
      market.seqId = reset;
      seqId = reset;
    } else {
      seqId = market.nextSeqId();
    }
    let checksum = options.checksum ?? (this.checksums ? market.checksum() : 0);
    if (this.corruptNext.delete(market.instId)) checksum = (checksum ^ 0x5a5a5a5a) | 0 || 1;
    const frame: BookUpdateFrame = {
      arg: { channel: "books", instId: market.instId },
      action: "update",
      data: [{ asks: toWire(changes.asks), bids: toWire(changes.bids), ts: String(Date.now()), checksum, prevSeqId, seqId }],
    };
    if (this.dropNext.delete(market.instId)) return frame;
    const held = this.reorder.get(market.instId);
    if (held === "pending") {
      this.reorder.set(market.instId, frame);
      return frame;
    }
    market.sentBooks.push(frame);
    this.broadcast("books", market.instId, frame);
    if (held) {
      this.reorder.delete(market.instId);
      market.sentBooks.push(held);
      this.broadcast("books", market.instId, held);
    }
    const top = JSON.stringify(market.top(1));
    if (top !== market.lastTopSent) {
      market.lastTopSent = top;
      this.broadcast("bbo-tbt", market.instId, this.bboFrame(market));
    }
    return frame;
  }

  /** Random book updates (with trades now and then), each sent to the subscribers. */
  step(instId: string, count = 1, tradeProbability = 0.3): void {
    const market = this.market(instId);
    const random = seededRandom(market.seqId);
    for (let i = 0; i < count; i++) {
      this.publishBook(market, market.randomChange());
      if (random() < tradeProbability) this.sendTrade(instId, {});
    }
  }

  /** One explicit update: levels by tick index (size "0" removes), applied to the truth and sent. */
  sendBookUpdate(
    instId: string,
    changes: { bids?: Array<[number, string]>; asks?: Array<[number, string]> },
    options: { checksum?: number } = {},
  ): BookUpdateFrame {
    const market = this.market(instId);
    const applied = market.applyToTruth({
      bids: (changes.bids ?? []).map(([index, size]) => [index, market.level(index, size)]),
      asks: (changes.asks ?? []).map(([index, size]) => [index, market.level(index, size)]),
    });
    return this.publishBook(market, applied, options);
  }

  /** OKX's idle heartbeat: no levels, seqId == prevSeqId. */
  heartbeat(instId: string): BookUpdateFrame {
    const market = this.market(instId);
    const frame: BookUpdateFrame = {
      arg: { channel: "books", instId },
      action: "update",
      data: [{ asks: [], bids: [], ts: String(Date.now()), checksum: this.checksums ? market.checksum() : 0, prevSeqId: market.seqId, seqId: market.seqId }],
    };
    market.sentBooks.push(frame);
    this.broadcast("books", instId, frame);
    return frame;
  }

  sendTrade(instId: string, trade: { px?: string; sz?: string; side?: "buy" | "sell"; ts?: string }): SentTrade {
    const market = this.market(instId);
    const side = trade.side ?? (market.seqId % 2 === 0 ? "buy" : "sell");
    const bestIndex = side === "buy" ? market.bestAsk() : market.bestBid();
    const sent: SentTrade = {
      instId,
      tradeId: market.newTradeId(),
      px: trade.px ?? market.price(bestIndex ?? market.mid),
      sz: trade.sz ?? market.randomSize(),
      side,
      ts: trade.ts ?? String(Date.now()),
    };
    market.trades.push(sent);
    this.broadcast("trades", instId, {
      arg: { channel: "trades", instId },
      data: [{ instId, tradeId: sent.tradeId, px: sent.px, sz: sent.sz, side: sent.side, ts: sent.ts, count: "1", source: "0", seqId: market.seqId }],
    });
    return sent;
  }

  sendBbo(instId: string, bid: FakeLevel | undefined, ask: FakeLevel | undefined, ts = String(Date.now())) {
    const frame = {
      arg: { channel: "bbo-tbt", instId },
      data: [{ asks: ask ? toWire([ask]) : [], bids: bid ? toWire([bid]) : [], ts, seqId: this.market(instId).seqId }],
    };
    this.broadcast("bbo-tbt", instId, frame);
    return frame;
  }

  sendFundingRate(instId: string, fields: { fundingRate: string; fundingTime: string; nextFundingTime: string; ts: string }) {
    const frame = {
      arg: { channel: "funding-rate", instId },
      data: [
        {
          formulaType: "noRate",
          fundingRate: fields.fundingRate,
          fundingTime: fields.fundingTime,
          impactValue: "",
          instId,
          instType: "SWAP",
          interestRate: "",
          method: "current_period",
          maxFundingRate: "0.00375",
          minFundingRate: "-0.00375",
          nextFundingRate: "",
          nextFundingTime: fields.nextFundingTime,
          premium: "0.0001233824646391",
          settFundingRate: "0.0001699799259033",
          settState: "settled",
          ts: fields.ts,
        },
      ],
    };
    this.broadcast("funding-rate", instId, frame);
    return frame;
  }

  sendMarkPrice(instId: string, markPx: string, ts: string) {
    const frame = { arg: { channel: "mark-price", instId }, data: [{ instType: "SWAP", instId, markPx, ts }] };
    this.broadcast("mark-price", instId, frame);
    return frame;
  }

  /** One liquidation-orders push (to every SWAP liquidation subscriber) for `instId`. */
  sendLiquidation(instId: string, details: Array<{ side: string; posSide: string; bkPx: string; sz: string; ts: string }>) {
    const family = instId.replace(/-SWAP$/, "");
    const frame = {
      arg: { channel: "liquidation-orders", instType: "SWAP" },
      data: [
        {
          details: details.map((detail) => ({ bkLoss: "0", ccy: "", ...detail })),
          instFamily: family,
          instId,
          instType: "SWAP",
          uly: family,
        },
      ],
    };
    this.broadcast("liquidation-orders", "SWAP", frame);
    return frame;
  }

  // ── faults ──

  /** The next update changes the truth and advances seqId but is never sent: a sequence gap. */
  dropNextUpdate(instId: string): void {
    this.dropNext.add(instId);
  }

  /** Sends the last book frame again, verbatim. */
  duplicateLastUpdate(instId: string): void {
    const market = this.market(instId);
    const last = market.sentBooks.at(-1);
    if (!last) throw new Error("nothing sent yet");
    this.broadcast("books", instId, last);
  }

  /** The next two updates are sent in swapped order. */
  reorderNextTwo(instId: string): void {
    this.reorder.set(instId, "pending");
  }

  /** A well-sequenced update whose bid crosses the best ask, NOT applied to the truth (a venue glitch). */
  sendCrossedUpdate(instId: string): BookUpdateFrame {
    const market = this.market(instId);
    const ask = market.bestAsk() ?? market.mid + 1;
    return this.publishBook(market, { bids: [market.level(ask + 1, "1.000")], asks: [] });
  }

  /** An update in the chain carrying these raw level strings, NOT applied to the truth (a corrupt frame). */
  sendRawLevelUpdate(instId: string, levels: { bids?: FakeLevel[]; asks?: FakeLevel[] }): BookUpdateFrame {
    return this.publishBook(this.market(instId), { bids: levels.bids ?? [], asks: levels.asks ?? [] });
  }

  /** The next update carries a wrong non-zero checksum. */
  corruptNextChecksum(instId: string): void {
    this.corruptNext.add(instId);
  }

  /** Maintenance: the next update carries seqId `to` (below prevSeqId); the chain continues from it. */
  resetSequence(instId: string, to: number): void {
    this.resetNext.set(instId, to);
  }

  /** Sends raw text (malformed JSON, unknown messages) to every open connection. */
  sendRaw(text: string | object): void {
    for (const connection of this.exchange.openConnections()) this.send(connection, text);
  }

  /** OKX's notice before a service upgrade closes the connection. */
  sendUpgradeNotice(): void {
    for (const connection of this.exchange.openConnections()) {
      this.send(connection, {
        event: "notice",
        code: "64008",
        msg: "The connection will soon be closed for a service upgrade. Please reconnect.",
        connId: this.connIds.get(connection),
      });
    }
  }

  /** Closes every open connection with an OKX close code (4004 idle, 4006 abnormal, 1001...). */
  closeAll(code: number, reason = ""): void {
    for (const connection of this.exchange.openConnections()) connection.close(code, reason);
  }

  /** The next responses of a REST path fail with these HTTP statuses, in order. */
  failRest(path: "/api/v5/market/books" | "/api/v5/public/instruments", statuses: number[]): void {
    this.restFaults.set(path, [...(this.restFaults.get(path) ?? []), ...statuses]);
  }

  /** The next REST book response for `instId` is the book as it is now (older by then). */
  serveStaleSnapshotNext(instId: string): void {
    const market = this.market(instId);
    this.staleSnapshots.set(instId, { ...market.top(400), seqId: market.seqId });
  }

  /** The next REST book response for `instId` is the book as it is now, with this seqId (a wrong one). */
  serveSnapshotWithSeqIdNext(instId: string, seqId: number): void {
    const market = this.market(instId);
    this.staleSnapshots.set(instId, { ...market.top(400), seqId });
  }

  // ── REST ──

  private restFault(path: string): Response | undefined {
    const status = this.restFaults.get(path)?.shift();
    if (status === undefined) return undefined;
    const body =
      status === 429
        ? { code: "50011", msg: "Too Many Requests", data: [] }
        : status >= 500
          ? { code: "50001", msg: "Service temporarily unavailable. Please try again later.", data: [] }
          : { code: "50000", msg: `HTTP ${status}`, data: [] };
    return Response.json(body, { status });
  }

  private instrumentsRoute(query: URLSearchParams): Response {
    const fault = this.restFault("/api/v5/public/instruments");
    if (fault) return fault;
    const instType = query.get("instType");
    const data = this.options.instruments
      .filter((instrument) => (instrument.instId.endsWith("-SWAP") ? "SWAP" : "SPOT") === instType)
      .map((instrument) => {
        const [base, quote] = instrument.instId.split("-");
        if (instType === "SPOT") {
          return { instType, instId: instrument.instId, baseCcy: base, quoteCcy: quote, ctVal: "", ctMult: "", ctValCcy: "", ctType: "", state: instrument.state ?? "live", tickSz: String(instrument.tick ?? 0.1), lotSz: "0.00000001" };
        }
        const inverse = instrument.ctType === "inverse";
        return {
          instType,
          instId: instrument.instId,
          instFamily: `${base}-${quote}`,
          uly: `${base}-${quote}`,
          baseCcy: "",
          quoteCcy: "",
          settleCcy: inverse ? base : quote,
          ctVal: instrument.ctVal ?? "0.01",
          ctMult: instrument.ctMult ?? "1",
          ctValCcy: inverse ? quote : base,
          ctType: inverse ? "inverse" : "linear",
          state: instrument.state ?? "live",
          tickSz: String(instrument.tick ?? 0.1),
          lotSz: "1",
        };
      });
    return Response.json({ code: "0", msg: "", data });
  }

  /** The next REST book requests get these answers, in order (then the true book again). */
  serveNextBooks(...responses: Array<() => Response>): void {
    this.nextBooks.push(...responses);
  }

  private booksRoute(query: URLSearchParams): Response {
    const fault = this.restFault("/api/v5/market/books");
    if (fault) return fault;
    const scripted = this.nextBooks.shift();
    if (scripted) return scripted();
    const instId = query.get("instId") ?? "";
    const market = this.markets.get(instId);
    if (!market) return Response.json({ code: "51001", msg: "Instrument ID does not exist", data: [] });
    const depth = Math.min(400, Number(query.get("sz") ?? "1") || 1);
    const stale = this.staleSnapshots.get(instId);
    this.staleSnapshots.delete(instId);
    const { bids, asks } = stale ?? market.top(depth);
    const seqId = stale?.seqId ?? market.seqId;
    return Response.json({
      code: "0",
      msg: "",
      data: [{ asks: toWire(asks.slice(0, depth)), bids: toWire(bids.slice(0, depth)), ts: String(Date.now()), seqId }],
    });
  }

  async stop(): Promise<void> {
    clearInterval(this.idleTimer);
    await this.exchange.stop();
  }
}
