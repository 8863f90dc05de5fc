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
