// PLACEHOLDER: replaced by the OKX connector (issue 4).
import type { ExchangeSpec } from "./types.ts";

export const okxSwap: ExchangeSpec = {
  id: "OKX_SWAP",
  streams: ["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"],
  nativeInstrument: (symbol) => ({ native: symbol }),
  create: () => {
    throw new Error("OKX connector not built yet");
  },
};

export const okxSpot: ExchangeSpec = {
  id: "OKX_SPOT",
  streams: ["TRADES", "L2", "BBO"],
  nativeInstrument: (symbol) => ({ native: symbol }),
  create: () => {
    throw new Error("OKX connector not built yet");
  },
};
