import { afterAll, describe, expect, test } from "bun:test";
import { jsonBody, restGet, retryAfterMs } from "../../src/connectors/kit/rest.ts";

const server = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/ok") return Response.json({ code: "0", data: [1, 2] });
    if (path === "/limited") return new Response('{"code":-1003,"msg":"Too many requests"}', { status: 429, headers: { "Retry-After": "7" } });
    if (path === "/huge") return new Response("x".repeat(10_000));
    return new Response("not json", { status: 500 });
  },
});
const base = `http://127.0.0.1:${server.port}`;

afterAll(() => server.stop(true));

describe("restGet", () => {
  test("an answer: status, headers and text; JSON read leniently", async () => {
    const ok = await restGet(`${base}/ok`, AbortSignal.timeout(5000), 1 << 20);
    expect(ok.kind).toBe("answer");
    if (ok.kind !== "answer") return;
    expect(ok.ok).toBe(true);
    expect(jsonBody(ok.text)).toEqual({ code: "0", data: [1, 2] });
    const broken = await restGet(`${base}/broken`, AbortSignal.timeout(5000), 1 << 20);
    expect(broken.kind === "answer" && !broken.ok && jsonBody(broken.text) === undefined && broken.status === 500).toBe(true);
    expect(jsonBody("")).toBeUndefined();
  });

  test("Retry-After in milliseconds; absent or unusable is undefined", async () => {
    const limited = await restGet(`${base}/limited`, AbortSignal.timeout(5000), 1 << 20);
    expect(limited.kind === "answer" && limited.status).toBe(429);
    if (limited.kind !== "answer") return;
    expect(retryAfterMs(limited.headers)).toBe(7000);
    expect(retryAfterMs(new Headers())).toBeUndefined();
    expect(retryAfterMs(new Headers({ "Retry-After": "soon" }))).toBeUndefined();
  });

  test("a body over the bound is not read; no answer is a failure with its reason, never a throw", async () => {
    const huge = await restGet(`${base}/huge`, AbortSignal.timeout(5000), 1000);
    expect(huge.kind).toBe("too_large");
    const refused = await restGet("http://127.0.0.1:1/none", AbortSignal.timeout(5000), 1000);
    expect(refused.kind).toBe("failed");
    const aborted = await restGet(`${base}/ok`, AbortSignal.abort(), 1000);
    expect(aborted.kind).toBe("failed");
  });
});
