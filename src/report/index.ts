/**
 * `xtrader report [DIR] [--html FILE]`: what an output directory holds and where its holes are, from the
 * Parquet footers and the `gaps` table (docs/report.md). DIR defaults to OUTPUT_DIRECTORY (environment,
 * then `.env`), then ./data, as for the collector.
 */
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { loadEnvironment } from "../cli/dotenv.ts";
import { nowMicros } from "../core/clock.ts";
import { UserError } from "../core/errors.ts";
import { buildReport } from "./coverage.ts";
import { renderHtml } from "./html.ts";
import { scanDirectory } from "./scan.ts";
import { renderText } from "./text.ts";

export const REPORT_USAGE = `Coverage report of an xtrader Parquet output directory (footers and the gaps table; no full scan)

USAGE xtrader report [DIR] [--html FILE]

ARGUMENTS
  DIR          output directory (default: OUTPUT_DIRECTORY from the environment or .env, else ./data)

OPTIONS
  --html FILE  also write the report as one self-contained HTML page with a timeline per stream
  -h, --help   show this help

Per exchange, symbol and stream: first and last row, covered time, rows, rows per minute, every gap with
its reason and length, unclean stops, silences and files still open. Times are UTC receive times.`;

interface ReportArguments {
  readonly help: boolean;
  readonly directory: string | undefined;
  readonly html: string | undefined;
}

export function parseReportArguments(argv: readonly string[]): ReportArguments {
  let directory: string | undefined;
  let html: string | undefined;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === "-h" || token === "--help") help = true;
    else if (token === "--html" || token.startsWith("--html=")) {
      const value = token === "--html" ? argv[++i] : token.slice("--html=".length);
      if (value === undefined || value === "" || (token === "--html" && value.startsWith("-"))) {
        throw new UserError("option --html needs a file name, e.g. --html coverage.html");
      }
      html = value;
    } else if (token.startsWith("-") && token !== "-") {
      throw new UserError(`unknown option '${token}' for report; accepted: --html FILE, --help`);
    } else if (directory === undefined) directory = token;
    else throw new UserError(`unexpected argument '${token}': report takes one directory (see xtrader report --help)`);
  }
  return { help, directory, html };
}

/** Runs the subcommand; returns the exit code. Bad arguments and directories throw UserError (exit 2). */
export async function runReport(argv: readonly string[]): Promise<number> {
  const args = parseReportArguments(argv);
  if (args.help) {
    await Bun.write(Bun.stdout, `${REPORT_USAGE}\n`);
    return 0;
  }
  const directory = resolve(args.directory ?? (loadEnvironment().OUTPUT_DIRECTORY?.trim() || "./data"));
  const report = await buildReport(await scanDirectory(directory));
  if (args.html !== undefined) {
    try {
      writeFileSync(args.html, renderHtml(report, nowMicros()));
    } catch (error) {
      throw new UserError(`cannot write --html file '${args.html}': ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
  }
  // Awaited: a large report piped to another program must be written in full before the process exits.
  await Bun.write(Bun.stdout, renderText(report));
  return 0;
}
