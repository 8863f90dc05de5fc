/**
 * The fake venues' shared base (tests/support/fake-venue.ts) against a real WebSocket and real HTTP
 * requests: what a venue fake relies on must do what it says, or every venue test built on it proves less.
 */
import { afterEach, expect, test } from "bun:test";
import { FakeVenue, waitUntil } from "./support/fake-venue.ts";

let venue: { stop(): Promise<void> } | undefined;
afterEach(async () => {
  await venue?.stop();
  venue = undefined;
});

/** A client socket that records the text frames it receives and its close code. */
async function client(url: string): Promise<{ socket: WebSocket; frames: string[]; closed: () => number | undefined }> {
  const socket = new WebSocket(url);
  const frames: string[] = [];
  let code: number | undefined;
  socket.onmessage = (event) => frames.push(String(event.data));
  socket.onclose = (event) => (code = event.code);
  await new Promise((resolve, reject) => ((socket.onopen = resolve), (socket.onerror = reject)));
  return { socket, frames, closed: () => code };
}

test("topics: a push reaches each subscriber once per matching topic; a paused venue sends nothing and records everything", async () => {
  const fake = FakeVenue.start<{ hello: string }>((connection) => ({ hello: connection.path }));
  venue = fake;
  fake.onMessage((connection, text) => connection.topics.add(text));
  const [a, b] = [await client(fake.wsUrl("/a")), await client(fake.wsUrl("/b"))];
  a.socket.send("trades.X");
  a.socket.send("book.X");
  b.socket.send("book.X");
  await fake.waitForSubscribers("book.X", 2);
  expect(fake.connections.map((connection) => connection.state.hello)).toEqual(["/a", "/b"]);
  expect(fake.push((topic) => topic.endsWith(".X"), (topic: string) => `on ${topic}`)).toBe(3);
  expect(fake.audience("trades.X")).toBe(1);
  fake.paused = true;
  expect(fake.push("book.X", "lost")).toBe(0);
  expect(fake.audience("book.X")).toBe(0);
  a.socket.send("while paused");
  await fake.waitFor(() => fake.connections[0]!.received.includes("while paused"));
  fake.paused = false;
  fake.broadcast({ after: true });
  await fake.barrier();
  await waitUntil(() => a.frames.length === 3 && b.frames.length === 2, 2000, undefined, "frames");
  expect(a.frames).toEqual(["on trades.X", "on book.X", '{"after":true}']);
  expect(b.frames).toEqual(["on book.X", '{"after":true}']);
  a.socket.close();
  b.socket.close();
});

test("closes: with a code and reason, over the incoming limit, when idle; a drop sends no close frame", async () => {
  const fake = (venue = FakeVenue.start());
  fake.limitIncoming(3, 1008, "Too many requests");
  const chatty = await client(fake.wsUrl());
  for (let i = 0; i < 4; i++) chatty.socket.send(`m${i}`);
  await waitUntil(() => chatty.closed(), 2000, undefined, "the limit close");
  expect(chatty.closed()).toBe(1008);
  expect(fake.limitCloses).toEqual([fake.connections[0]!]);

  const closed = await client(fake.wsUrl());
  fake.closeAll(4004, "bye");
  await waitUntil(() => closed.closed(), 2000, undefined, "the close");
  expect(closed.closed()).toBe(4004);

  const dropped = await client(fake.wsUrl());
  fake.terminateAll();
  await waitUntil(() => dropped.closed(), 2000, undefined, "the drop");
  expect(dropped.closed()).toBe(1006);

  fake.closeIdle(100, 4004, "idle");
  const idle = await client(fake.wsUrl());
  await waitUntil(() => idle.closed(), 2000, undefined, "the idle close");
  expect(idle.closed()).toBe(4004);
});

test("REST: scripted replies (status, headers, delay) come first, in order, then the route; every answer is logged", async () => {
  const fake = (venue = FakeVenue.start());
  fake.rest("GET", "/depth", (request) => ({ body: { symbol: request.query.get("symbol") } }));
  fake.replyNext("/depth", { status: 429, headers: { "Retry-After": "2" }, body: { code: -1003 } }, { status: 500, delayMs: 150 });
  const first = await fetch(`${fake.httpUrl}/depth?symbol=A`);
  expect([first.status, first.headers.get("Retry-After"), await first.json()]).toEqual([429, "2", { code: -1003 }]);
  const started = performance.now();
  expect((await fetch(`${fake.httpUrl}/depth`)).status).toBe(500);
  expect(performance.now() - started).toBeGreaterThanOrEqual(140);
  expect(await (await fetch(`${fake.httpUrl}/depth?symbol=B`)).json()).toEqual({ symbol: "B" });
  expect((await fetch(`${fake.httpUrl}/other`)).status).toBe(404);
  expect(fake.pendingReplies("/depth")).toHaveLength(0);
  expect(fake.restLog.map((entry) => `${entry.path} ${entry.status}`)).toEqual(["/depth 429", "/depth 500", "/depth 200", "/other 404"]);
  expect(fake.requests.map((request) => request.query.get("symbol"))).toEqual(["A", null, "B", null]);
});
