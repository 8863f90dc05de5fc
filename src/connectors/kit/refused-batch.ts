/**
 * A subscribe request of several items refused as a whole, shared by every venue.
 *
 * A venue answers a batch with one error that does not reliably name the item it objects to, so failing
 * the whole batch would stop good subscriptions with the bad one. Each item is requested again alone
 * instead: the next refusal names its own subscription, and only that one fails while the rest go on.
 */

export interface SubscribeRequest<T> {
  readonly items: readonly T[];
  /** Whether the venue treats the request as a batch; by default, when it carries more than one item. */
  readonly batch?: boolean;
}

/**
 * Isolates a refused batch: `warn` once, then `requestAlone` for each item, run by `schedule` (at once by
 * default; a venue whose acks of the good items trail the error waits for them first). Returns false for
 * a request of one item alone, which the caller fails.
 */
export function isolateRefusedBatch<T>(
  request: SubscribeRequest<T>,
  warn: () => void,
  requestAlone: (item: T) => void,
  schedule: (retry: () => void) => void = (retry) => retry(),
): boolean {
  if (!(request.batch ?? request.items.length > 1)) return false;
  warn();
  schedule(() => {
    for (const item of request.items) requestAlone(item);
  });
  return true;
}
