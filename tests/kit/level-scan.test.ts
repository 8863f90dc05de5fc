/**
 * The one level scanner (src/connectors/kit/level-scan.ts) under every venue's fast reader must read a
 * level array exactly as the venue's JSON path reads it after JSON.parse (Binance's flatLevels, OKX's
 * flatten, Deribit's flattenLevels), or decline it (-1: the frame then takes the JSON path). Checked on
 * seeded arrays in both layouts, on the same arrays mutated anywhere, and at an offset inside a frame.
 */
import { describe, expect, test } from "bun:test";
import { flatLevels } from "../../src/connectors/binance-futures-normalize.ts";
import { flattenLevels } from "../../src/connectors/deribit-scan.ts";
import { ACTION_NUMBER_LEVELS, DECIMAL_STRING_LEVELS, scanLevels } from "../../src/connectors/kit/level-scan.ts";
import { flatten } from "../../src/connectors/okx-normalize.ts";
import { mutate, seededRandom } from "../support/random.ts";

/** A positive decimal as venues write it: 0 to 8 decimals, sometimes more than 15 digits or tiny. */
function decimalText(random: () => number): string {
  const roll = random();
  if (roll < 0.03) return (1e-8 + random() * 1e-6).toFixed(12);
  if (roll < 0.05) return (1 + random() * 100_000).toFixed(12);
  return (1 + random() * 100_000).toFixed(Math.floor(random() * 9));
}

/** Binance-like ([price, size]) and OKX-like ([price, size, "0", count]) levels in one array. */
function decimalLevels(random: () => number): string {
  const levels: string[][] = [];
  const count = Math.floor(random() * 12);
  for (let i = 0; i < count; i++) {
    const level = [decimalText(random), random() < 0.15 ? "0" : decimalText(random)];
    if (random() < 0.5) level.push("0", String(Math.floor(random() * 30)));
    levels.push(level);
  }
  return JSON.stringify(levels);
}

function actionLevels(random: () => number): string {
  const levels: unknown[] = [];
  const count = Math.floor(random() * 12);
  for (let i = 0; i < count; i++) {
    const roll = random();
    const action = roll < 0.15 ? "delete" : roll < 0.55 ? "change" : "new";
    const amount = random() < 0.03 ? Number((random() * 1e-6).toExponential(3)) : Number(decimalText(random));
    levels.push([action, Number(decimalText(random)), action === "delete" ? 0 : amount]);
  }
  return JSON.stringify(levels);
}

/** JSON.parse, with undefined for a text it refuses (no JSON text parses to undefined). */
function parsed(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** What the JSON paths make of an array text: the flat levels, or undefined when any of them refuses it. */
function decimalViaJson(text: string): number[] | undefined {
  const levels = parsed(text);
  const binance = flatLevels(levels);
  const okx = flatten(levels);
  // Both venues' JSON paths agree wherever the scanner accepts (checked below).
  return binance && okx && sameNumbers(binance, okx) ? binance : undefined;
}

function actionViaJson(text: string): number[] | undefined {
  const levels = parsed(text);
  const out: number[] = [];
  // flattenLevels takes undefined for an absent side; an unparsable text is no side at all.
  return levels !== undefined && flattenLevels(levels, out) ? out : undefined;
}

/** Bit for bit, -0 included (toEqual treats 0 and -0 alike). */
function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((value, i) => Object.is(value, b[i]));
}

/**
 * The scanner on `text` set inside a frame: its levels when it read exactly that text as the array, else
 * undefined. (When a mutation leaves an array followed by something else, the scanner stops after the
 * array and the frame's reader declines at what follows, as it expects the next key there.)
 */
function scanned(text: string, layout: number): number[] | undefined {
  const frame = `{"levels":${text},"next":1}`;
  const out: number[] = [];
  const end = scanLevels(frame, 10, out, layout);
  return end === 10 + text.length ? out : undefined;
}

const LAYOUTS = [
  { name: "decimal strings (Binance, OKX)", layout: DECIMAL_STRING_LEVELS, generate: decimalLevels, viaJson: decimalViaJson },
  { name: "action and JSON numbers (Deribit)", layout: ACTION_NUMBER_LEVELS, generate: actionLevels, viaJson: actionViaJson },
];

for (const { name, layout, generate, viaJson } of LAYOUTS) {
  describe(`levels in ${name}`, () => {
    test("every array in the venue's layout reads exactly as the JSON path reads it", () => {
      const random = seededRandom(2026 + layout);
      for (let i = 0; i < 3000; i++) {
        const text = generate(random);
        const levels = scanned(text, layout);
        expect(levels).toBeDefined();
        expect(sameNumbers(levels!, viaJson(text)!)).toBe(true);
      }
    });

    test("an array mutated anywhere is declined or read exactly as the JSON path reads it", () => {
      const random = seededRandom(91 + layout);
      let accepted = 0;
      for (let i = 0; i < 6000; i++) {
        const text = mutate(random, generate(random));
        const levels = scanned(text, layout);
        if (levels === undefined) continue;
        accepted++;
        const json = viaJson(text);
        expect(json).toBeDefined();
        expect(sameNumbers(levels, json!)).toBe(true);
      }
      expect(accepted).toBeGreaterThan(1000);
    });

    test("a failed read before it passes on: -1 in, -1 out", () => {
      expect(scanLevels("[]", -1, [], layout)).toBe(-1);
    });
  });
}

test("each layout declines the other's levels and values its JSON path refuses", () => {
  const decimal = '[["65000.5","1.25","0","3"],["64999","0"]]';
  const action = '[["new",65000.5,1.25],["delete",64999,0]]';
  expect(scanned(decimal, DECIMAL_STRING_LEVELS)).toEqual([65000.5, 1.25, 64999, 0]);
  expect(scanned(action, ACTION_NUMBER_LEVELS)).toEqual([65000.5, 1.25, 64999, 0]);
  expect(scanned(decimal, ACTION_NUMBER_LEVELS)).toBeUndefined();
  expect(scanned(action, DECIMAL_STRING_LEVELS)).toBeUndefined();
  for (const refused of ['[["0","1"]]', '[["1","-1"]]', '[["1e3","1"]]', '[["1",1]]', '[["1","2",3]]', '[["1"]]', '[["1","2"],]', "[[]]"]) {
    expect(scanned(refused, DECIMAL_STRING_LEVELS)).toBeUndefined();
  }
  for (const refused of ['[["new",0,1]]', '[["new",1,-1]]', '[["new",1e999,1]]', '[["add",1,1]]', '[["new",1,1,1]]', '[["new","1",1]]', '[["delete",1,null]]']) {
    expect(scanned(refused, ACTION_NUMBER_LEVELS)).toBeUndefined();
  }
  // A delete's amount is 0 whatever the venue sent, as in the JSON path.
  expect(scanned('[["delete",5,7]]', ACTION_NUMBER_LEVELS)).toEqual([5, 0]);
});
