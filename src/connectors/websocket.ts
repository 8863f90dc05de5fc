/**
 * One robust WebSocket on Bun's native client, shared by every connector.
 *
 * - Reconnects forever with exponential backoff, full jitter and a cap; the backoff resets once a
 *   connection has stayed up for `stableAfterMs`, so a server that accepts and drops at once cannot
 *   make us spin.
 * - Calls `onOpen` after every (re)connect so the connector resubscribes, and `onClose` with the close
 *   code so it can emit gap markers (downstream must know data may be missing).
 * - Stale-feed watchdog: no frame for `staleAfterMs` → the socket is closed and reopened. Connectors pick
 *   the window per stream so quiet instruments do not flap.
 * - Optional text keepalive (OKX's `ping`) sent when nothing has arrived for `keepalive.idleMs`.
 *   Protocol-level ping frames are answered by Bun itself.
 * - The receive time is taken first thing in the message handler, before any parsing.
 * - A message larger than `maxFrameBytes` is not handed on: the connection is closed (1009) and reopened,
 *   so the connector records a gap and restarts its books, and the frame is counted and logged.
 * - Repeating faults (a venue that keeps refusing or dropping us) are logged once per episode (FaultLog).
 */
import { nowMicros } from "../core/clock.ts";
import { errorMessage } from "../core/errors.ts";
import { FaultLog } from "../core/fault-log.ts";
import type { Logger } from "../core/log.ts";
import { positiveOr } from "./kit/env.ts";

export interface BackoffOptions {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 30_000, factor: 2 };

/**
 * Backoff bounds can be tightened from the environment (tests, trials): XTRADER_RECONNECT_MIN_MS/MAX_MS.
 * The CLI refuses bad values before anything connects (src/cli/environment.ts); a caller that skips it
 * still gets the defaults rather than a reconnect storm.
 */
export function backoffFromEnv(env: Readonly<Record<string, string | undefined>>): BackoffOptions {
  const initialMs = positiveOr(env, "XTRADER_RECONNECT_MIN_MS", DEFAULT_BACKOFF.initialMs);
  const maxMs = Math.max(positiveOr(env, "XTRADER_RECONNECT_MAX_MS", DEFAULT_BACKOFF.maxMs), initialMs);
  return { initialMs, maxMs, factor: DEFAULT_BACKOFF.factor };
}

/**
 * Largest message a connector accepts (XTRADER_MAX_FRAME_BYTES). The venues' largest legitimate messages
 * are far below the default: a Deribit full-depth book snapshot (its REST book goes to 10,000 levels a
 * side, ~0.7 MB as a notification), an OKX 400-level `books` snapshot (~40 kB), a Binance answer listing
 * 1024 streams (~30 kB). Bun's client buffers a whole message before handing it over and refuses messages
 * above 128 MiB itself (it closes with 1006), so the bound is checked on receipt and cannot exceed that.
 */
export const MAX_FRAME_BYTES_ENV = "XTRADER_MAX_FRAME_BYTES";
export const DEFAULT_MAX_FRAME_BYTES = 4 << 20;
export const MIN_FRAME_BYTES = 64 << 10;
export const MAX_FRAME_BYTES_LIMIT = 128 << 20;

/** Process-wide socket counters, read by the metrics endpoint. */
export const socketCounters = {
  /** Messages over the frame bound; each one closed its connection. */
  oversizedFrames: 0,
};

/** Longest wait between full collections asked for after oversized frames (each one costs a pause). */
const OVERSIZED_COLLECTION_INTERVAL_MS = 10_000;
let lastOversizedCollectionAt = Number.NEGATIVE_INFINITY;

/** Delay before reconnect attempt `attempt` (0-based): full jitter over an exponentially growing cap. */
export function backoffDelay(options: BackoffOptions, attempt: number, random = Math.random): number {
  const cap = Math.min(options.maxMs, options.initialMs * options.factor ** attempt);
  // Never below half the cap: full jitter down to 0 would allow instant reconnect storms.
  return Math.round(cap / 2 + (random() * cap) / 2);
}

export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
  /** True when the socket had opened (data may have been missed); false for a failed connect. */
  readonly wasOpen: boolean;
  /** Why we closed it ourselves ("stale", a connector's reason), or undefined for a server/network close. */
  readonly initiatedBy: string | undefined;
}

export interface OpenInfo {
  /** 0 for the first connection, then how many times this socket has reconnected. */
  readonly reconnects: number;
}

export interface ReconnectingSocketOptions {
  /** Used in log lines, e.g. `BINANCE_FUTURES public#1`. */
  readonly name: string;
  /** Evaluated before every connect, so a connector can change the URL (e.g. stream list). */
  readonly url: () => string;
  readonly log: Logger;
  readonly staleAfterMs: number;
  readonly backoff?: BackoffOptions;
  readonly stableAfterMs?: number;
  readonly connectTimeoutMs?: number;
  readonly keepalive?: { readonly idleMs: number; readonly message: string };
  /** Largest message handed to `onMessage` (default DEFAULT_MAX_FRAME_BYTES). */
  readonly maxFrameBytes?: number;
  readonly onOpen: (info: OpenInfo) => void;
  readonly onMessage: (data: string, receivedAt: number) => void;
  readonly onClose: (info: CloseInfo) => void;
}

const NORMAL_CLOSURE = 1000;
const decoder = new TextDecoder();

export class ReconnectingSocket {
  private socket: WebSocket | undefined;
  private stopped = true;
  private attempt = 0;
  private reconnects = 0;
  private openedAt = 0;
  private lastFrameAt = 0;
  private closeReason: string | undefined;
  private watchdog: ReturnType<typeof setInterval> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private closed: Promise<void> = Promise.resolve();
  private resolveClosed: () => void = () => {};
  private readonly faults: FaultLog;
  private readonly maxFrameBytes: number;

  constructor(private readonly options: ReconnectingSocketOptions) {
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    // An episode lasts while attempts keep failing: quiet longer than two capped backoff delays ends it.
    this.faults = new FaultLog(options.log, { quietMs: Math.max(10_000, 2 * (options.backoff ?? DEFAULT_BACKOFF).maxMs) });
  }

  get isOpen(): boolean {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  /** Milliseconds the current connection has been open (0 when not open). */
  get openForMs(): number {
    return this.isOpen ? performance.now() - this.openedAt : 0;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  send(text: string): boolean {
    if (!this.isOpen) return false;
    this.socket!.send(text);
    return true;
  }

  /** Closes the current connection (reason logged and passed to onClose) and reconnects after backoff. */
  reconnect(reason: string): void {
    if (this.stopped || !this.socket) return;
    this.closeReason = reason;
    this.options.log.info(`${this.options.name}: reconnecting (${reason})`);
    this.dropSocket(4000, reason);
  }

  /** Closes for good; resolves once the socket is closed (or after 2 s). */
  async stop(): Promise<void> {
    if (this.stopped) return this.closed;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.connectTimer);
    clearInterval(this.watchdog);
    if (this.socket && this.socket.readyState !== WebSocket.CLOSED) {
      this.closeReason = "shutdown";
      this.socket.close(NORMAL_CLOSURE, "shutdown");
      await Promise.race([this.closed, new Promise((resolve) => setTimeout(resolve, 2000))]);
    }
    this.faults.flush();
  }

  private connect(): void {
    if (this.stopped) return;
    const url = this.options.url();
    this.closeReason = undefined;
    let socket: WebSocket;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    try {
      socket = new WebSocket(url);
    } catch (error) {
      this.faults.report(`${this.options.name}:open`, `${this.options.name}: cannot open ${url}: ${errorMessage(error)}`);
      this.resolveClosed();
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    let wasOpen = false;
    this.connectTimer = setTimeout(() => {
      if (socket.readyState === WebSocket.CONNECTING) {
        this.closeReason = "connect timeout";
        this.faults.report(`${this.options.name}:connect`, `${this.options.name}: connect timeout`);
        socket.close();
      }
    }, this.options.connectTimeoutMs ?? 10_000);

    socket.onopen = () => {
      clearTimeout(this.connectTimer);
      wasOpen = true;
      this.openedAt = performance.now();
      this.lastFrameAt = this.openedAt;
      this.startWatchdog(socket);
      const info = { reconnects: this.reconnects };
      this.options.log.debug(`${this.options.name}: connected to ${url}`);
      try {
        this.options.onOpen(info);
      } catch (error) {
        this.options.log.error(`${this.options.name}: open handler failed: ${errorMessage(error)}`);
      }
    };
    socket.onmessage = (message: MessageEvent) => {
      const readAt = performance.now();
      const receivedAt = nowMicros(readAt);
      this.lastFrameAt = readAt;
      const data = message.data;
      // A string's length counts UTF-16 units, at most its UTF-8 bytes: never above the bytes received.
      const size = typeof data === "string" ? data.length : (data as ArrayBuffer).byteLength;
      if (size > this.maxFrameBytes) {
        this.rejectFrame(socket, size);
        return;
      }
      const text = typeof data === "string" ? data : decoder.decode(data as ArrayBuffer);
      try {
        this.options.onMessage(text, receivedAt);
      } catch (error) {
        // A connector bug on one frame must not kill the socket; connectors count parse errors themselves.
        this.options.log.error(`${this.options.name}: message handler failed: ${errorMessage(error)}`);
      }
    };
    socket.onerror = () => {
      // Bun follows every error with a close event; the close handler does the bookkeeping.
    };
    socket.onclose = (event: CloseEvent) => {
      clearTimeout(this.connectTimer);
      clearInterval(this.watchdog);
      if (this.socket === socket) this.socket = undefined;
      const info: CloseInfo = {
        code: event.code,
        reason: event.reason,
        wasOpen,
        initiatedBy: this.closeReason,
      };
      const lived = wasOpen ? performance.now() - this.openedAt : 0;
      if (lived >= (this.options.stableAfterMs ?? 10_000)) this.attempt = 0;
      if (!this.stopped) {
        const why = info.initiatedBy ?? (wasOpen ? "closed by server" : "connect failed");
        this.faults.report(
          `${this.options.name}:disconnect`,
          `${this.options.name}: disconnected (${why}; code ${event.code}${event.reason ? ` '${event.reason}'` : ""})`,
        );
      }
      try {
        this.options.onClose(info);
      } catch (error) {
        this.options.log.error(`${this.options.name}: close handler failed: ${errorMessage(error)}`);
      }
      this.resolveClosed();
      if (!this.stopped) this.scheduleRetry();
    };
  }

  private scheduleRetry(): void {
    const delay = backoffDelay(this.options.backoff ?? DEFAULT_BACKOFF, this.attempt++);
    this.reconnects++;
    this.options.log.debug(`${this.options.name}: reconnect in ${delay} ms`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private startWatchdog(socket: WebSocket): void {
    clearInterval(this.watchdog);
    const { staleAfterMs, keepalive } = this.options;
    const tick = Math.max(50, Math.min(staleAfterMs, keepalive?.idleMs ?? staleAfterMs) / 4);
    let lastKeepaliveAt = 0;
    this.watchdog = setInterval(() => {
      if (this.socket !== socket || socket.readyState !== WebSocket.OPEN) return;
      const now = performance.now();
      const idle = now - this.lastFrameAt;
      if (idle >= staleAfterMs) {
        this.closeReason = "stale";
        this.faults.report(`${this.options.name}:stale`, `${this.options.name}: no data for ${Math.round(idle / 1000)} s, reconnecting`);
        this.dropSocket(4001, "stale");
        return;
      }
      if (keepalive && idle >= keepalive.idleMs && now - lastKeepaliveAt >= keepalive.idleMs) {
        lastKeepaliveAt = now;
        socket.send(keepalive.message);
      }
    }, tick);
  }

  /**
   * An oversized message: dropped unread, counted, and its connection closed with 1009 ("message too big")
   * so the connector marks the gap and resyncs. A sender of huge messages would keep sending them on the
   * same connection, and skipping one silently would leave a hole in a book.
   */
  private rejectFrame(socket: WebSocket, size: number): void {
    socketCounters.oversizedFrames++;
    const reason = `message of ${size} bytes over the ${this.maxFrameBytes}-byte limit (${MAX_FRAME_BYTES_ENV})`;
    this.faults.report(`${this.options.name}:oversized`, `${this.options.name}: ${reason}; reconnecting`);
    if (this.socket !== socket || this.closeReason !== undefined) return;
    this.closeReason = reason;
    this.dropSocket(1009, "message too big");
    // JSC collects by allocation volume, so an idle collector would keep the dead message's memory for
    // long; a full collection soon after gives it back (at most one per interval: each costs a pause).
    const now = performance.now();
    if (now - lastOversizedCollectionAt >= OVERSIZED_COLLECTION_INTERVAL_MS) {
      lastOversizedCollectionAt = now;
      setTimeout(() => Bun.gc(true), 0);
    }
  }

  private dropSocket(code: number, reason: string): void {
    const socket = this.socket;
    if (!socket) return;
    socket.close(code, reason);
    // A dead peer may never complete the closing handshake; don't wait on it forever.
    setTimeout(() => {
      if (socket.readyState !== WebSocket.CLOSED && this.socket === socket) socket.terminate?.();
    }, 2000);
  }
}
