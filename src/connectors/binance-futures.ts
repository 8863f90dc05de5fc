// PLACEHOLDER: replaced by the Binance USD-M futures connector (issue 3).
import type { ExchangeSpec } from "./types.ts";

export const binanceFutures: ExchangeSpec = {
  id: "BINANCE_FUTURES",
  streams: ["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"],
  nativeInstrument: (symbol) =>
    /^[A-Z0-9]{2,30}$/.test(symbol)
      ? { native: symbol }
      : { error: `invalid BINANCE_FUTURES instrument '${symbol}'; expected a symbol like BTCUSDT` },
  create: () => {
    throw new Error("BINANCE_FUTURES connector not built yet");
  },
};
