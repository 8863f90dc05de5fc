/**
 * What the fixture lines cannot show for BINANCE_SPOT and BYBIT_*: values JSON cannot carry (NaN sides),
 * refusal of malformed input, the ticker merge across messages, REST snapshots and control frames.
 */
import { describe, expect, test } from "bun:test";
import * as spot from "../src/connectors/binance-spot-normalize.ts";
import * as bybit from "../src/connectors/bybit-normalize.ts";
import type { Funding } from "../src/core/events.ts";

const RECEIVED = 1_700_000_000_123_456;
const LINEAR: bybit.BybitInstrumentContext = { symbol: "BTCUSDT", exchange: "BYBIT_LINEAR", sizing: { amountUnit: "base", contractValue: 1 } };
const SPOT: bybit.BybitInstrumentContext = { symbol: "BTCUSDT", exchange: "BYBIT_SPOT", sizing: { amountUnit: "base", contractValue: 1 } };

describe("BINANCE_SPOT normalizers", () => {
  const frame = (stream: string, data: unknown): string => JSON.stringify({ stream, data });
  const trade = { e: "trade", E: 1, s: "BTCUSDT", t: 7, p: "100.5", q: "2", T: 1, m: false, M: true };

  test("venue numbers are read strictly: a hostile price or quantity refuses the payload", () => {
    for (const bad of ["Infinity", "1e309", "0x10", " 5", "", "-1", "0"]) {
      expect(spot.normalizeFrame(frame("btcusdt@trade", { ...trade, p: bad }), RECEIVED, { symbol: "BTCUSDT" })).toEqual([]);
      expect(spot.normalizeFrame(frame("btcusdt@trade", { ...trade, q: bad }), RECEIVED, { symbol: "BTCUSDT" })).toEqual([]);
    }
    expect(spot.normalizeFrame(frame("btcusdt@trade", trade), RECEIVED, { symbol: "BTCUSDT" })).toHaveLength(1);
  });

  test("a payload is read by its stream name: an event type contradicting the stream gives nothing", () => {
    expect(spot.normalizeFrame(frame("btcusdt@bookTicker", trade), RECEIVED, { symbol: "BTCUSDT" })).toEqual([]);
    expect(spot.normalizeFrame(frame("btcusdt@depth@100ms", trade), RECEIVED, { symbol: "BTCUSDT" })).toEqual([]);
    expect(spot.normalizeFrame(frame("btcusdt@aggTrade", trade), RECEIVED, { symbol: "BTCUSDT" })).toEqual([]);
  });

  test("a bookTicker side is both above 0 or both 0; a price without quantity is refused", () => {
    const ticker = { u: 5, s: "BTCUSDT", b: "0.00000000", B: "0.00000000", a: "101.0", A: "3" };
    const [empty] = spot.normalizeFrame(frame("btcusdt@bookTicker", ticker), RECEIVED, { symbol: "BTCUSDT" });
    expect(empty).toMatchObject({ bidPrice: 0, bidAmount: 0, askPrice: 101, askAmount: 3, timestamp: RECEIVED });
    expect(spot.normalizeFrame(frame("btcusdt@bookTicker", { ...ticker, b: "100" }), RECEIVED, { symbol: "BTCUSDT" })).toEqual([]);
  });

  test("depth: U above u or a malformed level refuses the event; the REST body parses without a time", () => {
    const depth = { e: "depthUpdate", E: 1, s: "BTCUSDT", U: 10, u: 12, b: [["1.5", "0"]], a: [] };
    expect(spot.parseDepth(depth, RECEIVED)).toMatchObject({ firstId: 10, finalId: 12, time: 1, bids: [1.5, 0], asks: [] });
    expect(spot.parseDepth({ ...depth, U: 13 }, RECEIVED)).toBeUndefined();
    expect(spot.parseDepth({ ...depth, b: [["1.5"]] }, RECEIVED)).toBeUndefined();
    const body = { lastUpdateId: 1027024, bids: [["4.00000000", "431.00000000"]], asks: [["4.00000200", "12.00000000"]] };
    expect(spot.parseSnapshot(body, RECEIVED)).toEqual({ lastUpdateId: 1027024, receivedAt: RECEIVED, bids: [4, 431], asks: [4.000002, 12] });
    expect(spot.parseSnapshot({ ...body, lastUpdateId: "1" }, RECEIVED)).toBeUndefined();
  });

  test("control frames: acks, errors and the shutdown notice wherever its e sits", () => {
    expect(spot.classifyControl({ result: null, id: 3 })).toEqual({ kind: "ack", id: 3 });
    expect(spot.classifyControl({ code: 2, msg: "Invalid request: too many parameters" })).toEqual({
      kind: "error",
      id: undefined,
      code: 2,
      message: "Invalid request: too many parameters",
    });
    expect(spot.classifyControl({ e: "serverShutdown", E: 1 }).kind).toBe("shutdown");
    expect(spot.classifyControl({ stream: "x", data: { e: "serverShutdown", E: 1 } }).kind).toBe("shutdown");
    expect(spot.classifyControl({ event: { e: "serverShutdown", E: 1 } }).kind).toBe("shutdown");
    expect(spot.classifyControl({ stream: "btcusdt@trade", data: trade }).kind).toBe("other");
  });

  test("keys for duplicates: the trade id for trades, the update id for books and tickers", () => {
    expect(spot.eventKey(trade)).toBe(7);
    expect(spot.eventKey({ u: 400900217, s: "BNBUSDT" })).toBe(400900217);
    expect(spot.eventKey({ e: "depthUpdate", U: 1, u: 9 })).toBe(9);
  });
});

describe("BYBIT normalizers", () => {
  test("orderbook.1 with an empty side: NaN for that side, the other side kept", () => {
    const text = JSON.stringify({
      topic: "orderbook.1.BTCUSDT",
      ts: 1672304484978,
      type: "snapshot",
      data: { s: "BTCUSDT", b: [], a: [["16611.00", "0.029"]], u: 5, seq: 9 },
      cts: 1672304484976,
    });
    const [bbo] = bybit.normalizeFrame(text, RECEIVED, SPOT);
    expect(bbo).toMatchObject({ type: "bbo", askPrice: 16611, askAmount: 0.029, timestamp: 1672304484976000 });
    expect(Number.isNaN((bbo as { bidPrice: number }).bidPrice)).toBe(true);
    expect(Number.isNaN((bbo as { bidAmount: number }).bidAmount)).toBe(true);
  });

  test("malformed items are left out, the good ones of the same message kept", () => {
    const text = JSON.stringify({
      topic: "publicTrade.BTCUSDT",
      type: "snapshot",
      ts: 1,
      data: [
        { T: 1, s: "BTCUSDT", S: "Buy", v: "1e309", p: "1", i: "a" },
        { T: 1, s: "BTCUSDT", S: "Buy", v: "1", p: "1", i: "" },
        { T: "1", s: "BTCUSDT", S: "Buy", v: "1", p: "1", i: "b" },
        { T: 2, s: "BTCUSDT", S: "Sell", v: "1", p: "2", i: "c" },
      ],
    });
    expect(bybit.normalizeFrame(text, RECEIVED, LINEAR).map((event) => (event as { id: string }).id)).toEqual(["c"]);
  });

  test("a book message needs a type, integer u and seq, and strict levels", () => {
    const message = { topic: "orderbook.1000.BTCUSDT", type: "delta", ts: 1, data: { s: "BTCUSDT", b: [["1", "0"]], a: [], u: 2, seq: 3 } };
    expect(bybit.parseBook(message)).toMatchObject({ isSnapshot: false, updateId: 2, crossSequence: 3, time: 1 });
    expect(bybit.parseBook({ ...message, type: "update" })).toBeUndefined();
    expect(bybit.parseBook({ ...message, data: { ...message.data, u: "2" } })).toBeUndefined();
    expect(bybit.parseBook({ ...message, data: { ...message.data, b: [["-1", "1"]] } })).toBeUndefined();
  });

  test("the REST full-depth snapshot is a snapshot at its u and seq, timed by cts", () => {
    const result = { s: "BTCUSDT", a: [["62998.2", "0.198738"]], b: [["62998.1", "0.396837"]], ts: 1784103578352, u: 439925, seq: 2164890076, cts: 1784103578350 };
    expect(bybit.parseRestSnapshot(result)).toEqual({
      isSnapshot: true,
      updateId: 439925,
      crossSequence: 2164890076,
      time: 1784103578350,
      bids: [62998.1, 0.396837],
      asks: [62998.2, 0.198738],
    });
  });

  test("TickerMerge: deltas complete from what is known; nothing before a snapshot; a new snapshot replaces all", () => {
    const merge = new bybit.TickerMerge();
    const row = (fields: Partial<Funding>): Funding => ({
      type: "funding",
      exchange: "BYBIT_LINEAR",
      symbol: "BTCUSDT",
      timestamp: 1,
      localTimestamp: 2,
      markPrice: undefined,
      indexPrice: undefined,
      fundingRate: undefined,
      nextFundingTime: undefined,
      ...fields,
    });
    expect(merge.complete(row({ markPrice: 10 }), false)).toBeUndefined();
    expect(merge.complete(row({ markPrice: 10, indexPrice: 11, fundingRate: 0.001, nextFundingTime: 5 }), true)).toMatchObject({ markPrice: 10 });
    expect(merge.complete(row({ markPrice: 12, timestamp: 3 }), false)).toEqual(
      row({ markPrice: 12, indexPrice: 11, fundingRate: 0.001, nextFundingTime: 5, timestamp: 3 }),
    );
    expect(merge.complete(row({ fundingRate: -0.002 }), false)).toEqual(row({ markPrice: 12, indexPrice: 11, fundingRate: -0.002, nextFundingTime: 5 }));
    expect(merge.complete(row({ markPrice: 20 }), true)).toEqual(row({ markPrice: 20 }));
    merge.reset();
    expect(merge.complete(row({ markPrice: 21 }), false)).toBeUndefined();
  });

  test("ticker: a funding rate of the venue's form only; an unsigned price must be above 0", () => {
    const ticker = (data: Record<string, unknown>): string => JSON.stringify({ topic: "tickers.BTCUSDT", type: "delta", ts: 5, data: { symbol: "BTCUSDT", ...data } });
    expect(bybit.normalizeFrame(ticker({ fundingRate: "-0.0001" }), RECEIVED, LINEAR)).toMatchObject([{ fundingRate: -0.0001 }]);
    expect(bybit.normalizeFrame(ticker({ fundingRate: "1e-4" }), RECEIVED, LINEAR)).toEqual([]);
    expect(bybit.normalizeFrame(ticker({ markPrice: "-5" }), RECEIVED, LINEAR)).toEqual([]);
    expect(bybit.normalizeFrame(ticker({ nextFundingTime: "soon" }), RECEIVED, LINEAR)).toEqual([]);
  });

  test("topics: depth 1 is the BBO, full is the full book, any other depth a book", () => {
    expect(bybit.topicKind("orderbook.1.BTCUSDT")).toBe("orderbook.1");
    expect(bybit.topicKind("orderbook.1000.BTCUSDT")).toBe("orderbook");
    expect(bybit.topicKind("orderbook.full.BTCUSDT")).toBe("orderbook.full");
    expect(bybit.topicKind("tickers.BTC-26DEC25")).toBe("tickers");
    expect(bybit.topicKind("orderbook.rpi.BTCUSDT")).toBe("orderbook");
    expect(bybit.topicKind(undefined)).toBeUndefined();
  });

  test("control frames: subscription answers with their outcome, and the pongs of every public category", () => {
    expect(bybit.classifyControl({ success: true, ret_msg: "", conn_id: "c", req_id: "7", op: "subscribe" })).toEqual({
      kind: "subscribe",
      success: true,
      requestId: "7",
      message: "",
    });
    const refused = { success: false, ret_msg: "error:handler not found,topic:orderbook.40.BTCUSDT", conn_id: "c", req_id: "", op: "subscribe" };
    expect(bybit.classifyControl(refused)).toMatchObject({ kind: "subscribe", success: false, message: refused.ret_msg });
    expect(bybit.classifyControl({ success: true, ret_msg: "pong", conn_id: "c", op: "ping" }).kind).toBe("pong");
    expect(bybit.classifyControl({ args: ["1672916271846"], op: "pong" }).kind).toBe("pong");
    expect(bybit.classifyControl({ topic: "tickers.BTCUSDT" }).kind).toBe("other");
  });
});
