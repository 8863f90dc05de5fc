/**
 * Upload of closed files to a real S3 protocol server on loopback (s3rver, tests/support/s3-server.ts),
 * through Bun's S3 client, with the faults of issue #28: store down at start, a connection cut
 * mid-upload (multipart), 503 SlowDown, a key already taken, credentials that expire and are refreshed,
 * a run killed at every step. Each test checks the objects' bytes against the files, that nothing is
 * uploaded twice or under two names, and that no local copy is deleted before the store has it.
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { createLogger } from "../src/core/log.ts";
import { UploadRecords } from "../src/upload/records.ts";
import { UploadingSink } from "../src/upload/sink.ts";
import { S3Store, type ObjectStore } from "../src/upload/store.ts";
import { expectedEtags, objectKeyOf, Uploader, UPLOAD_PART_BYTES } from "../src/upload/uploader.ts";
import { parseUploadUrl } from "../src/upload/settings.ts";
import { MemorySink } from "./support/memory-sink.ts";
import { FaultProxy, readLocal, startS3Server, S3_KEY_ID, S3_SECRET, type S3TestServer } from "./support/s3-server.ts";

setDefaultTimeout(60_000);
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const log = createLogger(process.env.UPLOAD_TEST_LOG === "1" ? "debug" : "error");
const STATIC = async () => ({ accessKeyId: S3_KEY_ID, secretAccessKey: S3_SECRET });
const PARTITION = "trades/exchange=BINANCE_FUTURES/symbol=BTCUSDT/date=2026-01-05";

async function server(): Promise<S3TestServer> {
  const s3 = await startS3Server();
  cleanups.push(() => s3.stop());
  return s3;
}

function proxyTo(s3: S3TestServer): FaultProxy {
  const proxy = new FaultProxy(s3.port);
  cleanups.push(() => proxy.stop());
  return proxy;
}

/** A store that counts the uploads it starts (to prove nothing is uploaded twice). */
class CountingStore implements ObjectStore {
  puts: string[] = [];
  constructor(readonly inner: S3Store) {}
  stat(key: string) {
    return this.inner.stat(key);
  }
  put(key: string, path: string, partSize: number) {
    this.puts.push(key);
    return this.inner.put(key, path, partSize);
  }
}

function store(endpoint: string, bucket: string, prefix = "xtrader", provider = STATIC, now?: () => number): CountingStore {
  return new CountingStore(new S3Store({ target: { bucket, prefix }, endpoint, region: "us-east-1" }, provider, now));
}

function outputDirectory(): string {
  return mkdtempSync(join(tmpdir(), "xtrader-upload-"));
}

/** Writes a finished data file of `bytes` random bytes; returns its relative path. */
function dataFile(root: string, name: string, bytes: number, partition = PARTITION): string {
  const path = `${partition}/${name}`;
  mkdirSync(join(root, dirname(path)), { recursive: true });
  writeFileSync(join(root, path), randomBytes(bytes));
  return path;
}

function uploader(root: string, objectStore: ObjectStore, overrides: Partial<{ keepLocal: boolean; maxLocalBytes: number; instanceId: string }> = {}) {
  const made = new Uploader({
    root,
    settings: { keepLocal: false, maxLocalBytes: 1 << 30, instanceId: "xtrader-0", ...overrides },
    store: objectStore,
    log,
    retryMinMs: 20,
    retryMaxMs: 200,
  });
  cleanups.push(() => made.stop());
  return made;
}

function parquetFilesUnder(root: string, directory = root): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() && !entry.name.startsWith(".") ? parquetFilesUnder(root, join(directory, entry.name)) : entry.name.endsWith(".parquet") ? [entry.name] : [],
  );
}

async function drained(made: Uploader, timeoutMs = 30_000): Promise<void> {
  expect(await made.drain(timeoutMs)).toBe(0);
}

describe("object keys and checksums", () => {
  test("the relative path with the instance identity before .parquet; one glob per table still matches", () => {
    expect(objectKeyOf(`${PARTITION}/120000-0003.parquet`, "xtrader-2")).toBe(`${PARTITION}/120000-0003-xtrader-2.parquet`);
    expect(objectKeyOf(`${PARTITION}/120000-0003.parquet`, "xtrader-2", 1)).toBe(`${PARTITION}/120000-0003-xtrader-2-2.parquet`);
  });

  test("s3:// URLs: bucket and prefix; anything else is one line", () => {
    expect(parseUploadUrl("s3://market-data/xtrader/prod/")).toEqual({ bucket: "market-data", prefix: "xtrader/prod" });
    expect(parseUploadUrl("s3://market-data")).toEqual({ bucket: "market-data", prefix: "" });
    for (const bad of ["market-data", "https://x/y", "s3://Bad_Bucket/x", "s3://ab", "s3://bucket/a/../b", "s3://bucket/a//b"]) {
      expect(() => parseUploadUrl(bad)).toThrow(`invalid upload URL '${bad}'`);
    }
  });

  test("the ETags of a single-part and of a multipart upload", async () => {
    const root = outputDirectory();
    const path = join(root, dataFile(root, "000000-0000.parquet", UPLOAD_PART_BYTES + 5));
    const bytes = readLocal(path);
    const md5 = (data: Uint8Array) => new Bun.CryptoHasher("md5").update(data).digest();
    const parts = [md5(bytes.subarray(0, UPLOAD_PART_BYTES)), md5(bytes.subarray(UPLOAD_PART_BYTES))];
    const { size, etags } = await expectedEtags(path, UPLOAD_PART_BYTES);
    expect(size).toBe(UPLOAD_PART_BYTES + 5);
    expect(etags).toEqual([md5(bytes).toString("hex"), `${new Bun.CryptoHasher("md5").update(Buffer.concat(parts)).digest("hex")}-2`]);
  });
});

describe("uploads to the S3 server", () => {
  test("closed files reach the store verified, under their path and instance; local copies and records go", async () => {
    const s3 = await server();
    const root = outputDirectory();
    const before = dataFile(root, "100000-0000.parquet", 1000); // left by a previous run: found at start
    const objectStore = store(s3.endpoint, s3.bucket);
    const made = uploader(root, objectStore);
    await made.start();
    const big = dataFile(root, "110000-0000.parquet", 2 * UPLOAD_PART_BYTES + 123); // multipart
    const bigBytes = readLocal(join(root, big));
    const beforeBytes = readLocal(join(root, before));
    made.fileClosed(join(root, big));
    await drained(made);
    expect(s3.keys()).toEqual([`xtrader/${PARTITION}/100000-0000-xtrader-0.parquet`, `xtrader/${PARTITION}/110000-0000-xtrader-0.parquet`]);
    expect(await s3.read(`xtrader/${PARTITION}/110000-0000-xtrader-0.parquet`)).toEqual(bigBytes);
    expect(await s3.read(`xtrader/${PARTITION}/100000-0000-xtrader-0.parquet`)).toEqual(beforeBytes);
    expect(parquetFilesUnder(root)).toEqual([]);
    expect(await new UploadRecords(root).all()).toEqual([]);
    expect(made.stats).toMatchObject({ pendingFiles: 0, pendingBytes: 0, uploadedFiles: 2, uploadedBytes: 1000 + 2 * UPLOAD_PART_BYTES + 123, failures: 0 });
    expect(objectStore.puts).toHaveLength(2);
  });

  test("--keep-local keeps the files, and the next start does not upload them again", async () => {
    const s3 = await server();
    const root = outputDirectory();
    dataFile(root, "100000-0000.parquet", 5000);
    const first = store(s3.endpoint, s3.bucket);
    const made = uploader(root, first, { keepLocal: true });
    await made.start();
    await drained(made);
    made.stop();
    expect(parquetFilesUnder(root)).toEqual(["100000-0000.parquet"]);
    const again = store(s3.endpoint, s3.bucket);
    const restarted = uploader(root, again, { keepLocal: true });
    await restarted.start();
    await drained(restarted);
    expect(again.puts).toEqual([]);
    expect(s3.keys()).toEqual([`xtrader/${PARTITION}/100000-0000-xtrader-0.parquet`]);
  });

  test("store down at start: files wait (counted), then go once it is up; nothing is deleted before", async () => {
    const s3 = await server();
    const proxy = proxyTo(s3);
    proxy.mode = { kind: "refuse" };
    const root = outputDirectory();
    const path = dataFile(root, "100000-0000.parquet", 3000);
    const bytes = readLocal(join(root, path));
    const made = uploader(root, store(proxy.endpoint, s3.bucket));
    await made.start();
    expect(await made.drain(300)).toBe(1);
    expect(made.stats.failures).toBeGreaterThan(0);
    expect(made.stats.pendingBytes).toBe(3000);
    expect(made.stats.oldestPendingSince).toBeGreaterThan(0);
    expect(existsSync(join(root, path))).toBe(true);
    expect(proxy.counts.refused).toBeGreaterThan(0);
    proxy.mode = { kind: "pass" };
    await drained(made);
    expect(await s3.read(`xtrader/${PARTITION}/100000-0000-xtrader-0.parquet`)).toEqual(bytes);
    expect(made.stats.oldestPendingSince).toBe(0);
  });

  test("503 SlowDown: retried with backoff, uploaded once", async () => {
    const s3 = await server();
    const proxy = proxyTo(s3);
    proxy.mode = { kind: "slow-down" };
    const root = outputDirectory();
    dataFile(root, "100000-0000.parquet", 3000);
    const objectStore = store(proxy.endpoint, s3.bucket);
    const made = uploader(root, objectStore);
    await made.start();
    expect(await made.drain(300)).toBe(1);
    expect(proxy.counts.slowDown).toBeGreaterThan(0);
    proxy.mode = { kind: "pass" };
    await drained(made);
    expect(s3.keys()).toEqual([`xtrader/${PARTITION}/100000-0000-xtrader-0.parquet`]);
    expect(made.stats.failures).toBeGreaterThan(0);
  });

  test("a multipart upload whose connection is cut mid-transfer is redone; the object is whole", async () => {
    const s3 = await server();
    const proxy = proxyTo(s3);
    proxy.mode = { kind: "cut-after", bytes: UPLOAD_PART_BYTES / 2 }; // inside a part
    const root = outputDirectory();
    const path = dataFile(root, "100000-0000.parquet", 3 * UPLOAD_PART_BYTES);
    const bytes = readLocal(join(root, path));
    const made = uploader(root, store(proxy.endpoint, s3.bucket));
    await made.start();
    for (let waited = 0; proxy.counts.cut === 0 && waited < 200; waited++) await Bun.sleep(50);
    expect(proxy.counts.cut).toBeGreaterThan(0);
    expect(existsSync(join(root, path))).toBe(true);
    proxy.mode = { kind: "pass" };
    await drained(made);
    expect(s3.keys()).toEqual([`xtrader/${PARTITION}/100000-0000-xtrader-0.parquet`]);
    expect(await s3.read(`xtrader/${PARTITION}/100000-0000-xtrader-0.parquet`)).toEqual(bytes);
  });

  test("a key holding other bytes is left alone; the file goes to the next free key", async () => {
    const s3 = await server();
    const root = outputDirectory();
    const key = `xtrader/${PARTITION}/100000-0000-xtrader-0.parquet`;
    const client = new Bun.S3Client({ accessKeyId: S3_KEY_ID, secretAccessKey: S3_SECRET, bucket: s3.bucket, endpoint: s3.endpoint });
    await client.write(key, "an earlier file of the same name");
    const path = dataFile(root, "100000-0000.parquet", 2000);
    const bytes = readLocal(join(root, path));
    const made = uploader(root, store(s3.endpoint, s3.bucket));
    await made.start();
    await drained(made);
    expect(new TextDecoder().decode(await s3.read(key))).toBe("an earlier file of the same name");
    expect(await s3.read(`xtrader/${PARTITION}/100000-0000-xtrader-0-2.parquet`)).toEqual(bytes);
  });

  test("a record from a killed run keeps its key, even when the instance is now named otherwise", async () => {
    const s3 = await server();
    const root = outputDirectory();
    const path = dataFile(root, "100000-0000.parquet", 2000);
    await new UploadRecords(root).write({ path, key: objectKeyOf(path, "old-name"), size: 2000, closedAt: Date.now(), state: "pending" });
    const made = uploader(root, store(s3.endpoint, s3.bucket), { instanceId: "new-name" });
    await made.start();
    await drained(made);
    expect(s3.keys()).toEqual([`xtrader/${PARTITION}/100000-0000-old-name.parquet`]);
  });

  test("killed after the upload, before the local delete: the next start finds the object and does not upload again", async () => {
    const s3 = await server();
    const root = outputDirectory();
    const path = dataFile(root, "100000-0000.parquet", 2000);
    const key = objectKeyOf(path, "xtrader-0");
    await new UploadRecords(root).write({ path, key, size: 2000, closedAt: Date.now(), state: "pending" });
    const client = new Bun.S3Client({ accessKeyId: S3_KEY_ID, secretAccessKey: S3_SECRET, bucket: s3.bucket, endpoint: s3.endpoint });
    await client.write(`xtrader/${key}`, Bun.file(join(root, path)));
    const objectStore = store(s3.endpoint, s3.bucket);
    const made = uploader(root, objectStore);
    await made.start();
    await drained(made);
    expect(objectStore.puts).toEqual([]);
    expect(existsSync(join(root, path))).toBe(false);
    expect(await new UploadRecords(root).all()).toEqual([]);
  });

  test("killed after the local delete, before the record went: the next start checks the store and settles it", async () => {
    const s3 = await server();
    const root = outputDirectory();
    const path = dataFile(root, "100000-0000.parquet", 2000);
    const key = objectKeyOf(path, "xtrader-0");
    const client = new Bun.S3Client({ accessKeyId: S3_KEY_ID, secretAccessKey: S3_SECRET, bucket: s3.bucket, endpoint: s3.endpoint });
    await client.write(`xtrader/${key}`, Bun.file(join(root, path)));
    await new UploadRecords(root).write({ path, key, size: 2000, closedAt: Date.now(), state: "pending" });
    await Bun.file(join(root, path)).delete();
    const objectStore = store(s3.endpoint, s3.bucket);
    const made = uploader(root, objectStore);
    await made.start();
    await drained(made);
    expect(objectStore.puts).toEqual([]);
    expect(await new UploadRecords(root).all()).toEqual([]);
  });
});

describe("credentials", () => {
  test("temporary credentials from the ECS container endpoint are refreshed as they expire; rejected ones are replaced", async () => {
    const s3 = await server();
    let served = 0;
    // The first set is refused by the store (an expired session); later ones are good; each expires at once.
    const endpoint = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () => {
        served++;
        return Response.json({
          AccessKeyId: served === 1 ? "EXPIRED" : S3_KEY_ID,
          SecretAccessKey: S3_SECRET,
          Token: `token-${served}`,
          Expiration: new Date(Date.now() + 60_000).toISOString(),
        });
      },
    });
    cleanups.push(() => endpoint.stop(true));
    const saved = { ...process.env };
    cleanups.push(() => {
      for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
      Object.assign(process.env, saved);
    });
    for (const name of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE"]) delete process.env[name];
    process.env.AWS_CONTAINER_CREDENTIALS_FULL_URI = `http://127.0.0.1:${endpoint.port}/v2/credentials/task`;
    process.env.AWS_SHARED_CREDENTIALS_FILE = join(outputDirectory(), "none");
    process.env.AWS_CONFIG_FILE = join(outputDirectory(), "none");
    process.env.AWS_EC2_METADATA_DISABLED = "true";
    const root = outputDirectory();
    const objectStore = new CountingStore(new S3Store({ target: { bucket: s3.bucket, prefix: "" }, endpoint: s3.endpoint, region: "us-east-1" }));
    const made = uploader(root, objectStore);
    await made.start();
    made.fileClosed(join(root, dataFile(root, "100000-0000.parquet", 1000)));
    await drained(made);
    expect(made.stats.failures).toBeGreaterThan(0); // the refused set
    made.fileClosed(join(root, dataFile(root, "110000-0000.parquet", 1000)));
    await drained(made);
    expect(served).toBeGreaterThanOrEqual(3); // one per use: each set expires within the refresh margin
    expect(s3.keys()).toEqual([`${PARTITION}/100000-0000-xtrader-0.parquet`, `${PARTITION}/110000-0000-xtrader-0.parquet`]);
  });
});

describe("the bounded local backlog", () => {
  test("over --max-local-bytes the sink holds the pipeline until uploads catch up", async () => {
    const s3 = await server();
    const proxy = proxyTo(s3);
    proxy.mode = { kind: "refuse" };
    const root = outputDirectory();
    const made = uploader(root, store(proxy.endpoint, s3.bucket), { maxLocalBytes: 1 << 20 });
    const inner = new MemorySink();
    const sink = new UploadingSink(inner, made, { log, maxLocalBytes: 1 << 20, stopWaitMs: 5000 });
    await sink.start();
    await sink.write([]); // within the bound: passes at once
    expect(inner.writeCalls).toBe(1);
    made.fileClosed(join(root, dataFile(root, "100000-0000.parquet", 2 << 20)));
    for (let waited = 0; made.stats.pendingBytes === 0 && waited < 100; waited++) await Bun.sleep(20);
    let passed = false;
    const held = Promise.resolve(sink.write([])).then(() => (passed = true));
    await Bun.sleep(300);
    expect(passed).toBe(false);
    expect(inner.writeCalls).toBe(1);
    proxy.mode = { kind: "pass" };
    await held;
    expect(inner.writeCalls).toBe(2);
    expect(made.stats.pendingBytes).toBe(0);
    await sink.close();
  });

  test("a stop uploads what is pending before the process ends", async () => {
    const s3 = await server();
    const root = outputDirectory();
    const made = uploader(root, store(s3.endpoint, s3.bucket));
    const inner = new MemorySink();
    const sink = new UploadingSink(inner, made, { log, maxLocalBytes: 1 << 30, stopWaitMs: 10_000 });
    await sink.start();
    made.fileClosed(join(root, dataFile(root, "235959-0000.parquet", 4000)));
    await sink.close();
    expect(s3.keys()).toEqual([`xtrader/${PARTITION}/235959-0000-xtrader-0.parquet`]);
  });
});

describe("a run killed with SIGKILL in the middle of a multipart upload", () => {
  test("the next start uploads the file again under the same key: one whole object, the local copy deleted after", async () => {
    const s3 = await server();
    const proxy = proxyTo(s3);
    const root = outputDirectory();
    const path = dataFile(root, "100000-0000.parquet", 6 * UPLOAD_PART_BYTES);
    const bytes = readLocal(join(root, path));
    const child = join(import.meta.dir, "support", "upload-child.ts");
    const first = Bun.spawn([process.execPath, child, root, proxy.endpoint, s3.bucket], { stdout: "pipe", stderr: "inherit" });
    cleanups.push(() => {
      if (first.exitCode === null) first.kill("SIGKILL");
    });
    for (let waited = 0; proxy.relayedBytes < 2 * UPLOAD_PART_BYTES && first.exitCode === null && waited < 600; waited++) await Bun.sleep(10);
    first.kill("SIGKILL");
    await first.exited;
    expect(first.signalCode).toBe("SIGKILL");
    expect(proxy.relayedBytes).toBeGreaterThan(UPLOAD_PART_BYTES);
    expect(s3.keys()).toEqual([]); // an unfinished multipart upload is no object
    expect(existsSync(join(root, path))).toBe(true);
    expect((await new UploadRecords(root).all()).map((record) => record.state)).toEqual(["pending"]);

    const second = Bun.spawn([process.execPath, child, root, proxy.endpoint, s3.bucket], { stdout: "pipe", stderr: "inherit" });
    expect(await new Response(second.stdout).text()).toBe("drained\n");
    expect(await second.exited).toBe(0);
    expect(s3.keys()).toEqual([`xtrader/${PARTITION}/100000-0000-xtrader-0.parquet`]);
    expect(await s3.read(`xtrader/${PARTITION}/100000-0000-xtrader-0.parquet`)).toEqual(bytes);
    expect(existsSync(join(root, path))).toBe(false);
    expect(await new UploadRecords(root).all()).toEqual([]);
  });
});
