/**
 * The environment variables read by connectors, the WebSocket base and the observability endpoint, each
 * with its rule, checked before anything connects. Those code paths read their variables when they start
 * (after the sink has started, or only when metrics are on) and could not refuse a bad value then, so they
 * are checked here once; a bad value is a one-line error and exit 2 instead of being ignored.
 *
 * The other variables are checked where they are turned into settings, also before anything connects:
 * flag fallbacks, QuestDB's address and buffer, the queue and shutdown settings in config.ts, the sinks'
 * tuning variables when the sink is created (src/sinks/parquet/settings.ts, src/sinks/questdb/settings.ts).
 * README.md lists every variable; tests/knobs.test.ts checks that each one refuses garbage.
 */
import type { ExchangeRegistry } from "../core/connector.ts";
import type { ExchangeId } from "../core/events.ts";
import { UserError } from "../core/errors.ts";
import type { Subscription } from "../core/subscriptions.ts";
import { endpointEnvName } from "../connectors/endpoints.ts";
import { RESYNC_BACKOFF_ENV } from "../connectors/kit/resync-brake.ts";
import { MAX_FRAME_BYTES_ENV } from "../connectors/websocket.ts";
import { lagLimitSeconds, EVENT_LOOP_LAG_LIMIT_ENV } from "../observability/index.ts";
import { STALENESS_ENV, stalenessWindows } from "../observability/readiness.ts";
import { check, credential, endpointUrl, integer, milliseconds } from "./rules.ts";

type Rule = (text: string) => unknown;

export interface EnvironmentContext {
  readonly exchanges: readonly ExchangeId[];
  readonly subscriptions: readonly Subscription[];
  /** The venues, whose declarations hold the default staleness windows. */
  readonly registry: ExchangeRegistry;
}

/** Venue tuning knobs (see each venue's document), in milliseconds. */
const VENUE_MILLISECONDS: Readonly<Partial<Record<ExchangeId, readonly string[]>>> = {
  BINANCE_FUTURES: ["CONNECTION_MAX_AGE_MS", "STALE_AFTER_MS", "REQUEST_TIMEOUT_MS"],
  BINANCE_SPOT: ["CONNECTION_MAX_AGE_MS", "STALE_AFTER_MS", "REQUEST_TIMEOUT_MS"],
  OKX_SWAP: ["KEEPALIVE_MS", "STALE_MS", "SNAPSHOT_WAIT_MS"],
  OKX_SPOT: ["KEEPALIVE_MS", "STALE_MS", "SNAPSHOT_WAIT_MS"],
  DERIBIT: ["STALE_AFTER_MS"],
};

/** XTRADER_* variables checked in config.ts, where their values become settings. */
const CHECKED_IN_CONFIG = [
  "XTRADER_QUEUE_CAPACITY",
  MAX_FRAME_BYTES_ENV,
  "XTRADER_SHUTDOWN_TIMEOUT_SECONDS",
  "XTRADER_TELEMETRY_INTERVAL_SECONDS",
  "XTRADER_UPLOAD_UNREADY_AFTER_SECONDS",
  "XTRADER_UPLOAD_STOP_WAIT_SECONDS",
];

export function environmentRules(context: EnvironmentContext): ReadonlyMap<string, Rule> {
  const rules = new Map<string, Rule>();
  const add = (name: string, rule: Rule) => rules.set(name, rule);
  add("XTRADER_RECONNECT_MIN_MS", (text) => check(milliseconds("XTRADER_RECONNECT_MIN_MS"), text));
  add("XTRADER_RECONNECT_MAX_MS", (text) => check(milliseconds("XTRADER_RECONNECT_MAX_MS"), text));
  add(RESYNC_BACKOFF_ENV.min, (text) => check(milliseconds(RESYNC_BACKOFF_ENV.min), text));
  add(RESYNC_BACKOFF_ENV.max, (text) => check(milliseconds(RESYNC_BACKOFF_ENV.max), text));
  for (const exchange of context.exchanges) {
    const ws = endpointEnvName(exchange, "WS");
    const rest = endpointEnvName(exchange, "REST");
    add(ws, (text) => check(endpointUrl(ws, ["ws:", "wss:"]), text));
    add(rest, (text) => check(endpointUrl(rest, ["http:", "https:"]), text));
    for (const suffix of VENUE_MILLISECONDS[exchange] ?? []) {
      const name = `XTRADER_${exchange}_${suffix}`;
      add(name, (text) => check(milliseconds(name), text));
    }
  }
  // Binance (futures and spot): "A single connection can listen to a maximum of 1024 streams."
  for (const streamsPerConnection of ["XTRADER_BINANCE_FUTURES_STREAMS_PER_CONNECTION", "XTRADER_BINANCE_SPOT_STREAMS_PER_CONNECTION"]) {
    add(streamsPerConnection, (text) => check(integer(streamsPerConnection, 1, 1024), text));
  }
  add("DERIBIT_CLIENT_ID", (text) => check(credential("DERIBIT_CLIENT_ID"), text));
  add("DERIBIT_CLIENT_SECRET", (text) => check(credential("DERIBIT_CLIENT_SECRET"), text));
  add(STALENESS_ENV, (text) => stalenessWindows(context.subscriptions, text, context.registry));
  add(EVENT_LOOP_LAG_LIMIT_ENV, (text) => lagLimitSeconds({ [EVENT_LOOP_LAG_LIMIT_ENV]: text }));
  return rules;
}

/**
 * Checks every variable of `environmentRules` that is set (a blank value counts as unset, as everywhere).
 * Returns warnings for XTRADER_* variables xtrader does not know: a misspelt knob would otherwise be
 * ignored without a word.
 */
export function checkEnvironment(env: Readonly<Record<string, string | undefined>>, context: EnvironmentContext): string[] {
  const rules = environmentRules(context);
  for (const [name, rule] of rules) {
    const text = env[name];
    if (text !== undefined && text.trim() !== "") rule(text);
  }
  const min = env.XTRADER_RECONNECT_MIN_MS?.trim();
  const max = env.XTRADER_RECONNECT_MAX_MS?.trim();
  if (min && max && Number(min) > Number(max)) {
    throw new UserError(
      `XTRADER_RECONNECT_MIN_MS '${min}' is above XTRADER_RECONNECT_MAX_MS '${max}'; the first reconnect delay cannot exceed the cap`,
    );
  }
  const resyncMin = env[RESYNC_BACKOFF_ENV.min]?.trim();
  const resyncMax = env[RESYNC_BACKOFF_ENV.max]?.trim();
  if (resyncMin && resyncMax && Number(resyncMin) > Number(resyncMax)) {
    throw new UserError(
      `${RESYNC_BACKOFF_ENV.min} '${resyncMin}' is above ${RESYNC_BACKOFF_ENV.max} '${resyncMax}'; the first held-back resync cannot wait longer than the cap`,
    );
  }
  const unknown = Object.keys(env).filter(
    (name) => name.startsWith("XTRADER_") && !rules.has(name) && !CHECKED_IN_CONFIG.includes(name) && env[name]?.trim(),
  );
  return unknown.map((name) => `unknown variable ${name} ignored; the variables are listed in README.md`);
}
