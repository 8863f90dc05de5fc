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
 */
import { nowMicros } from "../core/clock.ts";
import { errorMessage } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";

export interface BackoffOptions {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 30_000, factor: 2 };

/** Backoff bounds can be tightened from the environment (tests, trials): XTRADER_RECONNECT_MIN_MS/MAX_MS. */
export function backoffFromEnv(env: Readonly<Record<string, string | undefined>>): BackoffOptions {
  const min = Number(env.XTRADER_RECONNECT_MIN_MS);
  const max = Number(env.XTRADER_RECONNECT_MAX_MS);
  // Above 2^31-1 ms a timer fires at once (TimeoutOverflowWarning): such values are ignored, not a reconnect storm.
  const usable = (ms: number) => Number.isFinite(ms) && ms > 0 && ms <= 2_147_483_647;
  const initialMs = usable(min) ? min : DEFAULT_BACKOFF.initialMs;
  const maxMs = usable(max) ? Math.max(max, initialMs) : Math.max(DEFAULT_BACKOFF.maxMs, initialMs);
  return { initialMs, maxMs, factor: DEFAULT_BACKOFF.factor };
}

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

  constructor(private readonly options: ReconnectingSocketOptions) {}

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
      this.options.log.warn(`${this.options.name}: cannot open ${url}: ${errorMessage(error)}`);
      this.resolveClosed();
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    let wasOpen = false;
    this.connectTimer = setTimeout(() => {
      if (socket.readyState === WebSocket.CONNECTING) {
        this.closeReason = "connect timeout";
        this.options.log.warn(`${this.options.name}: connect timeout`);
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
        this.options.log.warn(
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
        this.options.log.warn(`${this.options.name}: no data for ${Math.round(idle / 1000)} s, reconnecting`);
        this.dropSocket(4001, "stale");
        return;
      }
      if (keepalive && idle >= keepalive.idleMs && now - lastKeepaliveAt >= keepalive.idleMs) {
        lastKeepaliveAt = now;
        socket.send(keepalive.message);
      }
    }, tick);
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
