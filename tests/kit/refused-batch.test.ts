import { describe, expect, test } from "bun:test";
import { isolateRefusedBatch } from "../../src/connectors/kit/refused-batch.ts";

describe("isolateRefusedBatch", () => {
  test("a refused batch warns once and requests each item alone, in order", () => {
    const warnings: string[] = [];
    const alone: string[] = [];
    const isolated = isolateRefusedBatch(
      { items: ["btcusdt@depth", "nosuch@depth", "ethusdt@aggTrade"] },
      () => warnings.push("refused"),
      (item) => alone.push(item),
    );
    expect(isolated).toBe(true);
    expect(warnings).toEqual(["refused"]);
    expect(alone).toEqual(["btcusdt@depth", "nosuch@depth", "ethusdt@aggTrade"]);
  });

  test("a request of one item alone is not isolated: the caller fails that item", () => {
    const alone: string[] = [];
    let warned = false;
    const isolated = isolateRefusedBatch({ items: ["nosuch@depth"] }, () => (warned = true), (item) => alone.push(item));
    expect(isolated).toBe(false);
    expect(warned).toBe(false);
    expect(alone).toEqual([]);
  });

  test("the venue says what a batch is, and when the items are requested alone", () => {
    const alone: string[] = [];
    let later: (() => void) | undefined;
    // A batch of one subscription (a venue that batches on every open) is still isolated.
    const isolated = isolateRefusedBatch(
      { items: ["books:BTC-USDT"], batch: true },
      () => {},
      (item) => alone.push(item),
      (retry) => (later = retry),
    );
    expect(isolated).toBe(true);
    expect(alone).toEqual([]);
    later!();
    expect(alone).toEqual(["books:BTC-USDT"]);
    expect(isolateRefusedBatch({ items: ["a", "b"], batch: false }, () => {}, (item) => alone.push(item))).toBe(false);
  });
});
