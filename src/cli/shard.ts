/**
 * `--shard K/N` (env SHARD): one subscription list for a whole fleet, each instance taking its share.
 *
 * Every subscription of one instrument (`EXCHANGE@SYMBOL`) goes to the same shard, so one instance holds
 * an instrument's trades, book and funding together (one connection set, one file set). The shard of an
 * instrument is chosen by rendezvous hashing (highest random weight): each shard scores the instrument
 * with SHA-256 of `EXCHANGE@SYMBOL` and the shard number, and the highest score wins. So the assignment
 * depends on nothing but the instrument and N: adding or removing a subscription moves no other
 * instrument, and going from N to N+1 shards moves only about 1/(N+1) of the instruments (those the new
 * shard wins). SHA-256 is used for being the same on every build and platform, not for security.
 *
 * K is a number from 0 to N-1, or `ordinal`: the number a StatefulSet appends to its pod names
 * (`xtrader-3` → 3), read from POD_NAME, else HOSTNAME (which Kubernetes sets to the pod name).
 */
import { createHash } from "node:crypto";
import { UserError } from "../core/errors.ts";
import type { Subscription } from "../core/subscriptions.ts";
import type { Environment } from "./dotenv.ts";

export interface Shard {
  readonly index: number;
  readonly count: number;
}

/** Plenty for a fleet; a typo such as 0/40000 is refused rather than spawning empty shards. */
export const MAX_SHARDS = 1024;

const SHARD_TEXT = /^\s*(\d{1,4}|ordinal)\s*\/\s*(\d{1,4})\s*$/i;

export function parseShard(text: string, env: Environment): Shard {
  const match = SHARD_TEXT.exec(text);
  const count = match ? Number(match[2]) : NaN;
  if (!match || count < 1 || count > MAX_SHARDS) {
    throw new UserError(`invalid shard '${text.trim()}'; expected K/N with N from 1 to ${MAX_SHARDS} and K from 0 to N-1 (or ordinal/N in a StatefulSet), e.g. 0/4`);
  }
  const index = match[1]!.toLowerCase() === "ordinal" ? podOrdinal(env) : Number(match[1]);
  if (index >= count) {
    throw new UserError(`invalid shard '${text.trim()}': shard ${index} does not exist among ${count} (K runs from 0 to ${count - 1}); a StatefulSet's replicas must equal N`);
  }
  return { index, count };
}

/** The StatefulSet ordinal at the end of the pod name. */
function podOrdinal(env: Environment): number {
  const [variable, name] = env.POD_NAME?.trim() ? ["POD_NAME", env.POD_NAME.trim()] : ["HOSTNAME", env.HOSTNAME?.trim() ?? ""];
  const match = /-(\d{1,4})$/.exec(name);
  if (!match) {
    throw new UserError(
      `shard ordinal/N needs a StatefulSet pod name ending in -<number> (e.g. xtrader-3) in POD_NAME or HOSTNAME; ${variable} is '${name}'`,
    );
  }
  return Number(match[1]);
}

/** The instrument a subscription belongs to: what keeps its subscriptions on one shard. */
export const instrumentKey = (subscription: Pick<Subscription, "exchange" | "symbol">): string => `${subscription.exchange}@${subscription.symbol}`;

/** The shard (0..count-1) an instrument goes to. */
export function shardOf(instrument: string, count: number): number {
  let best = 0;
  let bestScore = -1n;
  for (let shard = 0; shard < count; shard++) {
    const score = createHash("sha256").update(`${instrument}\n${shard}`).digest().readBigUInt64BE(0);
    if (score > bestScore) {
      bestScore = score;
      best = shard;
    }
  }
  return best;
}

/** The subscriptions this shard takes, in the order given. */
export function takeShard<T extends Pick<Subscription, "exchange" | "symbol">>(subscriptions: readonly T[], shard: Shard): T[] {
  const shardOfInstrument = new Map<string, number>();
  return subscriptions.filter((subscription) => {
    const instrument = instrumentKey(subscription);
    let owner = shardOfInstrument.get(instrument);
    if (owner === undefined) shardOfInstrument.set(instrument, (owner = shardOf(instrument, shard.count)));
    return owner === shard.index;
  });
}

/** `--print-plan`: a header line, then the subscriptions this instance takes, one per line. */
export function planText(config: {
  readonly subscriptions: readonly Subscription[];
  readonly shard: (Shard & { readonly fleetSubscriptions: number; readonly fleetInstruments: number }) | undefined;
}): string {
  const instruments = new Set(config.subscriptions.map(instrumentKey)).size;
  const { shard } = config;
  const header = shard
    ? `# shard ${shard.index}/${shard.count}: ${config.subscriptions.length} of ${shard.fleetSubscriptions} subscription(s), ${instruments} of ${shard.fleetInstruments} instrument(s)`
    : `# no shard: all ${config.subscriptions.length} subscription(s), ${instruments} instrument(s)`;
  return [header, ...config.subscriptions.map((subscription) => subscription.key)].join("\n");
}
