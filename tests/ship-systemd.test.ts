/**
 * Bare-metal shipping: systemd/install.sh, the templated unit (systemd-analyze verify and security on the
 * installed result), and the example environment file, which must document every variable xtrader reads.
 */
import { describe, expect, test } from "bun:test";
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import packageJson from "../package.json" with { type: "json" };
import { buildConfig } from "../src/cli/config.ts";
import { EXCHANGE_REGISTRY } from "../src/connectors/index.ts";
import { ensureBinary, ROOT } from "./support/binary.ts";
import {
  addDistributionUnits,
  ENV_EXAMPLE,
  install,
  run,
  temporaryRoot,
  UNIT_FILE,
} from "./support/ship-install.ts";
import { parseEnvironmentFile, parseTimeSpan, parseUnit, unitEnvironment, unitValue, unitValues } from "./support/ship-systemd.ts";

const unit = parseUnit(readFileSync(UNIT_FILE, "utf8"));
const service = (key: string) => unitValue(unit, "Service", key);
const exampleText = readFileSync(ENV_EXAMPLE, "utf8");

/** A stand-in binary for upgrade tests: install.sh only ever runs `--version`. */
function fakeBinary(directory: string, name: string, versionLine: string): string {
  const path = join(directory, name);
  writeFileSync(path, `#!/bin/sh\necho '${versionLine}'\n`, { mode: 0o755 });
  return path;
}

describe("install.sh", () => {
  test("a fresh install lays out binary, unit, account and a root-only instance configuration", () => {
    const binary = ensureBinary();
    const version = run([binary, "--version"]).stdout.trim();
    const [, packageVersion, commit] = /^xtrader (\S+) \((\S+)\)$/.exec(version)!;
    const root = temporaryRoot();
    const result = install(root, binary, "binance", "TRADES:BINANCE_FUTURES@BTCUSDT,L2:BINANCE_FUTURES@BTCUSDT");
    expect(result.stderr).not.toContain("install.sh:");
    expect(result.exitCode).toBe(0);

    const versioned = join(root, "usr/local/lib/xtrader", `${packageVersion}-${commit}`, "xtrader");
    expect(readFileSync(versioned).equals(readFileSync(binary))).toBe(true);
    expect(lstatSync(join(root, "usr/local/bin/xtrader")).isSymbolicLink()).toBe(true);
    expect(run([join(root, "usr/local/bin/xtrader"), "--version"]).stdout.trim()).toBe(version);
    expect(readFileSync(join(root, "etc/systemd/system/xtrader@.service"), "utf8")).toBe(readFileSync(UNIT_FILE, "utf8"));

    const passwd = readFileSync(join(root, "etc/passwd"), "utf8");
    expect(passwd).toMatch(/^xtrader:x:\d+:\d+:[^:]*:\/var\/lib\/xtrader:\/usr\/sbin\/nologin$/m);
    const uid = Number(/^xtrader:x:(\d+):/m.exec(passwd)![1]);
    expect(uid).toBeGreaterThan(0);
    expect(uid).toBeLessThan(1000);

    const config = join(root, "etc/xtrader/binance.env");
    expect(statSync(config).mode & 0o777).toBe(0o600);
    const values = parseEnvironmentFile(readFileSync(config, "utf8"));
    expect(values.SUBSCRIPTIONS).toBe("TRADES:BINANCE_FUTURES@BTCUSDT,L2:BINANCE_FUTURES@BTCUSDT");
    // Apart from the subscriptions, the instance file is the example.
    expect(readFileSync(config, "utf8").replace(/^SUBSCRIPTIONS=.*$/m, "")).toBe(exampleText.replace(/^SUBSCRIPTIONS=.*$/m, ""));
    expect(packageJson.version).toBe(packageVersion!);
  });

  test("upgrades switch the link, keep older versions for rollback, and never touch a configuration", () => {
    const root = temporaryRoot();
    const first = fakeBinary(root, "first", "xtrader 1.0.0 (aaaaaaaaaaaa)");
    const second = fakeBinary(root, "second", "xtrader 1.1.0 (bbbbbbbbbbbb)");
    expect(install(root, first, "okx", "TRADES:OKX_SWAP@BTCUSDT").exitCode).toBe(0);
    writeFileSync(join(root, "etc/xtrader/okx.env"), "SUBSCRIPTIONS=L2:OKX_SWAP@ETHUSDT\n", { mode: 0o600 });

    const upgrade = install(root, second, "okx", "TRADES:OKX_SWAP@BTCUSDT");
    expect(upgrade.exitCode).toBe(0);
    expect(readlinkSync(join(root, "usr/local/bin/xtrader"))).toBe("../lib/xtrader/1.1.0-bbbbbbbbbbbb/xtrader");
    expect(readdirSync(join(root, "usr/local/lib/xtrader")).sort()).toEqual(["1.0.0-aaaaaaaaaaaa", "1.1.0-bbbbbbbbbbbb"]);
    expect(readFileSync(join(root, "etc/xtrader/okx.env"), "utf8")).toBe("SUBSCRIPTIONS=L2:OKX_SWAP@ETHUSDT\n");
    expect(upgrade.stdout).toContain("kept");

    // Rolling back is installing the older binary again: same bytes, so it is accepted.
    expect(install(root, first).exitCode).toBe(0);
    expect(readlinkSync(join(root, "usr/local/bin/xtrader"))).toBe("../lib/xtrader/1.0.0-aaaaaaaaaaaa/xtrader");
  });

  test("a version is immutable: different bytes under an installed version are refused", () => {
    const root = temporaryRoot();
    const original = fakeBinary(root, "original", "xtrader 2.0.0 (cccccccccccc)");
    expect(install(root, original).exitCode).toBe(0);
    const impostor = join(root, "impostor");
    writeFileSync(impostor, `${readFileSync(original, "utf8")}# rebuilt\n`, { mode: 0o755 });
    const refused = install(root, impostor);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain("versions are immutable");
    expect(readFileSync(join(root, "usr/local/lib/xtrader/2.0.0-cccccccccccc/xtrader"), "utf8")).toBe(readFileSync(original, "utf8"));
  });

  test("bad input is refused before anything is installed", () => {
    const root = temporaryRoot();
    const binary = fakeBinary(root, "xtrader", "xtrader 1.0.0 (aaaaaaaaaaaa)");
    const notRunnable = join(root, "not-runnable");
    writeFileSync(notRunnable, "\x7fELF garbage", { mode: 0o755 });
    const cases: Array<[string[], number, string]> = [
      [[binary, "../etc"], 2, "instance name '../etc'"],
      [[binary, "main", "TRADES:OKX_SWAP@BTCUSDT; rm -rf /"], 2, "SUBSCRIPTIONS"],
      [[join(root, "missing")], 2, "no such file"],
      [[notRunnable], 1, "does not run on this machine"],
      [[fakeBinary(root, "liar", "something else")], 1, "expected 'xtrader VERSION (COMMIT)'"],
    ];
    for (const [args, exitCode, message] of cases) {
      const result = install(root, ...(args as [string, ...string[]]));
      expect(result.exitCode).toBe(exitCode);
      expect(result.stderr).toContain(message);
    }
    expect(existsSync(join(root, "usr"))).toBe(false);
  });
});

describe("xtrader@.service", () => {
  test("systemd-analyze verify accepts the installed unit without a single warning", () => {
    const root = temporaryRoot();
    expect(install(root, ensureBinary(), "verify", "TRADES:BINANCE_FUTURES@BTCUSDT").exitCode).toBe(0);
    addDistributionUnits(root);
    // ExecReload's kill comes with the distribution (procps, on every systemd host), as the units above do.
    const reload = unitValues(unit, "Service", "ExecReload");
    expect(reload).toEqual(["/bin/kill -HUP $MAINPID"]);
    mkdirSync(join(root, "bin"), { recursive: true });
    cpSync("/bin/kill", join(root, "bin/kill"));
    const result = run(["systemd-analyze", "verify", "--man=no", `--root=${root}`, "xtrader@verify.service"]);
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
  });

  test("systemd-analyze notices a broken unit (the check above can fail)", () => {
    const root = temporaryRoot();
    expect(install(root, ensureBinary()).exitCode).toBe(0);
    addDistributionUnits(root);
    const installed = join(root, "etc/systemd/system/xtrader@.service");
    writeFileSync(installed, readFileSync(installed, "utf8").replace("ProtectSystem=strict", "ProtectSystem=strictest"));
    const result = run(["systemd-analyze", "verify", "--man=no", `--root=${root}`, "xtrader@verify.service"]);
    expect(result.stderr).toContain("Failed to parse protect system value, ignoring: strictest");
  });

  test("the sandbox's exposure is 'OK' or better, and docs/deployment.md reports the measured score", () => {
    const root = temporaryRoot();
    expect(install(root, ensureBinary()).exitCode).toBe(0);
    addDistributionUnits(root);
    const result = run(["systemd-analyze", "security", "--offline=true", `--root=${root}`, "xtrader@main.service"]);
    const overall = /Overall exposure level for xtrader@main\.service: (\d+\.\d) (\w+)/.exec(result.stdout);
    expect(overall).not.toBeNull();
    const [, score, level] = overall!;
    expect(["PERFECT", "SAFE", "OK"]).toContain(level!);
    expect(Number(score)).toBeLessThan(5);
    const guide = readFileSync(join(ROOT, "docs/deployment.md"), "utf8");
    expect(guide).toContain(`exposure level ${score} ${level}`);
  });

  test("restart, stop and sandbox settings are the ones the deployment relies on", () => {
    expect(service("Restart")).toBe("always");
    expect(service("RestartPreventExitStatus")).toBe("2"); // bad configuration: restarting cannot help
    expect(service("KillSignal")).toBe("SIGTERM");
    expect(service("StandardOutput")).toBe("journal");
    expect(service("StandardError")).toBe("journal");
    // The stop timeout outlasts the graceful-stop bound xtrader documents, whatever the example sets.
    const shutdownDefault = Number(/^#?XTRADER_SHUTDOWN_TIMEOUT_SECONDS=(\d+)$/m.exec(exampleText)![1]);
    expect(parseTimeSpan(service("TimeoutStopSec")!)).toBeGreaterThan(shutdownDefault);

    expect(unitValues(unit, "Service", "EnvironmentFile")).toContain("/etc/xtrader/%i.env");
    expect(service("User")).not.toBe("root");
    expect(service("WorkingDirectory")).toBe("/var/lib/xtrader/%i");
    expect(service("StateDirectory")).toBe("xtrader/%i");
    // Writable: the instance's state directory (working directory, default ./data output) and nothing else.
    expect(unitValues(unit, "Service", "ReadWritePaths")).toEqual(["/var/lib/xtrader/%i"]);
    expect(service("ProtectSystem")).toBe("strict");
    for (const key of ["NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices"]) expect(service(key)).toBe("yes");
    expect(service("RestrictAddressFamilies")!.split(/\s+/).sort()).toEqual(["AF_INET", "AF_INET6", "AF_UNIX"]);
    expect(unitValues(unit, "Service", "SystemCallFilter")[0]).toBe("@system-service");
    expect(service("MemoryMax")).toMatch(/^\d+[KMG]$/);
  });

  test("Bun's thread pool gets the size the container image gives it, and the binary accepts it", () => {
    const assignments = unitEnvironment(unit);
    expect(assignments.UV_THREADPOOL_SIZE).toBe("16");
    const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");
    expect(/UV_THREADPOOL_SIZE=(\d+)/.exec(dockerfile)?.[1]).toBe(assignments.UV_THREADPOOL_SIZE);
    expect(exampleText).toContain(`#UV_THREADPOOL_SIZE=${assignments.UV_THREADPOOL_SIZE}\n`);
    const { config } = buildConfig({ subscriptions: "TRADES:BINANCE_FUTURES@BTCUSDT", "output-directory": temporaryRoot("xtrader-pool-") }, assignments, EXCHANGE_REGISTRY);
    expect(config.env.UV_THREADPOOL_SIZE).toBe("16");
  });
});

describe("systemd/xtrader.env.example", () => {
  /** Every environment variable name the source reads, found the ways src/ reads them. */
  function variablesReadBySource(): Set<string> {
    const names = new Set<string>();
    const patterns = [
      /\benv\??\.([A-Z][A-Z0-9_]{2,})\b/g,
      /\benv\[\s*["'`]([A-Z][A-Z0-9_]+)["'`]\s*\]/g,
      /\bsetting\(\s*(?:"[^"]*"|undefined)\s*,\s*"([A-Z][A-Z0-9_]+)"\s*\)/g,
      /["'`]((?:XTRADER|QUESTDB|QDB|PARQUET|DERIBIT)_[A-Z0-9_]+)["'`]/g,
    ];
    const walk = (directory: string) => {
      for (const entry of readdirSync(directory, { withFileTypes: true })) {
        const path = join(directory, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (entry.name.endsWith(".ts")) {
          const text = readFileSync(path, "utf8");
          for (const pattern of patterns) for (const match of text.matchAll(pattern)) names.add(match[1]!);
        }
      }
    };
    walk(join(ROOT, "src"));
    return names;
  }

  test("documents every variable xtrader reads", () => {
    const documented = new Set([...exampleText.matchAll(/^#?([A-Z][A-Z0-9_]*)=/gm)].map((match) => match[1]!));
    const perExchangeEndpoint = /^XTRADER_(BINANCE_FUTURES|OKX_SWAP|OKX_SPOT|DERIBIT)_(WS|REST)_URL$/;
    expect(exampleText).toContain("#XTRADER_<EXCHANGE>_WS_URL=");
    expect(exampleText).toContain("#XTRADER_<EXCHANGE>_REST_URL=");
    const read = variablesReadBySource();
    expect(read.size).toBeGreaterThan(20); // the scan itself works
    const undocumented = [...read].filter((name) => !documented.has(name) && !perExchangeEndpoint.test(name)).sort();
    expect(undocumented).toEqual([]);
  });

  test("documents each variable once, with a comment, and nothing xtrader does not read", () => {
    const lines = exampleText.split("\n");
    const read = variablesReadBySource();
    const seen = new Set<string>();
    lines.forEach((line, index) => {
      const match = /^#?([A-Z][A-Z0-9_]*)=/.exec(line);
      if (!match) return;
      const name = match[1]!;
      expect(seen.has(name)).toBe(false);
      seen.add(name);
      expect(read.has(name)).toBe(true);
      // Directly above: a comment line in words, or another variable of the same group.
      expect(lines[index - 1]).toMatch(/^#( \S|[A-Z][A-Z0-9_]*=)/);
    });
  });

  test("parses as a systemd EnvironmentFile and is a working configuration as it stands", () => {
    const values = parseEnvironmentFile(exampleText);
    expect(Object.keys(values)).toEqual(["SUBSCRIPTIONS"]);
    // The binary's own validation, with the unit's working directory standing in for /var/lib/xtrader/%i.
    const workingDirectory = temporaryRoot("xtrader-example-");
    const previous = process.cwd();
    process.chdir(workingDirectory);
    try {
      const { config } = buildConfig({}, values, EXCHANGE_REGISTRY);
      expect(config.subscriptions.map((subscription) => subscription.key)).toEqual(values.SUBSCRIPTIONS!.split(","));
      expect(config.sink).toBe("parquet");
      expect(config.outputDirectory).toBe(join(realpathSync(workingDirectory), "data"));
    } finally {
      process.chdir(previous);
    }
  });
});
