/**
 * The validated runtime configuration (built by src/cli/config.ts from flags, environment and .env): only
 * the pieces every part shares. A venue's own settings (credentials, network) are read from `env` by its
 * declaration (ExchangeSpec.checkSettings, then the venue itself), and a sink's by the sink
 * (src/sinks/index.ts), so that core names no venue and no sink.
 */
import type { LogLevel } from "./log.ts";
import type { Subscription } from "./subscriptions.ts";

export interface Config {
  readonly subscriptions: readonly Subscription[];
  /** The selected sink's name (src/sinks/index.ts lists them). */
  readonly sink: string;
  readonly outputDirectory: string;
  readonly verbose: boolean;
  /** Stop after this many seconds; undefined = run until SIGINT/SIGTERM. */
  readonly shutdownAfterSeconds: number | undefined;
  readonly logLevel: LogLevel;
  readonly logFormat: "text" | "json";
  /** Where to serve /metrics, /healthz and /readyz; undefined = off. */
  readonly metrics: { readonly host: string; readonly port: number } | undefined;
  /** Bound of the connector→sink channel, in rows (one per L2 level). */
  readonly queueCapacityRows: number;
  /** Largest WebSocket message accepted; a larger one closes its connection (XTRADER_MAX_FRAME_BYTES). */
  readonly maxFrameBytes: number;
  /** The merged environment (.env under the real one) for settings owned by connectors and sinks. */
  readonly env: Readonly<Record<string, string | undefined>>;
}
