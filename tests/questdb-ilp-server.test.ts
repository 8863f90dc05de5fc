/**
 * The strict ILP test server must itself be right, or the sink tests prove nothing: well-formed lines
 * parse to exact values, every malformed line is an error that closes the connection, lines split
 * across packets are reassembled, and the fault controls (drop, stop, restart on the same port) work.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { connect, type Socket } from "node:net";
import { IlpServer, parseIlpLine } from "./support/ilp-server.ts";

const encoder = new TextEncoder();

function parse(line: string) {
  return parseIlpLine(encoder.encode(line), 0);
}

describe("parseIlpLine", () => {
  test("parses symbols, every field kind and the designated timestamp", () => {
    const result = parse('t,a=x\\ y\\,z\\=w\\\\v,b=\\\nq s="q\\"u\\\\o\\\nte",l=-42i,d=1.5e-7,e=100,ts=1700000000000000t,n=5n,bt=t,bf=FALSE 1700000000000000000\n');
    expect(result.kind).toBe("row");
    if (result.kind !== "row") return;
    expect(result.row.table).toBe("t");
    expect(result.row.symbols).toEqual({ a: "x y,z=w\\v", b: "\nq" });
    expect(result.row.fields).toEqual({
      s: { kind: "string", value: 'q"u\\o\nte' },
      l: { kind: "long", value: -42n },
      d: { kind: "double", value: 1.5e-7 },
      e: { kind: "double", value: 100 },
      ts: { kind: "timestamp", value: 1700000000000000n },
      n: { kind: "timestamp_ns", value: 5n },
      bt: { kind: "boolean", value: true },
      bf: { kind: "boolean", value: false },
    });
    expect(result.row.timestamp).toBe(1700000000000000000n);
  });

  test("an unfinished line is incomplete, not an error", () => {
    for (const prefix of ["t", "t,a=x", "t,a=x f=", 't,a=x f="ab', "t,a=x f=1 123", "t,a=x f=1 123\\"]) {
      expect(parse(prefix).kind).toBe("incomplete");
    }
  });

  const malformed: Array<[string, string]> = [
    ["t,a=x y f=1 1\n", "unescaped space in a symbol value"],
    ["t,a=x=y f=1 1\n", "unescaped equals sign in a symbol value"],
    ["t,a=x f=\"a\nb\" 1\n", "raw newline inside a string"],
    ['t,a=x f="a\\qb" 1\n', "unknown escape in a string"],
    ["t,a=x\\q f=1 1\n", "unknown escape in a symbol value"],
    ["t,a= f=1 1\n", "empty symbol value"],
    ["t,a=x 1\n", "no fields"],
    ["t,a=x\n", "line ends after the symbols"],
    ["t,a=x f=NaN 1\n", "NaN"],
    ["t,a=x f=Infinity 1\n", "Infinity"],
    ["t,a=x f=1e999 1\n", "overflowing double"],
    ["t,a=x f=12x 1\n", "unknown suffix"],
    ["t,a=x f=9223372036854775808i 1\n", "LONG out of range"],
    ["t,a=x f=1,f=2 1\n", "duplicate column"],
    ["t,a=x,a=y f=1 1\n", "duplicate symbol"],
    ["t,a=x f=1 12a\n", "bad designated timestamp"],
    ["t,a=x f=1\n", "missing designated timestamp"],
    ["t-x,a=x f=1 1\n", "invalid table name"],
    ["t,a-b=x f=1 1\n", "invalid column name"],
    ["t,a=x f=\"x\"y 1\n", "garbage after a string"],
    ["t,a=x f=1\r 1\n", "carriage return in a value"],
    ["t,a=\xff f=1 1\n", "invalid UTF-8"],
  ];
  for (const [line, what] of malformed) {
    test(`rejects ${what}`, () => {
      const bytes = what === "invalid UTF-8" ? Uint8Array.from(Buffer.from(line, "latin1")) : encoder.encode(line);
      expect(parseIlpLine(bytes, 0).kind).toBe("error");
    });
  }
});

describe("IlpServer", () => {
  let server: IlpServer | undefined;
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await server?.stop();
    server = undefined;
  });

  function client(port: number): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port }, () => resolve(socket));
      socket.on("error", reject);
      sockets.push(socket);
    });
  }

  test("reassembles lines split across writes and counts rows per table", async () => {
    server = await IlpServer.start();
    const socket = await client(server.port);
    const text = "a,s=x f=1 1\nb,s=y g=\"p\\\nq\" 2\na,s=z f=2 3\n";
    for (const piece of [text.slice(0, 7), text.slice(7, 20), text.slice(20)]) {
      socket.write(piece);
      await Bun.sleep(5);
    }
    await server.waitForRows(3);
    expect(server.countsByTable()).toEqual({ a: 2, b: 1 });
    expect(server.rowsIn("b")[0]!.fields.g).toEqual({ kind: "string", value: "p\nq" });
    server.assertNoErrors();
  });

  test("a malformed line is recorded, closes the connection and fails assertNoErrors", async () => {
    server = await IlpServer.start();
    const socket = await client(server.port);
    const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    socket.write("a,s=x f=1 1\na,s=x y f=1 2\na,s=x f=3 3\n");
    await closed;
    expect(server.countRows()).toBe(1);
    expect(server.errors.length).toBe(1);
    expect(() => server!.assertNoErrors()).toThrow(/unescaped space|unexpected/);
  });

  test("a column that changes type within a table is an error", async () => {
    server = await IlpServer.start();
    const socket = await client(server.port);
    socket.write("a,s=x f=1 1\na,s=x f=1i 2\n");
    await server.waitFor(() => server!.errors.length > 0, 2000, "an error");
    expect(server.errors[0]).toContain("was double, now long");
  });

  test("drops connections, stops and restarts on the same port", async () => {
    server = await IlpServer.start();
    const port = server.port;
    const first = await client(port);
    await server.waitFor(() => server!.openConnections === 1, 2000, "a connection");
    const firstClosed = new Promise<void>((resolve) => first.on("close", () => resolve()));
    expect(server.dropConnections("reset")).toBe(1);
    await firstClosed;

    await server.stop();
    expect(server.listening).toBe(false);
    await expect(client(port)).rejects.toThrow();

    await server.restart();
    expect(server.port).toBe(port);
    const second = await client(port);
    second.write("a,s=x f=1 1\n");
    await server.waitForRows(1);
    expect(server.connectionsAccepted).toBe(2);
    server.assertNoErrors();
  });
});
