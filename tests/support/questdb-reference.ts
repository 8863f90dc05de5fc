/**
 * The same rows as src/sinks/questdb/encoder.ts, built with the official client's own buffer
 * (SenderBufferV1, protocol version 1 as used over TCP). Only the decisions are repeated here (which
 * columns a row has, NULL for non-finite doubles and empty symbols); every byte comes from the client,
 * so comparing the two outputs proves the hand-built encoder writes exactly what the client writes.
 */
import { SenderOptions, createBuffer, type SenderBuffer } from "@questdb/nodejs-client";
import type { BookChange, MarketEvent } from "../../src/core/events.ts";
import { baseAmount } from "../../src/core/events.ts";

export function createReferenceBuffer(): SenderBuffer {
  const options = new SenderOptions("tcp::addr=127.0.0.1:9009;protocol_version=1;init_buf_size=1048576;max_buf_size=1073741824");
  return createBuffer(options);
}

/** Appends the rows of `event` to the client's buffer. */
export function appendReferenceRows(buffer: SenderBuffer, event: MarketEvent): void {
  switch (event.type) {
    case "trade":
    case "liquidation": {
      buffer.table(event.type === "trade" ? "trades" : "liquidations");
      symbols(buffer, ["exchange", event.exchange], ["symbol", event.symbol], ["side", event.side]);
      buffer.timestampColumn("local_timestamp", event.localTimestamp, "us");
      buffer.stringColumn("id", event.id);
      double(buffer, "price", event.price);
      double(buffer, "amount", event.amount);
      double(buffer, "base_amount", baseAmount(event, event.price, event.amount));
      buffer.at(event.timestamp, "us");
      return;
    }
    case "bbo": {
      buffer.table("bbo");
      symbols(buffer, ["exchange", event.exchange], ["symbol", event.symbol]);
      buffer.timestampColumn("local_timestamp", event.localTimestamp, "us");
      double(buffer, "bid_price", event.bidPrice);
      double(buffer, "bid_amount", event.bidAmount);
      double(buffer, "ask_price", event.askPrice);
      double(buffer, "ask_amount", event.askAmount);
      buffer.at(event.timestamp, "us");
      return;
    }
    case "funding": {
      buffer.table("funding");
      symbols(buffer, ["exchange", event.exchange], ["symbol", event.symbol]);
      buffer.timestampColumn("local_timestamp", event.localTimestamp, "us");
      if (event.markPrice !== undefined) double(buffer, "mark_price", event.markPrice);
      if (event.indexPrice !== undefined) double(buffer, "index_price", event.indexPrice);
      if (event.fundingRate !== undefined) double(buffer, "funding_rate", event.fundingRate);
      if (event.nextFundingTime !== undefined && Number.isSafeInteger(event.nextFundingTime)) {
        buffer.timestampColumn("next_funding_time", event.nextFundingTime, "us");
      }
      if (event.currentFundingRate !== undefined) double(buffer, "current_funding_rate", event.currentFundingRate);
      buffer.at(event.timestamp, "us");
      return;
    }
    case "gap": {
      buffer.table("gaps");
      symbols(buffer, ["exchange", event.exchange], ["symbol", event.symbol], ["stream", event.stream], ["reason", event.reason]);
      buffer.timestampColumn("local_timestamp", event.localTimestamp, "us");
      buffer.stringColumn("detail", event.detail);
      buffer.at(event.timestamp, "us");
      return;
    }
    case "book_change": {
      levels(buffer, event, event.bids, "bid");
      levels(buffer, event, event.asks, "ask");
      if (event.isSnapshot && event.bids.length < 2 && event.asks.length < 2) {
        buffer.table("l2");
        symbols(buffer, ["exchange", event.exchange], ["symbol", event.symbol]);
        buffer.timestampColumn("local_timestamp", event.localTimestamp, "us");
        buffer.booleanColumn("is_snapshot", true);
        sequence(buffer, event.sequence);
        buffer.at(event.timestamp, "us");
      }
      return;
    }
  }
}

function levels(buffer: SenderBuffer, event: BookChange, flat: readonly number[], side: string): void {
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const price = flat[i]!;
    const amount = flat[i + 1]!;
    buffer.table("l2");
    symbols(buffer, ["exchange", event.exchange], ["symbol", event.symbol], ["side", side]);
    buffer.timestampColumn("local_timestamp", event.localTimestamp, "us");
    buffer.booleanColumn("is_snapshot", event.isSnapshot);
    double(buffer, "price", price);
    double(buffer, "amount", amount);
    double(buffer, "base_amount", baseAmount(event, price, amount));
    sequence(buffer, event.sequence);
    buffer.at(event.timestamp, "us");
  }
}

function symbols(buffer: SenderBuffer, ...pairs: Array<[string, string]>): void {
  for (const [name, value] of pairs) if (value !== "") buffer.symbol(name, value);
}

function double(buffer: SenderBuffer, name: string, value: number): void {
  if (Number.isFinite(value)) buffer.floatColumn(name, value);
}

function sequence(buffer: SenderBuffer, value: number): void {
  if (Number.isInteger(value) && Math.abs(value) < 2 ** 63) buffer.intColumn("sequence", value);
}
