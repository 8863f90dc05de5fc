/**
 * The sink as the pipeline sees it when uploading: the Parquet sink, plus the uploader's lifecycle and
 * its backlog bound. The Parquet sink knows nothing of uploads (it announces closed files through its
 * onFileClosed option); this wrapper starts the uploader after the sink's start (whose recovery may
 * finish files of the previous run), holds writes while the upload backlog is over maxLocalBytes (so the
 * pipeline's overflow policy applies), and at stop uploads what it can before the process ends: on a
 * task without a persistent disk (Fargate) the files closed at stop exist nowhere else.
 */
import { errorMessage } from "../core/errors.ts";
import type { MarketEvent } from "../core/events.ts";
import type { Logger } from "../core/log.ts";
import type { CloseReport, InterruptedStream, Sink } from "../core/sink.ts";
import type { Uploader } from "./uploader.ts";

export class UploadingSink implements Sink {
  readonly name: string;
  private holding = false;

  constructor(
    private readonly inner: Sink,
    private readonly uploader: Uploader,
    private readonly options: { readonly log: Logger; readonly maxLocalBytes: number; readonly stopWaitMs: number },
  ) {
    this.name = inner.name;
    if (inner.closeOpenFiles) this.closeOpenFiles = () => inner.closeOpenFiles!();
    if (inner.interruptedStreams) this.interruptedStreams = () => inner.interruptedStreams!();
    if (inner.onStreamsLost) this.onStreamsLost = (handler) => inner.onStreamsLost!(handler);
  }

  closeOpenFiles?: () => Promise<{ readonly closed: number; readonly pending: number }>;
  interruptedStreams?: () => readonly InterruptedStream[];
  onStreamsLost?: (handler: (streams: readonly InterruptedStream[]) => void) => void;

  async start(): Promise<void> {
    await this.inner.start();
    await this.uploader.start();
  }

  write(events: readonly MarketEvent[]): void | Promise<void> {
    const wait = this.uploader.room();
    if (wait === undefined) return this.inner.write(events);
    if (!this.holding) {
      this.holding = true;
      this.options.log.warn(
        `upload: ${this.uploader.stats.pendingBytes} bytes of closed files wait for upload, over --max-local-bytes ${this.options.maxLocalBytes}; holding the pipeline until uploads catch up`,
      );
    }
    return wait.then(() => {
      if (this.holding) {
        this.holding = false;
        this.options.log.info(`upload: backlog back to ${this.uploader.stats.pendingBytes} bytes; the pipeline flows again`);
      }
      return this.inner.write(events);
    });
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  async close(): Promise<CloseReport> {
    const report = await this.inner.close();
    try {
      const left = await this.uploader.drain(this.options.stopWaitMs);
      if (left > 0) {
        this.options.log.warn(
          `upload: ${left} file(s) (${this.uploader.stats.pendingBytes} bytes) not uploaded at stop; they are uploaded at the next start from this output directory (lost if the disk does not persist)`,
        );
      } else if (this.uploader.stats.uploadedFiles > 0) {
        this.options.log.info(`upload: every closed file uploaded (${this.uploader.stats.uploadedFiles} file(s) this run)`);
      }
    } catch (error) {
      this.options.log.error(`upload: stop: ${errorMessage(error)}`);
    } finally {
      this.uploader.stop();
    }
    return report;
  }
}
