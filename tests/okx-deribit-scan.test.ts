/**
 * The fast readers for OKX `books` updates (src/connectors/okx-scan.ts) and Deribit book changes
 * (src/connectors/deribit-scan.ts) must agree with JSON.parse + the connectors' own level rules on every
 * frame they accept, and decline (undefined: the connector's JSON.parse path takes over) every frame that is
 * not exactly the venue's layout or carries a value the connector would treat differently.
 */
import { describe, expect, test } from "bun:test";
import { flattenLevels } from "../src/connectors/deribit-scan.ts";
import { scanDeribitBookChange } from "../src/connectors/deribit-scan.ts";
import { decimal } from "../src/connectors/json-scan.ts";
import { scanOkxBooksUpdate } from "../src/connectors/okx-scan.ts";
import { seededRandom } from "./support/random.ts";
import { acceptedMutations, expectSameRead } from "./support/scan-check.ts";

/** A positive number as text in the forms venues use: decimals, some longer than 15 digits. */
function numberText(random: () => number, max: number): string {
  const roll = random();
  if (roll < 0.03) return (1e-8 + random() * 1e-6).toFixed(12);
  if (roll < 0.05) return (1 + random() * max).toFixed(12); // more than 15 digits
  return (1 + random() * max).toFixed(Math.floor(random() * 9));
}

describe("OKX books updates", () => {
  function okxFrame(random: () => number, index: number): string {
    const side = () => {
      const levels: string[][] = [];
      const count = Math.floor(random() * 20);
      for (let i = 0; i < count; i++) {
        const size = random() < 0.15 ? "0" : numberText(random, 5000);
        levels.push([numberText(random, 100_000), size, "0", String(Math.floor(random() * 30))]);
      }
      return levels;
    };
    const prevSeqId = 1_000_000 + index * 7;
    const data = { asks: side(), bids: side(), ts: String(1_767_614_400_000 + index), checksum: 0, prevSeqId, seqId: prevSeqId + Math.floor(random() * 40) };
    return JSON.stringify({ arg: { channel: "books", instId: "BTC-USDT-SWAP" }, action: "update", data: [data] });
  }

  /** What the connector's JSON path takes from the frame (onMessage → onData → onBook → flatten). */
  function viaJson(text: string) {
    const message = JSON.parse(text);
    const data = message.data[0];
    const flat = (levels: string[][]) => {
      const out: number[] = [];
      for (const level of levels) {
        const price = decimal(level[0]);
        const size = decimal(level[1]);
        if (!(price > 0) || !(size >= 0)) throw new Error("level the connector refuses");
        out.push(price, size);
      }
      return out;
    };
    if (message.arg.channel !== "books" || message.action !== "update" || message.data.length !== 1) throw new Error("not a books update");
    if (data.checksum !== 0 || typeof data.prevSeqId !== "number" || typeof data.seqId !== "number") throw new Error("bad ids");
    const ts = decimal(data.ts);
    if (!Number.isSafeInteger(ts)) throw new Error("bad ts");
    return { instId: message.arg.instId, asks: flat(data.asks), bids: flat(data.bids), ts, checksum: 0 as const, prevSeqId: data.prevSeqId, seqId: data.seqId };
  }

  test("every frame in OKX's layout reads exactly as JSON.parse reads it", () => {
    const random = seededRandom(2026);
    for (let i = 0; i < 3000; i++) {
      const text = okxFrame(random, i);
      const scanned = scanOkxBooksUpdate(text);
      expect(scanned).toBeDefined();
      expectSameRead(scanned, viaJson(text));
    }
  });

  test("a frame mutated anywhere is declined or read exactly as JSON.parse reads it", () => {
    expect(acceptedMutations(77, 5000, okxFrame, scanOkxBooksUpdate, viaJson)).toBeGreaterThan(400);
  });

  test("frames in another shape, or with values the connector treats differently, are declined", () => {
    const base = '{"arg":{"channel":"books","instId":"BTC-USDT-SWAP"},"action":"update","data":[{"asks":[["65000.1","12","0","3"]],"bids":[["64999.9","0","0","0"]],"ts":"1767614400000","checksum":0,"prevSeqId":10,"seqId":12}]}';
    expect(scanOkxBooksUpdate(base)).toEqual(viaJson(base));
    const variants = [
      base.replace('"action":"update"', '"action":"snapshot"'),
      base.replace('"checksum":0', '"checksum":-855196043'), // non-zero: the JSON path keeps the texts
      base.replace('"checksum":0', '"checksum":-0'),
      base.replace('"channel":"books"', '"channel":"books5"'),
      base.replace('"instId":"BTC-USDT-SWAP"', '"instId":"BTC\\u002dUSDT-SWAP"'), // an escape
      base.replace('"arg":', ' "arg":'), // whitespace
      base.replace('"ts":', '"x":1,"ts":'), // a new field
      base.replace('"seqId":12}', '"seqId":12,"x":1}'),
      base.replace('"prevSeqId":10', '"prevSeqId":010'), // not JSON
      base.replace('"seqId":12', '"seqId":1.2e1'),
      base.replace("}]}", "},{}]}"), // two items
      base.replace('["65000.1","12","0","3"]', '["65000.1","-1","0","3"]'), // negative size
      base.replace('["65000.1","12","0","3"]', '["abc","12","0","3"]'),
      base.replace('["65000.1","12","0","3"]', '["65000.1"]'),
      base.replace('["65000.1","12","0","3"]', '["65000.1","12",0,"3"]'),
      base.replace('["65000.1","12","0","3"]', '["65000.1","1\\u0032","0","3"]'),
      base.replace('["65000.1","12","0","3"]', '[65000.1,"12","0","3"]'),
      base.replace('"ts":"1767614400000"', '"ts":1767614400000'),
      base.slice(0, -1),
      `${base} `,
      '{"arg":{"channel":"books","instId":"BTC-USDT-SWAP"},"action":"update","data":[{"asks":[],"bids":[],"ts":"1","checksum":0,"prevSeqId":1}]}',
      '{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT-SWAP"}}',
    ];
    for (const variant of variants) {
      expect(variant).not.toBe(base);
      expect(scanOkxBooksUpdate(variant)).toBeUndefined();
    }
  });

  test("empty sides and the heartbeat are read; numbers outside OKX's decimal form are declined", () => {
    const text = '{"arg":{"channel":"books","instId":"ETH-USDT"},"action":"update","data":[{"asks":[],"bids":[["3000.5","0.00000001","0","1"],["7","0","0","0"],["16","5"]],"ts":"2","checksum":0,"prevSeqId":-1,"seqId":0}]}';
    expect(scanOkxBooksUpdate(text)).toEqual({ instId: "ETH-USDT", asks: [], bids: [3000.5, 1e-8, 7, 0, 16, 5], ts: 2, checksum: 0, prevSeqId: -1, seqId: 0 });
    expect(scanOkxBooksUpdate(text)).toEqual(viaJson(text));
    const heartbeat = '{"arg":{"channel":"books","instId":"ETH-USDT"},"action":"update","data":[{"asks":[],"bids":[],"ts":"3","checksum":0,"prevSeqId":0,"seqId":0}]}';
    expect(scanOkxBooksUpdate(heartbeat)).toEqual(viaJson(heartbeat));
    // Number() would read each of these; none is an OKX decimal (the JSON path refuses them too).
    for (const hostile of ["1e-8", "Infinity", "1e309", "0x10", " 7", "7 ", "", "-1", "1.", ".5", "9".repeat(400)]) {
      expect(scanOkxBooksUpdate(text.replace('"0.00000001"', JSON.stringify(hostile)))).toBeUndefined();
      expect(scanOkxBooksUpdate(text.replace('["7"', `[${JSON.stringify(hostile)}`))).toBeUndefined();
    }
    expect(scanOkxBooksUpdate(text.replace('["16"', '["0"'))).toBeUndefined(); // a price of 0
  });
});

describe("Deribit book changes", () => {
  function deribitFrame(random: () => number, index: number): string {
    const side = () => {
      const levels: unknown[] = [];
      const count = Math.floor(random() * 20);
      for (let i = 0; i < count; i++) {
        const roll = random();
        const action = roll < 0.15 ? "delete" : roll < 0.55 ? "change" : "new";
        const price = Number(numberText(random, 100_000));
        const amount = random() < 0.03 ? (random() * 1e-6).toExponential(3) : numberText(random, 1e6);
        levels.push([action, price, action === "delete" ? 0 : Number(amount)]);
      }
      return levels;
    };
    const changeId = 70_000_000 + index * 13;
    const data = { type: "change", timestamp: 1_767_614_400_000 + index, prev_change_id: changeId - 1 - Math.floor(random() * 20), instrument_name: "BTC-PERPETUAL", change_id: changeId, bids: side(), asks: side() };
    return JSON.stringify({ jsonrpc: "2.0", method: "subscription", params: { channel: "book.BTC-PERPETUAL.100ms", data } });
  }

  /** What the connector's JSON path takes from the frame (onMessage → onBook → flattenLevels). */
  function viaJson(text: string) {
    const message = JSON.parse(text);
    const data = message.params.data;
    if (message.method !== "subscription" || data.type !== "change") throw new Error("not a book change");
    if (typeof data.change_id !== "number" || typeof data.prev_change_id !== "number" || typeof data.timestamp !== "number") throw new Error("bad ids");
    const bids: number[] = [];
    const asks: number[] = [];
    if (!flattenLevels(data.bids, bids) || !flattenLevels(data.asks, asks)) throw new Error("level the connector refuses");
    return { channel: message.params.channel, timestamp: Number(data.timestamp), prevChangeId: data.prev_change_id, changeId: data.change_id, bids, asks };
  }

  test("every frame in Deribit's layout reads exactly as JSON.parse reads it", () => {
    const random = seededRandom(2026);
    for (let i = 0; i < 3000; i++) {
      const text = deribitFrame(random, i);
      const scanned = scanDeribitBookChange(text);
      expect(scanned).toBeDefined();
      expectSameRead(scanned, viaJson(text));
    }
  });

  test("a frame mutated anywhere is declined or read exactly as JSON.parse reads it", () => {
    expect(acceptedMutations(78, 5000, deribitFrame, scanDeribitBookChange, viaJson)).toBeGreaterThan(500);
  });

  test("frames in another shape, or with values the connector treats differently, are declined", () => {
    const base = '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{"type":"change","timestamp":1554373911330,"prev_change_id":297217,"instrument_name":"BTC-PERPETUAL","change_id":297218,"bids":[["delete",5042.34,0]],"asks":[["new",5042.64,40.0]]}}}';
    expect(scanDeribitBookChange(base)).toEqual(viaJson(base));
    const variants = [
      base.replace('"type":"change"', '"type":"snapshot"'),
      base.replace('"prev_change_id":297217,', ""), // a snapshot without the field
      base.replace('"jsonrpc":', ' "jsonrpc":'),
      base.replace('"channel":"book.BTC-PERPETUAL.100ms"', '"channel":"book.BTC\\u002dPERPETUAL.100ms"'),
      base.replace('"change_id":297218', '"change_id":297218.5'),
      base.replace('"change_id":297218', '"change_id":0297218'),
      base.replace('"timestamp":1554373911330', '"timestamp":1.55e12'),
      base.replace('"bids":', '"x":1,"bids":'),
      base.replace("]]}}}", "]],\"x\":1}}}"),
      base.replace('["new",5042.64,40.0]', '["new",5042.64,-40]'), // negative amount
      base.replace('["new",5042.64,40.0]', '["new",-5042.64,40]'), // negative price
      base.replace('["new",5042.64,40.0]', '["new",0,40]'), // a price of 0
      base.replace('["new",5042.64,40.0]', '["new",null,40]'),
      base.replace('["new",5042.64,40.0]', '["new",5042.64,1e999]'), // Infinity (the JSON path's own call)
      base.replace('["new",5042.64,40.0]', '["new",1e999,40]'),
      base.replace('["new",5042.64,40.0]', '["add",5042.64,40]'),
      base.replace('["new",5042.64,40.0]', '["new",5042.64,40,1]'),
      base.replace('["new",5042.64,40.0]', '["new",5042.64]'),
      base.replace('["new",5042.64,40.0]', '["new","5042.64",40]'),
      base.replace('["new",5042.64,40.0]', '["new",05042.64,40]'),
      base.replace('["new",5042.64,40.0]', '["new",5042.,40]'),
      base.replace('["new",5042.64,40.0]', '["new",.5,40]'),
      base.replace('["delete",5042.34,0]', '["delete",5042.34,null]'),
      base.slice(0, -1),
      `${base} `,
      '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}',
    ];
    for (const variant of variants) {
      expect(variant).not.toBe(base);
      expect(scanDeribitBookChange(variant)).toBeUndefined();
    }
  });

  test("exponents, negative zero and long numbers (JSON's own forms) are read as JSON.parse reads them", () => {
    const text = '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.ETH_USDC-PERPETUAL.raw","data":{"type":"change","timestamp":5,"prev_change_id":0,"instrument_name":"ETH_USDC-PERPETUAL","change_id":1,"bids":[],"asks":[["new",3.0001e3,1E-2],["change",0.12345678901234567,-0],["delete",12,7]]}}}';
    const scanned = scanDeribitBookChange(text);
    expect(scanned).toEqual(viaJson(text));
    expect(scanned!.asks).toEqual([3000.1, 0.01, 0.12345678901234567, -0, 12, 0]);
    expect(Object.is(scanned!.asks[3], -0)).toBe(true);
  });
});
