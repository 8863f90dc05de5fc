import { describe, expect, test } from "bun:test";
import { closeGap, describeClose } from "../../src/connectors/kit/close-gap.ts";
import type { CloseInfo } from "../../src/connectors/websocket.ts";

const serverClose: CloseInfo = { code: 1001, reason: "going away", wasOpen: true, initiatedBy: undefined };

describe("closeGap", () => {
  test("a server close of an open connection is a disconnect gap naming the close frame", () => {
    expect(closeGap(serverClose, false)).toEqual({ reason: "disconnect", detail: "connection closed (by server; code 1001 'going away')" });
  });

  test("a close we made because the feed went silent is a stale gap", () => {
    const stale: CloseInfo = { code: 4000, reason: "", wasOpen: true, initiatedBy: "stale" };
    expect(closeGap(stale, false)).toEqual({ reason: "stale", detail: "connection closed (stale; code 4000)" });
  });

  test("a connection that never opened, or a connector that is stopping, leaves no gap", () => {
    expect(closeGap({ ...serverClose, wasOpen: false }, false)).toBeUndefined();
    expect(closeGap(serverClose, true)).toBeUndefined();
  });

  test("the venue words the detail", () => {
    const gap = closeGap(serverClose, false, (info) => describeClose(info, "BINANCE_FUTURES public#2"));
    expect(gap?.detail).toBe("connection BINANCE_FUTURES public#2 closed (by server; code 1001 'going away')");
    expect(closeGap(serverClose, false, (info) => `closed ${info.code}`)).toEqual({ reason: "disconnect", detail: "closed 1001" });
  });
});
