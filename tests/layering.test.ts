/**
 * The layering of src/, read from the import statements themselves: core knows no venue, no sink, no
 * CLI; sinks know no venue and no CLI; venues know no sink and no CLI; and no import cycle anywhere.
 * The exchange list lives in the registry only: no file in core names a venue id, so adding a venue edits
 * no file in core.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { EXCHANGE_IDS, EXCHANGE_REGISTRY } from "../src/connectors/index.ts";
import type { ExchangeSpec } from "../src/core/connector.ts";
import { parseSubscriptions } from "../src/core/subscriptions.ts";

const SRC = resolve(import.meta.dir, "../src");

function sourceFiles(directory: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(directory)) {
    const path = join(directory, entry);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (path.endsWith(".ts")) out.push(path);
  }
  return out;
}

/** Relative imports and re-exports of each file (type-only ones too), as paths relative to src/. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, "utf8");
    const targets: string[] = [];
    for (const match of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+["'](\.[^"']+)["']/g)) {
      targets.push(relative(SRC, resolve(dirname(file), match[1]!)));
    }
    graph.set(relative(SRC, file), targets);
  }
  return graph;
}

function cycles(graph: Map<string, string[]>): string[] {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const found: string[] = [];
  const visit = (file: string) => {
    state.set(file, "open");
    stack.push(file);
    for (const target of graph.get(file) ?? []) {
      if (!graph.has(target)) continue;
      if (state.get(target) === "open") found.push([...stack.slice(stack.indexOf(target)), target].join(" -> "));
      else if (!state.has(target)) visit(target);
    }
    stack.pop();
    state.set(file, "done");
  };
  for (const file of graph.keys()) if (!state.has(file)) visit(file);
  return found;
}

const layer = (path: string) => path.split("/")[0]!;

describe("layering of src/", () => {
  const graph = importGraph();

  test("the walk sees the tree (a broken reader would pass every rule below)", () => {
    expect(graph.size).toBeGreaterThan(40);
    expect(graph.get("core/pipeline.ts")).toContain("core/connector.ts");
    expect(graph.get("connectors/index.ts")).toContain("connectors/binance-futures.ts");
  });

  test("no import cycle", () => {
    expect(cycles(graph)).toEqual([]);
  });

  const forbidden: ReadonlyArray<[string, readonly string[]]> = [
    ["core", ["connectors", "sinks", "cli", "observability", "main.ts"]],
    ["sinks", ["connectors", "cli", "observability", "main.ts"]],
    ["connectors", ["sinks", "cli", "observability", "main.ts"]],
  ];
  for (const [from, banned] of forbidden) {
    test(`${from}/ imports nothing from ${banned.join(", ")}`, () => {
      const offending: string[] = [];
      for (const [file, targets] of graph) {
        if (layer(file) !== from) continue;
        for (const target of targets) if (banned.includes(layer(target))) offending.push(`${file} -> ${target}`);
      }
      expect(offending).toEqual([]);
    });
  }

  test("no file in core names a venue id (code or comment): the registry is the one list", () => {
    const ids = new RegExp(`\\b(${EXCHANGE_IDS.join("|")})\\b`, "g");
    const offending: string[] = [];
    for (const file of sourceFiles(join(SRC, "core"))) {
      for (const match of readFileSync(file, "utf8").matchAll(ids)) offending.push(`${relative(SRC, file)}: ${match[0]}`);
    }
    expect(EXCHANGE_IDS.length).toBeGreaterThan(0);
    expect(offending).toEqual([]);
  });

  test("core's Config holds only generic pieces: no venue's or sink's settings in its code", () => {
    const code = readFileSync(join(SRC, "core/config.ts"), "utf8")
      .replace(/\/\*[\s\S]*?\*\//g, "")
      .replace(/\/\/.*$/gm, "");
    expect(code).toContain("interface Config");
    expect(code.match(/deribit|binance|okx|parquet|questdb|credential|secret/gi) ?? []).toEqual([]);
  });

  test("a venue that only the registry knows is accepted by the subscription grammar", () => {
    const newVenue: ExchangeSpec = { ...EXCHANGE_REGISTRY.DERIBIT!, id: "NEW_VENUE", nativeInstrument: (symbol) => ({ native: symbol }) };
    const { subscriptions } = parseSubscriptions("TRADES:new_venue@XBTUSD", { ...EXCHANGE_REGISTRY, NEW_VENUE: newVenue });
    expect(subscriptions.map((subscription) => [subscription.key, subscription.exchange])).toEqual([["TRADES:NEW_VENUE@XBTUSD", "NEW_VENUE"]]);
    expect(() => parseSubscriptions("TRADES:NEW_VENUE@XBTUSD", EXCHANGE_REGISTRY)).toThrow(
      `unknown exchange 'NEW_VENUE' in 'TRADES:NEW_VENUE@XBTUSD'; supported: ${EXCHANGE_IDS.join(", ")}`,
    );
  });
});
