/**
 * Wires the observability endpoint to a running pipeline: Prometheus registry, readiness rules, event-loop
 * monitor and the HTTP server. Off unless `--metrics-addr` / METRICS_ADDR is given. See
 * docs/observability.md for every metric and both probes.
 */
import type { Registry } from "prom-client";
import type { BoundedChannel } from "../core/channel.ts";
import type { Config } from "../core/config.ts";
import type { ExchangeRegistry } from "../core/connector.ts";
import { UserError } from "../core/errors.ts";
import type { SinkStats } from "../core/stats.ts";
import type { Subscription } from "../core/subscriptions.ts";
import { EventLoopMonitor } from "./event-loop.ts";
import { createMetricsRegistry } from "./metrics.ts";
import { Readiness, STALENESS_ENV, stalenessWindows } from "./readiness.ts";
import { DEFAULT_EVENT_LOOP_LAG_LIMIT_SECONDS, startMetricsServer, type MetricsServer } from "./server.ts";

/** A part outside the pipeline (upload to object storage) that adds metrics and a readiness condition. */
export interface ObservabilityExtension {
  register(registry: Registry): void;
  /** Why the instance is not ready, or undefined when this part is fine. */
  readinessProblem(): string | undefined;
}

export const EVENT_LOOP_LAG_LIMIT_ENV = "XTRADER_EVENT_LOOP_LAG_LIMIT_SECONDS";

export interface ObservedPipeline {
  readonly subscriptions: readonly Subscription[];
  /** The venues, whose declarations hold the default staleness windows. */
  readonly registry: ExchangeRegistry;
  readonly channel: BoundedChannel;
  readonly sinkStats: SinkStats;
}

export interface Observability extends MetricsServer {
  readonly readiness: Readiness;
  readonly eventLoop: EventLoopMonitor;
}

/** XTRADER_EVENT_LOOP_LAG_LIMIT_SECONDS, checked by the CLI before anything starts and read here. */
export function lagLimitSeconds(env: Config["env"]): number {
  const text = env[EVENT_LOOP_LAG_LIMIT_ENV]?.trim();
  if (!text) return DEFAULT_EVENT_LOOP_LAG_LIMIT_SECONDS;
  const seconds = /^\d{1,10}(\.\d{1,6})?$/.test(text) ? Number(text) : Number.NaN;
  if (!(seconds > 0)) {
    throw new UserError(`invalid ${EVENT_LOOP_LAG_LIMIT_ENV} '${text}'; expected a number of seconds > 0, e.g. 5`);
  }
  return seconds;
}

/**
 * Validates the observability settings and starts serving /metrics, /healthz and /readyz; undefined when
 * metrics are off. Throws a UserError for a bad setting or an address it cannot bind.
 */
export function startObservability(
  config: Pick<Config, "metrics" | "sink" | "env">,
  pipeline: ObservedPipeline,
  options: { readonly sinkName?: string; readonly eventLoopWindowMs?: number; readonly extensions?: readonly ObservabilityExtension[] } = {},
): Observability | undefined {
  if (!config.metrics) return undefined;
  const windows = stalenessWindows(pipeline.subscriptions, config.env[STALENESS_ENV], pipeline.registry);
  const limitSeconds = lagLimitSeconds(config.env);
  const sinkName = options.sinkName ?? config.sink;
  const readiness = new Readiness({
    subscriptions: pipeline.subscriptions,
    windows,
    sinkName,
    sinkStats: pipeline.sinkStats,
    extraProblems: () => (options.extensions ?? []).flatMap((extension) => extension.readinessProblem() ?? []),
  });
  const eventLoop = new EventLoopMonitor({ windowMs: options.eventLoopWindowMs });
  const registry = createMetricsRegistry({
    subscriptions: pipeline.subscriptions,
    sinkName,
    sinkStats: pipeline.sinkStats,
    channel: pipeline.channel,
    eventLoop,
    readiness,
  });
  for (const extension of options.extensions ?? []) extension.register(registry);
  const server = startMetricsServer({
    host: config.metrics.host,
    port: config.metrics.port,
    registry,
    readiness,
    eventLoop,
    eventLoopLagLimitSeconds: limitSeconds,
  });
  readiness.start();
  eventLoop.start();
  return {
    ...server,
    readiness,
    eventLoop,
    stop: async () => {
      readiness.stop();
      eventLoop.stop();
      await server.stop();
    },
  };
}
