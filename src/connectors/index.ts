/**
 * The exchange registry: every venue xtrader speaks, one file each. It is the one list of exchange ids:
 * core, sinks and the CLI learn them from here (adding a venue edits no file in core).
 */
import type { ExchangeRegistry } from "../core/connector.ts";
import { binanceFutures } from "./binance-futures.ts";
import { binanceSpot } from "./binance-spot.ts";
import { deribit } from "./deribit.ts";
import { okxSpot, okxSwap } from "./okx.ts";

export const EXCHANGE_REGISTRY: ExchangeRegistry = {
  BINANCE_FUTURES: binanceFutures,
  BINANCE_SPOT: binanceSpot,
  OKX_SWAP: okxSwap,
  OKX_SPOT: okxSpot,
  DERIBIT: deribit,
};

/** The venue ids, in the registry's order (the order of "supported: ..." in errors). */
export const EXCHANGE_IDS: readonly string[] = Object.keys(EXCHANGE_REGISTRY);

/** The subscription quoted as an example in the CLI's help and errors. */
export const SUBSCRIPTION_EXAMPLE = "L2:OKX_SWAP@BTCUSDT";
