/** Parent side of bench/ilp-counter.ts: starts it and talks to it over IPC. */
import { join } from "node:path";
import type { Subprocess } from "bun";

interface Reply {
  type: string;
  [key: string]: unknown;
}

export interface CounterStats {
  rows: number;
  bytes: number;
  firstAt: number;
  lastAt: number;
  connections: number;
  lag: { samples: number; p50?: number; p99?: number; max?: number };
}

export class CounterProcess {
  ilpPort = 0;
  httpPort = 0;
  private readonly waiting = new Map<string, (reply: Reply) => void>();
  private process: Subprocess | undefined;

  static async start(): Promise<CounterProcess> {
    const counter = new CounterProcess();
    const listening = counter.next("listening");
    counter.process = Bun.spawn([process.execPath, join(import.meta.dir, "..", "ilp-counter.ts")], {
      stdout: "inherit",
      stderr: "inherit",
      ipc: (message: Reply) => counter.receive(message),
    });
    const reply = await listening;
    counter.ilpPort = reply.ilpPort as number;
    counter.httpPort = reply.httpPort as number;
    return counter;
  }

  /** Environment for xtrader's QuestDB sink. */
  env(): Record<string, string> {
    return { QUESTDB_HOST: "127.0.0.1", QUESTDB_ILP_PORT: String(this.ilpPort), QUESTDB_HTTP_PORT: String(this.httpPort) };
  }

  async reset(): Promise<void> {
    await this.request({ type: "reset" }, "reset");
  }

  async measureLagSince(sinceMicros: number): Promise<void> {
    await this.request({ type: "lag", sinceMicros }, "lag");
  }

  /** Resolves with the arrival time (epoch ms) of the row that made `rows`, or rejects on timeout. */
  async waitForRows(rows: number, timeoutMs: number): Promise<number> {
    const reply = await this.request({ type: "wait", rows, timeoutMs }, "reached", "timeout");
    if (reply.type === "timeout") throw new Error(`QuestDB stand-in received ${reply.rows as number} of ${rows} rows within ${timeoutMs} ms`);
    return reply.at as number;
  }

  async stats(): Promise<CounterStats> {
    return (await this.request({ type: "stats" }, "stats")) as unknown as CounterStats;
  }

  stop(): void {
    try {
      this.process?.send({ type: "stop" });
    } catch {
      // already gone
    }
    setTimeout(() => this.process?.kill(), 500).unref?.();
  }

  private request(message: Reply, ...answers: string[]): Promise<Reply> {
    const reply = Promise.race(answers.map((answer) => this.next(answer)));
    this.process!.send(message);
    return reply;
  }

  private next(type: string): Promise<Reply> {
    return new Promise((resolve) => this.waiting.set(type, resolve));
  }

  private receive(message: Reply): void {
    const resolve = this.waiting.get(message.type);
    if (!resolve) return;
    this.waiting.delete(message.type);
    resolve(message);
  }
}
