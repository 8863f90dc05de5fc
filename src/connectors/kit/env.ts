/**
 * The one guard for connector tuning variables (windows, periods, limits read from the environment).
 *
 * These variables tune tests, the fault suite and unusual deployments; a value that is not usable falls
 * back to the default. Durations above 2^31-1 ms are refused: a timer that long fires at once
 * (TimeoutOverflowWarning), which turned a "never" max age into a reconnect storm.
 */
type Env = Readonly<Record<string, string | undefined>>;

/** Largest duration a timer accepts. */
export const MAX_TIMER_MS = 2_147_483_647;

/** A positive number up to MAX_TIMER_MS; undefined when unset or empty, NaN when set but unusable. */
export function positiveFromEnv(env: Env, name: string): number | undefined {
  const text = env[name]?.trim();
  if (!text) return undefined;
  const value = Number(text);
  return Number.isFinite(value) && value > 0 && value <= MAX_TIMER_MS ? value : Number.NaN;
}

/** positiveFromEnv with the fallback for unset and unusable values alike. */
export function positiveOr(env: Env, name: string, fallback: number): number {
  const value = positiveFromEnv(env, name);
  return value === undefined || Number.isNaN(value) ? fallback : value;
}

/** positiveFromEnv for a setting the operator chose: an unusable value is logged and the fallback used. */
export function positiveSetting(env: Env, name: string, fallback: number, log: { warn(line: string): void }): number {
  const value = positiveFromEnv(env, name);
  if (value === undefined) return fallback;
  if (Number.isNaN(value)) {
    log.warn(`${name}='${env[name]}' is not a positive number; using ${fallback}`);
    return fallback;
  }
  return value;
}
