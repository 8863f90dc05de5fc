/**
 * A venue's declaration: what the registry (connectors/index.ts) and the shared engine need to know of
 * it, in one object. `defineVenue` turns it into the ExchangeSpec the registry lists.
 *
 * The declaration holds the facts (id, streams, readiness windows, instrument rule, endpoints, limits,
 * the wire format of requests); the venue's connector (a VenueConnector, kit/venue-connector.ts, which
 * owns the per-subscription chores) holds only its protocol hooks (how to read a frame: answer, ping,
 * notice or data and its feed), its normalizers' wiring, its startup checks and its book host, and runs
 * its feeds on the connection pool (kit/pool.ts) built from these limits.
 */
import type { Connector, ConnectorContext, ExchangeSpec, ReadinessWindows } from "../../core/connector.ts";
import type { ExchangeId, Stream } from "../../core/events.ts";
import type { InstrumentResult, Subscription } from "../../core/subscriptions.ts";
import { endpoint } from "../endpoints.ts";
import type { PoolWire } from "./connection.ts";
import type { PoolLimits } from "./pool.ts";

type Env = Readonly<Record<string, string | undefined>>;

export interface VenueDeclaration {
  readonly id: ExchangeId;
  readonly streams: readonly Stream[];
  /** /readyz windows per stream, seconds (the venue's own: how often it pushes is its own). */
  readonly readinessWindows: ReadinessWindows;
  /** A symbol as written → the native id, or a sentence saying what is accepted (purely syntactic). */
  readonly instrument: (symbol: string) => InstrumentResult;
  /**
   * Default endpoints (the WebSocket one may depend on the venue's settings, e.g. a testnet switch).
   * XTRADER_<ID>_WS_URL and XTRADER_<ID>_REST_URL replace them (connectors/endpoints.ts).
   */
  readonly endpoints: { readonly ws: string | ((env: Env) => string); readonly rest?: string };
  /** Connection limits, when the venue runs on the pool. */
  readonly limits?: PoolLimits;
  /** The wire format of subscribe/unsubscribe requests, when the venue runs on the pool. */
  readonly wire?: PoolWire;
  /** Checks the venue's own settings (credentials...); see ExchangeSpec.checkSettings. */
  readonly checkSettings?: ExchangeSpec["checkSettings"];
  /** Creates the connector of the given subscriptions. */
  readonly connector: (venue: Venue, context: ConnectorContext, subscriptions: readonly Subscription[]) => Connector;
}

/** A declaration with its endpoints resolved against an environment. */
export interface Venue extends VenueDeclaration {
  wsUrl(env: Env): string;
  restUrl(env: Env): string;
}

export function defineVenue(declaration: VenueDeclaration): ExchangeSpec & { readonly venue: Venue } {
  const { id, endpoints } = declaration;
  const venue: Venue = {
    ...declaration,
    wsUrl: (env) => endpoint(env, id, "WS", typeof endpoints.ws === "string" ? endpoints.ws : endpoints.ws(env)),
    restUrl: (env) => endpoint(env, id, "REST", endpoints.rest ?? ""),
  };
  return {
    id,
    streams: declaration.streams,
    readinessWindows: declaration.readinessWindows,
    nativeInstrument: declaration.instrument,
    ...(declaration.checkSettings ? { checkSettings: declaration.checkSettings } : {}),
    create: (context, subscriptions) => declaration.connector(venue, context, subscriptions),
    venue,
  };
}
