/**
 * Binance REST access that respects the IP request-weight limit, one request at a time so that many books
 * resyncing together queue up instead of stampeding.
 *
 * Rules (Binance's IP limits, https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits; the
 * USD-M limit is 2400 REQUEST_WEIGHT per minute and depth limit=1000 weighs 20,
 * https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/websocket-api):
 * - every response carries `X-MBX-USED-WEIGHT-1M`, the weight this IP used in the current minute;
 * - HTTP 429 = rate limit broken; back off. HTTP 418 = IP banned for having ignored 429s (2 min to 3 days);
 * - both carry `Retry-After` (seconds) saying how long to wait.
 * We keep our own spending under a share of the minute's limit (other programs may share the IP), wait for
 * the next minute when a request would exceed it, and pause the whole queue on 429/418.
 */
import type { Logger } from "../core/log.ts";
import { MAX_REST_BODY_BYTES } from "./http-body.ts";
import { jsonBody, restGet, retryAfterMs as retryAfter } from "./kit/rest.ts";

export interface RestResult {
  readonly ok: boolean;
  /** HTTP status, 0 when no response arrived (network error, timeout, stopped). */
  readonly status: number;
  readonly body: unknown;
  /** Binance's error code from a `{"code":..,"msg":..}` body, when present. */
  readonly code: number | undefined;
  /** One line for logs and gap details. */
  readonly message: string;
  /** From Retry-After on 429/418, in milliseconds. */
  readonly retryAfterMs: number | undefined;
  /** Receive time of the response (integer microseconds), for snapshots. */
  readonly receivedAt: number;
  /** The body was over the request's bound and was not read (see http-body.ts). */
  readonly oversized?: true;
}

export interface GateClock {
  now(): number;
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export interface RestWeightGateOptions {
  readonly baseUrl: string;
  readonly log: Logger;
  readonly name: string;
  /** The venue's REQUEST_WEIGHT limit per minute for one IP. */
  readonly weightPerMinute: number;
  /** Share of that limit we allow ourselves (0..1]. */
  readonly budgetShare: number;
  readonly timeoutMs: number;
  readonly receivedAt: () => number;
  readonly clock?: GateClock;
}

const MINUTE_MS = 60_000;
/** Margin after the minute boundary before trusting that the venue reset its counter (clock skew). */
const MINUTE_MARGIN_MS = 1_000;
/** Used when a 429/418 comes without Retry-After (418 bans last at least 2 minutes). */
const DEFAULT_RETRY_AFTER_MS = { 429: 30_000, 418: 120_000 } as const;

const realClock: GateClock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done);
    }),
};

export class RestWeightGate {
  private readonly clock: GateClock;
  private readonly abort = new AbortController();
  private tail: Promise<unknown> = Promise.resolve();
  private usedWeight = 0;
  private usedMinute = -1;
  private pausedUntil = 0;

  constructor(private readonly options: RestWeightGateOptions) {
    this.clock = options.clock ?? realClock;
  }

  get budget(): number {
    return Math.floor(this.options.weightPerMinute * this.options.budgetShare);
  }

  /** Milliseconds to wait before a request of `weight` may be sent at `now`. */
  delayFor(weight: number, now: number): number {
    const minute = Math.floor(now / MINUTE_MS);
    const used = minute === this.usedMinute ? this.usedWeight : 0;
    const forWeight = used + weight > this.budget ? (minute + 1) * MINUTE_MS + MINUTE_MARGIN_MS - now : 0;
    return Math.max(0, this.pausedUntil - now, forWeight);
  }

  /**
   * Queues a GET; resolves after earlier requests finished and the weight budget allows it. Never rejects.
   * A body over `maxBodyBytes` is not read: the result fails with `oversized`.
   */
  get(path: string, query: Readonly<Record<string, string>>, weight: number, maxBodyBytes = MAX_REST_BODY_BYTES): Promise<RestResult> {
    const run = this.tail.then(() => this.send(path, query, weight, maxBodyBytes));
    this.tail = run;
    return run;
  }

  /** Aborts the request in flight and resolves every queued one as failed. */
  close(): void {
    this.abort.abort();
  }

  private async send(path: string, query: Readonly<Record<string, string>>, weight: number, maxBodyBytes: number): Promise<RestResult> {
    const signal = this.abort.signal;
    for (;;) {
      if (signal.aborted) return this.failed(0, "stopped");
      const wait = this.delayFor(weight, this.clock.now());
      if (wait <= 0) break;
      this.options.log.debug(`${this.options.name}: waiting ${Math.ceil(wait / 1000)} s for REST weight (${path})`);
      await this.clock.sleep(wait, signal);
    }
    this.spend(weight);
    const url = `${this.options.baseUrl}${path}?${new URLSearchParams(query as Record<string, string>)}`;
    const answer = await restGet(url, AbortSignal.any([signal, AbortSignal.timeout(this.options.timeoutMs)]), maxBodyBytes);
    if (answer.kind === "failed") return this.failed(0, signal.aborted ? "stopped" : `request failed: ${answer.error}`);
    if (answer.kind === "too_large") {
      this.recordWeight(answer.headers.get("x-mbx-used-weight-1m"));
      return { ...this.failed(answer.status, `HTTP ${answer.status} ${answer.detail}`), oversized: true };
    }
    const response = answer;
    const receivedAt = this.options.receivedAt();
    this.recordWeight(response.headers.get("x-mbx-used-weight-1m"));
    const body = jsonBody(response.text);
    const code = typeof (body as { code?: unknown })?.code === "number" ? (body as { code: number }).code : undefined;
    const venueMessage = typeof (body as { msg?: unknown })?.msg === "string" ? (body as { msg: string }).msg : "";
    if (response.ok && body !== undefined) {
      return { ok: true, status: response.status, body, code: undefined, message: "ok", retryAfterMs: undefined, receivedAt };
    }
    let retryAfterMs: number | undefined;
    if (response.status === 429 || response.status === 418) {
      retryAfterMs = retryAfter(response.headers) ?? DEFAULT_RETRY_AFTER_MS[response.status];
      this.pausedUntil = Math.max(this.pausedUntil, this.clock.now() + retryAfterMs);
      this.options.log.warn(
        `${this.options.name}: HTTP ${response.status} from ${path} (${response.status === 418 ? "IP banned" : "rate limited"}); pausing REST for ${Math.ceil(retryAfterMs / 1000)} s`,
      );
    }
    const detail = venueMessage ? ` (${code ?? ""}${code !== undefined ? " " : ""}${venueMessage})` : "";
    const message = response.ok ? "malformed JSON body" : `HTTP ${response.status}${detail}`;
    return { ok: false, status: response.status, body, code, message, retryAfterMs, receivedAt };
  }

  private spend(weight: number): void {
    const minute = Math.floor(this.clock.now() / MINUTE_MS);
    if (minute !== this.usedMinute) {
      this.usedMinute = minute;
      this.usedWeight = 0;
    }
    this.usedWeight += weight;
  }

  private recordWeight(header: string | null): void {
    const used = Number(header);
    if (header === null || !Number.isFinite(used)) return;
    // The venue's count is authoritative (it includes other programs on this IP).
    this.usedMinute = Math.floor(this.clock.now() / MINUTE_MS);
    this.usedWeight = used;
  }

  private failed(status: number, message: string): RestResult {
    return {
      ok: false,
      status,
      body: undefined,
      code: undefined,
      message,
      retryAfterMs: undefined,
      receivedAt: this.options.receivedAt(),
    };
  }
}
