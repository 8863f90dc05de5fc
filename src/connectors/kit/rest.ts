/**
 * The one REST GET every venue uses: fetch, the body read within its byte bound (http-body.ts), JSON
 * read leniently (the venue's own error shapes are judged by the caller), and Retry-After. Pacing and
 * weight budgets stay with the caller (Binance's weight gate, OKX's per-IP spacing) because the venues'
 * rules differ; what every venue needs the same way lives here.
 */
import { errorMessage } from "../../core/errors.ts";
import { boundedText } from "../http-body.ts";

export type RestAnswer =
  /** No answer: network error, timeout or abort (`error` is the reason). */
  | { readonly kind: "failed"; readonly error: string }
  /** The body went over `maxBytes` and was not read further. */
  | { readonly kind: "too_large"; readonly status: number; readonly headers: Headers; readonly detail: string }
  | { readonly kind: "answer"; readonly status: number; readonly ok: boolean; readonly headers: Headers; readonly text: string };

/** GETs `url`; never throws. `signal` aborts it (stop, timeout: the caller decides). */
export async function restGet(url: string, signal: AbortSignal, maxBytes: number): Promise<RestAnswer> {
  try {
    const response = await fetch(url, { signal });
    const body = await boundedText(response, maxBytes);
    if ("tooLarge" in body) return { kind: "too_large", status: response.status, headers: response.headers, detail: body.tooLarge };
    return { kind: "answer", status: response.status, ok: response.ok, headers: response.headers, text: body.text };
  } catch (error) {
    return { kind: "failed", error: errorMessage(error) };
  }
}

/** The body as JSON, or undefined when it is empty or not JSON. */
export function jsonBody(text: string): unknown {
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Retry-After in milliseconds (RFC 9110 delay-seconds), undefined when absent or not a positive number. */
export function retryAfterMs(headers: Headers): number | undefined {
  const seconds = Number(headers.get("retry-after"));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined;
}
