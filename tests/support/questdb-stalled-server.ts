/**
 * A QuestDB that hangs: a TCP server on 127.0.0.1 that accepts connections and never reads from them,
 * so the client's kernel buffers fill and its writes stall (a frozen server, a half-open connection).
 * stop() destroys every connection and frees the port for a real (test) server.
 */
import { createServer, type Server, type Socket } from "node:net";

export class StalledServer {
  connectionsAccepted = 0;
  port = 0;
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;

  private constructor() {
    this.server = createServer({ pauseOnConnect: true }, (socket) => {
      this.connectionsAccepted++;
      this.sockets.add(socket);
      socket.on("error", () => undefined);
      socket.on("close", () => this.sockets.delete(socket));
    });
  }

  static async start(port = 0): Promise<StalledServer> {
    const stalled = new StalledServer();
    await new Promise<void>((resolve, reject) => {
      stalled.server.once("error", reject);
      stalled.server.listen(port, "127.0.0.1", () => resolve());
    });
    const address = stalled.server.address();
    stalled.port = typeof address === "object" && address !== null ? address.port : port;
    return stalled;
  }

  /** Stops listening and destroys every connection; safe to call twice. */
  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Polls `check` every 10 ms until it holds (5 s at most). */
  async waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!check()) {
      if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms`);
      await Bun.sleep(10);
    }
  }

  /** Waits for a log line containing `text`. */
  waitForLog(lines: readonly string[], text: string, timeoutMs = 5000): Promise<void> {
    return this.waitFor(() => lines.some((line) => line.includes(text)), timeoutMs);
  }
}
