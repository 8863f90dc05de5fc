/**
 * The benchmark harness still starts and completes: `bench/run.ts --smoke` runs every section once with
 * tiny counts against the compiled binary. No timing is asserted (timing targets live in bench/ and
 * docs/performance.md); what is asserted is that each part did its work: the connectors and the peer
 * normalized frames, both ILP encoders wrote the same bytes, every row sent reached Parquet files and the
 * QuestDB stand-in, and lag samples were taken.
 */
import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, ROOT } from "./support/binary.ts";

interface SmokeReport {
  smoke: boolean;
  parse: Array<{ xtraderEvents: number; xtraderRows: number; peerEvents: number }>;
  ilp: { rows: number; official: { bytes: number }; xtrader: { bytes: number } };
  throughput: Record<string, { samples: Record<string, Array<{ storedRows?: number; expectedRows?: number; gapRows?: number; messages: number }>> }>;
  steady: Array<{ sink: string; result: { lagSamples: number; messages: number } }>;
  failures: string[];
}

test("bench/run.ts --smoke runs every section and stores every row", async () => {
  const binary = ensureBinary();
  const directory = mkdtempSync(join(tmpdir(), "xtrader-bench-smoke-"));
  const jsonPath = join(directory, "report.json");
  try {
    const child = Bun.spawn([process.execPath, "bench/run.ts", "--smoke", "--binary", binary, "--json", jsonPath], {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "pipe",
    });
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    if (code !== 0) console.error(stdout.slice(-3000), stderr.slice(-3000));
    expect(code).toBe(0);
    for (const heading of ["## Parse + normalize", "## ILP line encoding", "## Throughput", "## Steady load", "## Targets"]) {
      expect(stdout).toContain(heading);
    }

    const report = JSON.parse(readFileSync(jsonPath, "utf8")) as SmokeReport;
    expect(report.smoke).toBe(true);
    expect(report.failures).toEqual([]);

    expect(report.parse.length).toBeGreaterThan(0);
    for (const parse of report.parse) {
      expect(parse.xtraderEvents).toBeGreaterThan(0);
      expect(parse.xtraderRows).toBeGreaterThan(parse.xtraderEvents);
      expect(parse.peerEvents).toBeGreaterThan(0);
    }

    expect(report.ilp.rows).toBeGreaterThan(0);
    expect(report.ilp.xtrader.bytes).toBe(report.ilp.official.bytes);

    const mixed = report.throughput.mixed!.samples;
    for (const sink of ["parquet", "questdb"]) {
      expect(mixed[sink]!.length).toBe(1);
      const [run] = mixed[sink]!;
      expect(run!.messages).toBeGreaterThan(0);
      expect(run!.storedRows).toBe(run!.expectedRows!);
      expect(run!.gapRows).toBe(0);
    }
    for (const ceiling of ["a", "b"]) expect(mixed[ceiling]!.length).toBe(1);

    expect(report.steady.map((entry) => entry.sink).sort()).toEqual(["parquet", "questdb"]);
    for (const entry of report.steady) {
      expect(entry.result.messages).toBeGreaterThan(0);
      expect(entry.result.lagSamples).toBeGreaterThan(0);
    }
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}, 30_000);
