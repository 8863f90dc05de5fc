/**
 * A fake Deribit on the FakeVenue base, with Deribit's JSON-RPC 2.0 protocol over WebSocket only
 * (https://docs.deribit.com/articles/notifications):
 * - answers public/set_heartbeat, public/test, public/auth (client_credentials and refresh_token),
 *   public|private/subscribe (result = the channels it subscribed; unknown ones are left out, `raw`
 *   needs an authenticated connection) and public|private/unsubscribe, with `usIn/usOut/usDiff`;
 * - sends a full book snapshot (no `prev_change_id`) right after each book subscription, then changes
 *   whose `prev_change_id` is the previous `change_id` (ids grow by random, non-consecutive steps);
 * - keeps a seeded random market per instrument: the TRUE book and every trade it sent, so tests (and
 *   the end-to-end suite driving the compiled binary) compare output with the truth;
 * - injects faults: skipped, duplicated, reordered, crossing and unreadable book changes, malformed
 *   frames, unanswered test_requests, rate-limit errors that end the session (10028), refused
 *   subscriptions, rejected credentials or refresh tokens (server closes and drops come from the base).
 *
 * Deribit has no REST step in this connector's protocol (snapshots come from resubscribing), so the
 * fake serves no REST routes.
 */
import { TrueBook, nextSequence } from "./fake-market.ts";
import { VenueFake, type FakeConnection } from "./fake-venue.ts";
import { seededRandom } from "./random.ts";

export const WS_PATH = "/ws/api/v2";

export { seededRandom } from "./random.ts";

export type LevelAction = "new" | "change" | "delete";
export type Level = [LevelAction, number, number];

export interface BookChangeData {
  type: "snapshot" | "change";
  timestamp: number;
  instrument_name: string;
  change_id: number;
  prev_change_id?: number;
  bids: Level[];
  asks: Level[];
}

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

export interface Credentials {
  readonly clientId: string;
  readonly clientSecret: string;
}

export interface FakeDeribitOptions {
  readonly seed?: number;
  /** Instruments the fake lists; others are left out of subscribe results. */
  readonly instruments?: readonly string[];
  /** The only credentials public/auth accepts (none: every client_credentials auth is refused). */
  readonly credentials?: Credentials;
  /** expires_in of issued access tokens. */
  readonly tokenLifetimeSeconds?: number;
  /** Price step of the generated books. */
  readonly tick?: number;
}

interface Session {
  authenticated: boolean;
  accessToken: string | undefined;
  refreshToken: string | undefined;
  heartbeatSeconds: number | undefined;
  /** The connection's subscribed channels (its topics). */
  readonly channels: Set<string>;
  /** test_requests sent and not yet answered with public/test. */
  unansweredTestRequests: number;
  testAnswers: number;
}

export interface JsonRpcRequest {
  readonly jsonrpc: string;
  readonly id: number;
  readonly method: string;
  readonly params: Record<string, unknown>;
}

const CHANNEL = /^(trades|book|ticker)\.([^.]+)\.(raw|100ms|agg2)$|^quote\.([^.]+)$/;

/** The kind ("book", "quote", ...) and instrument a channel name carries, if it is one the fake serves. */
function parseChannel(channel: string): { kind: string; instrument: string; interval: string | undefined } | undefined {
  const match = CHANNEL.exec(channel);
  return match ? { kind: match[1] ?? "quote", instrument: match[2] ?? match[4]!, interval: match[3] } : undefined;
}

/** The true state of one instrument's market: keys are prices, sizes amounts. */
export class FakeMarket extends TrueBook<number> {
  changeId: number;
  /** The last change sent (for duplicate injection). */
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

  /** Sorted [price, amount] pairs, best first, to compare with a rebuilt book. */
  truth(): { bids: Array<[number, number]>; asks: Array<[number, number]> } {
    return { bids: this.sorted("bid"), asks: this.sorted("ask") };
  }

  /** One random, never crossing change of 1..4 levels, applied to the truth. */
  randomLevels(): { bids: Level[]; asks: Level[] } {
    const levels = { bids: [] as Level[], asks: [] as Level[] };
    for (const { side, key, size, existed } of this.randomChanges()) {
      (side === "bid" ? levels.bids : levels.asks).push(size === undefined ? ["delete", key, 0] : [existed ? "change" : "new", key, size]);
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
  private readonly options: FakeDeribitOptions;
  /** Milliseconds of the fake's clock: deterministic exchange timestamps. */
  clock = 1_767_225_600_000;
  private tokenCounter = 0;
  /** Refuse every client_credentials auth (as for a revoked key). */
  rejectCredentials = false;
  /** Refuse every refresh_token auth. */
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

  private constructor(options: FakeDeribitOptions) {
    super();
    this.options = options;
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

  /** Resolves once an open connection is subscribed to `channel` (its ack and snapshot sent). */
  async waitForSubscribed(channel: string, timeoutMs = 5000): Promise<FakeConnection> {
    return (await this.exchange.waitForSubscribers(channel, 1, timeoutMs))[0]!;
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

  private fail(connection: FakeConnection, id: number, code: number, message: string, data?: unknown): void {
    this.reply(connection, id, { error: data === undefined ? { code, message } : { code, message, data } });
  }

  protected connectionState(connection: FakeConnection<Session>): Session {
    const session = { authenticated: false, accessToken: undefined, refreshToken: undefined, heartbeatSeconds: undefined };
    return { ...session, channels: connection.topics, unansweredTestRequests: 0, testAnswers: 0 };
  }

  protected onClientFrame(connection: FakeConnection<Session>, text: string): void {
    let request: JsonRpcRequest;
    try {
      request = JSON.parse(text);
    } catch {
      return void connection.send({ jsonrpc: "2.0", error: { code: -32700, message: "Parse error" }, testnet: true });
    }
    const session = connection.state;
    const params = request.params ?? {};
    switch (request.method) {
      case "public/set_heartbeat": {
        const interval = Number(params.interval);
        if (!(interval >= 10)) return this.fail(connection, request.id, -32602, "Invalid params", { reason: "must be >= 10", param: "interval" });
        session.heartbeatSeconds = interval;
        return this.reply(connection, request.id, { result: "ok" });
      }
      case "public/test":
        session.testAnswers++;
        session.unansweredTestRequests = 0;
        return this.reply(connection, request.id, { result: { version: "1.2.26" } });
      case "public/auth":
        return this.onAuth(connection, session, request);
      case "public/subscribe":
      case "private/subscribe":
        return this.onSubscribe(connection, session, request);
      case "public/unsubscribe":
      case "private/unsubscribe": {
        if (request.method.startsWith("private/") && !session.authenticated) return this.fail(connection, request.id, 10000, "authorization_required");
        const channels = Array.isArray(params.channels) ? (params.channels as string[]) : [];
        return this.reply(connection, request.id, { result: channels.filter((channel) => session.channels.delete(channel)) });
      }
      default:
        return this.fail(connection, request.id, -32601, "Method not found");
    }
  }

  private onAuth(connection: FakeConnection, session: Session, request: JsonRpcRequest): void {
    const params = request.params ?? {};
    const grant = String(params.grant_type);
    this.authGrants.push(grant);
    const expected = this.options.credentials;
    if (grant === "client_credentials") {
      const granted = !this.rejectCredentials && params.client_id === expected?.clientId && params.client_secret === expected?.clientSecret;
      if (!granted || expected === undefined) return this.fail(connection, request.id, 13004, "invalid_credentials");
    } else if (grant === "refresh_token") {
      const granted = !this.rejectRefresh && session.refreshToken !== undefined && params.refresh_token === session.refreshToken;
      if (!granted) return this.fail(connection, request.id, 13009, "invalid_token", { reason: "invalid refresh token", param: "refresh_token" });
    } else {
      return this.fail(connection, request.id, -32602, "Invalid params", { reason: "wrong grant type", param: "grant_type" });
    }
    const n = ++this.tokenCounter;
    session.authenticated = true;
    session.accessToken = `fake-access-${n}-${Math.floor(this.random() * 1e9)}`;
    session.refreshToken = `fake-refresh-${n}-${Math.floor(this.random() * 1e9)}`;
    this.issuedTokens.push({ access: session.accessToken, refresh: session.refreshToken });
    const expires_in = this.options.tokenLifetimeSeconds ?? 900;
    const result = { access_token: session.accessToken, expires_in, refresh_token: session.refreshToken, scope: "connection mainaccount", enabled_features: [], token_type: "bearer" };
    this.reply(connection, request.id, { result });
  }

  private onSubscribe(connection: FakeConnection, session: Session, request: JsonRpcRequest): void {
    const channels = request.params?.channels;
    if (!Array.isArray(channels)) return this.fail(connection, request.id, -32602, "Invalid params", { reason: "value must be a list", param: "channels" });
    if (request.method === "private/subscribe" && !session.authenticated) return this.fail(connection, request.id, 10000, "authorization_required");
    if (this.rateLimitNextSubscribe) {
      this.rateLimitNextSubscribe = false;
      this.fail(connection, request.id, 10028, "too_many_requests");
      // Deribit terminates the session once credits run out (https://docs.deribit.com/articles/rate-limits).
      return connection.close(1000, "too_many_requests");
    }
    for (const channel of channels as string[]) {
      const poison = this.poisonedChannels.get(channel);
      if (poison) return this.fail(connection, request.id, poison.code, poison.message, { reason: "bad channel", param: "channels" });
    }
    const accepted = (channels as string[]).filter((channel) => {
      const parsed = parseChannel(channel);
      return parsed !== undefined && this.markets.has(parsed.instrument) && (parsed.interval !== "raw" || session.authenticated);
    });
    this.reply(connection, request.id, { result: accepted });
    for (const channel of accepted) {
      session.channels.add(channel);
      const { kind, instrument } = parseChannel(channel)!;
      if (kind === "book") this.sendSnapshot(connection, channel, this.market(instrument));
    }
  }

  private sendSnapshot(connection: FakeConnection, channel: string, market: FakeMarket): void {
    const { bids, asks } = market.truth();
    const level = ([price, amount]: [number, number]): Level => ["new", price, amount];
    const data: BookChangeData = { type: "snapshot", timestamp: this.tick(), instrument_name: market.instrument, change_id: market.changeId, bids: bids.map(level), asks: asks.map(level) };
    this.snapshotsSent.push(data);
    connection.send(notification(channel, data));
  }

  private tick(): number {
    this.clock += 1 + Math.floor(this.random() * 5);
    return this.clock;
  }

  /** Sends `data` on every subscribed channel of this kind and instrument (any interval). */
  publish(kind: "trades" | "book" | "ticker" | "quote", instrument: string, data: unknown): number {
    const matches = (channel: string) => {
      const parsed = parseChannel(channel);
      return parsed?.kind === kind && parsed.instrument === instrument;
    };
    return this.exchange.push(matches, (channel: string) => notification(channel, data));
  }

  // ── market generator ──

  /** Builds the next change message of `instrument` (applied to the truth unless `levels` is given). */
  nextChange(instrument: string, levels?: { bids: Level[]; asks: Level[] }): BookChangeData {
    const market = this.market(instrument);
    const prev = market.changeId;
    const { bids, asks } = levels ?? market.randomLevels();
    return { type: "change", timestamp: this.tick(), instrument_name: instrument, prev_change_id: prev, change_id: market.nextChangeId(this.random), bids, asks };
  }

  /** Sends a change as the market's last one (undefined `change`: the next random one, applied to the truth). */
  private sendChange(instrument: string, change = this.nextChange(instrument)): BookChangeData {
    this.market(instrument).lastChange = change;
    this.publish("book", instrument, change);
    return change;
  }

  /** One random book change, applied to the truth and sent. */
  bookStep(instrument: string): BookChangeData {
    return this.sendChange(instrument);
  }

  /** Sends trades built from partial specs (defaults around the true book), recording each. */
  sendTrades(instrument: string, specs: ReadonlyArray<Partial<TradeData>>): TradeData[] {
    const market = this.market(instrument);
    const trades = specs.map((spec) => {
      const direction = spec.direction ?? (this.random() < 0.5 ? "buy" : "sell");
      const price = spec.price ?? (direction === "buy" ? market.bestAsk()! : market.bestBid()!);
      const amount = spec.amount ?? market.randomSize();
      const seq = ++market.tradeSeq;
      const trade: TradeData = {
        trade_seq: seq,
        trade_id: `${instrument.split("-")[0]}-${100_000 + seq}`,
        timestamp: this.tick(),
        tick_direction: Math.floor(this.random() * 4),
        price,
        mark_price: price + 0.25,
        index_price: price - 3.5,
        instrument_name: instrument,
        direction,
        amount,
        contracts: amount / 10,
        ...spec,
      };
      market.trades.push(trade);
      return trade;
    });
    this.publish("trades", instrument, trades);
    return trades;
  }

  /** Sends a quote (defaults: the true best levels). */
  sendQuote(instrument: string, fields: Record<string, unknown> = {}): Record<string, unknown> {
    const market = this.market(instrument);
    const [bid, ask] = [market.bestBid(), market.bestAsk()];
    const data = {
      timestamp: this.tick(),
      instrument_name: instrument,
      best_bid_price: bid ?? null,
      best_bid_amount: bid === undefined ? null : market.bids.get(bid),
      best_ask_price: ask ?? null,
      best_ask_amount: ask === undefined ? null : market.asks.get(ask),
      ...fields,
    };
    this.publish("quote", instrument, data);
    return data;
  }

  /** Sends a ticker with the fields Deribit sends for a perpetual (override any). */
  sendTicker(instrument: string, fields: Record<string, unknown> = {}): Record<string, unknown> {
    const market = this.market(instrument);
    const [bid, ask] = [market.bestBid() ?? 0, market.bestAsk() ?? 0];
    const data = {
      timestamp: this.tick(),
      instrument_name: instrument,
      state: "open",
      best_bid_price: bid,
      best_bid_amount: market.bids.get(bid) ?? 0,
      best_ask_price: ask,
      best_ask_amount: market.asks.get(ask) ?? 0,
      last_price: bid,
      mark_price: (bid + ask) / 2,
      index_price: (bid + ask) / 2 - 2.5,
      min_price: bid * 0.97,
      max_price: ask * 1.03,
      open_interest: 502_097_590,
      settlement_price: bid - 10,
      current_funding: 0.00001,
      funding_8h: 0.0000211,
      interest_value: 0.0012,
      estimated_delivery_price: (bid + ask) / 2 - 2.5,
      stats: { high: ask + 100, low: bid - 100, price_change: 0.7229, volume: 7871.02, volume_usd: 284_061_480 },
      ...fields,
    };
    this.publish("ticker", instrument, data);
    return data;
  }

  // ── faults ──

  /** A change applied to the truth but never sent: the next one breaks the change_id chain. */
  skipBookChange(instrument: string): BookChangeData {
    const change = this.nextChange(instrument);
    this.market(instrument).lastChange = change;
    return change;
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
    const second = this.sendChange(instrument);
    this.publish("book", instrument, first);
    return [first, second];
  }

  /** A well-chained change whose new bid is above the best ask (as if updates were lost upstream); not applied to the truth. */
  sendCrossingBookChange(instrument: string): BookChangeData {
    const market = this.market(instrument);
    return this.sendChange(instrument, this.nextChange(instrument, { bids: [["new", market.bestAsk()! + market.tick, 100]], asks: [] }));
  }

  /** A well-chained change with an unreadable level (not applied to the truth). */
  sendUnreadableBookChange(instrument: string): BookChangeData {
    return this.sendChange(instrument, this.nextChange(instrument, { bids: [["new", "abc" as unknown as number, 100]], asks: [] }));
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
      setTimeout(() => {
        if (connection.open && connection.state.unansweredTestRequests > 0) connection.close(1000, "test_request not answered");
      }, deadlineMs);
    }
  }
}

function notification(channel: string, data: unknown) {
  return { jsonrpc: "2.0", method: "subscription", params: { channel, data } };
}
