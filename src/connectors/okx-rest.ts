/**
 * OKX's REST client: GETs of JSON answers in OKX's envelope (`{"code":"0","data":[...]}`), bounded bodies,
 * Retry-After, a timeout, and sleeps that stop() cuts short; and the instrument list loaded through it at
 * start (retried until it loads: nothing can be subscribed without it).
 */
import type { Logger } from "../core/log.ts";
import { MAX_REST_BODY_BYTES } from "./http-body.ts";
import { jsonBody, restGet, retryAfterMs } from "./kit/rest.ts";
import { InstrumentList, toInstrument, type InstType, type Instrument, type RawInstrument } from "./okx-instruments.ts";
import { backoffDelay, type BackoffOptions } from "./websocket.ts";

export type OkxAnswer = { ok: true; data: unknown } | { ok: false; error: string; retryAfterMs: number | undefined; oversized?: true };

export class OkxRest {
  private readonly aborts = new Set<AbortController>();
  private readonly sleepers = new Set<() => void>();

  constructor(
    private readonly baseUrl: string,
    private readonly timeoutMs: number,
  ) {}

  /** Aborts every request in flight and ends every sleep (the connector stops). */
  close(): void {
    for (const abort of this.aborts) abort.abort();
    for (const wake of [...this.sleepers]) wake();
  }

  /** A sleep that close() cuts short, so no retry timer outlives the connector. */
  delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }

  /** GET of a JSON answer; a body over `maxBytes` is not read (see http-body.ts). */
  async getJson(path: string, maxBytes = MAX_REST_BODY_BYTES): Promise<OkxAnswer> {
    const abort = new AbortController();
    this.aborts.add(abort);
    const timer = setTimeout(() => abort.abort(), this.timeoutMs);
    try {
      const answer = await restGet(`${this.baseUrl}${path}`, abort.signal, maxBytes);
      if (answer.kind === "failed") return { ok: false, error: answer.error, retryAfterMs: undefined };
      if (answer.kind === "too_large") return { ok: false, error: `HTTP ${answer.status} ${answer.detail}`, retryAfterMs: undefined, oversized: true };
      const parsed = jsonBody(answer.text) as { code?: unknown; msg?: unknown; data?: unknown } | undefined;
      if (answer.ok && parsed && (parsed.code === "0" || parsed.code === 0)) return { ok: true, data: parsed.data };
      return {
        ok: false,
        error: `HTTP ${answer.status}${parsed?.code !== undefined ? ` code ${String(parsed.code)}` : ""}${parsed?.msg ? ` '${String(parsed.msg)}'` : ""}`,
        retryAfterMs: retryAfterMs(answer.headers),
      };
    } finally {
      clearTimeout(timer);
      this.aborts.delete(abort);
    }
  }

  /** The instrument list of `instType`, retried with backoff until it loads; undefined once `stopped()`. */
  async loadInstruments(
    path: string,
    instType: InstType,
    exchange: string,
    log: Logger,
    backoff: BackoffOptions,
    stopped: () => boolean,
  ): Promise<InstrumentList | undefined> {
    for (let attempt = 0; !stopped(); attempt++) {
      const result = await this.getJson(`${path}?instType=${instType}`);
      if (stopped()) return undefined;
      if (result.ok && Array.isArray(result.data)) {
        const instruments: Instrument[] = [];
        for (const raw of result.data as RawInstrument[]) {
          const instrument = typeof raw === "object" && raw !== null ? toInstrument(raw, instType) : undefined;
          if (instrument) instruments.push(instrument);
        }
        log.debug(`${exchange}: ${instruments.length} ${instType} instruments`);
        return new InstrumentList(instruments, instType);
      }
      const delay = result.ok ? backoffDelay(backoff, attempt) : (result.retryAfterMs ?? backoffDelay(backoff, attempt));
      log.warn(
        `${exchange}: cannot load the instrument list (${result.ok ? "no data" : result.error}); nothing is collected until it loads; retrying in ${delay} ms`,
      );
      await this.delay(delay);
    }
    return undefined;
  }
}
