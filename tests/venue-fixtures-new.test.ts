/**
 * The venue fixture test (tests/venue-fixtures.test.ts) for the venues that are not in the registry yet
 * (BYBIT_SPOT, BYBIT_LINEAR, BYBIT_INVERSE): documented frames through their pure
 * normalizers, compared field for field with the events they must become. The streams each venue offers
 * are listed here until its registry entry exists; then these entries move into that test's VENUES.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { normalizeFrame as bybit, type BybitInstrumentContext } from "../src/connectors/bybit-normalize.ts";
import type { MarketEvent, Stream } from "../src/core/events.ts";
import type { InstrumentContext } from "../src/connectors/kit/normalize.ts";

type FrameNormalizer = (text: string, receivedAt: number, instrument: never) => MarketEvent[];

const SPOT_STREAMS: readonly Stream[] = ["TRADES", "L2", "BBO"];
const DERIVATIVE_STREAMS: readonly Stream[] = ["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"];

const VENUES: ReadonlyArray<{
  readonly name: string;
  readonly file: string;
  readonly normalize: FrameNormalizer;
  /** Streams offered per exchange id; the file must cover their union, and no line may use one an id lacks. */
  readonly streams: Readonly<Record<string, readonly Stream[]>>;
}> = [
  {
    name: "BYBIT",
    file: "bybit.jsonl",
    normalize: bybit satisfies (text: string, receivedAt: number, instrument: BybitInstrumentContext) => MarketEvent[],
    streams: { BYBIT_SPOT: SPOT_STREAMS, BYBIT_LINEAR: DERIVATIVE_STREAMS, BYBIT_INVERSE: DERIVATIVE_STREAMS },
  },
];

interface FixtureLine {
  readonly stream: Stream;
  readonly doc: string;
  readonly symbol: string;
  readonly instrument?: Readonly<Record<string, unknown>>;
  readonly receivedAt: number;
  readonly frame: string;
  readonly events: MarketEvent[];
}

function fixture(file: string): FixtureLine[] {
  return readFileSync(join(import.meta.dir, "fixtures", file), "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as FixtureLine);
}

for (const venue of VENUES) {
  describe(`${venue.name} fixtures (tests/fixtures/${venue.file})`, () => {
    const lines = fixture(venue.file);
    const exchangeOf = (line: FixtureLine): string => String(line.instrument?.exchange ?? venue.name);

    test("cover every stream the venue offers, and only those of each exchange id", () => {
      const offered = [...new Set(Object.values(venue.streams).flat())].sort();
      expect([...new Set(lines.map((line) => line.stream))].sort()).toEqual(offered);
      for (const line of lines) expect(venue.streams[exchangeOf(line)]).toContain(line.stream);
    });

    for (const [index, line] of lines.entries()) {
      test(`line ${index + 1}: ${line.stream} (${line.doc})`, () => {
        const instrument: InstrumentContext = { symbol: line.symbol, ...line.instrument };
        const events = venue.normalize(line.frame, line.receivedAt, instrument as never);
        // JSON has no undefined: a field the venue does not carry is absent from the expected event.
        expect(events).toEqual(line.events);
        for (const event of events) {
          expect(event.localTimestamp).toBe(line.receivedAt);
          expect(event.exchange).toBe(exchangeOf(line));
        }
      });
    }
  });
}
