/**
 * What the two Binance declarations (binance-futures.ts, binance-spot.ts) share: the shape of their
 * figures and our own choices, the SUBSCRIBE wire, the pool's limits, the book rules, the tuning
 * variables' shape. The connector they share is in binance-streams.ts.
 */
import type { BookSyncRules } from "./kit/book-sync.ts";
import type { PoolLimits, PoolWire, Refusal } from "./kit/pool.ts";

/** The figures each Binance venue declares (with its documentation links) in its LIMITS. */
export interface BinanceLimits {
  readonly streamsPerConnection: number;
  readonly requestsPerSecond: number;
  readonly streamsPerSubscribeRequest: number;
  /** A SUBSCRIBE that gets no answer in this long means a broken session: reconnect. */
  readonly requestAnswerTimeoutMs: number;
  /** Connections are replaced (make before break) at this age, before the venue's 24 h close. */
  readonly connectionMaxAgeMs: number;
  /** Spreads rollovers of connections opened together. */
  readonly rolloverStaggerMs: number;
  /** Longest a replaced connection is kept while its successor proves it delivers the same data. */
  readonly handoverGraceMs: number;
  readonly handoverBufferEvents: number;
  /** LIST_SUBSCRIPTIONS sent after this much silence, so quiet connections still prove they are alive. */
  readonly keepaliveIdleMs: number;
  /** Stale window of a connection whose streams may all be quiet (the keepalive answer resets it). */
  readonly quietConnectionStaleMs: number;
  readonly restWeightPerMinute: number;
  /** The share of the REST weight budget we spend. */
  readonly restWeightShare: number;
  readonly restTimeoutMs: number;
  readonly depthSnapshotLimit: number;
  readonly depthSnapshotWeight: number;
  readonly exchangeInfoWeight: number;
  /** Deltas kept while a snapshot is pending; the oldest are dropped beyond. */
  readonly depthBufferEvents: number;
}

/**
 * Our own choices, the same on both venues (each venue's LIMITS adds its documented figures): answer
 * timeout, replacement well before the 24 h close, rollover spread and handover, keepalive after
 * silence, the REST budget share and timeout, buffers.
 */
export const BINANCE_CLIENT_CHOICES = {
  requestAnswerTimeoutMs: 10_000,
  connectionMaxAgeMs: 23 * 3_600_000,
  rolloverStaggerMs: 60_000,
  handoverGraceMs: 5_000,
  keepaliveIdleMs: 30_000,
  quietConnectionStaleMs: 90_000,
  restWeightShare: 0.8,
  restTimeoutMs: 10_000,
  /** About 8 minutes of 100 ms depth events. */
  depthBufferEvents: 5_000,
  handoverBufferEvents: 5_000,
} as const;

export const KEEPALIVE_ID = 0;
export const refusalText = (refusal: Refusal) => `${refusal.code} ${refusal.text}`;
const KEEPALIVE_MESSAGE = JSON.stringify({ method: "LIST_SUBSCRIPTIONS", id: KEEPALIVE_ID });

/** Requests as Binance takes them: `{"method":"SUBSCRIBE","params":[stream...],"id":n}` (Live Subscribing, both venues). */
export function binanceWire(limits: BinanceLimits): PoolWire {
  return {
    encode: (method, topics, id) => JSON.stringify({ method: method.toUpperCase(), params: topics, id }),
    label: (method) => method.toUpperCase(),
    describe: refusalText,
    topicWord: "streams",
    // LIST_SUBSCRIPTIONS after silence, so quiet connections still prove they are alive.
    keepalive: (staleAfterMs) => ({ idleMs: Math.min(limits.keepaliveIdleMs, Math.max(50, Math.floor(staleAfterMs / 3))), message: KEEPALIVE_MESSAGE }),
  };
}

/** The pool's limits from a venue's figures (requests go evenly: burst 1); the connector applies the tuning variables. */
export function binancePoolLimits(limits: BinanceLimits): PoolLimits {
  return {
    topicsPerConnection: limits.streamsPerConnection,
    topicsPerRequest: limits.streamsPerSubscribeRequest,
    requestBurst: 1,
    requestsPerSecond: limits.requestsPerSecond,
    answerTimeoutMs: limits.requestAnswerTimeoutMs,
    connectionMaxAgeMs: limits.connectionMaxAgeMs,
    rolloverReason: "before Binance's 24 h limit",
    rolloverStaggerMs: limits.rolloverStaggerMs,
    handoverGraceMs: limits.handoverGraceMs,
    handoverBufferEvents: limits.handoverBufferEvents,
  };
}

/**
 * A Binance venue's tuning variables (tests, the fault suite, unusual deployments), spelt out in its file
 * so that the checks of the README and the systemd example find them.
 */
export interface BinanceTuningNames {
  readonly connectionMaxAgeMs: string;
  readonly streamsPerConnection: string;
  readonly staleAfterMs: string;
  readonly requestAnswerTimeoutMs: string;
}

/**
 * L2 on the book-sync engine (kit/book-sync.ts), both venues: a delta before the subscription's ack
 * proves it live; deltas are buffered while the REST snapshot is pending; the snapshot waits for the
 * delta that straddles it (How to manage a local order book correctly, kit/sequence/binance-*.ts).
 */
export function binanceBookRules(limits: BinanceLimits): BookSyncRules {
  return {
    idle: "await_subscription",
    bufferLimit: limits.depthBufferEvents,
    whenBufferFull: "drop_oldest",
    snapshotWaitsForStraddle: true,
    snapshotSource: "rest",
    toleratesCrossedSnapshot: false,
  };
}
