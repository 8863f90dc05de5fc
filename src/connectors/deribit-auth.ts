/**
 * Deribit's authentication of one connection (https://docs.deribit.com/api-reference/authentication/public-auth):
 * `public/auth` with client_credentials, then the refresh_token grant before the access token expires.
 * Tokens belong to the connection: `reset` forgets them when it closes. Neither a credential nor a token
 * ever reaches a log line (`redact`).
 */
import type { Logger } from "../core/log.ts";
import type { DeribitCredentials } from "./deribit-instruments.ts";
import type { Refusal } from "./kit/pool.ts";

export interface DeribitAuthPort {
  readonly log: Logger;
  /** Sends `public/auth` with `params` on the current connection. */
  call(params: Record<string, unknown>, onAnswer: (refusal: Refusal | undefined, result: unknown) => void): void;
  /** The session cannot go on as it is (deferred or broken answer): a new connection authenticates again. */
  reconnect(reason: string): void;
  /** The connection is authenticated for the first time: it may subscribe. */
  ready(): void;
  /** Deribit refused the credentials themselves. */
  rejected(description: string): void;
}

export interface DeribitAuthOptions {
  /** Error codes worth another attempt on a new connection (too_many_requests, retry...). */
  readonly transient: ReadonlySet<number>;
  /** Refresh after this share of the token's lifetime, never sooner than `refreshFloorMs`. */
  readonly refreshFraction: number;
  readonly refreshFloorMs: number;
}

interface Tokens {
  readonly access: string;
  readonly refresh: string;
}

export class DeribitAuth {
  private tokens: Tokens | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private authenticated = false;

  constructor(
    private readonly credentials: DeribitCredentials,
    private readonly port: DeribitAuthPort,
    private readonly options: DeribitAuthOptions,
  ) {}

  /** Authenticates a newly opened connection. */
  start(): void {
    this.authenticate("client_credentials");
  }

  /** Forgets the connection's tokens and stops refreshing them. */
  reset(): void {
    clearTimeout(this.refreshTimer);
    this.tokens = undefined;
    this.authenticated = false;
  }

  /** Never let a credential or token reach a log line, whatever the server echoes. */
  redact(text: string): string {
    let out = text;
    for (const secret of [this.credentials.clientSecret, this.tokens?.access, this.tokens?.refresh]) {
      if (secret) out = out.split(secret).join("***");
    }
    return out;
  }

  private authenticate(grant: "client_credentials" | "refresh_token"): void {
    const refreshToken = this.tokens?.refresh;
    const params =
      grant === "refresh_token" && refreshToken
        ? { grant_type: "refresh_token", refresh_token: refreshToken }
        : { grant_type: "client_credentials", client_id: this.credentials.clientId, client_secret: this.credentials.clientSecret };
    this.port.log.debug(`DERIBIT: public/auth (${params.grant_type})`);
    this.port.call(params, (refusal, result) => this.onAnswer(params.grant_type, refusal, result));
  }

  private onAnswer(grant: string, refusal: Refusal | undefined, answer: unknown): void {
    const { log } = this.port;
    if (refusal) {
      const description = refusal.text;
      if (grant === "refresh_token") {
        log.warn(`DERIBIT: token refresh refused (${description}); authenticating again`);
        this.tokens = undefined;
        this.authenticate("client_credentials");
      } else if (this.options.transient.has(Number(refusal.code))) {
        log.warn(`DERIBIT: authentication deferred by Deribit (${description}); reconnecting`);
        this.port.reconnect("authentication retry");
      } else {
        this.port.rejected(description);
      }
      return;
    }
    const result = answer as { access_token?: unknown; refresh_token?: unknown; expires_in?: unknown } | undefined;
    const expiresIn = Number(result?.expires_in);
    if (typeof result?.access_token !== "string" || typeof result.refresh_token !== "string" || !(expiresIn > 0)) {
      log.warn(`DERIBIT: public/auth answer without tokens; reconnecting`);
      this.port.reconnect("bad authentication answer");
      return;
    }
    this.tokens = { access: result.access_token, refresh: result.refresh_token };
    clearTimeout(this.refreshTimer);
    const refreshIn = Math.max(this.options.refreshFloorMs, expiresIn * 1000 * this.options.refreshFraction);
    this.refreshTimer = setTimeout(() => this.authenticate("refresh_token"), refreshIn);
    if (this.authenticated) {
      log.debug(`DERIBIT: access token refreshed (valid ${expiresIn} s)`);
      return;
    }
    log.info(`DERIBIT: authenticated (token valid ${expiresIn} s)`);
    this.authenticated = true;
    this.port.ready();
  }
}
