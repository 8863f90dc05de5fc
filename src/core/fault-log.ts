/**
 * One log line per fault episode instead of one per occurrence. A fault that repeats (a full queue, a
 * refused write, a hostile frame) would otherwise bury every other line: an overload once wrote 3,539
 * warnings in 165 s, a lost permission 263 lines in 25 s.
 *
 * An episode of a key starts with its first occurrence, which is logged at once. Repeats inside the
 * episode are only counted; while it lasts, one summary line with the count is logged at most every
 * `summaryMs`; once the key has been quiet for `quietMs` the episode ends with a line saying how many
 * occurrences it had and for how long. Every call site that reports a repeating fault goes through here.
 */
import type { Logger } from "./log.ts";

export type FaultLevel = "warn" | "error";

/** A message, or a function that makes it: called only when a line is logged (hot paths such as drops). */
export type Message = string | (() => string);

const text = (message: Message): string => (typeof message === "string" ? message : message());

export interface FaultLogOptions {
  /** Longest a running episode stays silent before a summary line (default 60 s). */
  readonly summaryMs?: number;
  /** Quiet time after which an episode is over (default 10 s). */
  readonly quietMs?: number;
  /** Clock in ms (tests). */
  readonly now?: () => number;
}

interface Episode {
  readonly startedAt: number;
  level: FaultLevel;
  message: Message;
  lastAt: number;
  lastLineAt: number;
  /** Occurrences in the whole episode. */
  total: number;
  /** Occurrences since the last line. */
  unlogged: number;
}

export class FaultLog {
  private readonly episodes = new Map<string, Episode>();
  private readonly summaryMs: number;
  private readonly quietMs: number;
  private readonly now: () => number;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly log: Logger,
    options: FaultLogOptions = {},
  ) {
    this.summaryMs = options.summaryMs ?? 60_000;
    this.quietMs = options.quietMs ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  /**
   * Reports `count` occurrences of the fault `key` (one key per kind of fault and place: a table, a
   * subscription, a file). `message` describes the latest occurrence; it is logged at the start of an
   * episode and in its summaries.
   */
  report(key: string, message: Message, level: FaultLevel = "warn", count = 1): void {
    const now = this.now();
    let episode = this.episodes.get(key);
    if (episode && now - episode.lastAt >= this.quietMs) {
      this.end(key, episode);
      episode = undefined;
    }
    if (!episode) {
      this.episodes.set(key, { startedAt: now, level, message, lastAt: now, lastLineAt: now, total: count, unlogged: 0 });
      this.log[level](count > 1 ? `${text(message)} (${count} at once)` : text(message));
      this.schedule();
      return;
    }
    episode.lastAt = now;
    episode.level = level;
    episode.message = message;
    episode.total += count;
    episode.unlogged += count;
    if (now - episode.lastLineAt >= this.summaryMs) {
      this.log[level](
        `${text(message)} (${episode.unlogged} more in the last ${seconds(now - episode.lastLineAt)}; ` +
          `${episode.total} since ${seconds(now - episode.startedAt)} ago)`,
      );
      episode.lastLineAt = now;
      episode.unlogged = 0;
    }
  }

  /** True while `key` has an episode that has not been quiet for `quietMs`. */
  active(key: string): boolean {
    const episode = this.episodes.get(key);
    return episode !== undefined && this.now() - episode.lastAt < this.quietMs;
  }

  /** Ends every episode now (at stop), logging what was not yet logged. */
  flush(): void {
    for (const [key, episode] of this.episodes) this.end(key, episode);
    this.stopTimer();
  }

  /** Ends the episodes that have been quiet long enough. */
  sweep(): void {
    const now = this.now();
    for (const [key, episode] of this.episodes) {
      if (now - episode.lastAt >= this.quietMs) this.end(key, episode);
    }
    if (this.episodes.size === 0) this.stopTimer();
  }

  private end(key: string, episode: Episode): void {
    this.episodes.delete(key);
    if (episode.total > 1) {
      this.log[episode.level](
        `${text(episode.message)}: episode over, ${episode.total} occurrence(s) in ${seconds(episode.lastAt - episode.startedAt)}`,
      );
    }
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sweep(), Math.max(100, Math.min(this.quietMs, 5_000)));
    (this.timer as { unref?: () => void }).unref?.();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}
