/**
 * `xtrader healthcheck [--metrics-addr HOST:PORT]`: asks the running instance's /healthz and exits 0 when
 * it answers 200, 1 otherwise, with one line either way. The container image is distroless (no shell, no
 * curl), so this is what an ECS `healthCheck`, a Docker `HEALTHCHECK` or a compose `healthcheck` runs:
 * `["CMD", "/usr/local/bin/xtrader", "healthcheck"]`.
 *
 * The address is the collector's own: `--metrics-addr`, else METRICS_ADDR (environment, then `.env`). A
 * wildcard bind address (`0.0.0.0`, `::`, `:PORT`) is asked on loopback, where the process also listens.
 */
import { errorMessage, UserError } from "../core/errors.ts";
import { check } from "./rules.ts";
import { loadEnvironment, type Environment } from "./dotenv.ts";
import { HOST_PORT } from "./config.ts";

/** Below the 5 s that ECS and Docker give a health check command by default. */
export const HEALTHCHECK_TIMEOUT_MS = 3000;

export const HEALTHCHECK_USAGE = `Asks a running xtrader's /healthz; exit 0 when it answers 200, else 1 (one line either way)

USAGE xtrader healthcheck [--metrics-addr HOST:PORT]

OPTIONS
  --metrics-addr HOST:PORT  the instance's metrics address (default: METRICS_ADDR from the environment or .env)
  -h, --help                show this help

For container health checks in the distroless image, which has no shell or curl:
  ECS:     "healthCheck": {"command": ["CMD", "/usr/local/bin/xtrader", "healthcheck"]}
  compose: healthcheck: {test: ["CMD", "/usr/local/bin/xtrader", "healthcheck"]}
The request times out after ${HEALTHCHECK_TIMEOUT_MS / 1000} s: give the orchestrator's timeout more than that.`;

function parseHealthcheckArguments(argv: readonly string[]): { help: boolean; address: string | undefined } {
  let address: string | undefined;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === "-h" || token === "--help") help = true;
    else if (token === "--metrics-addr" || token.startsWith("--metrics-addr=")) {
      const value = token === "--metrics-addr" ? argv[++i] : token.slice("--metrics-addr=".length);
      if (value === undefined || value.trim() === "") throw new UserError("option --metrics-addr needs a value, e.g. 127.0.0.1:9464");
      address = value;
    } else throw new UserError(`unexpected argument '${token}' for healthcheck; accepted: --metrics-addr HOST:PORT, --help`);
  }
  return { help, address };
}

/** The URL of /healthz for a metrics bind address: wildcards are asked on loopback. */
export function healthzUrl(address: string): string {
  const { host, port } = check(HOST_PORT, address);
  const asked = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host;
  return `http://${asked.includes(":") ? `[${asked}]` : asked}:${port}/healthz`;
}

/** Runs the subcommand; returns the exit code. A missing or bad address throws UserError (exit 2). */
export async function runHealthcheck(
  argv: readonly string[],
  env: Environment = loadEnvironment(),
  out: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
): Promise<number> {
  const args = parseHealthcheckArguments(argv);
  if (args.help) {
    out(HEALTHCHECK_USAGE);
    return 0;
  }
  const address = args.address ?? (env.METRICS_ADDR?.trim() || undefined);
  if (address === undefined) {
    throw new UserError("healthcheck needs the instance's metrics address: give --metrics-addr HOST:PORT or set METRICS_ADDR");
  }
  const url = healthzUrl(address);
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(HEALTHCHECK_TIMEOUT_MS) });
    const body = await response.text();
    if (response.status === 200) {
      out(`healthy: ${url} answered 200`);
      return 0;
    }
    const problems = problemsOf(body);
    out(`unhealthy: ${url} answered ${response.status}${problems ? `: ${problems}` : ""}`);
  } catch (error) {
    const reason = error instanceof DOMException && error.name === "TimeoutError" ? `no answer within ${HEALTHCHECK_TIMEOUT_MS / 1000} s` : errorMessage(error);
    out(`unhealthy: cannot reach ${url}: ${reason}`);
  }
  return 1;
}

/** The problems a /healthz body lists (server.ts), joined; nothing when the body is not one. */
function problemsOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as { problems?: unknown };
    return Array.isArray(parsed.problems) ? parsed.problems.map(String).join("; ") : "";
  } catch {
    return "";
  }
}
