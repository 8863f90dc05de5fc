/**
 * Subscription grammar: `STREAM:EXCHANGE@INSTRUMENT`, comma-separated.
 * - whitespace around tokens and parts is ignored; empty tokens (a trailing comma) are skipped;
 * - stream and exchange are case-insensitive; `L1` is an alias of `BBO`;
 * - the instrument is upper-cased and checked by the exchange's own rule (common or native form);
 * - exact duplicates (after normalization) are dropped with a warning.
 * Every error is one line naming the bad token and what is accepted.
 */
import * as v from "valibot";
import { UserError } from "./errors.ts";
import { EXCHANGES, STREAMS, type ExchangeId, type Stream } from "./events.ts";
import { SubscriptionStats } from "./stats.ts";

export interface Subscription {
  /** Canonical form, e.g. `L2:OKX_SWAP@BTCUSDT`. */
  readonly key: string;
  readonly stream: Stream;
  readonly exchange: ExchangeId;
  /** Instrument as written, upper-cased; this is the `symbol` of every event. */
  readonly symbol: string;
  /** The venue's native instrument id (syntactic mapping; connectors may refine it at start). */
  readonly instrument: string;
  readonly stats: SubscriptionStats;
}

export type InstrumentResult = { readonly native: string } | { readonly error: string };

/** What the grammar needs of a venue: the streams it offers and its instrument rule. */
export interface InstrumentRule {
  readonly streams: readonly Stream[];
  /**
   * Maps an instrument as written (`BTCUSDT`, or the venue's native id) to the venue's native id, or an
   * error sentence saying what is accepted. Purely syntactic: venues that need their instrument list
   * resolve further when the connector starts.
   */
  nativeInstrument(symbol: string): InstrumentResult;
}

/** Every venue's rule by id (the registry of connectors, core/connector.ts, is one). */
export type InstrumentRules = Readonly<Record<ExchangeId, InstrumentRule>>;

const STREAM_ALIASES: Readonly<Record<string, Stream>> = { L1: "BBO" };

const TOKEN = v.pipe(
  v.string(),
  v.regex(/^[^:@\s]+\s*:\s*[^:@\s]+\s*@\s*\S+$/, "expected STREAM:EXCHANGE@INSTRUMENT"),
);
const STREAM = v.picklist(STREAMS);
const EXCHANGE = v.picklist(EXCHANGES);
const INSTRUMENT = v.pipe(v.string(), v.regex(/^[A-Z0-9][A-Z0-9._\-/]*$/));

export interface ParsedSubscriptions {
  readonly subscriptions: readonly Subscription[];
  /** Tokens dropped as exact duplicates, for a warning. */
  readonly duplicates: readonly string[];
}

export function parseSubscriptions(text: string, registry: InstrumentRules): ParsedSubscriptions {
  const subscriptions: Subscription[] = [];
  const duplicates: string[] = [];
  const seen = new Set<string>();
  for (const rawToken of text.split(",")) {
    const token = rawToken.trim();
    if (token === "") continue;
    const subscription = parseOne(token, registry);
    if (seen.has(subscription.key)) {
      duplicates.push(token);
      continue;
    }
    seen.add(subscription.key);
    subscriptions.push(subscription);
  }
  if (subscriptions.length === 0) {
    throw new UserError(
      `no subscription in '${text}'; expected STREAM:EXCHANGE@INSTRUMENT[,...], e.g. L2:OKX_SWAP@BTCUSDT`,
    );
  }
  return { subscriptions, duplicates };
}

function parseOne(token: string, registry: InstrumentRules): Subscription {
  if (!v.is(TOKEN, token)) {
    throw new UserError(
      `malformed subscription '${token}'; expected STREAM:EXCHANGE@INSTRUMENT, e.g. L2:OKX_SWAP@BTCUSDT`,
    );
  }
  const colon = token.indexOf(":");
  const at = token.indexOf("@", colon);
  const streamText = token.slice(0, colon).trim().toUpperCase();
  const exchangeText = token.slice(colon + 1, at).trim().toUpperCase();
  const symbol = token.slice(at + 1).trim().toUpperCase();

  const streamCandidate = STREAM_ALIASES[streamText] ?? streamText;
  if (!v.is(STREAM, streamCandidate)) {
    throw new UserError(
      `unknown stream '${token.slice(0, colon).trim()}' in '${token}'; supported: ${STREAMS.join(", ")} (L1 = BBO)`,
    );
  }
  const stream = streamCandidate;
  if (!v.is(EXCHANGE, exchangeText)) {
    throw new UserError(
      `unknown exchange '${token.slice(colon + 1, at).trim()}' in '${token}'; supported: ${EXCHANGES.join(", ")}`,
    );
  }
  const exchange = exchangeText;
  const spec = registry[exchange];
  if (!spec.streams.includes(stream)) {
    throw new UserError(
      `stream '${stream}' is not offered by ${exchange} in '${token}'; ${exchange} offers: ${spec.streams.join(", ")}`,
    );
  }
  if (!v.is(INSTRUMENT, symbol)) {
    throw new UserError(
      `invalid instrument '${token.slice(at + 1).trim()}' in '${token}'; expected letters, digits and . _ - / (e.g. BTCUSDT)`,
    );
  }
  const mapped = spec.nativeInstrument(symbol);
  if ("error" in mapped) throw new UserError(`${mapped.error} in '${token}'`);
  return {
    key: `${stream}:${exchange}@${symbol}`,
    stream,
    exchange,
    symbol,
    instrument: mapped.native,
    stats: new SubscriptionStats(),
  };
}
