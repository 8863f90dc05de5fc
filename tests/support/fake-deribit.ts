/**
 * A fake Deribit on the VenueFake base: Deribit's JSON-RPC 2.0 protocol over WebSocket
 * (https://docs.deribit.com/articles/notifications) and its market's wire shapes, nothing else:
 * - public/set_heartbeat, public/test, public/auth (client_credentials, refresh_token), public|private/
 *   subscribe (result = the channels subscribed; unknown ones are left out, `raw` needs an authenticated
 *   connection) and public|private/unsubscribe, answered with `usIn/usOut/usDiff`;
 * - a full book snapshot (no `prev_change_id`) right after each book subscription, then changes whose
 *   `prev_change_id` is the previous `change_id` (ids grow by random, non-consecutive steps);
 * - faults: skipped, duplicated, reordered, crossing and unreadable book changes, unanswered test_requests,
 *   rate-limit errors that end the session (10028), refused subscriptions, rejected credentials or tokens.
 * Snapshots come from resubscribing (no REST step in this connector's protocol), so no REST routes.
 */
import { TrueBook, nextSequence, type BookSide } from "./fake-market.ts";
import { VenueFake, type FakeConnection } from "./fake-venue.ts";
import { seededRandom } from "./random.ts";

export { seededRandom } from "./random.ts";

export const WS_PATH = "/ws/api/v2";
export type LevelAction = "new" | "change" | "delete";
export type Level = [LevelAction, number, number];
type Sides = { bids: Level[]; asks: Level[] };
export type BookChangeData = Sides & { type: "snapshot" | "change"; timestamp: number; instrument_name: string; change_id: number; prev_change_id?: number };
export interface TradeData {
  trade_seq: number;
  trade_id: string;
  timestamp: number;
  tick_direction: number;
  price: number;
  mark_price: number;
  index_price: number;
  instrument_name: string;
  direction: "buy" | "sell";
  amount: number;
  contracts: number;
  liquidation?: "M" | "T" | "MT";
}
export interface JsonRpcRequest {
  readonly jsonrpc: string;
  readonly id: number;
  readonly method: string;
  readonly params: Record<string, unknown>;
}

export interface FakeDeribitOptions {
  readonly seed?: number;
  /** Instruments the fake lists; others are left out of subscribe results. */
  readonly instruments?: readonly string[];
  /** The only credentials public/auth accepts (none: every client_credentials auth is refused). */
  readonly credentials?: { readonly clientId: string; readonly clientSecret: string };
  /** expires_in of issued access tokens. */
  readonly tokenLifetimeSeconds?: number;
  /** Price step of the generated books. */
  readonly tick?: number;
}

interface Session {
  authenticated: boolean;
  refreshToken: string | undefined;
  heartbeatSeconds: number | undefined;
  /** The connection's subscribed channels (its topics). */
  readonly channels: Set<string>;
  /** test_requests sent and not yet answered with public/test. */
  unansweredTestRequests: number;
  testAnswers: number;
}

const CHANNEL = /^(trades|book|ticker)\.([^.]+)\.(raw|100ms|agg2)$|^quote\.([^.]+)$/;

/** The kind ("book", "quote", ...), instrument and interval of a channel the fake serves. */
function parseChannel(channel: string): { kind: string; instrument: string; interval: string | undefined } | undefined {
  const match = CHANNEL.exec(channel);
  return match ? { kind: match[1] ?? "quote", instrument: match[2] ?? match[4]!, interval: match[3] } : undefined;
}

/** The true state of one instrument's market: keys are prices, sizes amounts. */
export class FakeMarket extends TrueBook<number> {
  changeId: number;
  /** The last change generated, sent or not (for duplicate injection). */
  lastChange: BookChangeData | undefined;
  readonly trades: TradeData[] = [];
  tradeSeq = 0;

  constructor(
    readonly instrument: string,
    readonly tick: number,
    random: () => number,
    startPrice: number,
  ) {
    super(random, { step: tick, reach: 25, size: (r) => 10 * (1 + Math.floor(r() * 500)) });
    this.changeId = 1_000_000 + Math.floor(random() * 1000);
    this.fill(startPrice, 20);
  }

  /** One random, never crossing change of 1..4 levels, applied to the truth. */
  randomLevels(): Sides {
    const levels: Sides = { bids: [], asks: [] };
    for (const { side, key, size, existed } of this.randomChanges()) {
      levels[side === "bid" ? "bids" : "asks"].push(size === undefined ? ["delete", key, 0] : [existed ? "change" : "new", key, size]);
    }
    return levels;
  }

  apply(isBid: boolean, [action, price, amount]: Level): void {
    this.set(isBid ? "bid" : "ask", price, action === "delete" ? undefined : amount);
  }

  /** Deribit's change ids grow but are not consecutive. */
  nextChangeId(random: () => number): number {
    return (this.changeId = nextSequence(this.changeId, random, 7));
  }
}

export class FakeDeribit extends VenueFake<Session, FakeMarket> {
  readonly random: () => number;
  /** Milliseconds of the fake's clock: deterministic exchange timestamps. */
  clock = 1_767_225_600_000;
  private tokenCounter = 0;
  /** Refuse every client_credentials auth (as for a revoked key) / every refresh_token auth. */
  rejectCredentials = false;
  rejectRefresh = false;
  /** Answer the next subscribe with 10028 too_many_requests and end the session, as Deribit does. */
  rateLimitNextSubscribe = false;
  /** Channels whose presence makes a whole subscribe request fail with this error. */
  readonly poisonedChannels = new Map<string, { code: number; message: string }>();
  /** Every auth grant received, in order (never the secret itself). */
  readonly authGrants: string[] = [];
  /** Every book snapshot sent, in order. */
  readonly snapshotsSent: BookChangeData[] = [];
  /** Every token pair issued, in order. */
  readonly issuedTokens: Array<{ readonly access: string; readonly refresh: string }> = [];

  private constructor(private readonly options: FakeDeribitOptions) {
    super();
    this.random = seededRandom(options.seed ?? 1);
    const instruments = options.instruments ?? ["BTC-PERPETUAL", "ETH-PERPETUAL", "BTC-27JUN26-100000-C", "SOL_USDC-PERPETUAL"];
    for (const [index, instrument] of instruments.entries()) {
      const start = instrument.startsWith("ETH") ? 3000 : instrument.startsWith("SOL") ? 150 : 60_000 + index;
      this.markets.set(instrument, new FakeMarket(instrument, options.tick ?? 0.5, this.random, start));
    }
  }

  static start(options: FakeDeribitOptions = {}): FakeDeribit {
    return new FakeDeribit(options);
  }

  get wsUrl(): string {
    return this.exchange.wsUrl(WS_PATH);
  }

  /** Environment pointing the connector here (plus `extra`). */
  env(extra: Record<string, string> = {}): Record<string, string> {
    return { XTRADER_DERIBIT_WS_URL: this.wsUrl, ...extra };
  }

  session(connection: FakeConnection): Session {
    return (connection as FakeConnection<Session>).state;
  }

  /** Every JSON-RPC request received (on any connection), optionally of one method. */
  requests(method?: string): JsonRpcRequest[] {
    return this.exchange.receivedJson((message: JsonRpcRequest) => method === undefined || message.method === method);
  }

  /** Resolves once `count` requests of `method` were received. */
  waitForRequests(method: string, count: number, timeoutMs = 5000): Promise<JsonRpcRequest[]> {
    return this.exchange.waitForReceived((message: JsonRpcRequest) => message.method === method, count, timeoutMs, `${method} request(s)`);
  }

  // ── protocol ──

  private reply(connection: FakeConnection, id: number, body: { result: unknown } | { error: unknown }): void {
    const usIn = this.clock * 1000;
    connection.send({ jsonrpc: "2.0", id, ...body, usIn, usOut: usIn + 42, usDiff: 42, testnet: true });
  }

  private fail(connection: FakeConnection, id: number, code: number, message: string, data?: { reason: string; param: string }): void {
    this.reply(connection, id, { error: data === undefined ? { code, message } : { code, message, data } });
  }

  protected connectionState(connection: FakeConnection<Session>): Session {
    return { authenticated: false, refreshToken: undefined, heartbeatSeconds: undefined, channels: connection.topics, unansweredTestRequests: 0, testAnswers: 0 };
  }

  protected onClientFrame(connection: FakeConnection<Session>, text: string): void {
    const request = this.parse<JsonRpcRequest>(connection, text, { jsonrpc: "2.0", error: { code: -32700, message: "Parse error" }, testnet: true });
    if (!request) return;
    const [session, params, id] = [connection.state, request.params ?? {}, request.id];
    const channels = Array.isArray(params.channels) ? (params.channels as string[]) : undefined;
    const privateDenied = String(request.method).startsWith("private/") && !session.authenticated;
    switch (request.method) {
      case "public/set_heartbeat": {
        const interval = Number(params.interval);
        if (!(interval >= 10)) return this.fail(connection, id, -32602, "Invalid params", { reason: "must be >= 10", param: "interval" });
        session.heartbeatSeconds = interval;
        return this.reply(connection, id, { result: "ok" });
      }
      case "public/test":
        session.testAnswers++;
        session.unansweredTestRequests = 0;
        return this.reply(connection, id, { result: { version: "1.2.26" } });
      case "public/auth":
        return this.onAuth(connection, session, id, params);
      case "public/subscribe":
      case "private/subscribe":
        if (!channels) return this.fail(connection, id, -32602, "Invalid params", { reason: "value must be a list", param: "channels" });
        if (privateDenied) return this.fail(connection, id, 10000, "authorization_required");
        return this.onSubscribe(connection, session, id, channels);
      case "public/unsubscribe":
      case "private/unsubscribe":
        if (privateDenied) return this.fail(connection, id, 10000, "authorization_required");
        return this.reply(connection, id, { result: (channels ?? []).filter((channel) => session.channels.delete(channel)) });
      default:
        return this.fail(connection, id, -32601, "Method not found");
    }
  }

  private onAuth(connection: FakeConnection, session: Session, id: number, params: Record<string, unknown>): void {
    const grant = String(params.grant_type);
    this.authGrants.push(grant);
    const expected = this.options.credentials;
    if (grant === "client_credentials") {
      const granted = !this.rejectCredentials && expected !== undefined && params.client_id === expected.clientId && params.client_secret === expected.clientSecret;
      if (!granted) return this.fail(connection, id, 13004, "invalid_credentials");
    } else if (grant === "refresh_token") {
      const granted = !this.rejectRefresh && session.refreshToken !== undefined && params.refresh_token === session.refreshToken;
      if (!granted) return this.fail(connection, id, 13009, "invalid_token", { reason: "invalid refresh token", param: "refresh_token" });
    } else {
      return this.fail(connection, id, -32602, "Invalid params", { reason: "wrong grant type", param: "grant_type" });
    }
    const n = ++this.tokenCounter;
    const [access, refresh] = [`fake-access-${n}-${Math.floor(this.random() * 1e9)}`, `fake-refresh-${n}-${Math.floor(this.random() * 1e9)}`];
    [session.authenticated, session.refreshToken] = [true, refresh];
    this.issuedTokens.push({ access, refresh });
    const expires_in = this.options.tokenLifetimeSeconds ?? 900;
    const result = { access_token: access, expires_in, refresh_token: refresh, scope: "connection mainaccount", enabled_features: [], token_type: "bearer" };
    this.reply(connection, id, { result });
  }

  private onSubscribe(connection: FakeConnection, session: Session, id: number, channels: string[]): void {
    if (this.rateLimitNextSubscribe) {
      this.rateLimitNextSubscribe = false;
      this.fail(connection, id, 10028, "too_many_requests");
      // Deribit terminates the session once credits run out (https://docs.deribit.com/articles/rate-limits).
      return connection.close(1000, "too_many_requests");
    }
    const poison = channels.map((channel) => this.poisonedChannels.get(channel)).find((found) => found !== undefined);
    if (poison) return this.fail(connection, id, poison.code, poison.message, { reason: "bad channel", param: "channels" });
    const accepted = channels.filter((channel) => {
      const parsed = parseChannel(channel);
      return parsed !== undefined && this.markets.has(parsed.instrument) && (parsed.interval !== "raw" || session.authenticated);
    });
    this.reply(connection, id, { result: accepted });
    for (const channel of accepted) {
      session.channels.add(channel);
      const { kind, instrument } = parseChannel(channel)!;
      if (kind !== "book") continue;
      const market = this.market(instrument);
      const { bids, asks } = market.truth();
      const level = ([price, amount]: [number, number]): Level => ["new", price, amount];
      const data: BookChangeData = { type: "snapshot", timestamp: this.tick(), instrument_name: instrument, change_id: market.changeId, bids: bids.map(level), asks: asks.map(level) };
      this.snapshotsSent.push(data);
      connection.send(notification(channel, data));
    }
  }

  private tick(): number {
    this.clock += 1 + Math.floor(this.random() * 5);
    return this.clock;
  }

  /** Sends `data` on every subscribed channel of this kind and instrument (any interval). */
  publish(kind: "trades" | "book" | "ticker" | "quote", instrument: string, data: unknown): number {
    const matches = (channel: string) => parseChannel(channel)?.kind === kind && parseChannel(channel)?.instrument === instrument;
    return this.exchange.push(matches, (channel: string) => notification(channel, data));
  }

  // ── market data ──

  /** Builds the next change message of `instrument` (applied to the truth unless `levels` is given). */
  nextChange(instrument: string, levels?: Sides): BookChangeData {
    const market = this.market(instrument);
    const prev_change_id = market.changeId;
    const { bids, asks } = levels ?? market.randomLevels();
    return { type: "change", timestamp: this.tick(), instrument_name: instrument, prev_change_id, change_id: market.nextChangeId(this.random), bids, asks };
  }

  /** Makes `change` (default: the next random one) the market's last, and sends it unless `send` is false. */
  private change(instrument: string, change = this.nextChange(instrument), send = true): BookChangeData {
    this.market(instrument).lastChange = change;
    if (send) this.publish("book", instrument, change);
    return change;
  }

  /** One random book change, applied to the truth and sent. */
  bookStep(instrument: string): BookChangeData {
    return this.change(instrument);
  }

  /** Sends trades built from partial specs (defaults around the true book), recording each. */
  sendTrades(instrument: string, specs: ReadonlyArray<Partial<TradeData>>): TradeData[] {
    const market = this.market(instrument);
    const trades = specs.map((spec): TradeData => {
      const direction = spec.direction ?? (this.random() < 0.5 ? "buy" : "sell");
      const price = spec.price ?? (direction === "buy" ? market.bestAsk()! : market.bestBid()!);
      const [amount, seq] = [spec.amount ?? market.randomSize(), ++market.tradeSeq];
      const [trade_id, timestamp, tick_direction] = [`${instrument.split("-")[0]}-${100_000 + seq}`, this.tick(), Math.floor(this.random() * 4)];
      const prices = { price, mark_price: price + 0.25, index_price: price - 3.5 };
      return { trade_seq: seq, trade_id, timestamp, tick_direction, ...prices, instrument_name: instrument, direction, amount, contracts: amount / 10, ...spec };
    });
    market.trades.push(...trades);
    this.publish("trades", instrument, trades);
    return trades;
  }

  /** The best level of a side as [price, amount] (defaults for an empty side). */
  private best(market: FakeMarket, side: BookSide, empty: number | null): [number | null, number | null] {
    const price = side === "bid" ? market.bestBid() : market.bestAsk();
    return price === undefined ? [empty, empty] : [price, market.side(side).get(price)!];
  }

  /** Sends a quote (defaults: the true best levels). */
  sendQuote(instrument: string, fields: Record<string, unknown> = {}): Record<string, unknown> {
    const market = this.market(instrument);
    const [[best_bid_price, best_bid_amount], [best_ask_price, best_ask_amount]] = [this.best(market, "bid", null), this.best(market, "ask", null)];
    const data = { timestamp: this.tick(), instrument_name: instrument, best_bid_price, best_bid_amount, best_ask_price, best_ask_amount, ...fields };
    this.publish("quote", instrument, data);
    return data;
  }

  /** Sends a ticker with the fields Deribit sends for a perpetual (override any). */
  sendTicker(instrument: string, fields: Record<string, unknown> = {}): Record<string, unknown> {
    const market = this.market(instrument);
    const [[bid, best_bid_amount], [ask, best_ask_amount]] = [this.best(market, "bid", 0), this.best(market, "ask", 0)] as Array<[number, number]>;
    const [mid, stats] = [(bid! + ask!) / 2, { high: ask! + 100, low: bid! - 100, price_change: 0.7229, volume: 7871.02, volume_usd: 284_061_480 }];
    const data = {
      ...{ timestamp: this.tick(), instrument_name: instrument, state: "open", best_bid_price: bid, best_bid_amount, best_ask_price: ask, best_ask_amount },
      ...{ last_price: bid, mark_price: mid, index_price: mid - 2.5, min_price: bid! * 0.97, max_price: ask! * 1.03, open_interest: 502_097_590 },
      ...{ settlement_price: bid! - 10, current_funding: 0.00001, funding_8h: 0.0000211, interest_value: 0.0012, estimated_delivery_price: mid - 2.5, stats },
      ...fields,
    };
    this.publish("ticker", instrument, data);
    return data;
  }

  // ── faults ──

  /** A change applied to the truth but never sent: the next one breaks the change_id chain. */
  skipBookChange(instrument: string): BookChangeData {
    return this.change(instrument, undefined, false);
  }

  /** Sends the last change again (a duplicate). */
  resendLastBookChange(instrument: string): BookChangeData {
    const change = this.market(instrument).lastChange;
    if (!change) throw new Error("no change sent yet");
    this.publish("book", instrument, change);
    return change;
  }

  /** Two changes applied to the truth, sent in the wrong order. */
  sendReorderedBookChanges(instrument: string): [BookChangeData, BookChangeData] {
    const first = this.nextChange(instrument);
    const second = this.change(instrument);
    this.publish("book", instrument, first);
    return [first, second];
  }

  /** A well-chained change whose new bid is above the best ask (as if updates were lost upstream); not applied to the truth. */
  sendCrossingBookChange(instrument: string): BookChangeData {
    const market = this.market(instrument);
    return this.change(instrument, this.nextChange(instrument, { bids: [["new", market.bestAsk()! + market.tick, 100]], asks: [] }));
  }

  /** A well-chained change with an unreadable level (not applied to the truth). */
  sendUnreadableBookChange(instrument: string): BookChangeData {
    return this.change(instrument, this.nextChange(instrument, { bids: [["new", "abc" as unknown as number, 100]], asks: [] }));
  }

  /** A `heartbeat` message of type `heartbeat` (no answer needed). */
  sendHeartbeat(): void {
    this.exchange.broadcast({ jsonrpc: "2.0", method: "heartbeat", params: { type: "heartbeat" } });
  }

  /** A `test_request` on every open connection; like Deribit, one not answered with public/test within `deadlineMs` is closed. */
  sendTestRequest(deadlineMs = 2000): void {
    for (const connection of this.exchange.openConnections()) {
      connection.state.unansweredTestRequests++;
      connection.send({ jsonrpc: "2.0", method: "heartbeat", params: { type: "test_request" } });
      setTimeout(() => connection.state.unansweredTestRequests > 0 && connection.close(1000, "test_request not answered"), deadlineMs);
    }
  }
}

function notification(channel: string, data: unknown) {
  return { jsonrpc: "2.0", method: "subscription", params: { channel, data } };
}
