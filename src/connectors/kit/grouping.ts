/**
 * Groups topics onto connections by weight, for venues that count a connection's load themselves (OKX
 * counts channel arguments, and several subscriptions may share one argument). The pool's own grouping
 * (`ConnectionPool.open`) counts topics; this one lets the venue weigh each topic against the group so far.
 */

/** Consecutive groups of `items` whose summed `cost` stays within `limit` (an item alone always fits). */
export function groupWithin<T>(items: readonly T[], limit: number, cost: (item: T, group: readonly T[]) => number): T[][] {
  const groups: T[][] = [];
  let current: T[] = [];
  let weight = 0;
  for (const item of items) {
    const added = cost(item, current);
    if (current.length > 0 && weight + added > limit) {
      groups.push(current);
      current = [];
      weight = 0;
    }
    current.push(item);
    weight += added;
  }
  if (current.length > 0) groups.push(current);
  return groups;
}
