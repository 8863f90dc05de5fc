/**
 * The compiled binary as a child process for the fault suite: started with exactly the given environment
 * (plus PATH), JSON logs collected line by line, signals, exit code. And the readers that turn what it
 * wrote (Parquet files) into plain rows for verify.ts.
 */
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { ensureBinary } from "../support/binary.ts";
import { waitUntil } from "../support/fake-venue.ts";
import { parseExposition, type Exposition } from "../support/prometheus-text.ts";

/**
 * Settings every scenario shares: fast reconnects, a light resync brake (scenarios break each book
 * several times a second; the brake itself is tested in tests/kit), frequent journal flushes, JSON logs.
 */
export const BASE_ENV: Readonly<Record<string, string>> = {
  XTRADER_RECONNECT_MIN_MS: "50",
  XTRADER_RECONNECT_MAX_MS: "200",
  XTRADER_RESYNC_BACKOFF_MIN_MS: "1",
  XTRADER_RESYNC_BACKOFF_MAX_MS: "20",
  PARQUET_FLUSH_INTERVAL_MS: "100",
  RUST_LOG: "info",
  LOG_FORMAT: "json",
};

export interface LogLine {
  readonly level: string;
  readonly message: string;
  readonly raw: string;
}

export class Xtrader {
  readonly logs: LogLine[] = [];
  readonly exited: Promise<number>;
  private readonly listeners: Array<() => void> = [];
  private readonly done: Promise<void>;

  private constructor(readonly child: ReturnType<typeof Bun.spawn>) {
    this.done = Promise.all([this.collect(child.stdout as ReadableStream<Uint8Array>), this.collect(child.stderr as ReadableStream<Uint8Array>)]).then(() => {});
    this.exited = child.exited;
  }

  /**
   * Starts dist/xtrader. `prefix` wraps the command (e.g. a shell that sets a file-size limit first).
   */
  static start(options: {
    readonly args: readonly string[];
    readonly env: Record<string, string>;
    readonly cwd: string;
    readonly prefix?: readonly string[];
  }): Xtrader {
    const child = Bun.spawn([...(options.prefix ?? []), ensureBinary(), ...options.args], {
      cwd: options.cwd,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...BASE_ENV, ...options.env },
      stdout: "pipe",
      stderr: "pipe",
    });
    return new Xtrader(child);
  }

  get pid(): number {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  private async collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let rest = "";
    const push = (raw: string) => {
      if (raw === "") return;
      let line: LogLine;
      try {
        const parsed = JSON.parse(raw) as { level?: unknown; message?: unknown };
        line = { level: String(parsed.level), message: String(parsed.message), raw };
      } catch {
        line = { level: "text", message: raw, raw };
      }
      this.logs.push(line);
      for (const listener of this.listeners.splice(0)) listener();
    };
    for await (const chunk of stream) {
      rest += decoder.decode(chunk, { stream: true });
      let newline = rest.indexOf("\n");
      while (newline >= 0) {
        push(rest.slice(0, newline));
        rest = rest.slice(newline + 1);
        newline = rest.indexOf("\n");
      }
    }
    push(rest);
  }

  listen(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** Resolves with the first log line (so far or future) whose message matches. */
  waitForLog(pattern: RegExp, timeoutMs = 15_000): Promise<LogLine> {
    return waitUntil(() => this.logs.find((line) => pattern.test(line.message)), timeoutMs, this, `a log line matching ${pattern}`);
  }

  /** Log lines at warn/error level, for assertions and failure messages. */
  problems(): string[] {
    return this.logs.filter((line) => line.level === "warn" || line.level === "error" || line.level === "fatal" || line.level === "text").map((line) => line.message);
  }

  /** The /metrics endpoint of a run started with `--metrics-addr 127.0.0.1:0` (the address is logged). */
  async metricsUrl(): Promise<string> {
    const line = await this.waitForLog(/^metrics on http:\/\/\S+ /);
    return /^metrics on (http:\/\/\S+) /.exec(line.message)![1]!;
  }

  async scrape(): Promise<Exposition> {
    const response = await fetch(`${await this.metricsUrl()}/metrics`);
    return parseExposition(await response.text());
  }

  /** Sum of a metric's samples whose labels include `labels`. */
  async metric(name: string, labels: Readonly<Record<string, string>> = {}): Promise<number> {
    return (await this.scrape()).samples(name, labels).reduce((sum, sample) => sum + sample.value, 0);
  }

  /** Polls /metrics until the sum of a metric's matching samples reaches `atLeast`. */
  async waitForMetric(name: string, labels: Readonly<Record<string, string>>, atLeast: number, timeoutMs = 20_000): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const value = await this.metric(name, labels);
      if (value >= atLeast) return value;
      if (performance.now() > deadline) {
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${name} ${JSON.stringify(labels)} >= ${atLeast} (is ${value})\n${this.tail()}`);
      }
      await Bun.sleep(100);
    }
  }

  kill(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** SIGTERM, then the exit code (SIGKILL and -1 after `timeoutMs`). Waits for the logs to be read. */
  async stop(timeoutMs = 25_000): Promise<number> {
    this.kill("SIGTERM");
    const code = await Promise.race([this.exited, Bun.sleep(timeoutMs).then(() => -1)]);
    if (code === -1) this.kill("SIGKILL");
    await Promise.race([this.done, Bun.sleep(2000)]);
    return code;
  }

  /** Output for a failed assertion: the last lines of the log. */
  tail(lines = 40): string {
    return this.logs
      .slice(-lines)
      .map((line) => `${line.level}: ${line.message}`)
      .join("\n");
  }
}

// ── temporary directories ──

const created: string[] = [];

export function workDirectory(prefix = "xtrader-faults-"): string {
  const directory = mkdtempSync(join(tmpdir(), prefix));
  created.push(directory);
  return directory;
}

export function removeWorkDirectories(): void {
  for (const directory of created.splice(0)) rmSync(directory, { recursive: true, force: true });
}

// ── reading the output ──

/** One stored row, with timestamps and sequences as numbers (µs). */
export type Row = Record<string, unknown> & {
  readonly exchange: string;
  readonly symbol: string;
  readonly timestamp: number;
  readonly local_timestamp: number;
};

export interface Output {
  readonly trades: Row[];
  readonly l2: Row[];
  readonly bbo: Row[];
  readonly gaps: Row[];
  readonly funding: Row[];
  readonly liquidations: Row[];
  /**
   * Hidden leftovers (`.x.tmp`, `.x.journal`, ...): those of the work directory `.inprogress/` by their path
   * under it (`trades/exchange=.../.x.journal`, `rows-….log`), others relative to the output directory.
   */
  readonly leftovers: string[];
  /** Complete data files relative to the output directory. */
  readonly files: string[];
}

export function listFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (directory: string) => {
    let entries;
    try {
      entries = readdirSync(directory, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(directory, entry.name);
      if (entry.isDirectory()) walk(path);
      else out.push(relative(root, path));
    }
  };
  walk(root);
  return out.sort();
}

const TABLES = ["trades", "l2", "bbo", "gaps", "funding", "liquidations"] as const;

/**
 * Every row of every complete Parquet file, per table, in write order: files sorted by path (partition,
 * then the HHMMSS-NNNN name that sorts in opening order), rows in file order.
 */
export async function readParquetOutput(root: string): Promise<Output> {
  const files = listFiles(root);
  const tables: Record<string, Row[]> = Object.fromEntries(TABLES.map((table) => [table, []]));
  for (const path of files) {
    if (!path.endsWith(".parquet") || path.split("/").at(-1)!.startsWith(".")) continue;
    const table = path.split("/")[0]!;
    if (!(table in tables)) continue;
    const file = await asyncBufferFromFile(join(root, path));
    const rows = (await parquetReadObjects({
      file,
      compressors: { ZSTD: (input: Uint8Array) => new Uint8Array(Bun.zstdDecompressSync(input)) },
      parsers: { timestampFromMicroseconds: (micros: bigint | number) => Number(micros) } as never,
    })) as Record<string, unknown>[];
    for (const row of rows) {
      for (const [key, value] of Object.entries(row)) if (typeof value === "bigint") row[key] = Number(value);
      tables[table]!.push(row as Row);
    }
  }
  return output(
    tables,
    // Files being written are in the work directory under their table's relative path: named by that path;
    // the rows log of a run (`.inprogress/rows-*.log`) by its name.
    files.filter((path) => path.split("/").at(-1)!.startsWith(".") || /^\.inprogress\/rows-[^/]*\.log$/.test(path)).map((path) => path.replace(/^\.inprogress\//, "")),
    files.filter((path) => path.endsWith(".parquet") && !path.split("/").at(-1)!.startsWith(".")),
  );
}

function output(tables: Record<string, Row[]>, leftovers: string[], files: string[]): Output {
  return {
    trades: tables.trades!,
    l2: tables.l2!,
    bbo: tables.bbo!,
    gaps: tables.gaps!,
    funding: tables.funding!,
    liquidations: tables.liquidations!,
    leftovers,
    files,
  };
}

// ── reading what reached QuestDB (the strict ILP test server) ──

/**
 * The rows QuestDB holds, as the test server stored them (IlpServer.storedRows(): deduplicated on the
 * DEDUP UPSERT KEYS the tables were created with, a later row replacing an earlier one with the same
 * keys, as QuestDB does): values as plain numbers/strings, the designated timestamp (ns) back in µs.
 */
export function ilpOutput(rows: readonly import("../support/ilp-server.ts").IlpRow[]): Output {
  const tables: Record<string, Row[]> = Object.fromEntries(TABLES.map((table) => [table, []]));
  for (const ilp of rows) {
    if (!(ilp.table in tables)) continue;
    const row: Record<string, unknown> = { ...ilp.symbols };
    for (const [name, value] of Object.entries(ilp.fields)) {
      row[name] = typeof value.value === "bigint" ? Number(value.value) : value.value;
    }
    row.timestamp = ilp.timestamp === undefined ? undefined : Number(ilp.timestamp / 1000n);
    tables[ilp.table]!.push(row as Row);
  }
  // QuestDB returns a table in designated-timestamp order; books are read ORDER BY timestamp, sequence
  // (docs/sinks/questdb.md). Replaying them in that order, not arrival order, checks the rule that a
  // snapshot never sorts after the deltas applied on top of it.
  tables.l2!.sort((a, b) => (a.timestamp as number) - (b.timestamp as number) || (a.sequence as number) - (b.sequence as number));
  return output(tables, [], []);
}
