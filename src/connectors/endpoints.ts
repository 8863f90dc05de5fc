/**
 * Endpoint URLs are overridable per exchange so tests (a fake exchange on 127.0.0.1) and users behind
 * proxies can point a connector elsewhere: XTRADER_<EXCHANGE>_WS_URL and XTRADER_<EXCHANGE>_REST_URL.
 * Connectors with several WebSocket endpoints document any extra variables in their header.
 */
import type { ExchangeId } from "../core/events.ts";

export type EndpointKind = "WS" | "REST";

export function endpointEnvName(exchange: ExchangeId, kind: EndpointKind): string {
  return `XTRADER_${exchange}_${kind}_URL`;
}

export function endpoint(
  env: Readonly<Record<string, string | undefined>>,
  exchange: ExchangeId,
  kind: EndpointKind,
  fallback: string,
): string {
  const override = env[endpointEnvName(exchange, kind)]?.trim();
  return (override || fallback).replace(/\/+$/, "");
}
