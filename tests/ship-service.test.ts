/**
 * End to end, the way production runs it: systemd/install.sh installs the compiled binary into a temporary
 * root, and the binary is started exactly as xtrader@.service's ExecStart would start it (its environment
 * files, working directory and state directory), against the fake Binance venue. It must become ready on
 * the Kubernetes probes' endpoints, record what the venue sent, and on SIGTERM stop within TimeoutStopSec
 * with every Parquet file complete, writing nowhere but the directory the unit's sandbox leaves writable.
 */
import { afterEach, expect, test } from "bun:test";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { appendFileSync, existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { OrderBook } from "../src/core/order-book.ts";
import { ensureBinary } from "./support/binary.ts";
import { FakeBinanceFutures } from "./support/fake-binance.ts";
import { parseExposition } from "./support/prometheus-text.ts";
import { install, temporaryRoot } from "./support/ship-install.ts";
import { startUnit, type UnitProcess } from "./support/ship-systemd.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Polls an asynchronous condition until it holds (a readiness wait, not a timing assertion). */
async function pollUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(20);
  }
}

/** A loopback port nobody listens on right now. */
function freePort(): number {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = server.port!;
  server.stop(true);
  return port;
}

/** Every file under `directory` with its size and modification time, relative to `directory`. */
function snapshot(directory: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (path: string) => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) walk(full);
      else {
        const stat = statSync(full, { throwIfNoEntry: false });
        files.set(relative(directory, full), stat ? `${stat.size}:${stat.mtimeMs}` : "gone");
      }
    }
  };
  walk(directory);
  return files;
}

/** Rows of one table, file by file in the order the files were written (names sort that way). */
async function readTable(dataDirectory: string, table: string): Promise<{ rows: Record<string, unknown>[]; codecs: Set<string> }> {
  const rows: Record<string, unknown>[] = [];
  const codecs = new Set<string>();
  const directory = join(dataDirectory, table);
  if (!existsSync(directory)) return { rows, codecs };
  const files = [...snapshot(directory).keys()].sort((a, b) => (a.split("/").at(-1)! < b.split("/").at(-1)! ? -1 : 1));
  for (const file of files) {
    const buffer = await asyncBufferFromFile(join(directory, file));
    const metadata = await parquetMetadataAsync(buffer);
    for (const group of metadata.row_groups) for (const column of group.columns) codecs.add(String(column.meta_data?.codec));
    rows.push(...((await parquetReadObjects({ file: buffer })) as Record<string, unknown>[]));
  }
  return { rows, codecs };
}

test("installed and started like xtrader@.service: collects from the venue, stops on SIGTERM with complete files", async () => {
  const fake = FakeBinanceFutures.start({ symbols: ["BTCUSDT"], seed: 8 });
  cleanups.push(() => fake.stop());
  const market = fake.market("BTCUSDT");

  const root = temporaryRoot("xtrader-service-");
  const subscriptions = "TRADES:BINANCE_FUTURES@BTCUSDT,L2:BINANCE_FUTURES@BTCUSDT,BBO:BINANCE_FUTURES@BTCUSDT";
  const installed = install(root, ensureBinary(), "e2e", subscriptions);
  expect(installed.exitCode).toBe(0);

  // What an operator edits: the instance file (endpoints, metrics, a credential that must never be logged)
  // and the shared file, which the unit reads first.
  const port = freePort();
  const secret = "s3cr3t-value-that-must-never-be-logged";
  appendFileSync(
    join(root, "etc/xtrader/e2e.env"),
    [
      "",
      "# test: the fake venue",
      ...Object.entries(fake.env).map(([name, value]) => `${name}=${value}`),
      `METRICS_ADDR=127.0.0.1:${port}`,
      "DERIBIT_CLIENT_ID=e2e-client",
      `DERIBIT_CLIENT_SECRET=${secret}`,
      "",
    ].join("\n"),
  );
  writeFileSync(join(root, "etc/xtrader/common.env"), "PARQUET_COMPRESSION=snappy\nXTRADER_RECONNECT_MIN_MS=50\n", { mode: 0o600 });

  const before = snapshot(root);
  let service: UnitProcess | undefined = startUnit({ unitFile: join(root, "etc/systemd/system/xtrader@.service"), instance: "e2e", root });
  cleanups.push(() => service?.child.kill("SIGKILL"));
  const url = `http://127.0.0.1:${port}`;
  const status = async (path: string) => {
    try {
      return (await fetch(`${url}${path}`)).status;
    } catch {
      return 0; // not listening yet
    }
  };

  // Ready on the readiness probe's endpoint once every subscription has data; alive on the liveness one.
  await pollUntil(
    async () => {
      if (service!.child.exitCode !== null) throw new Error(`xtrader exited early:\n${service!.journal()}`);
      fake.randomSteps(1);
      return (await status("/readyz")) === 200;
    },
    15_000,
    "/readyz to answer 200",
  );
  expect(await status("/healthz")).toBe(200);

  for (let step = 0; step < 400; step++) {
    fake.randomSteps(1);
    if (step % 25 === 0) await Bun.sleep(5);
  }
  // Everything sent has arrived: trades on their connection, and bookTicker, which shares the depth
  // connection and follows every depth event, stands for L2.
  const sentTrades = market.trades.filter((trade) => trade.delivered > 0);
  const sentTickers = market.bookTickers.filter((ticker) => ticker.delivered > 0);
  await pollUntil(
    async () => {
      const metrics = parseExposition(await (await fetch(`${url}/metrics`)).text());
      const received = (stream: string) =>
        metrics.value("xtrader_messages_received_total", { exchange: "BINANCE_FUTURES", stream, symbol: "BTCUSDT" });
      return received("TRADES") === sentTrades.length && received("BBO") === sentTickers.length;
    },
    10_000,
    "xtrader to receive every message sent",
  );

  const stopped = await service.stop();
  const journal = service.journal();
  service = undefined;
  expect(stopped, journal).toEqual({ exitCode: 0, signalCode: null, killedAfterTimeout: false });
  expect(journal).not.toContain(secret);

  // Nothing outside the unit's ReadWritePaths (the instance's state directory) was written.
  const writable = "var/lib/xtrader/e2e/";
  const after = snapshot(root);
  const changedOutside = [...after].filter(([file, state]) => !file.startsWith(writable) && before.get(file) !== state);
  expect(changedOutside).toEqual([]);

  // Complete files only: no temporary or journal files left, every file a readable Parquet file.
  const dataDirectory = join(root, writable, "data");
  const files = [...snapshot(dataDirectory).keys()];
  expect(files.length).toBeGreaterThanOrEqual(3);
  for (const file of files) expect(file.split("/").at(-1)).toMatch(/^[^.].*\.parquet$/);

  const trades = await readTable(dataDirectory, "trades");
  expect(trades.rows.map((row) => row.id)).toEqual(sentTrades.map((trade) => String(trade.frame.a)));
  expect(trades.rows.map((row) => row.price)).toEqual(sentTrades.map((trade) => Number(trade.frame.p)));
  expect([...trades.codecs]).toEqual(["SNAPPY"]); // from common.env

  const bbo = await readTable(dataDirectory, "bbo");
  expect(bbo.rows.length).toBe(sentTickers.length);
  const lastTicker = sentTickers.at(-1)!.frame;
  expect(bbo.rows.at(-1)).toMatchObject({ bid_price: Number(lastTicker.b), ask_price: Number(lastTicker.a) });

  // The book rebuilt from the stored rows (a snapshot resets it, deltas apply) is the venue's true book.
  const l2 = await readTable(dataDirectory, "l2");
  expect(l2.rows[0]!.is_snapshot).toBe(true);
  const book = new OrderBook();
  let previousEvent = "";
  for (const row of l2.rows) {
    const event = `${row.local_timestamp}/${row.sequence}/${row.is_snapshot}`;
    if (row.is_snapshot && event !== previousEvent) book.clear();
    previousEvent = event;
    (row.side === "bid" ? book.bids : book.asks).set(row.price as number, row.amount as number);
  }
  expect(book.isCrossed()).toBe(false);
  expect({ bids: book.bids.sorted(), asks: book.asks.sorted() }).toEqual(market.trueBook());

  expect((await readTable(dataDirectory, "gaps")).rows).toEqual([]);
});
