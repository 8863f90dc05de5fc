/**
 * Integer-microsecond wall clock.
 *
 * `Date.now()` has millisecond resolution; `performance.now()` has sub-millisecond resolution but is
 * monotonic and drifts from wall time over weeks (NTP slews the wall clock, not the monotonic one).
 * We combine them: the offset between the two is re-read once a second, so readings have microsecond
 * resolution and never drift more than a second's worth of slew from wall time.
 */
let offsetMs = Date.now() - performance.now();
let lastReanchor = performance.now();

/** `mono`: a `performance.now()` the caller has just read (a socket's read time serves twice, ~40 ns a read here). */
export function nowMicros(mono = performance.now()): number {
  if (mono - lastReanchor > 1000) {
    offsetMs = Date.now() - mono;
    lastReanchor = mono;
  }
  return Math.floor((offsetMs + mono) * 1000);
}

/** Milliseconds (as sent by most venues) to integer microseconds. */
export function msToMicros(ms: number): number {
  return Math.round(ms * 1000);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
