/**
 * The gap a closed connection leaves in every subscription it carried, shared by every venue.
 *
 * Whatever the venue sent while the socket was down is lost, so each live subscription of the connection
 * gets a `gaps` row and each of its books goes back to waiting for a snapshot. A socket that never opened
 * received nothing (nothing was missed), and a connector that is stopping owes no gap.
 */
import type { GapReason } from "../../core/events.ts";
import type { CloseInfo } from "../websocket.ts";

export interface CloseGap {
  readonly reason: GapReason;
  readonly detail: string;
}

/** `connection <name> closed (<who>; code <code> '<reason>')`: who closed it, and the close frame. */
export function describeClose(info: CloseInfo, connectionName?: string): string {
  const what = connectionName === undefined ? "connection" : `connection ${connectionName}`;
  return `${what} closed (${info.initiatedBy ?? "by server"}; code ${info.code}${info.reason ? ` '${info.reason}'` : ""})`;
}

/**
 * The reason and detail of the gap rows a close leaves, or undefined when it leaves none. `describe`
 * words the detail (a venue may redact the server's close reason).
 */
export function closeGap(
  info: CloseInfo,
  stopping: boolean,
  describe: (info: CloseInfo) => string = describeClose,
): CloseGap | undefined {
  if (stopping || !info.wasOpen) return undefined;
  // A close we made because the feed went silent says so; anything else is a disconnect.
  return { reason: info.initiatedBy === "stale" ? "stale" : "disconnect", detail: describe(info) };
}
