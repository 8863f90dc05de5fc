/**
 * Deployment-facing CLI pieces: flag values that arrive as unexpanded environment references (ECS and
 * Docker's exec form expand nothing), and `xtrader healthcheck` for distroless images (no shell, no curl).
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildConfig } from "../src/cli/config.ts";
import { referencedVariable, resolveEnvironmentReferences } from "../src/cli/env-reference.ts";
import { healthzUrl } from "../src/cli/healthcheck.ts";
import { ensureBinary, runBinary } from "./support/binary.ts";
import { FakeBinanceFutures } from "./support/fake-binance.ts";
import { userError } from "./support/user-error.ts";

setDefaultTimeout(30_000);
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const outputDirectory = mkdtempSync(join(tmpdir(), "xtrader-cloud-cli-"));


describe("flag values that are unexpanded environment references", () => {
  test.each(["${SUBSCRIPTIONS}", "$SUBSCRIPTIONS", "$(SUBSCRIPTIONS)", " ${SUBSCRIPTIONS} "])("%p is read from SUBSCRIPTIONS", (literal) => {
    const env = { SUBSCRIPTIONS: "TRADES:BINANCE_FUTURES@ETHUSDT,L2:OKX_SWAP@BTCUSDT" };
    const { config, debug } = buildConfig({ subscriptions: literal, "output-directory": outputDirectory }, env);
    expect(config.subscriptions.map((subscription) => subscription.key)).toEqual(["TRADES:BINANCE_FUTURES@ETHUSDT", "L2:OKX_SWAP@BTCUSDT"]);
    expect(debug).toEqual([`--subscriptions arrived as the literal '${literal.trim()}' (nothing expanded it): using the environment variable SUBSCRIPTIONS`]);
  });

  test("any flag: a reference to another variable name works the same", () => {
    const { args } = resolveEnvironmentReferences({ "rotate-interval": "$(ROTATION)", verbose: true }, { ROTATION: "15m" });
    expect(args).toEqual({ "rotate-interval": "15m", verbose: true });
  });

  test("only a whole-value reference counts; values with a dollar inside stay as they are", () => {
    for (const value of ["a${B}", "${A}${B}", "$", "${}", "$(A B)", "${1A}", "BTC$USDT", "$A,$B"]) {
      expect(referencedVariable(value)).toBeUndefined();
    }
    const { args, debug } = resolveEnvironmentReferences({ sink: "a$B" }, { B: "x" });
    expect(args).toEqual({ sink: "a$B" });
    expect(debug).toEqual([]);
  });

  test("a reference to a secret's variable is refused without reading it (an error would quote the value)", () => {
    for (const name of ["DERIBIT_CLIENT_SECRET", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "QDB_CLIENT_CONF"]) {
      const message = userError(() => resolveEnvironmentReferences({ subscriptions: `\${${name}}` }, { [name]: "hunter2-secret-value" }));
      expect(message).toBe(`option --subscriptions refers to ${name}, which holds a secret; no option takes one (secrets are read from their own variables)`);
    }
  });

  test("a reference to an unset or blank variable is one line naming it (exit 2)", () => {
    for (const env of [{}, { SUBSCRIPTIONS: "  " }]) {
      expect(userError(() => buildConfig({ subscriptions: "${SUBSCRIPTIONS}", "output-directory": outputDirectory }, env))).toBe(
        "option --subscriptions is the unexpanded reference '${SUBSCRIPTIONS}' and SUBSCRIPTIONS is not set; set SUBSCRIPTIONS in the environment or give the value itself",
      );
    }
  });

  test("the binary given the ECS task definition's literal '${SUBSCRIPTIONS}' starts and records (debug line says why)", async () => {
    const fake = FakeBinanceFutures.start({ symbols: ["BTCUSDT"], seed: 3 });
    cleanups.push(() => fake.stop());
    const directory = mkdtempSync(join(tmpdir(), "xtrader-cloud-ecs-"));
    const child = Bun.spawn([ensureBinary(), "--subscriptions", "${SUBSCRIPTIONS}", "--output-directory", join(directory, "data")], {
      cwd: directory,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...fake.env, SUBSCRIPTIONS: "TRADES:BINANCE_FUTURES@BTCUSDT", RUST_LOG: "debug" },
      stdout: "pipe",
      stderr: "pipe",
    });
    cleanups.push(() => {
      if (child.exitCode === null) child.kill("SIGKILL");
    });
    await fake.waitForSubscribers("btcusdt@aggTrade", 1, 15_000);
    child.kill("SIGTERM");
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    expect({ code, stderr: stderr.includes("malformed") ? stderr : "" }).toEqual({ code: 0, stderr: "" });
    expect(stdout).toContain("--subscriptions arrived as the literal '${SUBSCRIPTIONS}' (nothing expanded it): using the environment variable SUBSCRIPTIONS");
    expect(stdout).toContain("starting: 1 subscription(s)");
  });
});

describe("xtrader healthcheck", () => {
  test("wildcard bind addresses are asked on loopback", () => {
    expect(healthzUrl("0.0.0.0:9464")).toBe("http://127.0.0.1:9464/healthz");
    expect(healthzUrl(":9464")).toBe("http://127.0.0.1:9464/healthz");
    expect(healthzUrl("[::]:9464")).toBe("http://[::1]:9464/healthz");
    expect(healthzUrl("10.1.2.3:80")).toBe("http://10.1.2.3:80/healthz");
  });

  test("exit 0 against a running instance (address from METRICS_ADDR), 1 once it is gone", async () => {
    const fake = FakeBinanceFutures.start({ symbols: ["BTCUSDT"], seed: 4 });
    cleanups.push(() => fake.stop());
    const directory = mkdtempSync(join(tmpdir(), "xtrader-cloud-health-"));
    const port = await freePort();
    const address = `0.0.0.0:${port}`;
    const child = Bun.spawn([ensureBinary(), "--subscriptions", "TRADES:BINANCE_FUTURES@BTCUSDT", "--output-directory", join(directory, "data")], {
      cwd: directory,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...fake.env, METRICS_ADDR: address },
      stdout: "ignore",
      stderr: "ignore",
    });
    cleanups.push(() => {
      if (child.exitCode === null) child.kill("SIGKILL");
    });
    let healthy = await runBinary(["healthcheck"], { env: { METRICS_ADDR: address }, cwd: directory });
    for (let attempt = 0; attempt < 150 && healthy.exitCode !== 0; attempt++) {
      expect(healthy.exitCode).toBe(1); // not listening yet
      await Bun.sleep(100);
      healthy = await runBinary(["healthcheck"], { env: { METRICS_ADDR: address }, cwd: directory });
    }
    expect(healthy.stdout).toBe(`healthy: http://127.0.0.1:${port}/healthz answered 200\n`);
    child.kill("SIGTERM");
    await child.exited;
    const gone = await runBinary(["healthcheck", "--metrics-addr", address], { cwd: directory });
    expect(gone.exitCode).toBe(1);
    expect(gone.stdout).toStartWith(`unhealthy: cannot reach http://127.0.0.1:${port}/healthz: `);
    expect(gone.stdout.trimEnd().split("\n")).toHaveLength(1);
  });

  test("exit 1 with the problems /healthz lists when it answers 503", async () => {
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () => Response.json({ status: "unhealthy", problems: ["event loop stalled for 7.00 s"] }, { status: 503 }),
    });
    cleanups.push(() => server.stop(true));
    const result = await runBinary(["healthcheck", `--metrics-addr=127.0.0.1:${server.port}`]);
    expect(result).toEqual({
      exitCode: 1,
      stdout: `unhealthy: http://127.0.0.1:${server.port}/healthz answered 503: event loop stalled for 7.00 s\n`,
      stderr: "",
    });
  });

  test("no address, or a bad one, is bad input: one line, exit 2", async () => {
    const directory = mkdtempSync(join(tmpdir(), "xtrader-cloud-health-"));
    const missing = await runBinary(["healthcheck"], { cwd: directory });
    expect(missing).toEqual({
      exitCode: 2,
      stdout: "",
      stderr: "xtrader: error: healthcheck needs the instance's metrics address: give --metrics-addr HOST:PORT or set METRICS_ADDR\n",
    });
    const bad = await runBinary(["healthcheck", "--metrics-addr", "nowhere"], { cwd: directory });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toBe("xtrader: error: invalid metrics address 'nowhere'; expected HOST:PORT, e.g. 127.0.0.1:9464\n");
  });
});

async function freePort(): Promise<number> {
  const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = probe.port!;
  await probe.stop(true);
  return port;
}

describe("upload settings", () => {
  const base = { subscriptions: "TRADES:BINANCE_FUTURES@BTCUSDT", "output-directory": outputDirectory };

  test("off unless an upload URL is given; its other settings are checked either way", () => {
    expect(buildConfig(base, {}).config.upload.target).toBeUndefined();
    expect(userError(() => buildConfig(base, { MAX_LOCAL_BYTES: "lots" }))).toBe("invalid max local bytes 'lots'; expected a whole number from 1 to 9007199254740991");
    expect(buildConfig({ ...base, "upload-url": "s3://market-data/a/b" }, {}).config.upload).toMatchObject({
      target: { bucket: "market-data", prefix: "a/b" },
      region: "us-east-1",
      keepLocal: false,
      maxLocalBytes: 8 * 1024 ** 3,
      instanceId: undefined,
      stopWaitSeconds: 5,
    });
  });

  test("the stop's upload time fits in the stop: refused when set at or above it, half of it by default when short", () => {
    // Without uploads a short stop bound is fine (nothing to upload).
    expect(buildConfig(base, { XTRADER_SHUTDOWN_TIMEOUT_SECONDS: "5" }).config.upload.target).toBeUndefined();
    const uploading = { ...base, "upload-url": "s3://market-data/x" };
    expect(buildConfig(uploading, { XTRADER_SHUTDOWN_TIMEOUT_SECONDS: "4" }).config.upload.stopWaitSeconds).toBe(2);
    expect(userError(() => buildConfig(uploading, { XTRADER_SHUTDOWN_TIMEOUT_SECONDS: "15", XTRADER_UPLOAD_STOP_WAIT_SECONDS: "15" }))).toBe(
      "XTRADER_UPLOAD_STOP_WAIT_SECONDS '15' is not below XTRADER_SHUTDOWN_TIMEOUT_SECONDS '15'; the stop must finish uploading before it times out",
    );
  });

  test("keep-local from the flag or KEEP_LOCAL; endpoint, region and instance id from the environment", () => {
    const config = buildConfig(
      { ...base, "upload-url": "s3://market-data" },
      { KEEP_LOCAL: "true", AWS_ENDPOINT_URL_S3: "http://127.0.0.1:9000", AWS_REGION: "auto", INSTANCE_ID: "collector-7" },
    ).config.upload;
    expect(config).toMatchObject({ keepLocal: true, endpoint: "http://127.0.0.1:9000", region: "auto", instanceId: "collector-7" });
    expect(buildConfig({ ...base, "upload-url": "s3://market-data", "keep-local": false }, { KEEP_LOCAL: "true" }).config.upload.keepLocal).toBe(false);
    expect(userError(() => buildConfig(base, { INSTANCE_ID: "a/b" }))).toBe(
      "invalid instance id 'a/b'; expected letters, digits, '_', '.' and '-' only (it becomes part of object names)",
    );
  });
});
