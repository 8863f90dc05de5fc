/**
 * A real S3 protocol server on loopback for the upload tests: s3rver (npm, a dev dependency, so `npm ci`
 * installs it on a machine with only Node and npm; it runs inside Bun too). It answers what Bun's S3
 * client sends: PUT, HEAD, and multipart uploads (create, parts, complete), and checks SigV4 signatures
 * against its fixed key pair S3RVER/S3RVER. Unlike AWS it reports the MD5 of the whole object as the ETag
 * of a multipart upload; the uploader accepts both forms.
 *
 * FaultProxy stands between the client and the server as a TCP relay that can refuse connections, answer
 * 503 SlowDown, or cut a connection after some bytes of a request (a transfer interrupted mid-upload).
 */
import S3rver from "s3rver";
import { mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import type { Socket, TCPSocketListener } from "bun";

export const S3_KEY_ID = "S3RVER";
export const S3_SECRET = "S3RVER";

export interface S3TestServer {
  readonly endpoint: string;
  readonly port: number;
  readonly bucket: string;
  readonly directory: string;
  /** Keys of every object in the bucket. */
  keys(): string[];
  /** The bytes of an object, read through a client. */
  read(key: string): Promise<Uint8Array>;
  stop(): Promise<void>;
}

export async function startS3Server(bucket = "market-data", port = 0): Promise<S3TestServer> {
  const directory = mkdtempSync(join(tmpdir(), "xtrader-s3rver-"));
  const server = new S3rver({ port, address: "127.0.0.1", silent: true, directory, configureBuckets: [{ name: bucket }] });
  const address = (await server.run()) as { port: number };
  const endpoint = `http://127.0.0.1:${address.port}`;
  const client = new Bun.S3Client({ accessKeyId: S3_KEY_ID, secretAccessKey: S3_SECRET, bucket, endpoint, region: "us-east-1" });
  return {
    endpoint,
    port: address.port,
    bucket,
    directory,
    keys: () => objectKeys(join(directory, bucket)),
    read: async (key) => new Uint8Array(await client.file(key).arrayBuffer()),
    stop: async () => {
      await server.close();
    },
  };
}

/** s3rver stores an object KEY as the file `KEY._S3rver_object` (with metadata beside it). */
function objectKeys(bucketDirectory: string, directory = bucketDirectory): string[] {
  const keys: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(directory);
  } catch {
    return keys;
  }
  for (const name of entries) {
    const path = join(directory, name);
    if (statSync(path).isDirectory()) keys.push(...objectKeys(bucketDirectory, path));
    else if (name.endsWith("._S3rver_object")) keys.push(relative(bucketDirectory, path).slice(0, -"._S3rver_object".length));
  }
  return keys.sort();
}

export type FaultMode =
  | { readonly kind: "pass" }
  | { readonly kind: "refuse" }
  | { readonly kind: "slow-down" }
  /** Relays this many bytes of client data per connection, then cuts both sides. */
  | { readonly kind: "cut-after"; readonly bytes: number };

/** Bytes a Bun socket has not taken yet (its write() may take part of a chunk); sent on `drain`. */
class Outbox {
  private readonly waiting: Uint8Array[] = [];
  constructor(private readonly socket: { write(data: Uint8Array): number }) {}

  send(data: Uint8Array): void {
    if (this.waiting.length > 0) {
      this.waiting.push(new Uint8Array(data));
      return;
    }
    const written = this.socket.write(data);
    if (written < data.length) this.waiting.push(new Uint8Array(data.subarray(Math.max(0, written))));
  }

  drain(): void {
    while (this.waiting.length > 0) {
      const next = this.waiting[0]!;
      const written = this.socket.write(next);
      if (written < next.length) {
        this.waiting[0] = next.subarray(Math.max(0, written));
        return;
      }
      this.waiting.shift();
    }
  }
}

interface Relay {
  toClient?: Outbox;
  toUpstream?: Outbox;
  upstream?: Socket<Outbox>;
  queued: Uint8Array[];
  relayed: number;
  closed: boolean;
}

/** A TCP relay to `target` on loopback whose behaviour tests switch at run time. */
export class FaultProxy {
  mode: FaultMode = { kind: "pass" };
  /** Requests answered with 503 SlowDown, connections refused, connections cut. */
  readonly counts = { slowDown: 0, refused: 0, cut: 0, connections: 0 };
  /** Bytes relayed from clients to the server, all connections together. */
  relayedBytes = 0;
  private readonly listener: TCPSocketListener<Relay>;

  constructor(private readonly targetPort: number) {
    this.listener = Bun.listen<Relay>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open: (client) => {
          this.counts.connections++;
          client.data = { queued: [], relayed: 0, closed: false, toClient: new Outbox(client) };
          if (this.mode.kind === "refuse") {
            this.counts.refused++;
            client.end();
            return;
          }
          if (this.mode.kind === "slow-down") return; // answered once the request head arrives
          void Bun.connect<Outbox>({
            hostname: "127.0.0.1",
            port: this.targetPort,
            socket: {
              open: (upstream) => {
                upstream.data = new Outbox(upstream);
              },
              data: (_upstream, chunk) => {
                if (!client.data.closed) client.data.toClient!.send(chunk);
              },
              drain: (upstream) => upstream.data.drain(),
              close: () => {
                client.data.closed = true;
                client.end();
              },
              error: () => {
                client.end();
              },
            },
          }).then(
            (upstream) => {
              client.data.upstream = upstream;
              client.data.toUpstream = upstream.data;
              for (const chunk of client.data.queued.splice(0)) upstream.data.send(chunk);
            },
            () => client.end(),
          );
        },
        drain: (client) => client.data.toClient!.drain(),
        data: (client, chunk) => {
          const relay = client.data;
          if (this.mode.kind === "slow-down") {
            if (relay.closed) return;
            relay.closed = true;
            this.counts.slowDown++;
            const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`;
            client.end(`HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
            return;
          }
          let data = chunk as Uint8Array;
          if (this.mode.kind === "cut-after") {
            const room = this.mode.bytes - relay.relayed;
            if (room <= 0 || data.length > room) {
              data = data.subarray(0, Math.max(0, room));
              if (data.length > 0) this.forward(relay, data);
              relay.closed = true;
              this.counts.cut++;
              relay.upstream?.end();
              client.end();
              return;
            }
          }
          this.forward(relay, data);
        },
        close: (client) => {
          client.data.closed = true;
          client.data.upstream?.end();
        },
      },
    });
  }

  private forward(relay: Relay, data: Uint8Array): void {
    relay.relayed += data.length;
    this.relayedBytes += data.length;
    if (relay.toUpstream) relay.toUpstream.send(data);
    else relay.queued.push(new Uint8Array(data));
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.listener.port}`;
  }

  stop(): void {
    this.listener.stop(true);
  }
}

export function readLocal(path: string): Uint8Array {
  return new Uint8Array(readFileSync(path));
}
