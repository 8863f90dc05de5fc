/**
 * A fake QuestDB HTTP endpoint (Bun.serve on 127.0.0.1) for the sink tests:
 * - GET /exec?query=SQL records the statement and answers like QuestDB from its tables (a QuestDbCatalog,
 *   shared with an IlpServer so both are one database): CREATE TABLE, table_columns(), ALTER TABLE ...
 *   DEDUP, or what the test scripts (e.g. 400 {"query","error","position"});
 * - POST /write (ILP over HTTP) parses the body with the strict ILP parser (a malformed line is recorded
 *   as an error and answered 400, like QuestDB), checks every row against the tables (a refused line is
 *   answered 400 naming table and column, and nothing of the request is stored) and answers 204, or a
 *   scripted status.
 * Request headers are kept so tests can check authentication.
 */
import type { Server } from "bun";
import { IlpStreamParser, QuestDbCatalog, SchemaTracker, type IlpRow } from "./ilp-server.ts";

export interface RecordedHttpRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: Headers;
}

export type ExecHandler = (sql: string) => { status: number; body: unknown } | undefined;
export type WriteHandler = (request: RecordedHttpRequest) => { status: number; body?: string } | undefined;

export class FakeQuestDbHttp {
  readonly requests: RecordedHttpRequest[] = [];
  /** SQL of every /exec call, in order. */
  readonly queries: string[] = [];
  readonly rows: IlpRow[] = [];
  readonly errors: string[] = [];
  /** ILP lines the tables refused (answered 400, as QuestDB does); not an error of the test. */
  readonly refusals: string[] = [];
  writeRequests = 0;
  /** Overrides the answer to /exec (undefined = the catalog's answer). */
  onExec: ExecHandler | undefined;
  /** Overrides the answer to /write before parsing (undefined = parse and answer 204). */
  onWrite: WriteHandler | undefined;
  /** Largest /write body taken; a larger one is answered 413, as a proxy's body limit does (undefined: none). */
  maxWriteBytes: number | undefined;
  private server: Server<undefined> | undefined;
  private readonly schema = new SchemaTracker();

  private constructor(
    public port: number,
    /** HTTPS with this certificate and key (PEM). */
    private readonly tls: { readonly cert: string; readonly key: string } | undefined,
    readonly catalog: QuestDbCatalog,
  ) {}

  static async start(
    port = 0,
    tls?: { readonly cert: string; readonly key: string },
    catalog: QuestDbCatalog = new QuestDbCatalog(),
  ): Promise<FakeQuestDbHttp> {
    const fake = new FakeQuestDbHttp(port, tls, catalog);
    fake.listen();
    return fake;
  }

  private listen(): void {
    this.server = Bun.serve({
      hostname: "127.0.0.1",
      port: this.port,
      tls: this.tls,
      fetch: async (request) => {
        const url = new URL(request.url);
        const recorded: RecordedHttpRequest = {
          method: request.method,
          path: url.pathname,
          query: url.searchParams,
          headers: request.headers,
        };
        this.requests.push(recorded);
        if (url.pathname === "/exec" && request.method === "GET") {
          const sql = url.searchParams.get("query") ?? "";
          this.queries.push(sql);
          const answer = this.onExec?.(sql) ?? this.catalog.exec(sql);
          return Response.json(answer.body, { status: answer.status });
        }
        if (url.pathname === "/write" && request.method === "POST") {
          this.writeRequests++;
          const scripted = this.onWrite?.(recorded);
          if (scripted) return new Response(scripted.body ?? "", { status: scripted.status });
          const body = new Uint8Array(await request.arrayBuffer());
          if (this.maxWriteBytes !== undefined && body.length > this.maxWriteBytes) {
            return new Response("Request Entity Too Large", { status: 413 });
          }
          const accepted: IlpRow[] = [];
          const parser = new IlpStreamParser(this.schema, (row) => accepted.push(row), (row) => this.catalog.admit(row));
          parser.feed(body);
          const error = parser.failed ?? (parser.pendingBytes > 0 ? "request body ends in the middle of a line" : undefined);
          if (error !== undefined) {
            (parser.refused ? this.refusals : this.errors).push(error);
            return Response.json({ code: "invalid", message: `failed to parse line protocol: errors encountered on line(s): ${error}` }, { status: 400 });
          }
          // A request is one transaction: stored only once every line was accepted.
          for (const row of accepted) {
            this.rows.push(row);
            this.catalog.store(row);
          }
          return new Response(null, { status: 204 });
        }
        return new Response("not found", { status: 404 });
      },
    });
    this.port = this.server.port ?? this.port;
  }

  async stop(): Promise<void> {
    await this.server?.stop(true);
    this.server = undefined;
  }

  async restart(): Promise<void> {
    if (this.server) await this.stop();
    this.listen();
  }

  assertNoErrors(): void {
    if (this.errors.length > 0) throw new Error(`fake QuestDB HTTP saw malformed ILP:\n${this.errors.join("\n")}`);
  }
}
