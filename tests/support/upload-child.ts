/**
 * A process that uploads what waits in an output directory, for the tests that kill it with SIGKILL
 * mid-upload: `bun upload-child.ts ROOT ENDPOINT BUCKET`. Prints "drained" once nothing is pending.
 */
import { createLogger } from "../../src/core/log.ts";
import { S3Store } from "../../src/upload/store.ts";
import { Uploader } from "../../src/upload/uploader.ts";
import { S3_KEY_ID, S3_SECRET } from "./s3-server.ts";

const [root, endpoint, bucket] = process.argv.slice(2) as [string, string, string];
const store = new S3Store({ target: { bucket, prefix: "xtrader" }, endpoint, region: "us-east-1" }, async () => ({ accessKeyId: S3_KEY_ID, secretAccessKey: S3_SECRET }));
const uploader = new Uploader({ root, settings: { keepLocal: false, maxLocalBytes: 1 << 30, instanceId: "xtrader-0" }, store, log: createLogger("warn") });
await uploader.start();
const left = await uploader.drain(60_000);
process.stdout.write(left === 0 ? "drained\n" : `${left} left\n`);
uploader.stop();
