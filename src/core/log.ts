/**
 * Logging. Level comes from RUST_LOG (kept for compatibility with existing deployments): a bare level
 * (`error|warn|info|debug|trace`) or the `target=level,...` form, in which case the most verbose level
 * named wins. Secrets must never be passed to the logger: callers log ids and names, never credentials.
 */
import { createConsola, type ConsolaInstance } from "consola";

export type Logger = ConsolaInstance;
export const LOG_LEVELS = ["error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** consola's numeric levels for our names. */
const CONSOLA_LEVEL: Record<LogLevel, number> = { error: 0, warn: 1, info: 3, debug: 4, trace: 5 };

/**
 * Parses a RUST_LOG value. Returns the level, or an error sentence naming the bad token.
 * Accepts `info`, `xtrader=debug`, `warn,xtrader=trace` (most verbose wins), `off` (= error).
 */
export function parseRustLog(value: string): LogLevel | { readonly error: string } {
  let best = -1;
  for (const raw of value.split(",")) {
    const part = raw.trim();
    if (part === "") continue;
    const level = (part.includes("=") ? part.slice(part.indexOf("=") + 1) : part).trim().toLowerCase();
    const index = level === "off" ? 0 : LOG_LEVELS.indexOf(level as LogLevel);
    if (index < 0) {
      return { error: `invalid RUST_LOG level '${level}' in '${value}'; accepted: ${LOG_LEVELS.join(", ")} (or target=level,...)` };
    }
    best = Math.max(best, index);
  }
  return best < 0 ? "info" : LOG_LEVELS[best]!;
}

export function createLogger(level: LogLevel, tag = "xtrader"): Logger {
  return createConsola({ level: CONSOLA_LEVEL[level], defaults: { tag } });
}

/** The process-wide logger; main replaces its level once the configuration is known. */
export const rootLogger: Logger = createLogger("info");

export function setLogLevel(level: LogLevel): void {
  rootLogger.level = CONSOLA_LEVEL[level];
}
