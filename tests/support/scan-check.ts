/**
 * Shared checks of the scanner tests: a fast frame reader (src/connectors/*-scan.ts) must read every frame
 * it accepts exactly as the connector's JSON.parse path reads it.
 */
import { expect } from "bun:test";
import { mutate, seededRandom } from "./random.ts";

interface Levels {
  readonly bids: readonly number[];
  readonly asks: readonly number[];
}

/** Field for field, and the levels bit for bit (-0 included, which toEqual takes for 0). */
export function expectSameRead(scanned: Levels | undefined, json: Levels): void {
  expect(scanned).toEqual(json);
  for (const [a, b] of [[scanned!.bids, json.bids], [scanned!.asks, json.asks]] as const) {
    expect(a.every((value, k) => Object.is(value, b[k]))).toBe(true);
  }
}

/**
 * `count` frames from `frame`, each mutated once anywhere: every one `scan` accepts must read as `viaJson`
 * (which throws on what the JSON path refuses) reads it. Returns how many it accepted.
 */
export function acceptedMutations<T extends Levels>(
  seed: number,
  count: number,
  frame: (random: () => number, index: number) => string,
  scan: (text: string) => T | undefined,
  viaJson: (text: string) => T,
): number {
  const random = seededRandom(seed);
  let accepted = 0;
  for (let i = 0; i < count; i++) {
    const text = mutate(random, frame(random, i));
    const scanned = scan(text);
    if (scanned === undefined) continue;
    accepted++;
    expectSameRead(scanned, viaJson(text));
  }
  return accepted;
}
