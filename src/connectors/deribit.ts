// PLACEHOLDER: replaced by the Deribit connector (issue 5).
import type { ExchangeSpec } from "./types.ts";

export const deribit: ExchangeSpec = {
  id: "DERIBIT",
  streams: ["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"],
  nativeInstrument: (symbol) => ({ native: symbol }),
  create: () => {
    throw new Error("DERIBIT connector not built yet");
  },
};
