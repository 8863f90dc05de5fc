/**
 * L2 rows as the sinks store them, from each venue's connector against its fake: when a venue's book has
 * no level at all, the snapshot that says so is stored as one row that resets the book (is_snapshot,
 * no side, NaN price and amounts), in Parquet (read back with DuckDB) and in QuestDB (the lines the ILP
 * server received). Without that row, a reader rebuilding the book from the rows keeps the levels from
 * before the empty snapshot. docs/data-model.md, `l2`.
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import { rowCount, type MarketEvent } from "../src/core/events.ts";
import { rebuildBook, startConnector, type ConnectorHarness } from "./support/connector-harness.ts";
import { FakeBinanceFutures } from "./support/fake-binance.ts";
import { FakeDeribit, type Level } from "./support/fake-deribit.ts";
import { FakeOkx } from "./support/fake-okx.ts";
import { IlpServer } from "./support/ilp-server.ts";
import { makeSink, query, removeTempDirectories, tempDirectory } from "./support/parquet-helpers.ts";
import { createTestSink } from "./support/questdb-harness.ts";

const cleanups: Array<() => Promise<unknown> | unknown> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(removeTempDirectories);

/** One stored L2 row, whichever sink it came from; `side` is undefined for a row without a level. */
interface StoredRow {
  readonly isSnapshot: boolean;
  readonly sequence: number;
  readonly timestamp: number;
  readonly side: string | undefined;
  readonly price: number;
  readonly amount: number;
}

type Book = { bids: Array<[number, number]>; asks: Array<[number, number]> };

/**
 * The documented reader: rows in stored order; the rows of one message share (is_snapshot, sequence,
 * timestamp); a snapshot message clears the book first; a row without a side carries no level.
 */
function replay(rows: readonly StoredRow[]): Book {
  const bids = new Map<number, number>();
  const asks = new Map<number, number>();
  let previous: StoredRow | undefined;
  for (const row of rows) {
    const newMessage =
      !previous || previous.isSnapshot !== row.isSnapshot || previous.sequence !== row.sequence || previous.timestamp !== row.timestamp;
    if (newMessage && row.isSnapshot) {
      bids.clear();
      asks.clear();
    }
    previous = row;
    const side = row.side === "bid" ? bids : row.side === "ask" ? asks : undefined;
    if (!side) continue;
    if (row.amount === 0) side.delete(row.price);
    else side.set(row.price, row.amount);
  }
  return {
    bids: [...bids].sort((a, b) => b[0] - a[0]),
    asks: [...asks].sort((a, b) => a[0] - b[0]),
  };
}

/** Writes the events through a real Parquet sink and reads the l2 rows back with DuckDB, in file order. */
async function parquetRows(events: readonly MarketEvent[]): Promise<StoredRow[]> {
  const directory = tempDirectory("xtrader-book-rows-");
  const { sink } = makeSink(directory);
  await sink.start();
  await sink.write([...events]);
  await sink.close();
  const rows = await query(
    `SELECT is_snapshot, sequence, epoch_us(timestamp) AS ts, side, price, amount
       FROM read_parquet('${directory}/l2/**/*.parquet', filename = true, file_row_number = true)
      ORDER BY filename, file_row_number`,
  );
  return rows.map((row) => ({
    isSnapshot: row.is_snapshot as boolean,
    sequence: Number(row.sequence),
    timestamp: Number(row.ts),
    side: row.side === "" ? undefined : (row.side as string),
    price: row.price as number,
    amount: row.amount as number,
  }));
}

/** Writes the events through the QuestDB sink and reads the l2 lines the ILP server received. */
async function questdbRows(events: readonly MarketEvent[]): Promise<StoredRow[]> {
  const server = await IlpServer.start();
  cleanups.push(() => server.stop());
  const { sink } = createTestSink({ ilpPort: server.port });
  await sink.start();
  await sink.write([...events]);
  await sink.close();
  // Every event is one row, a book one per level (and one for a snapshot without a level).
  await server.waitForRows(events.reduce((rows, event) => rows + rowCount(event), 0));
  return server.rowsIn("l2").map((row) => {
    const value = (name: string) => (row.fields[name] as { value: number | bigint | boolean } | undefined)?.value;
    return {
      isSnapshot: value("is_snapshot") as boolean,
      sequence: Number(value("sequence")),
      timestamp: Number(row.timestamp! / 1000n),
      side: row.symbols.side,
      price: value("price") === undefined ? Number.NaN : Number(value("price")),
      amount: value("amount") === undefined ? Number.NaN : Number(value("amount")),
    };
  });
}

/**
 * The checks for one venue: the emitted events hold an empty snapshot; in both sinks it is one row
 * (is_snapshot, no side, no price), and the book replayed from the stored rows equals the venue's.
 */
async function expectEmptySnapshotStored(h: ConnectorHarness, truth: Book): Promise<void> {
  const events = h.emitted.map((entry) => entry.event);
  const empty = events.filter((event) => event.type === "book_change" && event.isSnapshot && event.bids.length === 0 && event.asks.length === 0);
  expect(empty).toHaveLength(1);
  const sequence = (empty[0] as Extract<MarketEvent, { type: "book_change" }>).sequence;
  // The events themselves rebuild the venue's book (the connector did its part).
  const fromEvents = rebuildBook(events);
  expect({ bids: fromEvents.bids.sorted(), asks: fromEvents.asks.sorted() }).toEqual(truth);
  for (const [sink, rows] of [["parquet", await parquetRows(events)], ["questdb", await questdbRows(events)]] as const) {
    const marker = rows.filter((row) => row.isSnapshot && row.sequence === sequence);
    expect(marker, `${sink}: the empty snapshot's rows`).toHaveLength(1);
    expect(marker[0]!.side, `${sink}: side of the empty snapshot's row`).toBeUndefined();
    expect(Number.isNaN(marker[0]!.price) && Number.isNaN(marker[0]!.amount), `${sink}: no price or amount`).toBe(true);
    expect(replay(rows), `${sink}: the book replayed from the stored rows`).toEqual(truth);
  }
}

test("BINANCE_FUTURES: a REST snapshot with no level is stored as one row that empties the book", async () => {
  const venue = FakeBinanceFutures.start();
  cleanups.push(() => venue.stop());
  const h = startConnector("L2:BINANCE_FUTURES@BTCUSDT", venue.env);
  cleanups.push(() => h.stop());
  const market = venue.market();
  await venue.waitForSubscribers("btcusdt@depth@100ms");
  while (h.events("book_change").length < 4) {
    venue.depthStep();
    await Bun.sleep(5);
  }
  // Every level is removed, and the snapshot is taken right then; one more level arrives in the same
  // depth event, after the snapshot (so that event straddles it).
  venue.beforeSnapshot = (m) => {
    venue.beforeSnapshot = undefined;
    for (const price of [...m.bids.keys()]) m.setLevel("bid", price, 0);
    for (const price of [...m.asks.keys()]) m.setLevel("ask", price, 0);
  };
  venue.afterSnapshot = (m) => {
    venue.afterSnapshot = undefined;
    m.setLevel("bid", 640_000, 1_500);
    m.setLevel("ask", 640_010, 2_500);
    venue.flushDepth();
  };
  h.connector.resync(h.subscriptions[0]!, "overflow", "a resync forced by the test");
  await h.waitFor(
    () => venue.afterSnapshot === undefined && h.events("book_change").at(-1)?.sequence === market.lastEventFinalId,
    5000,
    "the book after the empty snapshot",
  );
  await h.stop();
  await expectEmptySnapshotStored(h, market.trueBook());
});

test("OKX_SWAP: an empty book (WebSocket snapshot, then REST) is stored as one row that empties the book", async () => {
  const okx = FakeOkx.start({ instruments: [{ instId: "BTC-USDT-SWAP", mid: 60_000, depth: 20 }], seed: 5, wsSnapshot: true });
  cleanups.push(() => okx.stop());
  const h = startConnector("L2:OKX_SWAP@BTC-USDT-SWAP", { ...okx.env("OKX_SWAP"), XTRADER_OKX_SWAP_SNAPSHOT_WAIT_MS: "200" });
  cleanups.push(() => h.stop());
  const market = okx.market("BTC-USDT-SWAP");
  await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
  await h.waitForEvents("book_change", 1);
  for (let i = 0; i < 3; i++) okx.step("BTC-USDT-SWAP", 1, 0);
  await h.waitFor(() => h.events("book_change").at(-1)?.sequence === market.seqId, 5000, "the first book");
  market.bids.clear();
  market.asks.clear();
  h.connector.resync(h.subscriptions[0]!, "overflow", "a resync forced by the test");
  await h.waitFor(() => h.events("book_change").some((event) => event.isSnapshot && event.bids.length + event.asks.length === 0), 5000, "the empty snapshot");
  for (let i = 0; i < 3; i++) okx.step("BTC-USDT-SWAP", 1, 0);
  await h.waitFor(() => h.events("book_change").at(-1)?.sequence === market.seqId, 5000, "the book after the empty snapshot");
  await h.stop();
  await expectEmptySnapshotStored(h, market.truth());
});

test("DERIBIT: a snapshot with `bids: [], asks: []` is stored as one row that empties the book", async () => {
  const deribit = FakeDeribit.start({ seed: 6, instruments: ["BTC-PERPETUAL"] });
  cleanups.push(() => deribit.stop());
  const h = startConnector("L2:DERIBIT@BTC-PERPETUAL", deribit.env());
  cleanups.push(() => h.stop());
  const market = deribit.market("BTC-PERPETUAL");
  await deribit.waitForSubscribed("book.BTC-PERPETUAL.100ms");
  for (let i = 0; i < 3; i++) deribit.bookStep("BTC-PERPETUAL");
  await h.waitFor(() => h.events("book_change").at(-1)?.sequence === market.changeId, 5000, "the first book");
  market.bids.clear();
  market.asks.clear();
  h.connector.resync(h.subscriptions[0]!, "overflow", "a resync forced by the test");
  await h.waitFor(() => h.events("book_change").some((event) => event.isSnapshot && event.bids.length + event.asks.length === 0), 5000, "the empty snapshot");
  // Levels come back after the empty snapshot.
  const bids: Level[] = [["new", 59_990, 500]];
  const asks: Level[] = [["new", 60_010, 700]];
  for (const level of bids) market.apply(true, level);
  for (const level of asks) market.apply(false, level);
  const change = deribit.nextChange("BTC-PERPETUAL", { bids, asks });
  market.lastChange = change;
  deribit.publish("book", "BTC-PERPETUAL", change);
  await h.waitFor(() => h.events("book_change").at(-1)?.sequence === market.changeId, 5000, "the book after the empty snapshot");
  await h.stop();
  await expectEmptySnapshotStored(h, market.truth());
});
