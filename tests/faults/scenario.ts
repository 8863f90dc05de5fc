/**
 * Scenario scaffolding shared by the fault test files: start the venues and the binary, run the market,
 * stop cleanly, read the output. Each test file cleans up with `cleanup()` in afterEach.
 */
import { expect } from "bun:test";
import { join } from "node:path";
import { Venues, type VenuesOptions } from "./venues.ts";
import { countBy, verifyAll, type TradeCheckOptions } from "./verify.ts";
import { readParquetOutput, removeWorkDirectories, workDirectory, Xtrader, type Output } from "./xtrader.ts";

const cleanups: Array<() => Promise<unknown> | unknown> = [];

export function onCleanup(cleanup: () => Promise<unknown> | unknown): void {
  cleanups.push(cleanup);
}

export async function cleanup(): Promise<void> {
  for (const step of cleanups.splice(0).reverse()) {
    try {
      await step();
    } catch {
      // a cleanup failing must not hide the test's own result
    }
  }
  removeWorkDirectories();
}

export interface Running {
  readonly venues: Venues;
  readonly xtrader: Xtrader;
  readonly directory: string;
  readonly dataDirectory: string;
  readonly subscriptions: string;
}

/** Starts the venues (market running) and the binary with the Parquet sink; resolves once subscribed. */
export async function startScenario(
  options: VenuesOptions & {
    readonly env?: Record<string, string>;
    readonly args?: readonly string[];
    readonly streams?: readonly string[];
    readonly prefix?: readonly string[];
    readonly dataDirectory?: string;
    /** Runs before the market and the binary start (queue faults for the first requests). */
    readonly beforeStart?: (venues: Venues) => void;
  },
): Promise<Running> {
  const venues = new Venues(options);
  onCleanup(() => venues.stop());
  options.beforeStart?.(venues);
  const directory = workDirectory();
  const dataDirectory = options.dataDirectory ?? join(directory, "data");
  const subscriptions = venues.subscriptions(options.streams);
  venues.start();
  const xtrader = startBinary({ venues, directory, dataDirectory, subscriptions, env: options.env, args: options.args, prefix: options.prefix });
  await venues.subscribed(options.streams).catch((error) => {
    throw new Error(`${(error as Error).message}\n--- xtrader log ---\n${xtrader.tail()}`);
  });
  return { venues, xtrader, directory, dataDirectory, subscriptions };
}

export function startBinary(options: {
  readonly venues: Venues;
  readonly directory: string;
  readonly dataDirectory: string;
  readonly subscriptions: string;
  readonly env?: Record<string, string>;
  readonly args?: readonly string[];
  readonly prefix?: readonly string[];
}): Xtrader {
  const xtrader = Xtrader.start({
    args: ["--subscriptions", options.subscriptions, "--output-directory", options.dataDirectory, ...(options.args ?? [])],
    env: { ...options.venues.env, ...options.env },
    cwd: options.directory,
    prefix: options.prefix,
  });
  onCleanup(() => xtrader.kill("SIGKILL"));
  return xtrader;
}

/** Quiesces the market, stops the binary with SIGTERM (exit 0 expected) and reads the files. */
export async function finish(running: Running): Promise<Output> {
  await running.venues.quiesce();
  const code = await running.xtrader.stop();
  if (code !== 0) throw new Error(`xtrader exited with ${code}\n--- xtrader log ---\n${running.xtrader.tail()}`);
  return readParquetOutput(running.dataDirectory);
}

/**
 * The common assertions: every check of verify.ts passes, nothing unfinished is left, and every
 * subscribed instrument has trades and book messages (so a scenario cannot pass by writing nothing).
 */
export function expectFaithful(output: Output, venues: Venues, options: TradeCheckOptions & { readonly leftoversAllowed?: boolean } = {}): void {
  expect(verifyAll(output, venues.truth, options)).toEqual([]);
  if (!options.leftoversAllowed) expect(output.leftovers).toEqual([]);
  const trades = countBy(output.trades);
  const books = countBy(output.l2);
  for (const key of venues.truth.books.keys()) {
    expect(trades.get(key) ?? 0, `trades of ${key}`).toBeGreaterThan(0);
    expect(books.get(key) ?? 0, `l2 rows of ${key}`).toBeGreaterThan(0);
  }
}
