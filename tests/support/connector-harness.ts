/**
 * Runs one exchange connector in-process against a fake exchange, collecting what it emits.
 * Used by every connector's tests; the end-to-end tests run the compiled binary instead.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildConfig } from "../../src/cli/config.ts";
import { EXCHANGE_REGISTRY } from "../../src/connectors/index.ts";
import type { Connector } from "../../src/core/connector.ts";
import type { Config } from "../../src/core/config.ts";
import type { EventType, MarketEvent } from "../../src/core/events.ts";
import { createLogger, type LogLevel } from "../../src/core/log.ts";
import type { Subscription } from "../../src/core/subscriptions.ts";
import { OrderBook } from "../../src/core/order-book.ts";
import { waitUntil } from "./fake-venue.ts";

export interface Emitted {
  readonly subscription: Subscription;
  readonly event: MarketEvent;
}

export interface ConnectorHarness {
  readonly connector: Connector;
  readonly config: Config;
  readonly subscriptions: readonly Subscription[];
  readonly emitted: Emitted[];
  /** Log lines (level + message) the connector wrote, for asserting warnings and secret hygiene. */
  readonly logs: string[];
  events<T extends EventType>(type: T, symbol?: string): Extract<MarketEvent, { type: T }>[];
  waitForEvents<T extends EventType>(
    type: T,
    count: number,
    timeoutMs?: number,
    symbol?: string,
  ): Promise<Extract<MarketEvent, { type: T }>[]>;
  waitFor<T>(check: () => T | undefined | false, timeoutMs?: number, what?: string): Promise<T>;
  stop(): Promise<void>;
}

/**
 * Creates (and starts) the connector for `subscriptions` (all on one exchange) with `env` as the whole
 * environment: point XTRADER_<EXCHANGE>_WS_URL / _REST_URL at the fake exchange there.
 */
export function startConnector(
  subscriptions: string,
  env: Record<string, string>,
  options: { logLevel?: LogLevel; start?: boolean } = {},
): ConnectorHarness {
  const outputDirectory = mkdtempSync(join(tmpdir(), "xtrader-connector-"));
  const { config } = buildConfig(
    { subscriptions, "output-directory": outputDirectory },
    // Fast reconnects and a light resync brake keep fault tests short; the brake still runs (tests/kit).
    {
      XTRADER_RECONNECT_MIN_MS: "50",
      XTRADER_RECONNECT_MAX_MS: "200",
      XTRADER_RESYNC_BACKOFF_MIN_MS: "1",
      XTRADER_RESYNC_BACKOFF_MAX_MS: "20",
      ...env,
    },
  );
  const emitted: Emitted[] = [];
  const logs: string[] = [];
  const log = createLogger(options.logLevel ?? "trace");
  log.setReporters([
    { log: (entry) => logs.push(`${entry.type}: ${entry.args.map((arg) => String(arg)).join(" ")}`) },
  ]);
  const exchanges = new Set(config.subscriptions.map((subscription) => subscription.exchange));
  if (exchanges.size !== 1) throw new Error("startConnector takes subscriptions of one exchange");
  const [exchange] = exchanges;
  const listeners: Array<() => void> = [];
  const notifier = { listen: (listener: () => void) => listeners.push(listener) };
  const connector = EXCHANGE_REGISTRY[exchange!].create(
    {
      emit: (subscription, event) => {
        emitted.push({ subscription, event });
        subscription.stats.events++;
        for (const listener of listeners.splice(0)) listener();
      },
      log,
      config,
    },
    config.subscriptions,
  );
  const events = <T extends EventType>(type: T, symbol?: string) =>
    emitted
      .map((entry) => entry.event)
      .filter((event) => event.type === type && (symbol === undefined || event.symbol === symbol)) as Extract<
      MarketEvent,
      { type: T }
    >[];
  if (options.start !== false) connector.start();
  return {
    connector,
    config,
    subscriptions: config.subscriptions,
    emitted,
    logs,
    events,
    waitForEvents: (type, count, timeoutMs = 5000, symbol) =>
      waitUntil(
        () => {
          const found = events(type, symbol);
          return found.length >= count ? found : undefined;
        },
        timeoutMs,
        notifier,
        `${count} ${type} events`,
      ),
    waitFor: (check, timeoutMs = 5000, what = "condition") => waitUntil(check, timeoutMs, notifier, what),
    stop: () => connector.stop(),
  };
}

/** Rebuilds a book from emitted L2 events (snapshots reset, deltas apply), as a consumer of the files would. */
export function rebuildBook(events: readonly MarketEvent[], symbol?: string): OrderBook {
  const book = new OrderBook();
  for (const event of events) {
    if (event.type !== "book_change" || (symbol !== undefined && event.symbol !== symbol)) continue;
    book.apply(event.bids, event.asks, event.isSnapshot);
  }
  return book;
}
