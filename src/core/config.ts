/** The validated runtime configuration (built by src/cli/config.ts from flags, environment and .env). */
import type { LogLevel } from "./log.ts";
import type { Subscription } from "./subscriptions.ts";

export const SINKS = ["parquet", "questdb"] as const;
export type SinkName = (typeof SINKS)[number];

export interface DeribitCredentials {
  readonly clientId: string;
  readonly clientSecret: string;
}

export interface ParquetSettings {
  /** New file at every multiple of this many seconds since the epoch (UTC boundaries). */
  readonly rotateIntervalSeconds: number;
  readonly maxFileRows: number;
  readonly maxFileBytes: number;
  readonly compression: "zstd" | "snappy" | "none";
}

export interface QuestDbSettings {
  readonly host: string;
  readonly ilpPort: number;
  readonly httpPort: number;
  /** The client's own configuration string (QDB_CLIENT_CONF), overriding host and port when set. */
  readonly clientConf: string | undefined;
  /** Bound on rows buffered while QuestDB is unreachable, in bytes of encoded lines. */
  readonly bufferMaxBytes: number;
}

export interface Config {
  readonly subscriptions: readonly Subscription[];
  readonly sink: SinkName;
  readonly outputDirectory: string;
  readonly verbose: boolean;
  /** Stop after this many seconds; undefined = run until SIGINT/SIGTERM. */
  readonly shutdownAfterSeconds: number | undefined;
  readonly logLevel: LogLevel;
  readonly logFormat: "text" | "json";
  /** Where to serve /metrics, /healthz and /readyz; undefined = off. */
  readonly metrics: { readonly host: string; readonly port: number } | undefined;
  readonly deribit: { readonly useTestnet: boolean; readonly credentials: DeribitCredentials | undefined };
  readonly questdb: QuestDbSettings;
  readonly parquet: ParquetSettings;
  /** Bound of the connector→sink channel, in rows (one per L2 level). */
  readonly queueCapacityRows: number;
  /** Largest WebSocket message accepted; a larger one closes its connection (XTRADER_MAX_FRAME_BYTES). */
  readonly maxFrameBytes: number;
  /** The merged environment (.env under the real one) for settings owned by connectors and sinks. */
  readonly env: Readonly<Record<string, string | undefined>>;
}
