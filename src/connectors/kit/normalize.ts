/**
 * The shape every venue's normalizers share: pure functions of a frame (or its parsed payload), the
 * receive time taken at socket read, and the instrument the frame belongs to. They hold no state and need
 * no socket, so recorded frames replay through them (tests/venue-fixtures.test.ts).
 */

/** What a normalizer knows of the subscription a frame belongs to (a Subscription is one). */
export interface InstrumentContext {
  /** The instrument as the user wrote it, upper-cased: every event's `symbol`. */
  readonly symbol: string;
}
