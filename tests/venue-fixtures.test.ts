/**
 * Recorded-shape frames through each venue's pure normalizers, compared field for field with the events
 * they must become. One JSONL file per venue under tests/fixtures/, each line one frame as the venue's
 * documentation shows it (`doc` names the page), the instrument, the receive time and the events.
 * A venue joins by adding its frame normalizer below and its file (a venue not yet in the registry lists
 * its streams here).
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { normalizeFrame as binanceFutures } from "../src/connectors/binance-futures-normalize.ts";
import { normalizeFrame as binanceSpot } from "../src/connectors/binance-spot-normalize.ts";
import { normalizeFrame as bybit, type BybitInstrumentContext } from "../src/connectors/bybit-normalize.ts";
import { normalizeFrame as deribit, type DeribitInstrumentContext } from "../src/connectors/deribit-normalize.ts";
import { EXCHANGE_REGISTRY } from "../src/connectors/index.ts";
import { normalizeFrame as okx, type OkxInstrumentContext } from "../src/connectors/okx-normalize.ts";
import type { ExchangeId, MarketEvent, Stream } from "../src/core/events.ts";
import type { InstrumentContext } from "../src/connectors/kit/normalize.ts";

// Each venue's normalizer takes its own instrument context; the fixture line carries what it needs.
type FrameNormalizer = (text: string, receivedAt: number, instrument: never) => MarketEvent[];

const offered = (...exchanges: ExchangeId[]) => Object.fromEntries(exchanges.map((id) => [id, EXCHANGE_REGISTRY[id]!.streams]));
// Venues not in the registry yet list their streams here until their registry entry exists (Bybit).
const BYBIT_SPOT_STREAMS: readonly Stream[] = ["TRADES", "L2", "BBO"];
const BYBIT_DERIVATIVE_STREAMS: readonly Stream[] = ["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"];

const VENUES: ReadonlyArray<{
  readonly name: string;
  readonly file: string;
  readonly normalize: FrameNormalizer;
  /** Streams offered per exchange id; the file must cover their union, and no line may use one its id lacks. */
  readonly streams: Readonly<Record<string, readonly Stream[]>>;
}> = [
  { name: "BINANCE_FUTURES", file: "binance-futures.jsonl", normalize: binanceFutures, streams: offered("BINANCE_FUTURES") },
  { name: "BINANCE_SPOT", file: "binance-spot.jsonl", normalize: binanceSpot, streams: offered("BINANCE_SPOT") },
  {
    name: "OKX_SWAP",
    file: "okx.jsonl",
    normalize: okx satisfies (text: string, receivedAt: number, instrument: OkxInstrumentContext) => MarketEvent[],
    streams: offered("OKX_SWAP", "OKX_SPOT"),
  },
  {
    name: "DERIBIT",
    file: "deribit.jsonl",
    normalize: deribit satisfies (text: string, receivedAt: number, instrument: DeribitInstrumentContext) => MarketEvent[],
    streams: offered("DERIBIT"),
  },
  {
    name: "BYBIT",
    file: "bybit.jsonl",
    normalize: bybit satisfies (text: string, receivedAt: number, instrument: BybitInstrumentContext) => MarketEvent[],
    streams: { BYBIT_SPOT: BYBIT_SPOT_STREAMS, BYBIT_LINEAR: BYBIT_DERIVATIVE_STREAMS, BYBIT_INVERSE: BYBIT_DERIVATIVE_STREAMS },
  },
];

interface FixtureLine {
  readonly stream: Stream;
  readonly doc: string;
  readonly symbol: string;
  /** Instrument facts beyond the symbol that the venue's normalizer needs (OKX: exchange id and sizing; Deribit: sizing). */
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
      const all = [...new Set(Object.values(venue.streams).flat())].sort();
      expect([...new Set(lines.map((line) => line.stream))].sort()).toEqual(all);
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
