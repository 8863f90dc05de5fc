/**
 * The contract between the core and an exchange connector. It lives in core so that core depends on no
 * venue: each venue's file (src/connectors/) exports an `ExchangeSpec` (its declarative header: streams,
 * instrument rule) and the connector it creates, and the registry (src/connectors/index.ts) lists them.
 */
import type { Config } from "./config.ts";
import type { ExchangeId, GapReason, MarketEvent, Stream } from "./events.ts";
import type { Logger } from "./log.ts";
import type { InstrumentResult, InstrumentRule, Subscription } from "./subscriptions.ts";

export type { InstrumentResult };

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

/**
 * How long a healthy subscription of each stream may go without a message before /readyz reports it, in
 * seconds (undefined = not checked): a venue's own, since how often it pushes is its own.
 * XTRADER_STALENESS_WINDOWS overrides them (src/observability/readiness.ts).
 */
export type ReadinessWindows = Readonly<Record<Stream, number | undefined>>;

/** Every venue by id (src/connectors/index.ts). */
export type ExchangeRegistry = Readonly<Record<ExchangeId, ExchangeSpec>>;

export interface ExchangeSpec extends InstrumentRule {
  readonly id: ExchangeId;
  /**
   * Checks the venue's own settings in the (merged) environment, e.g. credentials, when it has any: a bad
   * value is a UserError. Called by the CLI before anything connects, `inUse` false when no subscription
   * names the venue; the connector reads the same settings from `config.env` when it is created.
   */
  readonly checkSettings?: (env: Config["env"], inUse: boolean) => void;
  readonly readinessWindows: ReadinessWindows;
  create(context: ConnectorContext, subscriptions: readonly Subscription[]): Connector;
}
