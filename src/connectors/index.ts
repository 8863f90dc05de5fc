/** The exchange registry: every venue xtrader speaks, one file each. */
import type { ExchangeRegistry } from "../core/connector.ts";
import { binanceFutures } from "./binance-futures.ts";
import { deribit } from "./deribit.ts";
import { okxSpot, okxSwap } from "./okx.ts";

export const EXCHANGE_REGISTRY: ExchangeRegistry = {
  BINANCE_FUTURES: binanceFutures,
  OKX_SWAP: okxSwap,
  OKX_SPOT: okxSpot,
  DERIBIT: deribit,
};
