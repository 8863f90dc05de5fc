/**
 * The one verdict set every sequence policy returns, so one book-sync engine (kit/book-sync.ts) acts on
 * any venue's ids. A policy is pure: it sees ids (and, for a checksum scheme, level texts), never a socket.
 *
 * How the known schemes map onto it:
 * - Binance futures U/u/pu against a REST snapshot (binance-futures.ts): no_snapshot, stale, covered,
 *   snapshot_too_old, apply, gap, backwards.
 * - OKX seqId/prevSeqId (okx.ts): apply, duplicate, stale (inside a REST snapshot's overlap), gap, backwards.
 * - Deribit change_id/prev_change_id with the snapshot in-band (deribit.ts): snapshot, apply, duplicate,
 *   no_snapshot, gap, backwards.
 * - Room for: Bybit u/seq (a `type: snapshot` message or u == 1 is `snapshot`, u == last + 1 is `apply`,
 *   anything else `gap`); Coinbase sequence_num (last + 1 `apply`, at or below `duplicate`, above `gap`);
 *   Kraken's CRC32 checksum is no id chain: its policy says `apply` and the engine's integrity check
 *   (`BookSyncHost.verify`) refuses a book whose checksum differs, as for OKX's checksum.
 */
export type SequenceVerdict =
  /** Continues the chain: apply it to the book and emit it. */
  | "apply"
  /** A full book sent in-band (Deribit's first notification): replace the book and emit it. */
  | "snapshot"
  /** The first delta after a REST snapshot ends exactly at it: in sync, nothing to apply. */
  | "covered"
  /** Already inside the snapshot: drop it. */
  | "stale"
  /** The delta applied moments ago, sent again (a re-sent frame, a handover overlap): drop it. */
  | "duplicate"
  /** No snapshot yet: keep it until one arrives (venues that fetch one) or drop it (in-band snapshots). */
  | "no_snapshot"
  /** The first delta after a REST snapshot starts after it: the snapshot is too old, fetch a newer one. */
  | "snapshot_too_old"
  /** The delta does not continue the applied chain: updates were missed. */
  | "gap"
  /** Below the last applied id and never applied: the ids went back (or the last one was too high). */
  | "backwards";
