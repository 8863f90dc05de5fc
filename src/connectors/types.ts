/**
 * The contract between the core and an exchange connector. One file per exchange exports an
 * `ExchangeSpec` (its declarative header: streams, instrument rule) and the connector it creates.
 */
import type { Config } from "../core/config.ts";
import type { ExchangeId, GapReason, MarketEvent, Stream } from "../core/events.ts";
import type { Logger } from "../core/log.ts";
import type { Subscription } from "../core/subscriptions.ts";

/**
 * Who counts what (SubscriptionStats): the pipeline's `emit` counts `events`, `gaps` (gap events) and the
 * lag histogram; connectors count `messages` and `lastMessageAt` (per exchange message routed to the
 * subscription), `reconnects`, `resyncs` (fresh snapshot requested) and `parseErrors`.
 */
export interface ConnectorContext {
  /** Hands one normalized event to the pipeline, attributed to the subscription it belongs to. */
  readonly emit: (subscription: Subscription, event: MarketEvent) => void;
  readonly log: Logger;
  readonly config: Config;
}

export interface Connector {
  /** Starts connecting in the background; connection faults are handled inside, never thrown. */
  start(): void;
  /** Closes every socket and timer; no event is emitted after this resolves. */
  stop(): Promise<void>;
  /**
   * Forgets the local book of an L2 subscription, emits a gap marker and then a fresh snapshot before
   * any further delta. Called by the pipeline when it had to drop events of that book.
   */
  resync(subscription: Subscription, reason: GapReason, detail: string): void;
}

export type InstrumentResult = { readonly native: string } | { readonly error: string };

export interface ExchangeSpec {
  readonly id: ExchangeId;
  readonly streams: readonly Stream[];
  /**
   * Maps an instrument as written (`BTCUSDT`, or the venue's native id) to the venue's native id, or an
   * error sentence saying what is accepted. Purely syntactic: venues that need their instrument list
   * resolve further when the connector starts.
   */
  nativeInstrument(symbol: string): InstrumentResult;
  create(context: ConnectorContext, subscriptions: readonly Subscription[]): Connector;
}
