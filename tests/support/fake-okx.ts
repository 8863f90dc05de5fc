/**
 * A fake OKX (public WebSocket /ws/v5/public + the REST routes a collector uses) on the FakeVenue base,
 * with OKX's protocol only (https://www.okx.com/docs-v5/en/#overview-websocket): subscribe/unsubscribe
 * acks and `event: error` refusals (echoing the request id), text ping/pong, the `books` channel with
 * seqId/prevSeqId (and optionally real checksums), bbo-tbt, trades, funding-rate, mark-price,
 * liquidation-orders, notices, GET /api/v5/public/instruments and GET /api/v5/market/books.
 *
 * A seeded random market keeps the TRUE book of each instrument and every trade sent, so tests (and the
 * end-to-end fault suite running the compiled binary) compare output with the truth. Faults: sequence
 * gaps, duplicated/reordered updates, crossed updates, corrupt checksums, maintenance seqId resets,
 * malformed frames, closes with OKX codes, silence, REST failures.
 */
import { crc32 } from "node:zlib";
import { TrueBook, nextSequence, type BookSide } from "./fake-market.ts";
import { VenueFake, type FakeConnection, type RestReply } from "./fake-venue.ts";
import { seededRandom } from "./random.ts";

export { seededRandom } from "./random.ts";

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

export type SentTrade = { readonly instId: string; readonly tradeId: string; readonly px: string; readonly sz: string; readonly side: "buy" | "sell"; readonly ts: string };

type BookData = { asks: string[][]; bids: string[][]; ts: string; checksum: number; prevSeqId: number; seqId: number };
export interface BookUpdateFrame {
  readonly arg: { channel: "books"; instId: string };
  readonly action: "snapshot" | "update";
  readonly data: [BookData];
}

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

type Changes = { bids: FakeLevel[]; asks: FakeLevel[] };

/** Keys are tick indexes (price = index × tick), sizes the size strings exactly as sent. */
export class FakeMarket extends TrueBook<string> {
  readonly trades: SentTrade[] = [];
  seqId: number;
  /** The top of book last pushed on bbo-tbt (pushed again only when it changes). */
  lastTopSent = "";
  /** Book frames sent, in order (what the client could have seen). */
  readonly sentBooks: BookUpdateFrame[] = [];
  /** Armed faults of the next update: never sent; held and sent after the one following it; a wrong checksum; this seqId. */
  drop = false;
  hold: BookUpdateFrame | "next" | undefined;
  corrupt = false;
  resetTo: number | undefined;
  private nextTradeId: number;
  private readonly tick: number;
  private readonly priceDecimals: number;

  constructor(
    readonly instrument: FakeOkxInstrument,
    random: () => number,
  ) {
    const sizeDecimals = instrument.sizeDecimals ?? 3;
    // Trailing zeros kept on purpose: the checksum is over the strings exactly as sent.
    const size = (r: () => number) => (10 ** -sizeDecimals + r() * 5).toFixed(sizeDecimals);
    super(random, { step: 1, reach: instrument.depth ?? 20, size, numbers: (index, sz) => [Number(this.price(index)), Number(sz)] });
    this.tick = instrument.tick ?? 0.1;
    this.priceDecimals = instrument.priceDecimals ?? 1;
    this.seqId = 1_000_000 + Math.floor(random() * 1_000_000);
    this.nextTradeId = 100_000_000 + Math.floor(random() * 1_000_000);
    this.fill(Math.round((instrument.mid ?? 50_000) / this.tick), instrument.depth ?? 20, 0.8);
  }

  get instId(): string {
    return this.instrument.instId;
  }

  /** The tick index between the best bid and the best ask (the first fill's mid when the book is empty). */
  get mid(): number {
    const [bid, ask] = [this.bestBid(), this.bestAsk()];
    return Math.floor(((bid ?? (ask ?? this.anchor + 1) - 1) + (ask ?? (bid ?? this.anchor - 1) + 1)) / 2);
  }

  price(index: number): string {
    return (index * this.tick).toFixed(this.priceDecimals);
  }

  level(index: number, size: string): FakeLevel {
    return [this.price(index), size];
  }

  /** The top `depth` levels per side as sent strings, best first. */
  top(depth = 400): Changes {
    const levels = (side: BookSide) => this.sorted(side, depth).map(([index, size]) => this.level(index, size));
    return { bids: levels("bid"), asks: levels("ask") };
  }

  checksum(): number {
    const { bids, asks } = this.top(25);
    return referenceChecksum(bids, asks);
  }

  /** Sets levels by tick index in the truth (size "0" removes); returns them as one update sends them (a price once). */
  applyToTruth(changes: Array<{ side: BookSide; key: number; size: string | undefined }>): Changes {
    const last = new Map<string, FakeLevel>();
    for (const { side, key, size } of changes) {
      const removed = size === undefined || Number(size) === 0;
      this.set(side, key, removed ? undefined : size);
      last.set(`${side} ${key}`, this.level(key, removed ? "0" : size));
    }
    const of = (side: BookSide) => [...last].filter(([id]) => id.startsWith(side)).map(([, level]) => level);
    return { bids: of("bid"), asks: of("ask") };
  }

  newTradeId(): string {
    return String((this.nextTradeId = nextSequence(this.nextTradeId, this.random, 3)));
  }

  /** seqId may jump by more than one. */
  nextSeqId(): number {
    return (this.seqId = nextSequence(this.seqId, this.random, 4));
  }
}

const toWire = (levels: readonly FakeLevel[]): string[][] => levels.map(([px, sz]) => [px, sz, "0", "1"]);

export class FakeOkx extends VenueFake<{ connId: string }, FakeMarket> {
  wsSnapshot: boolean;
  checksums: boolean;
  rejectWholeBatch: boolean;
  /** instIds whose subscriptions the venue refuses (60018), even though listed. */
  readonly refused = new Set<string>();
  private readonly random: () => number;
  private readonly staleSnapshots = new Map<string, Changes & { seqId: number }>();

  private constructor(readonly options: FakeOkxOptions) {
    super();
    [this.wsSnapshot, this.checksums, this.rejectWholeBatch] = [options.wsSnapshot ?? true, options.checksums ?? false, options.rejectWholeBatch ?? false];
    this.random = seededRandom(options.seed ?? 1);
    for (const instrument of options.instruments) {
      if (!instrument.listedOnly) this.markets.set(instrument.instId, new FakeMarket(instrument, this.random));
    }
    this.exchange.rest("GET", "/api/v5/public/instruments", (request) => this.instrumentsRoute(request.query));
    this.exchange.rest("GET", "/api/v5/market/books", (request) => this.booksRoute(request.query));
    // OKX closes a connection that saw no frame for 30 s (https://www.okx.com/docs-v5/en/#overview-websocket-connect).
    if (options.idleCloseMs !== undefined) this.exchange.closeIdle(options.idleCloseMs, 4004, "No data received in 30s");
  }

  static start(options: FakeOkxOptions): FakeOkx {
    return new FakeOkx(options);
  }

  /** Environment pointing a connector at this fake. */
  env(exchange: "OKX_SWAP" | "OKX_SPOT"): Record<string, string> {
    return { [`XTRADER_${exchange}_WS_URL`]: this.exchange.wsUrl("/ws/v5/public"), [`XTRADER_${exchange}_REST_URL`]: this.exchange.httpUrl };
  }

  /** Open connections subscribed to a channel argument (`books|BTC-USDT`, `liquidation-orders|SWAP`). */
  subscribers(channel: string, key: string): FakeConnection[] {
    return this.exchange.subscribers(`${channel}|${key}`);
  }

  /** Resolves once some open connection is subscribed to the argument (after its ack was sent). */
  waitForSubscriber(channel: string, key: string, timeoutMs = 5000): Promise<FakeConnection> {
    return this.waitForSubscribed(`${channel}|${key}`, timeoutMs);
  }

  /** Every JSON frame the clients sent with this op (subscribe/unsubscribe), across connections. */
  clientOps(op: string): Array<{ id?: string; op: string; args: Array<Record<string, string>> }> {
    return this.exchange.receivedJson((frame: { id?: string; op: string; args: Array<Record<string, string>> }) => frame.op === op);
  }

  // ── client frames ──

  /** Pushes a frame to the subscribers of a channel argument (`books|BTC-USDT`, `liquidation-orders|SWAP`); returns it. */
  private broadcast<F>(channel: string, key: string, frame: F): F {
    this.exchange.push(`${channel}|${key}`, frame);
    return frame;
  }

  protected connectionState(): { connId: string } {
    return { connId: Math.floor(this.random() * 0xffffffff).toString(16).padStart(8, "0") };
  }

  protected onClientFrame(connection: FakeConnection<{ connId: string }>, text: string): void {
    const connId = connection.state.connId;
    if (text === "ping") return void connection.send("pong");
    const request = this.parse<{ id?: string; op?: string; args?: Array<Record<string, string>> }>(connection, text, { event: "error", code: "60012", msg: `Invalid request: ${text}`, connId });
    if (!request) return;
    const id = request.id;
    const reply = (message: Record<string, unknown>) => connection.send(id === undefined ? { ...message, connId } : { id, ...message, connId });
    if (request.op === "subscribe" && Array.isArray(request.args)) {
      const invalid = request.args.filter((arg) => this.refusal(arg) !== undefined);
      if (invalid.length > 0 && this.rejectWholeBatch) return void reply({ event: "error", code: "60018", msg: this.refusal(invalid[0]!) });
      for (const arg of request.args) {
        const refusal = this.refusal(arg);
        if (refusal !== undefined) {
          reply({ event: "error", code: "60018", msg: refusal });
          continue;
        }
        const key = arg.instId ?? arg.instType!;
        connection.topics.add(`${arg.channel}|${key}`);
        reply({ event: "subscribe", arg });
        this.initialPush(connection, arg.channel!, key);
      }
    } else if (request.op === "unsubscribe" && Array.isArray(request.args)) {
      for (const arg of request.args) {
        connection.topics.delete(`${arg.channel}|${arg.instId ?? arg.instType}`);
        reply({ event: "unsubscribe", arg });
      }
    } else {
      reply({ event: "error", code: "60019", msg: `Invalid op: ${String(request.op)}` });
    }
  }

  private refusal(arg: Record<string, string>): string | undefined {
    const channel = arg.channel;
    const key = arg.instId ?? arg.instType;
    const doesNotExist = `Wrong URL or channel:${channel},${arg.instId ? `instId:${arg.instId}` : `instType:${arg.instType}`} doesn't exist. Please use the correct URL, channel and parameters referring to API document.`;
    if (channel === "liquidation-orders") return arg.instType === "SWAP" ? undefined : doesNotExist;
    if (!["books", "trades", "bbo-tbt", "funding-rate", "mark-price"].includes(channel ?? "")) return doesNotExist;
    if (!key || !this.markets.has(key) || this.refused.has(key)) return doesNotExist;
    if ((channel === "funding-rate" || channel === "mark-price") && !key.endsWith("-SWAP")) return doesNotExist;
    return undefined;
  }

  private initialPush(connection: FakeConnection, channel: string, key: string): void {
    const market = this.markets.get(key);
    if (!market) return;
    if (channel === "books" && this.wsSnapshot) {
      const { bids, asks } = market.top(400);
      const data = { asks: toWire(asks), bids: toWire(bids), ts: String(Date.now()), checksum: this.checksums ? market.checksum() : 0, prevSeqId: -1, seqId: market.seqId };
      const frame: BookUpdateFrame = { arg: { channel: "books", instId: key }, action: "snapshot", data: [data] };
      market.sentBooks.push(frame);
      connection.send(frame);
    }
    if (channel === "bbo-tbt") connection.send(this.bboFrame(market));
  }

  // ── market data ──

  private bboFrame(market: FakeMarket) {
    const { bids, asks } = market.top(1);
    return { arg: { channel: "bbo-tbt", instId: market.instId }, data: [{ asks: toWire(asks), bids: toWire(bids), ts: String(Date.now()), seqId: market.seqId }] };
  }

  private bookFrame(market: FakeMarket, changes: Changes, checksum: number, prevSeqId: number, seqId: number): BookUpdateFrame {
    const data = { asks: toWire(changes.asks), bids: toWire(changes.bids), ts: String(Date.now()), checksum, prevSeqId, seqId };
    return { arg: { channel: "books", instId: market.instId }, action: "update", data: [data] };
  }

  private sendBook(market: FakeMarket, frame: BookUpdateFrame): void {
    market.sentBooks.push(frame);
    this.broadcast("books", market.instId, frame);
  }

  /** Sends one book update of `changes` (already applied to the truth), then bbo-tbt when the top changed. Honours armed faults. */
  private publishBook(market: FakeMarket, changes: Changes, options: { checksum?: number } = {}): BookUpdateFrame {
    const prevSeqId = market.seqId;
    const seqId = market.resetTo === undefined ? market.nextSeqId() : (market.seqId = market.resetTo);
    const checksum = options.checksum ?? (this.checksums ? market.checksum() : 0);
    const frame = this.bookFrame(market, changes, market.corrupt ? (checksum ^ 0x5a5a5a5a) | 0 || 1 : checksum, prevSeqId, seqId);
    [market.resetTo, market.corrupt] = [undefined, false];
    if (market.drop) return ((market.drop = false), frame);
    const held = market.hold;
    market.hold = held === "next" ? frame : undefined;
    if (held === "next") return frame;
    this.sendBook(market, frame);
    if (held) this.sendBook(market, held);
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
      this.publishBook(market, market.applyToTruth(market.randomChanges()));
      if (random() < tradeProbability) this.sendTrade(instId, {});
    }
  }

  /** One explicit update: levels by tick index (size "0" removes), applied to the truth and sent. */
  sendBookUpdate(instId: string, changes: { bids?: Array<[number, string]>; asks?: Array<[number, string]> }, options: { checksum?: number } = {}): BookUpdateFrame {
    const market = this.market(instId);
    const levels = (side: BookSide, levels: Array<[number, string]> = []) => levels.map(([key, size]) => ({ side, key, size }));
    return this.publishBook(market, market.applyToTruth([...levels("bid", changes.bids), ...levels("ask", changes.asks)]), options);
  }

  /** OKX's idle heartbeat: no levels, seqId == prevSeqId. */
  heartbeat(instId: string): BookUpdateFrame {
    const market = this.market(instId);
    const frame = this.bookFrame(market, { bids: [], asks: [] }, this.checksums ? market.checksum() : 0, market.seqId, market.seqId);
    this.sendBook(market, frame);
    return frame;
  }

  sendTrade(instId: string, trade: { px?: string; sz?: string; side?: "buy" | "sell"; ts?: string }): SentTrade {
    const market = this.market(instId);
    const side = trade.side ?? (market.seqId % 2 === 0 ? "buy" : "sell");
    const bestIndex = side === "buy" ? market.bestAsk() : market.bestBid();
    const tradeId = market.newTradeId();
    const px = trade.px ?? market.price(bestIndex ?? market.mid);
    const sent: SentTrade = { instId, tradeId, px, sz: trade.sz ?? market.randomSize(), side, ts: trade.ts ?? String(Date.now()) };
    market.trades.push(sent);
    const data = [{ instId, tradeId, px, sz: sent.sz, side, ts: sent.ts, count: "1", source: "0", seqId: market.seqId }];
    this.broadcast("trades", instId, { arg: { channel: "trades", instId }, data });
    return sent;
  }

  sendBbo(instId: string, bid: FakeLevel | undefined, ask: FakeLevel | undefined, ts = String(Date.now())) {
    const data = [{ asks: ask ? toWire([ask]) : [], bids: bid ? toWire([bid]) : [], ts, seqId: this.market(instId).seqId }];
    return this.broadcast("bbo-tbt", instId, { arg: { channel: "bbo-tbt", instId }, data });
  }

  sendFundingRate(instId: string, fields: { fundingRate: string; fundingTime: string; nextFundingTime: string; ts: string }) {
    const { fundingRate, fundingTime, nextFundingTime, ts } = fields;
    const data = {
      ...{ formulaType: "noRate", fundingRate, fundingTime, impactValue: "", instId, instType: "SWAP", interestRate: "", method: "current_period" },
      ...{ maxFundingRate: "0.00375", minFundingRate: "-0.00375", nextFundingRate: "", nextFundingTime, premium: "0.0001233824646391" },
      ...{ settFundingRate: "0.0001699799259033", settState: "settled", ts },
    };
    return this.broadcast("funding-rate", instId, { arg: { channel: "funding-rate", instId }, data: [data] });
  }

  sendMarkPrice(instId: string, markPx: string, ts: string) {
    return this.broadcast("mark-price", instId, { arg: { channel: "mark-price", instId }, data: [{ instType: "SWAP", instId, markPx, ts }] });
  }

  /** One liquidation-orders push (to every SWAP liquidation subscriber) for `instId`. */
  sendLiquidation(instId: string, details: Array<{ side: string; posSide: string; bkPx: string; sz: string; ts: string }>) {
    const family = instId.replace(/-SWAP$/, "");
    const data = { details: details.map((detail) => ({ bkLoss: "0", ccy: "", ...detail })), instFamily: family, instId, instType: "SWAP", uly: family };
    return this.broadcast("liquidation-orders", "SWAP", { arg: { channel: "liquidation-orders", instType: "SWAP" }, data: [data] });
  }

  // ── faults ──

  /** The next update changes the truth and advances seqId but is never sent: a sequence gap. */
  dropNextUpdate(instId: string): void {
    this.market(instId).drop = true;
  }

  /** Sends the last book frame again, verbatim. */
  duplicateLastUpdate(instId: string): void {
    const last = this.market(instId).sentBooks.at(-1);
    if (!last) throw new Error("nothing sent yet");
    this.broadcast("books", instId, last);
  }

  /** The next two updates are sent in swapped order. */
  reorderNextTwo(instId: string): void {
    this.market(instId).hold = "next";
  }

  /** A well-sequenced update whose bid crosses the best ask, NOT applied to the truth (a venue glitch). */
  sendCrossedUpdate(instId: string): BookUpdateFrame {
    const market = this.market(instId);
    return this.publishBook(market, { bids: [market.level((market.bestAsk() ?? market.mid + 1) + 1, "1.000")], asks: [] });
  }

  /** An update in the chain carrying these raw level strings, NOT applied to the truth (a corrupt frame). */
  sendRawLevelUpdate(instId: string, levels: { bids?: FakeLevel[]; asks?: FakeLevel[] }): BookUpdateFrame {
    return this.publishBook(this.market(instId), { bids: levels.bids ?? [], asks: levels.asks ?? [] });
  }

  /** The next update carries a wrong non-zero checksum. */
  corruptNextChecksum(instId: string): void {
    this.market(instId).corrupt = true;
  }

  /** Maintenance: the next update carries seqId `to` (below prevSeqId); the chain continues from it. */
  resetSequence(instId: string, to: number): void {
    this.market(instId).resetTo = to;
  }

  /** OKX's notice before a service upgrade closes the connection. */
  sendUpgradeNotice(): void {
    const msg = "The connection will soon be closed for a service upgrade. Please reconnect.";
    for (const connection of this.exchange.openConnections()) connection.send({ event: "notice", code: "64008", msg, connId: connection.state.connId });
  }

  /** The next responses of a REST path fail with these HTTP statuses, in order. */
  failRest(path: "/api/v5/market/books" | "/api/v5/public/instruments", statuses: number[]): void {
    const body = (status: number) =>
      status === 429
        ? { code: "50011", msg: "Too Many Requests", data: [] }
        : status >= 500
          ? { code: "50001", msg: "Service temporarily unavailable. Please try again later.", data: [] }
          : { code: "50000", msg: `HTTP ${status}`, data: [] };
    this.exchange.replyNext(path, ...statuses.map((status): RestReply => ({ status, body: body(status) })));
  }

  /** The next REST book response for `instId` is the book as it is now (older by then). */
  serveStaleSnapshotNext(instId: string): void {
    this.serveSnapshotWithSeqIdNext(instId, this.market(instId).seqId);
  }

  /** The next REST book response for `instId` is the book as it is now, with this seqId (a wrong one). */
  serveSnapshotWithSeqIdNext(instId: string, seqId: number): void {
    this.staleSnapshots.set(instId, { ...this.market(instId).top(400), seqId });
  }

  /** The next REST book requests get these answers, in order (then the true book again). */
  serveNextBooks(...responses: Array<() => Response>): void {
    this.exchange.replyNext("/api/v5/market/books", ...responses);
  }

  // ── REST ──

  private instrumentsRoute(query: URLSearchParams): RestReply {
    const instType = query.get("instType");
    const data = this.options.instruments
      .filter((instrument) => (instrument.instId.endsWith("-SWAP") ? "SWAP" : "SPOT") === instType)
      .map((instrument) => {
        const [base, quote] = instrument.instId.split("-");
        const [instId, state, tickSz] = [instrument.instId, instrument.state ?? "live", String(instrument.tick ?? 0.1)];
        if (instType === "SPOT") return { instType, instId, baseCcy: base, quoteCcy: quote, ctVal: "", ctMult: "", ctValCcy: "", ctType: "", state, tickSz, lotSz: "0.00000001" };
        const inverse = instrument.ctType === "inverse";
        const [ctVal, ctMult] = [instrument.ctVal ?? "0.01", instrument.ctMult ?? "1"];
        const [settleCcy, ctValCcy, ctType] = inverse ? [base, quote, "inverse"] : [quote, base, "linear"];
        return { instType, instId, instFamily: `${base}-${quote}`, uly: `${base}-${quote}`, baseCcy: "", quoteCcy: "", settleCcy, ctVal, ctMult, ctValCcy, ctType, state, tickSz, lotSz: "1" };
      });
    return { body: { code: "0", msg: "", data } };
  }

  private booksRoute(query: URLSearchParams): RestReply {
    const instId = query.get("instId") ?? "";
    const market = this.markets.get(instId);
    if (!market) return { body: { code: "51001", msg: "Instrument ID does not exist", data: [] } };
    const depth = Math.min(400, Number(query.get("sz") ?? "1") || 1);
    const stale = this.staleSnapshots.get(instId);
    this.staleSnapshots.delete(instId);
    const { bids, asks } = stale ?? market.top(depth);
    const data = [{ asks: toWire(asks.slice(0, depth)), bids: toWire(bids.slice(0, depth)), ts: String(Date.now()), seqId: stale?.seqId ?? market.seqId }];
    return { body: { code: "0", msg: "", data } };
  }
}
