/**
 * The diff-depth fast reader (src/connectors/binance-futures-scan.ts) must agree with JSON.parse on every
 * frame it accepts, and decline (undefined: the connector's JSON.parse path takes over) every frame that is
 * not exactly Binance's layout or carries a value the connector would reject.
 */
import { expect, test } from "bun:test";
import { scanAggTradeFrame, scanDepthFrame } from "../src/connectors/binance-futures-scan.ts";
import { decimal } from "../src/connectors/json-scan.ts";
import { seededRandom } from "./support/random.ts";
import { acceptedMutations, expectSameRead } from "./support/scan-check.ts";

function frame(random: () => number, index: number): string {
  const side = () => {
    const levels: Array<[string, string]> = [];
    const count = Math.floor(random() * 25);
    for (let i = 0; i < count; i++) {
      const price = (1 + random() * 100_000).toFixed(Math.floor(random() * 8));
      const amount = random() < 0.15 ? "0.000" : (random() * 1000).toFixed(Math.floor(random() * 9));
      levels.push([price, amount]);
    }
    return levels;
  };
  const first = 1_000_000 + index * 10;
  const data = { e: "depthUpdate", E: 1_767_614_400_000 + index, T: 1_767_614_399_990 + index, s: "BTCUSDT", U: first, u: first + Math.floor(random() * 9), pu: first - 3, b: side(), a: side() };
  return JSON.stringify({ stream: "btcusdt@depth@100ms", data });
}

/** What the connector's JSON path makes of a frame (same rules as parseDepth/flatLevels). */
function viaJson(text: string) {
  const { stream, data } = JSON.parse(text);
  const flat = (levels: Array<[string, string]>) => levels.flatMap(([price, amount]) => [decimal(price), decimal(amount)]);
  return { stream, eventTime: data.E, transactionTime: data.T, firstId: data.U, finalId: data.u, previousFinalId: data.pu, bids: flat(data.b), asks: flat(data.a) };
}

test("every frame in Binance's layout reads exactly as JSON.parse reads it", () => {
  const random = seededRandom(2026);
  for (let i = 0; i < 3000; i++) {
    const text = frame(random, i);
    expectSameRead(scanDepthFrame(text), viaJson(text));
  }
});

test("a frame mutated anywhere is declined or read exactly as JSON.parse reads it", () => {
  expect(acceptedMutations(79, 5000, frame, scanDepthFrame, viaJson)).toBeGreaterThan(500);
});

test("frames in any other shape, or with values the connector rejects, are declined", () => {
  const base = frame(seededRandom(1), 1);
  const variants = [
    base.replace('"E":', '"X":1,"E":'), // a new field before E
    base.replace(',"pu":', ',"x":"y","pu":'), // a new field in between
    base.replace('}}', ',"z":1}}'), // a new field at the end
    base.replace('"stream":', ' "stream":'), // whitespace
    base.replace('"depthUpdate"', '"depthUpdateX"'),
    base.replace(/"U":\d+/, '"U":-1'),
    base.replace(/"U":(\d+)/, '"U":0$1'), // a leading zero: not JSON (JSON.parse refuses the frame)
    base.replace(/"u":\d+/, '"u":1.5'),
    base.replace(/"u":\d+/, '"u":5'), // u < U
    base.slice(0, -1), // truncated
    `${base} `,
    base.replace(/\["[^"]+","[^"]+"\]/, '["","1.0"]'), // empty price
    base.replace(/\["[^"]+","[^"]+"\]/, '["0","1.0"]'), // price not positive
    base.replace(/\["[^"]+","[^"]+"\]/, '["1.5"," 2"]'), // whitespace in a number
    base.replace(/\["[^"]+","[^"]+"\]/, '["1.5","abc"]'),
    base.replace(/\["[^"]+","[^"]+"\]/, '["1.5","2",3]'), // extra element in a level
    base.replace(/\["[^"]+","[^"]+"\]/, "[1.5,2]"), // numbers instead of strings
    JSON.stringify({ stream: "btcusdt@aggTrade", data: { e: "aggTrade", E: 1 } }),
    JSON.stringify({ result: null, id: 3 }),
  ];
  for (const variant of variants) {
    expect(variant).not.toBe(base);
    expect(scanDepthFrame(variant)).toBeUndefined();
  }
  expect(scanDepthFrame(base)).toEqual(viaJson(base));
});

test("empty sides and long decimals are read; numbers outside Binance's decimal form are declined", () => {
  const text = '{"stream":"ethusdt@depth@100ms","data":{"e":"depthUpdate","E":2,"T":1,"s":"ETHUSDT","U":10,"u":12,"pu":9,"b":[],"a":[["3000.5","0.00000001"],["3001","0"],["3002","1234567.123456789012"]]}}';
  expect(scanDepthFrame(text)).toEqual({
    stream: "ethusdt@depth@100ms",
    eventTime: 2,
    transactionTime: 1,
    firstId: 10,
    finalId: 12,
    previousFinalId: 9,
    bids: [],
    asks: [3000.5, 1e-8, 3001, 0, 3002, 1234567.123456789],
  });
  // Number() would read each of these; none is a Binance decimal (the JSON path refuses them too).
  for (const hostile of ["1e-8", "Infinity", "1e309", "0x10", " 5", "5 ", "", "-1", "+1", "1.", ".5", "1.2.3", "9".repeat(400)]) {
    expect(scanDepthFrame(text.replace('"0.00000001"', JSON.stringify(hostile)))).toBeUndefined();
    expect(scanDepthFrame(text.replace('["3001"', `[${JSON.stringify(hostile)}`))).toBeUndefined();
  }
});

// ── aggTrade ──

function tradeFrame(random: () => number, index: number): string {
  const first = 90_000_000 + index * 3;
  // Field order as documented (Aggregate-Trade-Streams); JSON.stringify keeps insertion order.
  const data = {
    e: "aggTrade",
    E: 1_767_614_400_000 + index,
    s: "ETHUSDT",
    a: 5_000_000 + index,
    p: (1 + random() * 100_000).toFixed(Math.floor(random() * 8)),
    q: (0.001 + random() * 1000).toFixed(Math.max(3, Math.floor(random() * 9))),
    f: first,
    l: first + Math.floor(random() * 3),
    T: 1_767_614_399_990 + index,
    m: random() < 0.5,
  };
  return JSON.stringify({ stream: "ethusdt@aggTrade", data });
}

/** What the connector's JSON path (normalizeTrade) reads from a frame. */
function tradeViaJson(text: string) {
  const { stream, data } = JSON.parse(text);
  return { stream, tradeId: data.a, price: decimal(data.p), quantity: decimal(data.q), tradeTime: data.T, buyerIsMaker: data.m };
}

test("every aggTrade frame in Binance's documented layout reads exactly as JSON.parse reads it", () => {
  const random = seededRandom(2027);
  for (let i = 0; i < 3000; i++) {
    const text = tradeFrame(random, i);
    expect(scanAggTradeFrame(text)).toEqual(tradeViaJson(text));
  }
});

test("aggTrade frames in any other shape, or with values the connector rejects, are declined", () => {
  const base = tradeFrame(seededRandom(3), 1);
  expect(scanAggTradeFrame(base)).toBeDefined();
  const variants = [
    base.replace('"a":', '"nq":"1.0","a":'), // a new field
    base.replace(/"s":"ETHUSDT","a":(\d+)/, '"a":$1,"s":"ETHUSDT"'), // fields moved
    base.replace('}}', ',"z":1}}'),
    base.replace('"stream":', ' "stream":'),
    base.replace('"aggTrade","E"', '"trade","E"'),
    base.replace(/"a":\d+/, '"a":-1'),
    base.replace(/"a":\d+/, '"a":"12"'),
    base.replace(/"T":\d+/, '"T":1.5'),
    base.replace(/"p":"[^"]*"/, '"p":""'),
    base.replace(/"p":"[^"]*"/, '"p":"0"'),
    base.replace(/"p":"[^"]*"/, '"p":"-1.5"'),
    base.replace(/"q":"[^"]*"/, '"q":" 2"'),
    base.replace(/"q":"[^"]*"/, '"q":"0"'), // a trade of nothing
    base.replace(/"q":"[^"]*"/, '"q":"Infinity"'),
    base.replace(/"p":"[^"]*"/, '"p":"1e309"'),
    base.replace(/"p":"[^"]*"/, '"p":"0x10"'),
    base.replace(/"q":"[^"]*"/, '"q":"abc"'),
    base.replace(/"p":"([^"]*)"/, '"p":$1'), // a number instead of a string
    base.replace(/"m":(true|false)/, '"m":1'),
    base.replace(/"m":(true|false)/, '"m":"true"'),
    base.slice(0, -1),
    `${base} `,
  ];
  for (const variant of variants) {
    expect(variant).not.toBe(base);
    expect(scanAggTradeFrame(variant)).toBeUndefined();
  }
  // A depth frame is not a trade, and a trade frame is not a depth update.
  expect(scanAggTradeFrame(frame(seededRandom(4), 2))).toBeUndefined();
  expect(scanDepthFrame(base)).toBeUndefined();
});
