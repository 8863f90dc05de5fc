/**
 * One connection to QuestDB: through the official client's transport (HTTP/HTTPS with basic/bearer
 * authentication; TCP with QUESTDB_TCP_NATIVE=false), or, for ILP/TCP (plain, TLS, authenticated), Bun's
 * own socket (`Bun.connect`): Bun's socket takes a whole chunk per write and hands back what the kernel
 * did not take, without copying it (sending 555 MB of ILP to a local reader cost ~130 ms of CPU that way,
 * ~330 ms through node:net in 64 KiB pieces); TLS and QuestDB's authentication challenge are done here
 * too (the client's TCP path works only with the key settings.ts builds, see challengeKey). The client
 * does not reconnect and does not tell when a TCP peer goes away, so this wrapper:
 * - bounds connect and send with timeouts (a half-open peer otherwise stalls a write forever);
 * - watches the TCP socket's `close`/`error` events and reports the loss once through `onLost`, saying
 *   whether QuestDB closed it (how it refuses a line) or we gave it up (a stalled write, a bad certificate);
 * - never leaves a promise of the client unobserved (a late rejection would be unhandled).
 * Reconnecting, buffering and re-sending are the sink's job (index.ts).
 */
import { createTransport, type SenderOptions, type SenderTransport } from "@questdb/nodejs-client";
import { sign } from "node:crypto";
import { isIP, type Socket as NodeSocket } from "node:net";
import type { Socket as BunSocket } from "bun";
import { errorMessage } from "../../core/errors.ts";
import type { NativeTcpEndpoint, TransportKind } from "./settings.ts";

/** A send QuestDB answered with a client error: the same bytes will never be accepted. */
export class RejectedDataError extends Error {
  override readonly name = "RejectedDataError";
}

/** HTTP statuses that are about the request's data, not about reachability or credentials. */
const REJECTED_DATA_STATUSES = new Set([400, 413, 422]);

/** Largest single write to a TCP socket (see sendPieces). */
const TCP_PIECE_BYTES = 64 * 1024;

export interface ConnectionTimeouts {
  readonly connectTimeoutMs: number;
  readonly sendTimeoutMs: number;
}

export class IlpConnection {
  private transport: SenderTransport | undefined;
  private socket: NodeSocket | undefined;
  /** Plain TCP: Bun's socket, and the sender waiting for it to drain. */
  private native: BunSocket<undefined> | undefined;
  private onDrain: (() => void) | undefined;
  private lost = false;
  private lastSocketError: string | undefined;

  constructor(
    private readonly kind: TransportKind,
    private readonly options: SenderOptions,
    private readonly timeouts: ConnectionTimeouts,
    /** Called at most once, when an open TCP connection closes (`byPeer`: QuestDB closed it) or fails. */
    private readonly onLost: (reason: string, byPeer: boolean) => void,
    /** TCP (plain or TLS, authenticated or not): connect Bun's own socket here instead of the client's. */
    private readonly nativeTcp?: NativeTcpEndpoint,
  ) {}

  /** TCP: connects (and authenticates). HTTP: nothing to open; reachability shows on the first send. */
  async open(): Promise<void> {
    if (this.nativeTcp) return this.openNative(this.nativeTcp);
    const transport = createTransport(this.options);
    this.transport = transport;
    if (this.kind === "http") return;
    const connecting = transport.connect();
    connecting.catch(() => undefined);
    // The client creates its socket synchronously inside connect(); watch it from the start.
    const socket = (transport as unknown as { socket?: NodeSocket }).socket;
    this.socket = socket;
    socket?.on("error", (error: Error) => {
      this.lastSocketError = errorMessage(error);
    });
    socket?.on("close", () => this.markLost(this.lastSocketError ?? "connection closed by QuestDB", true));
    try {
      await withTimeout(connecting, this.timeouts.connectTimeoutMs, "connect timed out");
    } catch (error) {
      this.lost = true; // a failed open is reported by throwing, not through onLost
      await this.close();
      throw error;
    }
    if (this.lost || socket?.destroyed) throw new Error(this.lastSocketError ?? "connection closed while connecting");
  }

  private async openNative(endpoint: NativeTcpEndpoint): Promise<void> {
    // QuestDB's challenge, once its line has arrived (https://questdb.io/docs/reference/api/ilp/authenticate/).
    let challengeText = "";
    let challengeDone: ((challenge: Buffer) => void) | undefined;
    let closedDuringOpen: (() => void) | undefined;
    const challenge = endpoint.auth ? new Promise<Buffer>((resolve) => (challengeDone = resolve)) : undefined;
    const closed = new Promise<void>((resolve) => (closedDuringOpen = resolve));
    let handshakeDone: (() => void) | undefined;
    const handshake = endpoint.tls ? new Promise<void>((resolve) => (handshakeDone = resolve)) : undefined;
    const connecting = Bun.connect<undefined>({
      hostname: endpoint.host,
      port: endpoint.port,
      tls: endpoint.tls
        ? {
            ca: endpoint.tls.ca,
            rejectUnauthorized: endpoint.tls.verify,
            // SNI takes host names only; certificates for an address are checked against its IP SAN.
            serverName: isIP(endpoint.host) ? undefined : endpoint.host,
          }
        : undefined,
      socket: {
        // QuestDB answers nothing over ILP/TCP (it closes the connection on an error), apart from the
        // authentication challenge: printable characters and a newline.
        data: (_socket, data) => {
          if (!challengeDone) return;
          challengeText += Buffer.from(data).toString("latin1");
          const newline = challengeText.indexOf("\n");
          if (newline < 0) return;
          challengeDone(Buffer.from(challengeText.slice(0, newline), "latin1"));
          challengeDone = undefined;
        },
        handshake: (socket, success, authorizationError) => {
          // A failed handshake ends the connection; so does, with verification on, a certificate that
          // does not check out (tls_verify=unsafe_off ignores only the latter).
          if (!success || (endpoint.tls?.verify && authorizationError)) {
            this.lastSocketError = `TLS: ${authorizationError?.message ?? "handshake failed"}`;
            socket.end();
            this.markLost(this.lastSocketError, false);
          }
          handshakeDone?.();
        },
        drain: () => this.resumeSender(),
        error: (_socket, error) => {
          this.lastSocketError = errorMessage(error);
        },
        end: () => {
          closedDuringOpen?.();
          this.markLost("connection closed by QuestDB", true);
        },
        close: (_socket, error) => {
          closedDuringOpen?.();
          this.markLost(error ? errorMessage(error) : (this.lastSocketError ?? "connection closed by QuestDB"), true);
        },
      },
    });
    let abandoned = false;
    let connected: BunSocket<undefined> | undefined;
    // A connect that completes after its timeout must not leave a socket behind.
    connecting.then(
      (socket) => {
        connected = socket;
        if (abandoned) socket.terminate();
      },
      () => undefined,
    );
    const ready = async (): Promise<BunSocket<undefined>> => {
      const socket = await connecting;
      // TLS: rows are written once the certificate has been checked, not into a handshake that then fails.
      if (handshake) await handshake;
      if (endpoint.auth && !this.lost && !abandoned) {
        writeLine(socket, `${endpoint.auth.keyId}\n`);
        const closedFirst = closed.then(() => {
          throw new Error(`connection closed by QuestDB during authentication (key id '${endpoint.auth!.keyId}')`);
        });
        closedFirst.catch(() => undefined);
        const received = await Promise.race([challenge!, closedFirst]);
        if (abandoned) return socket; // timed out meanwhile: the catch below has terminated it
        writeLine(socket, `${sign("sha256", received, endpoint.auth.key).toString("base64")}\n`); // ECDSA P-256, DER
      }
      closedDuringOpen = undefined;
      return socket;
    };
    try {
      this.native = await withTimeout(ready(), this.timeouts.connectTimeoutMs, "connect timed out");
    } catch (error) {
      abandoned = true;
      this.lost = true;
      // Connected but not through the handshake or the challenge in time: not left open.
      connected?.terminate();
      await this.close();
      throw error;
    }
    if (this.lost) throw new Error(this.lastSocketError ?? "connection closed while connecting");
  }

  /** Hands bytes to the transport. TCP: resolves once the kernel has them. HTTP: once QuestDB answered 204. */
  send(bytes: Uint8Array): Promise<void> {
    if (this.nativeTcp) return this.sendNative(bytes);
    return this.kind === "http" ? this.sendOnce(bytes) : this.sendPieces(bytes);
  }

  /** Plain TCP: the whole chunk per write; what the kernel did not take is written from where it stopped. */
  private async sendNative(bytes: Uint8Array): Promise<void> {
    const socket = this.native;
    if (!socket || this.lost) throw new Error("not connected");
    const writing = (async () => {
      let offset = 0;
      while (offset < bytes.length) {
        if (this.lost) throw new Error(this.lastSocketError ?? "connection closed by QuestDB");
        const written = socket.write(offset === 0 ? bytes : bytes.subarray(offset));
        if (written > 0) offset += written;
        if (offset < bytes.length) await new Promise<void>((resolve) => (this.onDrain = resolve));
      }
    })();
    try {
      await this.withinSendTimeout(writing);
    } finally {
      this.onDrain = undefined;
    }
  }

  /** A TCP write that has not finished within QUESTDB_SEND_TIMEOUT_MS means the connection is dead. */
  private async withinSendTimeout(writing: Promise<void>): Promise<void> {
    writing.catch(() => undefined);
    try {
      await withTimeout(writing, this.timeouts.sendTimeoutMs, "send timed out (QuestDB stopped reading)");
    } catch (error) {
      this.markLost(errorMessage(error), false);
      throw error;
    }
  }

  private resumeSender(): void {
    const resume = this.onDrain;
    this.onDrain = undefined;
    resume?.();
  }

  /** HTTP: one request per chunk; resolves once QuestDB answered 204. */
  private async sendOnce(bytes: Uint8Array): Promise<void> {
    const transport = this.transport;
    if (!transport || this.lost) throw new Error("not connected");
    const sending = transport.send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    sending.catch(() => undefined);
    try {
      await sending;
    } catch (error) {
      const message = errorMessage(error);
      const status = /statusCode=(\d+)/.exec(message);
      if (status && REJECTED_DATA_STATUSES.has(Number(status[1]))) throw new RejectedDataError(message);
      throw error;
    }
  }

  /**
   * TCP: writes the chunk to the client's socket in pieces of TCP_PIECE_BYTES, waiting for `drain` when the
   * socket says its buffer is full, and resolves once the last piece is written (as the client's own
   * send does). Bun's node:net socket keeps what the kernel does not take at once in a buffer that it
   * shifts down after every partial write, and a write's callback does not wait for that buffer to empty:
   * one 2 MB write, or many small ones, to a peer that reads slower than we encode cost about as much CPU in
   * copying as the encoding itself. The connection (and its authentication) is still the client's.
   */
  private async sendPieces(bytes: Uint8Array): Promise<void> {
    const socket = this.socket;
    if (!this.transport || !socket || this.lost) throw new Error("not connected");
    const writing = (async () => {
      for (let offset = 0; offset < bytes.length; offset += TCP_PIECE_BYTES) {
        const end = Math.min(bytes.length, offset + TCP_PIECE_BYTES);
        const piece = Buffer.from(bytes.buffer, bytes.byteOffset + offset, end - offset);
        if (end === bytes.length) {
          await new Promise<void>((resolve, reject) => socket.write(piece, (error) => (error ? reject(error) : resolve())));
        } else if (!socket.write(piece)) {
          await drained(socket);
        }
        if (this.lost || socket.destroyed) throw new Error(this.lastSocketError ?? "connection closed by QuestDB");
      }
    })();
    await this.withinSendTimeout(writing);
  }

  /**
   * Closes the connection. `abort`: it failed (peer gone, or stopped reading): Bun's socket is torn down at
   * once, rather than ended with a FIN queued behind bytes a frozen peer will never read.
   */
  async close(abort = false): Promise<void> {
    this.lost = true;
    const native = this.native;
    this.native = undefined;
    if (abort) native?.terminate();
    else native?.end();
    this.resumeSender();
    const transport = this.transport;
    this.transport = undefined;
    try {
      await transport?.close();
    } catch {
      // closing a broken socket may fail; it is gone either way
    }
  }

  private markLost(reason: string, byPeer: boolean): void {
    this.resumeSender(); // a sender waiting for drain sees the loss
    if (this.lost) return;
    this.lost = true;
    void this.close(true);
    this.onLost(reason, byPeer);
  }
}

/** Resolves when the socket's buffer has drained, or it closed (the caller checks which). */
function drained(socket: NodeSocket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off("drain", done);
      socket.off("close", done);
      resolve();
    };
    socket.on("drain", done);
    socket.on("close", done);
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(message)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

/** A short line on a fresh connection: the kernel takes it whole, or the connection is unusable. */
function writeLine(socket: BunSocket<undefined>, line: string): void {
  const bytes = Buffer.from(line, "latin1");
  if (socket.write(bytes) !== bytes.length) throw new Error("could not send the authentication");
}
