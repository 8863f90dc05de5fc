/**
 * Bounded backoff on repeated resyncs of one book, shared by every venue that rebuilds books from
 * snapshots.
 *
 * A book that keeps failing to sync (a REST snapshot that is stale every time because the venue's REST
 * cache lags its stream, a book that crosses after every snapshot) would otherwise fetch snapshot after
 * snapshot as fast as the venue answers: thousands in seconds, which Binance answers with HTTP 429 and
 * then a 418 ban of the whole IP (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits).
 * The first few resyncs of a streak go at once (an ordinary gap heals without delay); later ones wait
 * exponentially longer, up to a cap, so a book in such a loop costs at most a handful of snapshots a
 * minute. A streak ends once the book has gone `calmAfterMs` without a resync.
 */
import { positiveOr } from "./env.ts";

export interface ResyncBrakeOptions {
  /** Resyncs of a streak that go at once. */
  readonly freeResyncs: number;
  /** Delay of the first braked resync; each later one doubles it. */
  readonly initialMs: number;
  readonly maxMs: number;
  /** A book this long without a resync starts a new streak. */
  readonly calmAfterMs: number;
}

export const RESYNC_BRAKE: ResyncBrakeOptions = { freeResyncs: 3, initialMs: 1_000, maxMs: 60_000, calmAfterMs: 60_000 };

/** Variables that tighten or loosen the brake (tests, unusual deployments); checked in cli/environment.ts. */
export const RESYNC_BACKOFF_ENV = { min: "XTRADER_RESYNC_BACKOFF_MIN_MS", max: "XTRADER_RESYNC_BACKOFF_MAX_MS" } as const;

export function resyncBrakeFromEnv(env: Readonly<Record<string, string | undefined>>): ResyncBrakeOptions {
  const initialMs = positiveOr(env, RESYNC_BACKOFF_ENV.min, RESYNC_BRAKE.initialMs);
  const maxMs = Math.max(initialMs, positiveOr(env, RESYNC_BACKOFF_ENV.max, RESYNC_BRAKE.maxMs));
  return { ...RESYNC_BRAKE, initialMs, maxMs, calmAfterMs: Math.max(maxMs, RESYNC_BRAKE.calmAfterMs) };
}

export class ResyncBrake {
  private streak = 0;
  /** When the last resync of the streak was (or will be) carried out. */
  private lastAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly options: ResyncBrakeOptions = RESYNC_BRAKE,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Resyncs in the current streak, this one included once `next` was called. */
  get count(): number {
    return this.streak;
  }

  /** Registers a resync; returns how long (ms) to wait before fetching its snapshot (0: at once). */
  next(): number {
    const now = this.now();
    if (now - this.lastAt >= this.options.calmAfterMs) this.streak = 0;
    const braked = this.streak - this.options.freeResyncs;
    this.streak++;
    const delay = braked < 0 ? 0 : Math.min(this.options.maxMs, this.options.initialMs * 2 ** braked);
    this.lastAt = now + delay;
    return delay;
  }
}
