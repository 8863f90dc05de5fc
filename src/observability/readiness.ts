/**
 * /readyz: every subscription has received data within its staleness window, and the sink is writable.
 *
 * Staleness windows (seconds since the last exchange message routed to the subscription, i.e.
 * `SubscriptionStats.lastMessageAt`, set by connectors for data and for a venue's per-channel heartbeat
 * pushes; connection-level pings do not count). The defaults are each venue's, per stream
 * (`ExchangeSpec.readinessWindows` in its declaration), chosen so that a healthy quiet instrument does
 * not flap; a stream a venue does not check (liquidations) is reported but never makes the collector
 * unready.
 * XTRADER_STALENESS_WINDOWS overrides them: `STREAM=SECONDS` or `STREAM:EXCHANGE@INSTRUMENT=SECONDS`
 * entries, comma-separated, `off` to disable; the per-subscription entry wins over the stream entry.
 * A subscription that has not received any message yet is not ready.
 *
 * The sink is writable when both hold (from SinkStats, which every sink and the pipeline update):
 *   - no outage is open (`outageSince === 0`: the destination is reachable), and
 *   - no write/flush error was counted (`errors` rose) after the last successful flush (`flushes` rose).
 * The counters are sampled every second and at every probe; an error and a flush seen in the same
 * sample count as "error last", so only a later clean flush clears it.
 */
import { nowMicros } from "../core/clock.ts";
import { UserError } from "../core/errors.ts";
import type { ReadinessWindows } from "../core/connector.ts";
import { STREAMS, type ExchangeId, type Stream } from "../core/events.ts";
import type { SinkStats } from "../core/stats.ts";
import type { Subscription } from "../core/subscriptions.ts";

/** What readiness asks of the registry (src/connectors/index.ts): each venue's default windows. */
export type VenueWindows = Readonly<Record<ExchangeId, { readonly readinessWindows: ReadinessWindows }>>;

export const STALENESS_ENV = "XTRADER_STALENESS_WINDOWS";

/**
 * Each subscription's window (seconds, undefined = off) from its venue's defaults (`venues`, the
 * registry) and XTRADER_STALENESS_WINDOWS. Throws a UserError naming the bad entry.
 */
export function stalenessWindows(
  subscriptions: readonly Subscription[],
  text: string | undefined,
  venues: VenueWindows,
): Map<Subscription, number | undefined> {
  const byStream = new Map<Stream, number | undefined>();
  const byKey = new Map<string, number | undefined>();
  const keys = new Set(subscriptions.map((subscription) => subscription.key));
  for (const rawEntry of (text ?? "").split(",")) {
    const entry = rawEntry.trim();
    if (entry === "") continue;
    const equals = entry.lastIndexOf("=");
    const target = entry.slice(0, Math.max(0, equals)).trim().toUpperCase().replace(/\s+/g, "");
    const valueText = entry.slice(equals + 1).trim().toLowerCase();
    const bad = (why: string) =>
      new UserError(
        `invalid ${STALENESS_ENV} entry '${entry}': ${why}; expected STREAM=SECONDS or STREAM:EXCHANGE@INSTRUMENT=SECONDS (seconds > 0, or off), e.g. TRADES=300,LIQUIDATIONS=off`,
      );
    if (equals <= 0) throw bad("missing '='");
    let seconds: number | undefined;
    if (valueText !== "off") {
      seconds = /^\d+(\.\d+)?$/.test(valueText) ? Number(valueText) : Number.NaN;
      if (!(seconds > 0)) throw bad(`'${valueText}' is not a number of seconds > 0`);
    }
    if ((STREAMS as readonly string[]).includes(target)) {
      byStream.set(target as Stream, seconds);
    } else if (target.includes(":") && target.includes("@")) {
      if (!keys.has(target)) throw bad(`'${target}' is not one of the subscriptions (${[...keys].join(", ")})`);
      byKey.set(target, seconds);
    } else {
      throw bad(`unknown stream '${target}' (streams: ${STREAMS.join(", ")})`);
    }
  }
  const windows = new Map<Subscription, number | undefined>();
  for (const subscription of subscriptions) {
    const window = byKey.has(subscription.key)
      ? byKey.get(subscription.key)
      : byStream.has(subscription.stream)
        ? byStream.get(subscription.stream)
        : venues[subscription.exchange]?.readinessWindows[subscription.stream];
    windows.set(subscription, window);
  }
  return windows;
}

/** Tracks whether the sink is writable, by the rule in the module comment. */
export class SinkWritability {
  private seenErrors: number;
  private seenFlushes: number;
  /** An error was counted and no clean flush has followed it. */
  private errorPending = false;

  constructor(private readonly stats: SinkStats) {
    this.seenErrors = stats.errors;
    this.seenFlushes = stats.flushes;
  }

  /** Reads the counters; call regularly (a timer) and before every decision. */
  sample(): void {
    const errorsRose = this.stats.errors > this.seenErrors;
    const flushesRose = this.stats.flushes > this.seenFlushes;
    if (errorsRose) this.errorPending = true;
    else if (flushesRose) this.errorPending = false;
    this.seenErrors = this.stats.errors;
    this.seenFlushes = this.stats.flushes;
  }

  /** Why the sink is not writable, or undefined when it is. */
  problem(): string | undefined {
    this.sample();
    if (this.stats.outageSince > 0) {
      return `destination unreachable for ${this.stats.outageSeconds().toFixed(1)} s (rows are buffered: ${this.stats.bufferedRows})`;
    }
    if (this.errorPending) return `write/flush errors (${this.stats.errors} in total) and no successful flush since`;
    return undefined;
  }
}

export interface SubscriptionReadiness {
  readonly subscription: string;
  readonly exchange: string;
  readonly stream: string;
  readonly symbol: string;
  readonly ready: boolean;
  /** Seconds since the last message; null before the first. */
  readonly secondsSinceLastMessage: number | null;
  /** The staleness window; null when this stream is not checked. */
  readonly staleAfterSeconds: number | null;
  readonly problem?: string;
}

export interface ReadinessReport {
  readonly status: "ready" | "not_ready";
  /** One sentence per problem; empty when ready. */
  readonly problems: readonly string[];
  readonly subscriptions: readonly SubscriptionReadiness[];
  readonly sink: {
    readonly name: string;
    readonly writable: boolean;
    readonly problem?: string;
    readonly errors: number;
    readonly outageSeconds: number;
    readonly bufferedRows: number;
    readonly droppedRows: number;
  };
}

export interface ReadinessOptions {
  readonly subscriptions: readonly Subscription[];
  readonly windows: ReadonlyMap<Subscription, number | undefined>;
  readonly sinkName: string;
  readonly sinkStats: SinkStats;
  /** Wall clock in integer microseconds (the unit of lastMessageAt). */
  readonly nowMicros?: () => number;
  /** Problems of parts beside the pipeline (the upload backlog), each making the instance unready. */
  readonly extraProblems?: () => readonly string[];
}

export class Readiness {
  readonly sink: SinkWritability;
  private readonly now: () => number;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly options: ReadinessOptions) {
    this.sink = new SinkWritability(options.sinkStats);
    this.now = options.nowMicros ?? nowMicros;
  }

  /** Samples the sink counters every second so an error between two probes is not missed. */
  start(): void {
    this.timer ??= setInterval(() => this.sink.sample(), 1000);
    this.timer.unref?.();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  windowOf(subscription: Subscription): number | undefined {
    return this.options.windows.get(subscription);
  }

  /** Seconds since the subscription's last message, or undefined before the first. */
  secondsSinceLastMessage(subscription: Subscription, now = this.now()): number | undefined {
    const last = subscription.stats.lastMessageAt;
    return last > 0 ? Math.max(0, (now - last) / 1e6) : undefined;
  }

  /** Why this subscription is not ready, or undefined when it is. */
  subscriptionProblem(subscription: Subscription, now = this.now()): string | undefined {
    const window = this.windowOf(subscription);
    if (window === undefined) return undefined;
    const age = this.secondsSinceLastMessage(subscription, now);
    if (age === undefined) return `${subscription.key}: no message received yet (window ${window} s)`;
    if (age > window) return `${subscription.key}: no message for ${age.toFixed(1)} s (window ${window} s)`;
    return undefined;
  }

  check(): ReadinessReport {
    const now = this.now();
    const problems: string[] = [];
    const subscriptions = this.options.subscriptions.map((subscription): SubscriptionReadiness => {
      const problem = this.subscriptionProblem(subscription, now);
      if (problem) problems.push(problem);
      const age = this.secondsSinceLastMessage(subscription, now);
      return {
        subscription: subscription.key,
        exchange: subscription.exchange,
        stream: subscription.stream,
        symbol: subscription.symbol,
        ready: problem === undefined,
        secondsSinceLastMessage: age === undefined ? null : Math.round(age * 1000) / 1000,
        staleAfterSeconds: this.windowOf(subscription) ?? null,
        ...(problem ? { problem } : {}),
      };
    });
    const stats = this.options.sinkStats;
    const sinkProblem = this.sink.problem();
    if (sinkProblem) problems.push(`sink ${this.options.sinkName}: ${sinkProblem}`);
    problems.push(...(this.options.extraProblems?.() ?? []));
    return {
      status: problems.length === 0 ? "ready" : "not_ready",
      problems,
      subscriptions,
      sink: {
        name: this.options.sinkName,
        writable: sinkProblem === undefined,
        ...(sinkProblem ? { problem: sinkProblem } : {}),
        errors: stats.errors,
        outageSeconds: Math.round(stats.outageSeconds() * 1000) / 1000,
        bufferedRows: stats.bufferedRows,
        droppedRows: stats.droppedRows,
      },
    };
  }
}
