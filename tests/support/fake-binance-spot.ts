/**
 * A fake Binance spot venue: the futures fake (fake-binance.ts: SUBSCRIBE wire, combined frames, REST
 * snapshot with weight header, seeded true books, faults) with spot's documented differences only
 * (https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams):
 * - one host for every stream (`/stream` combined, `/ws` raw): no routed paths;
 * - update ids per symbol and consecutive (an event's `U` is the previous `u` + 1), and no `pu`;
 * - depthUpdate without a transaction time `T`; bookTicker without `e`, `E` or `T`; raw `@trade` frames
 *   (`t` the trade id) instead of `@aggTrade`;
 * - REST `GET /api/v3/depth` (weights 5/25/50/250 by limit) and `/api/v3/exchangeInfo`, the body without any time;
 * - 5 incoming messages per second per connection; a `serverShutdown` notice before a close.
 */
import { FakeBinanceFutures, type AggTradeFrame, type FakeBinanceOptions, type FakeMarket, type Level } from "./fake-binance.ts";
import type { RecordedRequest } from "./fake-venue.ts";

export interface SpotTradeFrame { e: "trade"; E: number; s: string; t: number; p: string; q: string; T: number; m: boolean; M: boolean }
export interface SpotDepthFrame { e: "depthUpdate"; E: number; s: string; U: number; u: number; b: Level[]; a: Level[] }

const FIRST_UPDATE_ID = 1_000_000;

export class FakeBinanceSpot extends FakeBinanceFutures {
  private constructor(options: FakeBinanceOptions) {
    super(options, {
      restPrefix: "/api/v3",
      incomingMessageLimit: 5,
      // Order book weights (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints).
      depthWeight: (limit) => (limit <= 100 ? 5 : limit <= 500 ? 25 : limit <= 1000 ? 50 : 250),
      carries: () => true,
    });
  }

  static override start(options: FakeBinanceOptions = {}): FakeBinanceSpot {
    return new FakeBinanceSpot(options);
  }

  override get env(): Record<string, string> {
    return { XTRADER_BINANCE_SPOT_WS_URL: this.exchange.wsUrl(), XTRADER_BINANCE_SPOT_REST_URL: this.exchange.httpUrl };
  }

  /** Per symbol and consecutive: the next event of a market starts right after the previous one's `u`. */
  override nextUpdateId(market?: FakeMarket): number {
    const last = market?.lastUpdateId ?? 0;
    return last === 0 ? FIRST_UPDATE_ID : last + 1;
  }

  /** Payloads in spot's shapes: depth without `pu`/`T`, bookTicker without `e`/`E`/`T`. */
  override publish(stream: string, payload: unknown): number {
    return super.publish(stream, spotPayload(payload));
  }

  /** A raw trade on `<symbol>@trade` (recorded in the market's trades with `a` = its `t`). */
  override trade(symbol = "BTCUSDT", overrides: Partial<AggTradeFrame> = {}): AggTradeFrame {
    const market = this.market(symbol);
    const frame = market.tradeFrame(this.random, overrides);
    const raw: SpotTradeFrame = { e: "trade", E: frame.E, s: frame.s, t: frame.a, p: frame.p, q: frame.q, T: frame.T, m: frame.m, M: true };
    market.trades.push({ frame, delivered: super.publish(`${market.lowerSymbol}@trade`, raw) });
    return frame;
  }

  /** The `serverShutdown` notice (laid out as the WebSocket API's connection event) on every open connection. */
  serverShutdown(): void {
    this.sendRaw(JSON.stringify({ event: { e: "serverShutdown", E: Date.now() } }));
  }

  /** The spot snapshot body is `{lastUpdateId, bids, asks}`: no time. */
  protected override depth(request: RecordedRequest): { status?: number; body: unknown; headers: Record<string, string> } {
    const reply = super.depth(request);
    const body = reply.body as { E?: number; T?: number } & Record<string, unknown>;
    if (reply.status === undefined) {
      delete body.E;
      delete body.T;
    }
    return reply;
  }
}

function spotPayload(payload: unknown): unknown {
  const frame = payload as Record<string, unknown> | null;
  if (frame === null || typeof frame !== "object") return payload;
  if (frame.e === "depthUpdate") {
    const { pu: _pu, T: _T, ...spot } = frame;
    return spot;
  }
  if (frame.e === "bookTicker") {
    const { e: _e, E: _E, T: _T, ...spot } = frame;
    return spot;
  }
  return payload;
}
