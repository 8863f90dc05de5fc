/**
 * The compiled binary with --upload-url against the fake Binance venue and a real S3 protocol server on
 * loopback: the files the run closes (SIGHUP, then the stop) reach the store under the instance's name,
 * readable by DuckDB with every trade the venue sent, and no local copy is left behind; /metrics shows
 * the uploads. The credentials come from the environment, as a user on a machine with static keys sets
 * them, so the whole path (credential chain included) runs inside the single-file executable.
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, runBinary } from "./support/binary.ts";
import { FakeBinanceFutures } from "./support/fake-binance.ts";
import { query } from "./support/parquet-helpers.ts";
import { FaultProxy, startS3Server, S3_KEY_ID, S3_SECRET, type S3TestServer } from "./support/s3-server.ts";
import { parseExposition } from "./support/prometheus-text.ts";

setDefaultTimeout(60_000);
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function parquetFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".parquet") && !join(entry.parentPath, entry.name).includes("/."))
    .map((entry) => entry.name);
}

/** Polls `check` (every 50 ms, up to 15 s) until it yields a value. */
async function until<T>(check: () => T | undefined | false | Promise<T | undefined | false>, what: string): Promise<T> {
  for (let waited = 0; waited < 300; waited++) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    await Bun.sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Downloads every object under `prefix` and runs `sql` over them (as `rows`); default: the row count. */
async function readTable(s3: S3TestServer, prefix: string, sql = "SELECT count(*)::INTEGER AS n FROM rows"): Promise<any[]> {
  const downloads = mkdtempSync(join(tmpdir(), "xtrader-upload-read-"));
  const keys = s3.keys().filter((key) => key.startsWith(prefix));
  expect(keys.length).toBeGreaterThan(0);
  for (const [index, key] of keys.entries()) writeFileSync(join(downloads, `${index}.parquet`), await s3.read(key));
  return query(`WITH rows AS (SELECT * FROM read_parquet('${downloads}/*.parquet')) ${sql}`);
}

/**
 * Starts the binary recording BTCUSDT trades from the fake venue with --upload-url to `endpoint`, keys in
 * the environment as a user with static keys sets them; collects stdout and stderr (warnings) as text.
 */
function startCollector(
  fake: FakeBinanceFutures,
  endpoint: string,
  bucket: string,
  instanceId: string,
  extra: { args?: string[]; env?: Record<string, string>; staticKeys?: boolean } = {},
) {
  const directory = mkdtempSync(join(tmpdir(), "xtrader-upload-binary-"));
  const output = join(directory, "data");
  const child = Bun.spawn(
    [ensureBinary(), "--subscriptions", "TRADES:BINANCE_FUTURES@BTCUSDT", "--output-directory", output, "--upload-url", `s3://${bucket}/archive`, "--metrics-addr", "127.0.0.1:0", ...(extra.args ?? [])],
    {
      cwd: directory,
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: directory, // no ~/.aws of whoever runs the tests
        ...fake.env,
        ...(extra.staticKeys === false ? {} : { AWS_ACCESS_KEY_ID: S3_KEY_ID, AWS_SECRET_ACCESS_KEY: S3_SECRET, AWS_EC2_METADATA_DISABLED: "true" }),
        AWS_ENDPOINT_URL_S3: endpoint,
        INSTANCE_ID: instanceId,
        ...extra.env,
      },
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  cleanups.push(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  const lines: string[] = [];
  const reading = Promise.all(
    [child.stdout, child.stderr].map(async (stream) => {
      for await (const chunk of stream) lines.push(new TextDecoder().decode(chunk));
    }),
  );
  return { child, output, log: () => lines.join(""), reading };
}

describe("compiled binary with --upload-url", () => {
  test("closed files reach the S3 server, complete; the local copies go; metrics count them", async () => {
    const s3 = await startS3Server();
    cleanups.push(() => s3.stop());
    const fake = FakeBinanceFutures.start({ symbols: ["BTCUSDT"], seed: 11 });
    cleanups.push(() => fake.stop());
    const { child, output, log: collectorLog, reading } = startCollector(fake, s3.endpoint, s3.bucket, "collector-a");
    await fake.waitForSubscribers("btcusdt@aggTrade", 1, 15_000);
    for (let i = 0; i < 20; i++) fake.trade();
    // SIGHUP closes the open file: it is uploaded while the collector runs.
    await Bun.sleep(300);
    child.kill("SIGHUP");
    const url = await until(() => /metrics on (http:\/\/[^ ]+) /.exec(collectorLog())?.[1], "the metrics address");
    // Counted once the store has the object and it was verified.
    const metrics = await until(async () => {
      const scraped = parseExposition(await (await fetch(`${url}/metrics`)).text());
      return scraped.value("xtrader_upload_files_total", {}) > 0 && scraped;
    }, "the first upload");
    expect(s3.keys().length).toBeGreaterThan(0);
    expect(metrics.value("xtrader_upload_failures_total", {})).toBe(0);
    for (let i = 0; i < 15; i++) fake.trade();
    await Bun.sleep(300);
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    await reading;
    const log = collectorLog();
    expect(log).toContain(`uploading closed files to s3://${s3.bucket}/archive as instance collector-a`);
    expect(log).toContain("upload: every closed file uploaded");

    const keys = s3.keys();
    for (const key of keys) expect(key).toMatch(/^archive\/(trades|gaps)\/exchange=BINANCE_FUTURES\/symbol=BTCUSDT\/date=\d{4}-\d\d-\d\d\/\d{6}-\d{4}-collector-a\.parquet$/);
    expect(parquetFiles(output)).toEqual([]);
    // Read the objects back (downloaded through the S3 API) with DuckDB: every trade the venue sent.
    const sent = fake.market().trades.filter((trade) => trade.delivered > 0).length;
    const [row] = await readTable(s3, "archive/trades/", "SELECT count(*)::INTEGER AS n, count(DISTINCT id)::INTEGER AS ids FROM rows");
    expect(row).toEqual({ n: sent, ids: sent });
    expect(sent).toBe(35);
  });

  test("the store away longer than --max-local-bytes allows: the pipeline is held, drops are counted and marked with gap rows", async () => {
    const s3 = await startS3Server();
    cleanups.push(() => s3.stop());
    const proxy = new FaultProxy(s3.port);
    cleanups.push(() => proxy.stop());
    proxy.mode = { kind: "refuse" };
    const fake = FakeBinanceFutures.start({ symbols: ["BTCUSDT"], seed: 12 });
    cleanups.push(() => fake.stop());
    const { child, log: collectorLog, reading } = startCollector(fake, proxy.endpoint, s3.bucket, "collector-b", {
      args: ["--max-local-bytes", "1"],
      env: { XTRADER_QUEUE_CAPACITY: "1000" },
    });
    await fake.waitForSubscribers("btcusdt@aggTrade", 1, 15_000);
    const url = await until(() => /metrics on (http:\/\/[^ ]+) /.exec(collectorLog())?.[1], "the metrics address");
    const scrape = async () => parseExposition(await (await fetch(`${url}/metrics`)).text());
    for (let i = 0; i < 5; i++) fake.trade();
    await Bun.sleep(300);
    child.kill("SIGHUP"); // a closed file that cannot leave: over the 1-byte bound
    for (let waited = 0; (await scrape()).value("xtrader_upload_pending_files", {}) === 0 && waited < 100; waited++) await Bun.sleep(50);
    for (let i = 0; i < 3000; i++) fake.trade();
    let held = await scrape();
    for (let waited = 0; held.value("xtrader_queue_dropped_events_total", {}) === 0 && waited < 100; waited++) {
      await Bun.sleep(50);
      held = await scrape();
    }
    expect(held.value("xtrader_queue_dropped_events_total", {})).toBeGreaterThan(0);
    expect(held.value("xtrader_upload_failures_total", {})).toBeGreaterThan(0);
    // The log line may arrive a moment after the counters moved (stderr is read on its own).
    await until(() => collectorLog().includes("over --max-local-bytes 1; holding the pipeline until uploads catch up"), "the holding line");

    proxy.mode = { kind: "pass" }; // the store is back: the backlog leaves, the pipeline flows again
    for (let waited = 0; !collectorLog().includes("the pipeline flows again") && waited < 200; waited++) await Bun.sleep(50);
    await Bun.sleep(300);
    const dropped = (await scrape()).value("xtrader_events_dropped_total", { exchange: "BINANCE_FUTURES", stream: "TRADES", symbol: "BTCUSDT" });
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    await reading;
    const rows = await readTable(s3, "archive/trades/");
    const gaps = await readTable(s3, "archive/gaps/", "SELECT reason, count(*)::INTEGER AS n FROM rows GROUP BY reason");
    const sent = fake.market().trades.filter((trade) => trade.delivered > 0).length;
    // Nothing silent: every trade is either in the store or counted as dropped, and the drop is marked.
    expect(dropped).toBeGreaterThan(0);
    expect(rows[0]!.n + dropped).toBe(sent);
    expect(gaps).toContainEqual({ reason: "overflow", n: expect.any(Number) });
  });

  /**
   * Role credentials as AWS serves them, from loopback stand-ins: the EC2 instance metadata service
   * (IMDSv2: a session token first, then the role's credentials), STS answering AssumeRoleWithWebIdentity
   * for a token file (EKS IRSA), and the container credentials endpoint (ECS task role, EKS Pod Identity).
   */
  test.each(["EC2 instance profile (IMDSv2)", "EKS IRSA (web identity token)", "ECS task role (container endpoint)"])(
    "credentials from the %s: the binary finds them and uploads",
    async (source) => {
      const s3 = await startS3Server();
      cleanups.push(() => s3.stop());
      const fake = FakeBinanceFutures.start({ symbols: ["BTCUSDT"], seed: 13 });
      cleanups.push(() => fake.stop());
      const expiration = () => new Date(Date.now() + 3_600_000).toISOString();
      const requests: string[] = [];
      const server = Bun.serve({
        hostname: "127.0.0.1",
        port: 0,
        fetch: async (request) => {
          const path = new URL(request.url).pathname;
          const body = await request.text();
          requests.push(`${request.method} ${path}${request.headers.get("x-aws-ec2-metadata-token") ? " (with session token)" : ""}${body.includes("Action=AssumeRoleWithWebIdentity") ? " AssumeRoleWithWebIdentity" : ""}`);
          if (request.method === "PUT" && path === "/latest/api/token") return new Response("imds-session-token");
          if (path === "/latest/meta-data/iam/security-credentials/") return new Response("xtrader-role");
          if (path === "/latest/meta-data/iam/security-credentials/xtrader-role") {
            return Response.json({ Code: "Success", Type: "AWS-HMAC", AccessKeyId: S3_KEY_ID, SecretAccessKey: S3_SECRET, Token: "imds", Expiration: expiration(), LastUpdated: new Date().toISOString() });
          }
          if (path === "/v2/credentials/task") return Response.json({ AccessKeyId: S3_KEY_ID, SecretAccessKey: S3_SECRET, Token: "ecs", Expiration: expiration() });
          if (body.includes("Action=AssumeRoleWithWebIdentity")) {
            return new Response(
              `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>${S3_KEY_ID}</AccessKeyId><SecretAccessKey>${S3_SECRET}</SecretAccessKey><SessionToken>irsa</SessionToken><Expiration>${expiration()}</Expiration></Credentials><AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/xtrader/s</Arn><AssumedRoleId>AROAEXAMPLE:s</AssumedRoleId></AssumedRoleUser></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>`,
              { headers: { "content-type": "text/xml" } },
            );
          }
          return new Response("not found", { status: 404 });
        },
      });
      cleanups.push(() => server.stop(true));
      const local = `http://127.0.0.1:${server.port}`;
      const tokenFile = join(mkdtempSync(join(tmpdir(), "xtrader-irsa-")), "token");
      writeFileSync(tokenFile, "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl");
      const env: Record<string, string> =
        source.startsWith("EC2")
          ? { AWS_EC2_METADATA_SERVICE_ENDPOINT: local }
          : source.startsWith("EKS")
            ? { AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile, AWS_ROLE_ARN: "arn:aws:iam::123456789012:role/xtrader", AWS_ENDPOINT_URL_STS: local, AWS_EC2_METADATA_DISABLED: "true" }
            : { AWS_CONTAINER_CREDENTIALS_FULL_URI: `${local}/v2/credentials/task`, AWS_EC2_METADATA_DISABLED: "true" };
      const { child, reading } = startCollector(fake, s3.endpoint, s3.bucket, "collector-c", { staticKeys: false, env: { AWS_REGION: "eu-west-1", ...env } });
      await fake.waitForSubscribers("btcusdt@aggTrade", 1, 15_000);
      for (let i = 0; i < 5; i++) fake.trade();
      await Bun.sleep(300);
      child.kill("SIGTERM");
      expect(await child.exited).toBe(0);
      await reading;
      expect(s3.keys().filter((key) => key.startsWith("archive/trades/"))).toHaveLength(1);
      const expected = source.startsWith("EC2")
        ? ["PUT /latest/api/token", "GET /latest/meta-data/iam/security-credentials/ (with session token)", "GET /latest/meta-data/iam/security-credentials/xtrader-role (with session token)"]
        : source.startsWith("EKS")
          ? ["POST / AssumeRoleWithWebIdentity"]
          : ["GET /v2/credentials/task"];
      expect(requests.slice(0, expected.length)).toEqual(expected);
    },
  );

  test("--upload-url with the QuestDB sink, or a malformed URL, is one line (exit 2)", async () => {
    const questdb = await runBinary(["--subscriptions", "TRADES:BINANCE_FUTURES@BTCUSDT", "--sink", "questdb", "--upload-url", "s3://bucket/x"]);
    expect(questdb).toMatchObject({ exitCode: 2, stderr: "xtrader: error: --upload-url uploads Parquet files; it needs --sink parquet (the sink is questdb)\n" });
    const bad = await runBinary(["--subscriptions", "TRADES:BINANCE_FUTURES@BTCUSDT", "--upload-url", "bucket/x"]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toStartWith("xtrader: error: invalid upload URL 'bucket/x'; expected s3://BUCKET");
  });
});
