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
import { STREAMS, type ExchangeId, type Stream } from "./events.ts";
import { SubscriptionStats } from "./stats.ts";

export interface Subscription {
  /** Canonical form, `STREAM:EXCHANGE@INSTRUMENT` after normalization. */
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

/**
 * Every venue's rule by id (the registry of connectors, core/connector.ts, is one): its keys are the
 * exchange ids a subscription may name.
 */
export type InstrumentRules = Readonly<Record<ExchangeId, InstrumentRule>>;

const STREAM_ALIASES: Readonly<Record<string, Stream>> = { L1: "BBO" };

const TOKEN = v.pipe(
  v.string(),
  v.regex(/^[^:@\s]+\s*:\s*[^:@\s]+\s*@\s*\S+$/, "expected STREAM:EXCHANGE@INSTRUMENT"),
);
const STREAM = v.picklist(STREAMS);
const INSTRUMENT = v.pipe(v.string(), v.regex(/^[A-Z0-9][A-Z0-9._\-/]*$/));

export interface ParsedSubscriptions {
  readonly subscriptions: readonly Subscription[];
  /** Tokens dropped as exact duplicates, for a warning. */
  readonly duplicates: readonly string[];
}

/**
 * `example` is a valid subscription quoted in the errors; core names no venue, so the caller (the CLI, from
 * the registry) supplies it, and by default it is built from the first venue that offers L2.
 */
export function parseSubscriptions(text: string, registry: InstrumentRules, example = defaultExample(registry)): ParsedSubscriptions {
  const subscriptions: Subscription[] = [];
  const duplicates: string[] = [];
  const seen = new Set<string>();
  for (const rawToken of text.split(",")) {
    const token = rawToken.trim();
    if (token === "") continue;
    const subscription = parseOne(token, registry, example);
    if (seen.has(subscription.key)) {
      duplicates.push(token);
      continue;
    }
    seen.add(subscription.key);
    subscriptions.push(subscription);
  }
  if (subscriptions.length === 0) {
    throw new UserError(
      `no subscription in '${text}'; expected STREAM:EXCHANGE@INSTRUMENT[,...], e.g. ${example}`,
    );
  }
  return { subscriptions, duplicates };
}

function defaultExample(registry: InstrumentRules): string {
  const id = Object.keys(registry).find((venue) => registry[venue]!.streams.includes("L2"));
  return id === undefined ? "STREAM:EXCHANGE@INSTRUMENT" : `L2:${id}@BTCUSDT`;
}

function parseOne(token: string, registry: InstrumentRules, example: string): Subscription {
  if (!v.is(TOKEN, token)) {
    throw new UserError(
      `malformed subscription '${token}'; expected STREAM:EXCHANGE@INSTRUMENT, e.g. ${example}`,
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
  // Own keys only: `constructor` or `__proto__` is no venue.
  if (!Object.hasOwn(registry, exchangeText)) {
    throw new UserError(
      `unknown exchange '${token.slice(colon + 1, at).trim()}' in '${token}'; supported: ${Object.keys(registry).join(", ")}`,
    );
  }
  const exchange = exchangeText;
  const spec = registry[exchange]!;
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
