/**
 * The observability HTTP endpoint (Bun.serve), on `--metrics-addr HOST:PORT` / METRICS_ADDR:
 *   GET /metrics  Prometheus text format (prom-client registry, see metrics.ts);
 *   GET /healthz  200 while the process is alive and its event loop responsive, else 503;
 *   GET /readyz   200 when every subscription has data within its staleness window and the sink is
 *                 writable (readiness.ts), else 503.
 * Health bodies are JSON saying what is wrong. HEAD is answered like GET without a body.
 */
import type { Server } from "bun";
import type { Registry } from "prom-client";
import { UserError } from "../core/errors.ts";
import type { EventLoopMonitor } from "./event-loop.ts";
import type { Readiness } from "./readiness.ts";

export const DEFAULT_EVENT_LOOP_LAG_LIMIT_SECONDS = 5;

export interface HealthReport {
  readonly status: "ok" | "unhealthy";
  readonly problems: readonly string[];
  readonly uptimeSeconds: number;
  readonly eventLoop: { readonly recentMaxLagSeconds: number; readonly limitSeconds: number; readonly windowSeconds: number };
}

/** /healthz: the answer itself proves the process is alive; the event loop must not have stalled lately. */
export function healthReport(eventLoop: EventLoopMonitor, limitSeconds: number): HealthReport {
  const lag = eventLoop.recentMaxLagSeconds();
  const problems =
    lag > limitSeconds
      ? [`event loop stalled for ${lag.toFixed(2)} s within the last ${eventLoop.windowMs / 1000} s (limit ${limitSeconds} s)`]
      : [];
  return {
    status: problems.length === 0 ? "ok" : "unhealthy",
    problems,
    uptimeSeconds: Math.round(process.uptime() * 1000) / 1000,
    eventLoop: {
      recentMaxLagSeconds: Math.round(lag * 1000) / 1000,
      limitSeconds,
      windowSeconds: eventLoop.windowMs / 1000,
    },
  };
}

export interface MetricsServerOptions {
  readonly host: string;
  readonly port: number;
  readonly registry: Registry;
  readonly readiness: Readiness;
  readonly eventLoop: EventLoopMonitor;
  readonly eventLoopLagLimitSeconds: number;
}

export interface MetricsServer {
  /** e.g. http://127.0.0.1:9464 (the real port when 0 was asked for). */
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

const NO_STORE = { "cache-control": "no-store" };

function json(body: unknown, status: number, head: boolean): Response {
  return new Response(head ? null : `${JSON.stringify(body)}\n`, {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...NO_STORE },
  });
}

/** Starts listening; a bind failure (address in use, not local) is the user's to fix: a UserError. */
export function startMetricsServer(options: MetricsServerOptions): MetricsServer {
  const { registry, readiness, eventLoop } = options;
  let server: Server<undefined>;
  try {
    server = Bun.serve({
      hostname: options.host,
      port: options.port,
      fetch: async (request) => {
        const head = request.method === "HEAD";
        if (request.method !== "GET" && !head) {
          return new Response(null, { status: 405, headers: { allow: "GET, HEAD" } });
        }
        switch (new URL(request.url).pathname) {
          case "/metrics": {
            const text = await registry.metrics();
            return new Response(head ? null : text, {
              headers: { "content-type": registry.contentType, ...NO_STORE },
            });
          }
          case "/healthz": {
            const report = healthReport(eventLoop, options.eventLoopLagLimitSeconds);
            return json(report, report.status === "ok" ? 200 : 503, head);
          }
          case "/readyz": {
            const report = readiness.check();
            return json(report, report.status === "ready" ? 200 : 503, head);
          }
          default:
            return json({ error: "not found", endpoints: ["/metrics", "/healthz", "/readyz"] }, 404, head);
        }
      },
      error: (error) => json({ error: `internal error: ${error.message}` }, 500, false),
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const address = options.host.includes(":") ? `[${options.host}]:${options.port}` : `${options.host}:${options.port}`;
    throw new UserError(
      `cannot serve metrics on ${address} (${code ?? (error as Error).message}); give a free local HOST:PORT to --metrics-addr / METRICS_ADDR`,
    );
  }
  const host = server.hostname?.includes(":") ? `[${server.hostname}]` : server.hostname;
  return {
    url: `http://${host}:${server.port}`,
    port: server.port!,
    stop: async () => {
      await server.stop(true);
    },
  };
}
