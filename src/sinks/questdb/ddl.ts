/**
 * Creates the tables over QuestDB's REST endpoint: GET /exec?query=<sql>, which answers 200 with
 * {"ddl":"OK"} or 400 with {"query","error","position"} (https://questdb.com/docs/query/rest-api/#exec---execute-queries).
 */
import { errorMessage } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";
import { allCreateTableSql } from "./schema.ts";
import type { HttpEndpoint } from "./settings.ts";

export type TableSetupResult =
  | { readonly kind: "created"; readonly failed: readonly string[] }
  | { readonly kind: "unreachable"; readonly reason: string };

export async function createTables(endpoint: HttpEndpoint, log: Logger, timeoutMs: number): Promise<TableSetupResult> {
  const failed: string[] = [];
  for (const { table, sql } of allCreateTableSql()) {
    let response: Response;
    try {
      response = await fetch(`${endpoint.baseUrl}/exec?query=${encodeURIComponent(sql)}`, {
        headers: endpoint.headers,
        signal: AbortSignal.timeout(timeoutMs),
        ...(endpoint.tls ? { tls: endpoint.tls } : {}),
      });
    } catch (error) {
      return { kind: "unreachable", reason: errorMessage(error) };
    }
    const body = await response.text().catch(() => "");
    let error: string | undefined;
    if (!response.ok) error = `HTTP ${response.status}: ${questDbError(body) ?? body.slice(0, 200)}`;
    else if (questDbError(body) !== undefined) error = questDbError(body);
    if (error !== undefined) {
      failed.push(table);
      log.warn(`QuestDB could not create table ${table}: ${error}`);
    } else {
      log.debug(`QuestDB table ${table} ready`);
    }
  }
  return { kind: "created", failed };
}

function questDbError(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { error?: unknown };
    return typeof parsed.error === "string" ? parsed.error : undefined;
  } catch {
    return undefined;
  }
}
