/**
 * The ECS Fargate task definition (deploy/ecs) and the Nomad job (deploy/nomad), parsed and checked against
 * the binary's own flags, variables and configuration rules: every variable is one xtrader reads and its
 * value passes the same validation as at start, secrets come from the platform's store, the health check
 * runs the binary's subcommand, stop timeouts leave room for the flush and the final uploads, and the
 * Nomad shards together take the whole subscription list. The Nomad file is parsed with HashiCorp's own
 * HCL parser (@cdktf/hcl2json, the HCL library compiled to WebAssembly). For ECS task definitions the
 * registry has no maintained validator; the rules below are the documented Fargate constraints.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ARGS, buildConfig } from "../src/cli/config.ts";
import { HEALTHCHECK_TIMEOUT_MS } from "../src/cli/healthcheck.ts";
import { EXCHANGE_REGISTRY } from "../src/connectors/index.ts";
import { ROOT } from "./support/binary.ts";
import { execForm, parseDockerfile } from "./support/ship-docker.ts";

const knownVariables = new Set(
  [...readFileSync(join(ROOT, "systemd/xtrader.env.example"), "utf8").matchAll(/^#?([A-Z][A-Z0-9_]*)=/gm)].map((match) => match[1]!),
);
const dockerfile = parseDockerfile(readFileSync(join(ROOT, "Dockerfile"), "utf8"));
const finalStage = dockerfile.stages.at(-1)!;
const entrypoint = execForm(finalStage.instructions.filter((instruction) => instruction.keyword === "ENTRYPOINT").at(-1)!.text)[0]!;
const imageUser = finalStage.instructions.filter((instruction) => instruction.keyword === "USER").at(-1)!.text;

function validateEnvironment(env: Record<string, string>) {
  const scratch = mkdtempSync(join(tmpdir(), "xtrader-deploy-env-"));
  return buildConfig({}, { ...env, OUTPUT_DIRECTORY: join(scratch, "data") }, EXCHANGE_REGISTRY).config;
}

/**
 * @cdktf/hcl2json's types reference the DOM library, whose WebSocket would replace Bun's in the whole
 * program's type check; imported by a computed name, its types stay out, and this is its signature.
 */
const HCL2JSON = "@cdktf/hcl2json";
const { parse: parseHcl } = (await import(HCL2JSON)) as { parse(fileName: string, text: string): Promise<Record<string, unknown>> };

const IMMUTABLE_TAG = /:\d+\.\d+\.\d+-[0-9a-f]{7,40}$/;

describe("deploy/ecs/task-definition.json (Fargate)", () => {
  const task = JSON.parse(readFileSync(join(ROOT, "deploy/ecs/task-definition.json"), "utf8"));
  const [container] = task.containerDefinitions as Array<Record<string, any>>;
  const env = Object.fromEntries((container!.environment as Array<{ name: string; value: string }>).map(({ name, value }) => [name, value]));
  const secrets = container!.secrets as Array<{ name: string; valueFrom: string }>;

  test("a Fargate task: awsvpc, a CPU/memory pair Fargate offers, ephemeral storage for the upload backlog", () => {
    expect(task.requiresCompatibilities).toEqual(["FARGATE"]);
    expect(task.networkMode).toBe("awsvpc");
    // Fargate's task sizes (AWS ECS developer guide, "Task CPU and memory"): memory MiB per CPU unit.
    const memoryFor: Record<string, (memory: number) => boolean> = {
      "256": (memory) => [512, 1024, 2048].includes(memory),
      "512": (memory) => memory >= 1024 && memory <= 4096 && memory % 1024 === 0,
      "1024": (memory) => memory >= 2048 && memory <= 8192 && memory % 1024 === 0,
      "2048": (memory) => memory >= 4096 && memory <= 16384 && memory % 1024 === 0,
      "4096": (memory) => memory >= 8192 && memory <= 30720 && memory % 1024 === 0,
    };
    expect(memoryFor[task.cpu]?.(Number(task.memory))).toBe(true);
    // 21-200 GiB may be asked for; the bound on waiting uploads must fit in it with room for open files.
    expect(task.ephemeralStorage.sizeInGiB).toBeGreaterThanOrEqual(21);
    expect(task.ephemeralStorage.sizeInGiB).toBeLessThanOrEqual(200);
    const config = validateEnvironment({ ...env, DERIBIT_CLIENT_ID: "client1", DERIBIT_CLIENT_SECRET: "secret1" });
    expect(config.upload.maxLocalBytes).toBeLessThan(task.ephemeralStorage.sizeInGiB * 1024 ** 3 * 0.8);
  });

  test("the container: pinned image, the image's user, read-only root, /data on a task volume, no flags", () => {
    expect(container!.image).toMatch(IMMUTABLE_TAG);
    expect(container!.essential).toBe(true);
    expect(container!.user).toBe(imageUser);
    expect(container!.readonlyRootFilesystem).toBe(true);
    for (const flag of (container!.command ?? []).filter((token: string) => token.startsWith("--"))) {
      expect(Object.keys(ARGS)).toContain(flag.slice(2));
    }
    const volumes = new Set((task.volumes as Array<{ name: string }>).map((volume) => volume.name));
    const mounts = container!.mountPoints as Array<{ sourceVolume: string; containerPath: string }>;
    for (const mount of mounts) expect(volumes.has(mount.sourceVolume)).toBe(true);
    expect(mounts.map((mount) => mount.containerPath)).toContain(env.OUTPUT_DIRECTORY);
  });

  test("configuration: known variables with valid values; secrets from SSM or Secrets Manager, never in the environment", () => {
    for (const name of [...Object.keys(env), ...secrets.map((secret) => secret.name)]) expect(knownVariables.has(name)).toBe(true);
    for (const secret of secrets) {
      expect(secret.valueFrom).toMatch(/^arn:aws:(ssm:[a-z0-9-]+:\d{12}:parameter\/|secretsmanager:[a-z0-9-]+:\d{12}:secret:)/);
      expect(env[secret.name]).toBeUndefined();
    }
    for (const name of ["DERIBIT_CLIENT_ID", "DERIBIT_CLIENT_SECRET", "QDB_CLIENT_CONF", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]) expect(env[name]).toBeUndefined();
    const config = validateEnvironment({ ...env, DERIBIT_CLIENT_ID: "client1", DERIBIT_CLIENT_SECRET: "secret1" });
    expect(config.subscriptions.length).toBeGreaterThan(0);
    expect(config.sink).toBe("parquet");
  });

  test("S3 upload with the task role: an upload URL, a task role, no keys", () => {
    const config = validateEnvironment({ ...env, DERIBIT_CLIENT_ID: "client1", DERIBIT_CLIENT_SECRET: "secret1" });
    expect(config.upload.target?.bucket).toBeTruthy();
    expect(task.taskRoleArn).toMatch(/^arn:aws:iam::\d{12}:role\//);
    expect(task.executionRoleArn).toMatch(/^arn:aws:iam::\d{12}:role\//); // pulls the image, reads the secrets
    expect(env.INSTANCE_ID).toBeUndefined(); // the task id names the objects (ECS_CONTAINER_METADATA_URI_V4)
  });

  test("health check runs the binary's subcommand; stop timeout within Fargate's 120 s and above the stop's own", () => {
    expect(container!.healthCheck.command).toEqual(["CMD", entrypoint, "healthcheck"]);
    expect(container!.healthCheck.timeout * 1000).toBeGreaterThan(HEALTHCHECK_TIMEOUT_MS);
    const config = validateEnvironment({ ...env, DERIBIT_CLIENT_ID: "client1", DERIBIT_CLIENT_SECRET: "secret1" });
    const metricsPort = (container!.portMappings as Array<{ containerPort: number }>).map((mapping) => mapping.containerPort);
    expect(metricsPort).toContain(config.metrics!.port);
    expect(container!.stopTimeout).toBeLessThanOrEqual(120);
    expect(container!.stopTimeout).toBeGreaterThan(Number(env.XTRADER_SHUTDOWN_TIMEOUT_SECONDS));
    expect(config.upload.stopWaitSeconds).toBeLessThan(Number(env.XTRADER_SHUTDOWN_TIMEOUT_SECONDS));
  });

  test("logs: awslogs with group, region and stream prefix", () => {
    const { logDriver, options } = container!.logConfiguration;
    expect(logDriver).toBe("awslogs");
    expect(Object.keys(options)).toEqual(expect.arrayContaining(["awslogs-group", "awslogs-region", "awslogs-stream-prefix"]));
    expect(env.LOG_FORMAT).toBe("json");
  });
});

describe("deploy/nomad/xtrader.nomad.hcl", async () => {
  const job = (await parseHcl("xtrader.nomad.hcl", readFileSync(join(ROOT, "deploy/nomad/xtrader.nomad.hcl"), "utf8"))) as Record<string, any>;
  const [jobName, [jobBody]] = Object.entries(job.job)[0] as [string, any[]];
  const [group] = Object.values(jobBody.group)[0] as any[];
  const [task] = Object.values(group.task)[0] as any[];
  const env = task.env[0] as Record<string, string>;

  test("HashiCorp's parser reads the file, and refuses a broken copy (the check can fail)", async () => {
    expect(jobName).toBe("xtrader");
    const broken = readFileSync(join(ROOT, "deploy/nomad/xtrader.nomad.hcl"), "utf8").replace("count = 3", "count = ");
    expect(parseHcl("broken.hcl", broken)).rejects.toThrow();
  });

  test("a docker task of the pinned image; known variables; no secrets in the file", () => {
    expect(jobBody.type).toBe("service");
    expect(task.driver).toBe("docker");
    expect(task.config[0].image).toMatch(IMMUTABLE_TAG);
    expect(task.config[0].args).toBeUndefined();
    for (const name of Object.keys(env)) expect(knownVariables.has(name)).toBe(true);
    for (const name of ["DERIBIT_CLIENT_ID", "DERIBIT_CLIENT_SECRET", "QDB_CLIENT_CONF", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]) expect(env[name]).toBeUndefined();
    // Secrets reach the environment from Nomad Variables through a template, never the job file.
    expect(task.template[0]).toMatchObject({ env: true, destination: expect.stringMatching(/^secrets\//) });
  });

  test("count allocations, each its shard (NOMAD_ALLOC_INDEX): together the whole list, each subscription once", () => {
    const count = group.count as number;
    expect(env.SHARD).toBe(`\${NOMAD_ALLOC_INDEX}/${count}`);
    const all = validateEnvironment({ ...env, SHARD: "", INSTANCE_ID: "x" }).subscriptions.map((subscription) => subscription.key);
    const taken: string[] = [];
    for (let index = 0; index < count; index++) {
      const resolved = Object.fromEntries(
        Object.entries(env).map(([name, value]) => [name, value.replaceAll("${NOMAD_ALLOC_INDEX}", String(index)).replaceAll("${NOMAD_SHORT_ALLOC_ID}", "0a1b2c3d")]),
      );
      const config = validateEnvironment(resolved);
      expect(config.subscriptions.length).toBeGreaterThan(0);
      expect(config.upload.target).toBeDefined();
      expect(config.upload.instanceId).toBe(`xtrader-${index}-0a1b2c3d`);
      taken.push(...config.subscriptions.map((subscription) => subscription.key));
    }
    expect(taken.sort()).toEqual(all.sort());
  });

  test("readiness check on the metrics port, a kill timeout above the stop's, the data directory on the allocation's disk", () => {
    const config = validateEnvironment({ ...env, SHARD: "0/3", INSTANCE_ID: "x" });
    expect(group.network[0].port.metrics[0].to).toBe(config.metrics!.port);
    expect(task.config[0].ports).toContain("metrics");
    const check = group.service[0].check[0];
    expect({ type: check.type, path: check.path, port: group.service[0].port }).toEqual({ type: "http", path: "/readyz", port: "metrics" });
    expect(Number.parseInt(task.kill_timeout, 10)).toBeGreaterThan(Number(env.XTRADER_SHUTDOWN_TIMEOUT_SECONDS));
    expect(task.kill_signal).toBe("SIGTERM");
    // The allocation directory the docker driver mounts at /alloc: kept by a sticky, migrating ephemeral_disk.
    expect(env.OUTPUT_DIRECTORY).toBe("/alloc/data");
    expect(group.ephemeral_disk[0]).toMatchObject({ sticky: true, migrate: true });
    expect(group.ephemeral_disk[0].size * 1024 * 1024).toBeGreaterThan(config.upload.maxLocalBytes);
  });
});
