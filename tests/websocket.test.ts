import { afterEach, describe, expect, test } from "bun:test";
import { backoffDelay, ReconnectingSocket, socketCounters, type CloseInfo } from "../src/connectors/websocket.ts";
import { createLogger } from "../src/core/log.ts";
import { FakeVenue } from "./support/fake-venue.ts";
import { memoryLogger } from "./support/questdb-harness.ts";

const log = createLogger("error");
let exchange: FakeVenue | undefined;
let socket: ReconnectingSocket | undefined;

afterEach(async () => {
  await socket?.stop();
  await exchange?.stop();
  socket = undefined;
  exchange = undefined;
});

function open(overrides: Partial<ConstructorParameters<typeof ReconnectingSocket>[0]> = {}) {
  const fake = (exchange = FakeVenue.start());
  const closes: CloseInfo[] = [];
  const messages: Array<{ data: string; receivedAt: number }> = [];
  const opens: number[] = [];
  socket = new ReconnectingSocket({
    name: "test",
    url: () => fake.wsUrl("/stream"),
    log,
    staleAfterMs: 60_000,
    backoff: { initialMs: 40, maxMs: 400, factor: 2 },
    onOpen: (info) => {
      opens.push(info.reconnects);
      socket!.send(JSON.stringify({ subscribe: "trades" }));
    },
    onMessage: (data, receivedAt) => messages.push({ data, receivedAt }),
    onClose: (info) => closes.push(info),
    ...overrides,
  });
  socket.start();
  return { fake, closes, messages, opens };
}

describe("backoff", () => {
  test("grows exponentially with jitter and is capped", () => {
    const options = { initialMs: 100, maxMs: 1000, factor: 2 };
    expect(backoffDelay(options, 0, () => 0)).toBe(50);
    expect(backoffDelay(options, 0, () => 1)).toBe(100);
    expect(backoffDelay(options, 3, () => 1)).toBe(800);
    expect(backoffDelay(options, 10, () => 1)).toBe(1000);
    expect(backoffDelay(options, 10, () => 0)).toBe(500);
  });
});

describe("ReconnectingSocket", () => {
  test("delivers frames with an integer microsecond receive time", async () => {
    const { fake, messages } = open();
    const connection = await fake.waitForConnection(1);
    connection.send({ hello: 1 });
    await fake.waitFor(() => messages.length === 1);
    expect(messages[0]!.data).toBe('{"hello":1}');
    expect(Number.isInteger(messages[0]!.receivedAt)).toBe(true);
    expect(Math.abs(messages[0]!.receivedAt - Date.now() * 1000)).toBeLessThan(5_000_000);
  });

  test("reconnects after a server close and resubscribes, reporting the close code", async () => {
    const { fake, closes, opens } = open();
    const first = await fake.waitForConnection(1);
    await first.waitForMessage((text) => text.includes("subscribe"));
    first.close(1001, "going away");
    const second = await fake.waitForConnection(2);
    await second.waitForMessage((text) => text.includes("subscribe"));
    expect(closes[0]).toMatchObject({ code: 1001, reason: "going away", wasOpen: true, initiatedBy: undefined });
    expect(opens).toEqual([0, 1]);
  });

  test("reconnects after an abrupt TCP drop", async () => {
    const { fake, closes } = open();
    (await fake.waitForConnection(1)).terminate();
    await fake.waitForConnection(2);
    expect(closes).toHaveLength(1);
    expect(closes[0]!.wasOpen).toBe(true);
  });

  test("backs off while the exchange refuses connections, then recovers", async () => {
    const { fake, closes } = open();
    await fake.waitForConnection(1);
    fake.acceptConnections = false;
    const started = performance.now();
    fake.connections[0]!.terminate();
    await fake.waitFor(() => closes.length >= 4, 10_000, "failed connects");
    // attempts 0..3 wait at least 20 + 40 + 80 ms (half of each cap) before the 4th close
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expect(closes.slice(1).every((close) => !close.wasOpen)).toBe(true);
    fake.acceptConnections = true;
    await fake.waitForConnection(2, 10_000);
  });

  test("the stale watchdog reconnects a silent connection", async () => {
    const { fake, closes } = open({ staleAfterMs: 300 });
    const first = await fake.waitForConnection(1);
    first.send({ tick: 1 });
    await fake.waitForConnection(2, 5000);
    expect(closes[0]!.initiatedBy).toBe("stale");
  });

  test("a feed that keeps sending is not considered stale", async () => {
    const { fake } = open({ staleAfterMs: 300 });
    const first = await fake.waitForConnection(1);
    for (let i = 0; i < 10; i++) {
      first.send({ tick: i });
      await Bun.sleep(100);
    }
    expect(fake.connections).toHaveLength(1);
    expect(first.open).toBe(true);
  });

  test("answers protocol pings with pongs", async () => {
    const { fake } = open();
    const connection = await fake.waitForConnection(1);
    connection.ping();
    connection.ping();
    await fake.waitFor(() => connection.pongs >= 2, 5000, "pongs");
  });

  test("sends the text keepalive when idle", async () => {
    const { fake } = open({ keepalive: { idleMs: 100, message: "ping" }, staleAfterMs: 5000 });
    const connection = await fake.waitForConnection(1);
    await connection.waitForMessage((text) => text === "ping", 3000);
  });

  test("stop closes the socket and does not reconnect", async () => {
    const { fake } = open();
    const connection = await fake.waitForConnection(1);
    await socket!.stop();
    await fake.waitFor(() => !connection.open, 3000, "close");
    await Bun.sleep(200);
    expect(fake.connections).toHaveLength(1);
  });

  test("a message over the frame bound is not delivered: counted, the connection closed with 1009 and reopened", async () => {
    const before = socketCounters.oversizedFrames;
    const { fake, closes, messages } = open({ maxFrameBytes: 64 * 1024 });
    const first = await fake.waitForConnection(1);
    first.send({ small: 1 });
    first.send("x".repeat(100_000));
    const second = await fake.waitForConnection(2, 5000);
    second.send({ small: 2 });
    await fake.waitFor(() => messages.length === 2, 5000, "the frames after the big one");
    expect(messages.map((message) => message.data)).toEqual(['{"small":1}', '{"small":2}']);
    expect(first.closeCode).toBe(1009);
    expect(closes[0]).toMatchObject({ wasOpen: true, initiatedBy: "message of 100000 bytes over the 65536-byte limit (XTRADER_MAX_FRAME_BYTES)" });
    expect(socketCounters.oversizedFrames - before).toBe(1);
  });

  test("a message at the bound is delivered", async () => {
    const { fake, messages } = open({ maxFrameBytes: 64 * 1024 });
    const first = await fake.waitForConnection(1);
    first.send("y".repeat(64 * 1024));
    await fake.waitFor(() => messages.length === 1, 5000, "the frame");
    expect(messages[0]!.data.length).toBe(64 * 1024);
    expect(fake.connections).toHaveLength(1);
  });

  test("a venue that keeps dropping the connection is logged once per episode, not once per attempt", async () => {
    const { log, lines } = memoryLogger();
    const { fake, closes } = open({ log, backoff: { initialMs: 10, maxMs: 40, factor: 2 } });
    fake.onConnection((connection) => connection.terminate());
    await fake.waitFor(() => closes.length >= 12, 10_000, "twelve drops");
    const disconnects = lines.filter((line) => line.includes("disconnected"));
    expect(disconnects.length).toBeLessThanOrEqual(2);
    await socket!.stop();
    // The stop ends the episode with its count.
    expect(lines.some((line) => /disconnected .*episode over, \d+ occurrence\(s\)/.test(line))).toBe(true);
  });
});
