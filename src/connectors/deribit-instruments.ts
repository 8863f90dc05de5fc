/**
 * Deribit's instruments and settings: the instrument rule (native names and the common names of
 * perpetuals), what an instrument's `amount` means, and the settings read from the environment
 * (credentials, testnet) with the WebSocket URL they select.
 */
import type { Config } from "../core/config.ts";
import type { InstrumentResult } from "../core/connector.ts";
import { UserError } from "../core/errors.ts";
import { BASE_SIZING, type Sizing } from "../core/events.ts";
import { booleanText, check } from "../core/rules.ts";
import { endpoint } from "./endpoints.ts";

/** Default WebSocket endpoints; XTRADER_DERIBIT_WS_URL replaces whichever DERIBIT_USE_TESTNET selects. */
export const DERIBIT_WS_URLS = {
  testnet: "wss://test.deribit.com/ws/api/v2",
  production: "wss://www.deribit.com/ws/api/v2",
} as const;

export interface DeribitCredentials {
  readonly clientId: string;
  readonly clientSecret: string;
}

/** Deribit's own settings, read from the environment (README: DERIBIT_CLIENT_ID, _SECRET, _USE_TESTNET). */
export interface DeribitSettings {
  readonly useTestnet: boolean;
  /** Both credentials, or undefined for public channels only. */
  readonly credentials: DeribitCredentials | undefined;
}

/**
 * Reads Deribit's settings; a bad value is a UserError (exit 2), never quoting a credential. One credential
 * without the other is an error only when Deribit is subscribed (`inUse`): elsewhere they are not used.
 */
export function deribitSettings(env: Config["env"], inUse = true): DeribitSettings {
  const clientId = env.DERIBIT_CLIENT_ID?.trim() || undefined;
  const clientSecret = env.DERIBIT_CLIENT_SECRET?.trim() || undefined;
  if (inUse && (clientId === undefined) !== (clientSecret === undefined)) {
    throw new UserError(
      `${clientId === undefined ? "DERIBIT_CLIENT_SECRET" : "DERIBIT_CLIENT_ID"} is set but ${
        clientId === undefined ? "DERIBIT_CLIENT_ID" : "DERIBIT_CLIENT_SECRET"
      } is not; set both for authenticated Deribit channels, or neither for public ones`,
    );
  }
  const useTestnet = check(booleanText("DERIBIT_USE_TESTNET"), env.DERIBIT_USE_TESTNET?.trim() || "true");
  return { useTestnet, credentials: clientId && clientSecret ? { clientId, clientSecret } : undefined };
}

/** The WebSocket URL: XTRADER_DERIBIT_WS_URL when set, else testnet or production per DERIBIT_USE_TESTNET. */
export function deribitWsUrl(env: Readonly<Record<string, string | undefined>>, useTestnet: boolean): string {
  return endpoint(env, "DERIBIT", "WS", useTestnet ? DERIBIT_WS_URLS.testnet : DERIBIT_WS_URLS.production);
}

const PERPETUAL = /^[A-Z0-9]+(_[A-Z0-9]+)?-PERPETUAL$/;
const FUTURE = /^[A-Z0-9]+(_[A-Z0-9]+)?-\d{1,2}[A-Z]{3}\d{2}$/;
/** Strikes of linear options may hold a decimal written with a lower-case `d` (0d5 = 0.5). */
const OPTION = /^([A-Z0-9]+(?:_[A-Z0-9]+)?-\d{1,2}[A-Z]{3}\d{2})-(\d+(?:D\d+)?)-([CP])$/;
const SPOT = /^[A-Z0-9]+_[A-Z0-9]+$/;
/** Common names of perpetuals: BTCUSD = BTC-PERPETUAL (inverse), SOLUSDC = SOL_USDC-PERPETUAL (linear). */
const COMMON_PERPETUAL = /^([A-Z0-9]+?)(USDC|USD)$/;

export function deribitInstrument(symbol: string): InstrumentResult {
  if (PERPETUAL.test(symbol) || FUTURE.test(symbol) || SPOT.test(symbol)) return { native: symbol };
  const option = OPTION.exec(symbol);
  if (option) return { native: `${option[1]}-${option[2]!.replace("D", "d")}-${option[3]}` };
  const common = COMMON_PERPETUAL.exec(symbol);
  if (common && common[1]!.length >= 2) {
    return { native: common[2] === "USD" ? `${common[1]}-PERPETUAL` : `${common[1]}_USDC-PERPETUAL` };
  }
  return {
    error:
      `invalid DERIBIT instrument '${symbol}'; expected a Deribit instrument name (BTC-PERPETUAL, ` +
      "BTC_USDC-PERPETUAL, BTC-27JUN25, BTC-27JUN25-100000-C, BTC_USDC) or a perpetual's common name " +
      "(BTCUSD = BTC-PERPETUAL, SOLUSDC = SOL_USDC-PERPETUAL)",
  };
}

const QUOTE_SIZING: Sizing = Object.freeze({ amountUnit: "quote", contractValue: 1 });

/**
 * What `amount` means (https://docs.deribit.com/subscriptions/orderbook/bookinstrument_nameinterval):
 * USD for inverse perpetuals and futures (BTC-PERPETUAL, BTC-27JUN25), the base coin for options,
 * linear (X_USDC-...) instruments and spot pairs.
 */
export function deribitSizing(native: string): Sizing {
  const linearOrSpot = native.split("-")[0]!.includes("_");
  const option = OPTION.test(native.toUpperCase());
  return linearOrSpot || option ? BASE_SIZING : QUOTE_SIZING;
}

