/**
 * Turns the CLI's QuestDbSettings plus the sink's own environment variables into what the sink runs with.
 *
 * The official client parses the connection: QDB_CLIENT_CONF when set (its own configuration string:
 * http/https/tcp/tcps, TLS, authentication), else `tcp::addr=QUESTDB_HOST:QUESTDB_ILP_PORT`. The sink
 * encodes rows itself (protocol version 1 text, which QuestDB accepts over both transports) and uses the
 * client's transport to deliver them.
 *
 * Sink variables (docs/sinks/questdb.md), all optional:
 *   QUESTDB_FLUSH_ROWS          rows that trigger a send (default: auto_flush_rows of QDB_CLIENT_CONF,
 *                               else 10000 over TCP, 75000 over HTTP)
 *   QUESTDB_FLUSH_INTERVAL_MS   longest time a row waits before it is sent (default: auto_flush_interval
 *                               of QDB_CLIENT_CONF, else 1000); a timer, so quiet streams are sent too
 *   QUESTDB_RESEND_WINDOW_MS    TCP only: rows sent within this time before a connection loss are sent
 *                               again after reconnecting (default 10000; DEDUP keys make it idempotent)
 *   QUESTDB_RECONNECT_MIN_MS / QUESTDB_RECONNECT_MAX_MS   reconnect backoff (default 250 / 30000)
 *   QUESTDB_CONNECT_TIMEOUT_MS  TCP connect timeout (default 10000)
 *   QUESTDB_SEND_TIMEOUT_MS     TCP: a write not flushed to the kernel within this time means the
 *                               connection is dead (default 30000)
 *   QUESTDB_CLOSE_TIMEOUT_MS    how long shutdown keeps trying to deliver buffered rows (default 10000)
 *   QUESTDB_MAX_LINE_BYTES      longest row accepted; QuestDB's line.tcp.max.measurement.size (32768)
 *   QUESTDB_CREATE_TABLES       false: never send SQL (no CREATE TABLE, no check of existing tables, rows
 *                               not held for them); rely on existing tables or ILP auto-creation
 *   QUESTDB_REFUSAL_PROBE_MS    TCP: how long a connection must stay open after a piece of rows for the
 *                               piece to count as accepted while looking for a refused line (default 1000)
 *   QUESTDB_TCP_NATIVE          false: ILP/TCP (plain, TLS, authenticated) through the client's node:net
 *                               socket (default true: Bun's own socket, written a whole chunk at a time)
 */
import { SenderOptions, createTransport } from "@questdb/nodejs-client";
import { createECDH, createPrivateKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { UserError, errorMessage } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";

/** The address and buffer bound the CLI reads (QUESTDB_HOST, QUESTDB_ILP_PORT, ...). */
export interface QuestDbSettings {
  readonly host: string;
  readonly ilpPort: number;
  readonly httpPort: number;
  /** The client's own configuration string (QDB_CLIENT_CONF), overriding host and port when set. */
  readonly clientConf: string | undefined;
  /** Bound on rows buffered while QuestDB is unreachable, in bytes of encoded lines. */
  readonly bufferMaxBytes: number;
}

export type TransportKind = "tcp" | "http";

export interface HttpEndpoint {
  /** e.g. http://127.0.0.1:9000 (no trailing slash). */
  readonly baseUrl: string;
  /** Authorization header when the configuration has HTTP credentials (never logged). */
  readonly headers: Readonly<Record<string, string>>;
  readonly tls: { readonly rejectUnauthorized: boolean; readonly ca?: string } | undefined;
}

/** Where Bun's own socket connects for ILP/TCP (plain or TLS, with or without authentication). */
export interface NativeTcpEndpoint {
  readonly host: string;
  readonly port: number;
  /** `tcps::`: the CA certificates from `tls_ca` (PEM) and whether the server's certificate is checked. */
  readonly tls?: { readonly ca: string | undefined; readonly verify: boolean };
  /** With `username`/`token`: the key id and the private key that signs QuestDB's challenge. */
  readonly auth?: { readonly keyId: string; readonly key: KeyObject };
}

export interface ResolvedSettings {
  readonly kind: TransportKind;
  /** host:port for log lines; never the configuration string (it may hold credentials). */
  readonly address: string;
  /** Parsed by the client; handed to its createTransport() for every connection. */
  readonly senderOptions: SenderOptions;
  /** ILP/TCP (plain or TLS, authenticated or not): where Bun's own socket connects; else the client's transport. */
  readonly nativeTcp: NativeTcpEndpoint | undefined;
  readonly flushRows: number;
  readonly flushIntervalMs: number;
  readonly resendWindowMs: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  readonly connectTimeoutMs: number;
  readonly sendTimeoutMs: number;
  readonly closeTimeoutMs: number;
  readonly maxLineBytes: number;
  readonly bufferMaxBytes: number;
  /** Where CREATE TABLE goes; undefined when QUESTDB_CREATE_TABLES=false. */
  readonly ddl: HttpEndpoint | undefined;
  /** TCP: a connection still open this long after a piece of rows means QuestDB took them (index.ts, isolate). */
  readonly refusalProbeMs: number;
}

type Environment = Readonly<Record<string, string | undefined>>;

const SECRET_KEYS = ["password", "token", "token_x", "token_y", "tls_roots_password"];

export function resolveSettings(settings: QuestDbSettings, env: Environment, log: Logger): ResolvedSettings {
  const clientLog = (level: string, message: string | Error): void => {
    // The client's own chatter (connected, closed...) is debug detail; the sink logs what matters.
    log.debug(`questdb client ${level}: ${message instanceof Error ? message.message : message}`);
  };
  const conf = settings.clientConf;
  let senderOptions: SenderOptions;
  if (conf !== undefined) {
    try {
      senderOptions = new SenderOptions(conf, { log: clientLog });
    } catch (error) {
      throw new UserError(`invalid QDB_CLIENT_CONF: ${redact(errorMessage(error), conf)}; see docs/sinks/questdb.md`);
    }
  } else {
    const bareHost = settings.host.replace(/^\[|\]$/g, "");
    // The client splits addr at the first colon, so an IPv6 host is set after parsing.
    senderOptions = new SenderOptions(`tcp::addr=localhost:${settings.ilpPort}`, { log: clientLog });
    senderOptions.host = bareHost;
  }
  const protocol = senderOptions.protocol;
  const kind: TransportKind = protocol === "http" || protocol === "https" ? "http" : "tcp";
  if (kind === "http") {
    // Under Bun the client's HTTP transport needs stdlib_http=on (node's http module, not undici).
    if (senderOptions.stdlib_http === false) log.warn("QDB_CLIENT_CONF sets stdlib_http=off; using stdlib_http=on, which Bun needs");
    senderOptions.stdlib_http = true;
  }
  if (kind === "tcp" && hasTcpAuthentication(senderOptions) && !senderOptions.jwk) senderOptions.jwk = challengeKey(senderOptions);
  try {
    // Constructing a transport validates authentication and TLS options (it does not connect).
    createTransport(senderOptions);
  } catch (error) {
    throw new UserError(`invalid QuestDB connection settings: ${redact(errorMessage(error), conf ?? "")}; see docs/sinks/questdb.md`);
  }
  const host = senderOptions.host ?? settings.host;
  const port = senderOptions.port ?? (kind === "http" ? 9000 : 9009);
  const urlHost = host.includes(":") ? `[${host}]` : host;

  const confFlushRows = positive(senderOptions.auto_flush_rows);
  const confFlushInterval = positive(senderOptions.auto_flush_interval);
  const reconnectMinMs = integer(env, "QUESTDB_RECONNECT_MIN_MS", 250, 1, 600_000);
  const resolved: ResolvedSettings = {
    kind,
    address: `${urlHost}:${port}`,
    senderOptions,
    nativeTcp:
      kind === "tcp" && booleanSetting(env, "QUESTDB_TCP_NATIVE", true)
        ? {
            host,
            port,
            // (createTransport above has read tls_ca once already: a missing file is a start-up error.)
            tls:
              protocol === "tcps"
                ? { ca: senderOptions.tls_ca ? readFileSync(senderOptions.tls_ca, "utf8") : undefined, verify: senderOptions.tls_verify !== false }
                : undefined,
            auth: senderOptions.jwk
              ? { keyId: senderOptions.jwk.kid!, key: createPrivateKey({ key: senderOptions.jwk, format: "jwk" }) }
              : undefined,
          }
        : undefined,
    flushRows: integer(env, "QUESTDB_FLUSH_ROWS", confFlushRows ?? (kind === "http" ? 75_000 : 10_000), 1, 10_000_000),
    flushIntervalMs: integer(env, "QUESTDB_FLUSH_INTERVAL_MS", confFlushInterval ?? 1000, 10, 3_600_000),
    resendWindowMs: kind === "tcp" ? integer(env, "QUESTDB_RESEND_WINDOW_MS", 10_000, 0, 3_600_000) : 0,
    reconnectMinMs,
    reconnectMaxMs: integer(env, "QUESTDB_RECONNECT_MAX_MS", Math.max(30_000, reconnectMinMs), reconnectMinMs, 3_600_000),
    connectTimeoutMs: integer(env, "QUESTDB_CONNECT_TIMEOUT_MS", 10_000, 10, 600_000),
    sendTimeoutMs: integer(env, "QUESTDB_SEND_TIMEOUT_MS", 30_000, 10, 600_000),
    closeTimeoutMs: integer(env, "QUESTDB_CLOSE_TIMEOUT_MS", 10_000, 0, 600_000),
    maxLineBytes: integer(env, "QUESTDB_MAX_LINE_BYTES", 32_768, 256, 1 << 30),
    bufferMaxBytes: settings.bufferMaxBytes,
    ddl: booleanSetting(env, "QUESTDB_CREATE_TABLES", true) ? ddlEndpoint(senderOptions, kind, urlHost, settings.httpPort) : undefined,
    refusalProbeMs: integer(env, "QUESTDB_REFUSAL_PROBE_MS", 1000, 10, 60_000),
  };
  return resolved;
}

/**
 * The key the client signs the ILP/TCP challenge with (https://questdb.io/docs/reference/api/ilp/authenticate/).
 * From `username` and `token` alone the client builds a JWK whose public point (x, y) is a fixed constant,
 * not the token's: node's crypto signs with such a key anyway, Bun's rejects it ("Invalid JWK EC key", an
 * error inside the client's socket handler), so every authenticated TCP connection failed. The point is
 * derived from the private key here, and `token_x`/`token_y`, when given, must be that point.
 */
function challengeKey(options: SenderOptions): Record<string, string> {
  const { username, token } = options;
  if (!username || !token) {
    throw new UserError("invalid QDB_CLIENT_CONF: ILP/TCP authentication needs both username (the key id) and token (its P-256 private key); see docs/sinks/questdb.md");
  }
  let point: Buffer;
  try {
    const d = Buffer.from(token, "base64url");
    if (d.length !== 32) throw new Error("not 32 bytes");
    const ecdh = createECDH("prime256v1");
    ecdh.setPrivateKey(d);
    point = ecdh.getPublicKey(); // 0x04, X (32 bytes), Y (32 bytes)
  } catch {
    throw new UserError("invalid QDB_CLIENT_CONF: token is not a P-256 private key (the JWK's d: 32 bytes, base64url); see docs/sinks/questdb.md");
  }
  const x = point.subarray(1, 33);
  const y = point.subarray(33);
  const mismatch = (given: string | undefined, actual: Buffer) => given !== undefined && !Buffer.from(given, "base64url").equals(actual);
  if (mismatch(options.token_x, x) || mismatch(options.token_y, y)) {
    throw new UserError("invalid QDB_CLIENT_CONF: token_x/token_y are not the public key of token; see docs/sinks/questdb.md");
  }
  return { kid: username, kty: "EC", crv: "P-256", d: token, x: x.toString("base64url"), y: y.toString("base64url") };
}

/** The client authenticates a TCP connection (JWK challenge) when any of these is set. */
function hasTcpAuthentication(options: SenderOptions): boolean {
  return Boolean(options.username || options.token || options.token_x || options.token_y || options.auth);
}

function ddlEndpoint(options: SenderOptions, kind: TransportKind, urlHost: string, httpPort: number): HttpEndpoint {
  const secure = options.protocol === "https" || options.protocol === "tcps";
  const port = kind === "http" ? (options.port ?? 9000) : httpPort;
  const headers: Record<string, string> = {};
  if (kind === "http") {
    // Over TCP `token` is a JWK private key, not an HTTP credential: only HTTP configurations authenticate.
    if (options.token) headers.Authorization = `Bearer ${options.token}`;
    else if (options.username && options.password) {
      headers.Authorization = `Basic ${Buffer.from(`${options.username}:${options.password}`).toString("base64")}`;
    }
  }
  let tls: HttpEndpoint["tls"];
  if (secure) {
    let ca: string | undefined;
    if (options.tls_ca !== undefined) {
      try {
        ca = readFileSync(options.tls_ca, "utf8");
      } catch (error) {
        throw new UserError(`QDB_CLIENT_CONF tls_ca cannot be read: ${errorMessage(error)}`);
      }
    }
    tls = { rejectUnauthorized: options.tls_verify !== false, ca };
  }
  return { baseUrl: `${secure ? "https" : "http"}://${urlHost}:${port}`, headers, tls };
}

function positive(value: number | undefined): number | undefined {
  return typeof value === "number" && Number.isInteger(value) && value > 0 ? value : undefined;
}

function integer(env: Environment, name: string, fallback: number, min: number, max: number): number {
  const text = env[name]?.trim();
  if (text === undefined || text === "") return fallback;
  const value = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UserError(`invalid ${name} '${text}'; expected a whole number from ${min} to ${max}`);
  }
  return value;
}

function booleanSetting(env: Environment, name: string, fallback: boolean): boolean {
  const text = env[name]?.trim().toLowerCase();
  if (text === undefined || text === "") return fallback;
  if (["true", "1", "yes", "on"].includes(text)) return true;
  if (["false", "0", "no", "off"].includes(text)) return false;
  throw new UserError(`invalid ${name} '${env[name]}'; accepted: true or false`);
}

/** Removes credential values of the configuration string from a message (client errors quote values). */
function redact(message: string, conf: string): string {
  let out = message;
  for (const part of conf.split(";")) {
    const equals = part.indexOf("=");
    if (equals < 0) continue;
    const key = part.slice(0, equals).replace(/^.*::/, "").trim();
    const value = part.slice(equals + 1);
    if (SECRET_KEYS.includes(key) && value.length > 0) out = out.split(value).join("***");
  }
  return out;
}
