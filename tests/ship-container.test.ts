/**
 * Containers without a container engine: the Dockerfile is linted, its build stage is replayed from the
 * exact .dockerignore'd context (running its commands, which must be commands CI runs too), and the
 * docker-compose and Kubernetes examples are checked against the binary's own configuration rules and, for
 * Kubernetes, against the API schemas (kubernetes-models).
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run as lintDockerfile } from "dockerfilelint";
import { models as kubernetesModels } from "./support/ship-kubernetes.ts";
import packageJson from "../package.json" with { type: "json" };
import { buildConfig } from "../src/cli/config.ts";
import { HEALTHCHECK_TIMEOUT_MS } from "../src/cli/healthcheck.ts";
import { EXCHANGE_REGISTRY } from "../src/connectors/index.ts";
import { ROOT } from "./support/binary.ts";
import { run } from "./support/ship-install.ts";
import { contextFiles, copyFromBuild, execForm, isIgnored, keyValues, parseDockerfile, parseDockerignore, replayStage } from "./support/ship-docker.ts";
import { parseTimeSpan } from "./support/ship-systemd.ts";

const dockerfileText = readFileSync(join(ROOT, "Dockerfile"), "utf8");
const dockerfile = parseDockerfile(dockerfileText);
const finalStage = dockerfile.stages.at(-1)!;
const finalInstructions = (keyword: string) => finalStage.instructions.filter((instruction) => instruction.keyword === keyword);
const finalEnvironment = Object.fromEntries(finalInstructions("ENV").flatMap((instruction) => keyValues(instruction.text))) as Record<string, string>;

/** Variables the binary knows (the example file documents every one; tests/ship-systemd proves that). */
const knownVariables = new Set(
  [...readFileSync(join(ROOT, "systemd/xtrader.env.example"), "utf8").matchAll(/^#?([A-Z][A-Z0-9_]*)=/gm)].map((match) => match[1]!),
);
const defaultShutdownSeconds = Number(
  /^#?XTRADER_SHUTDOWN_TIMEOUT_SECONDS=(\d+)$/m.exec(readFileSync(join(ROOT, "systemd/xtrader.env.example"), "utf8"))![1],
);

/** Runs the binary's own configuration validation on an environment (Parquet output redirected to a temporary directory). */
function validateEnvironment(env: Record<string, string>) {
  const scratch = mkdtempSync(join(tmpdir(), "xtrader-env-"));
  return buildConfig({}, { ...env, ...(env.SINK === "questdb" ? {} : { OUTPUT_DIRECTORY: join(scratch, "data") }) }, EXCHANGE_REGISTRY).config;
}

describe("Dockerfile", () => {
  test("passes dockerfilelint with no rule disabled", () => {
    expect(lintDockerfile(ROOT, dockerfileText)).toEqual([]);
  });

  test("the linter does catch mistakes (the check above can fail)", () => {
    const broken = dockerfileText.replace("FROM node:", "from node:").replace("RUN npm ci", "RUN sudo npm ci");
    const rules = lintDockerfile(ROOT, broken).map((item) => item.rule);
    expect(rules).toContain("uppercase_commands");
    expect(rules).toContain("sudo_usage");
  });

  test("multi-stage: a pinned build image, then distroless, non-root, the binary as ENTRYPOINT, a data volume, OCI labels", () => {
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of dockerfile.stages) expect(stage.base).toMatch(/:[\w.-]+$/); // a tag, never implicit latest
    expect(dockerfile.stages[0]!.base).not.toContain(":latest");
    expect(finalStage.base).toStartWith("gcr.io/distroless/");

    const user = finalInstructions("USER").at(-1)!.text;
    expect(user).toMatch(/^[1-9]\d*(:[1-9]\d*)?$/); // numeric, so runAsNonRoot can verify it
    const entrypoint = execForm(finalInstructions("ENTRYPOINT").at(-1)!.text);
    expect(entrypoint).toHaveLength(1);
    const copiedBinary = finalInstructions("COPY").find((instruction) => execForm(instruction.text).at(-1) === entrypoint[0]);
    expect(copiedBinary?.flags.from).toBe(dockerfile.stages[0]!.name!);

    const volumes = finalInstructions("VOLUME").flatMap((instruction) => execForm(instruction.text));
    expect(volumes).toContain(finalEnvironment.OUTPUT_DIRECTORY!);
    // The volume's mount point belongs to the runtime user, so a fresh named volume is writable.
    const volumeCopy = finalInstructions("COPY").find((instruction) => execForm(instruction.text).at(-1) === finalEnvironment.OUTPUT_DIRECTORY);
    expect(volumeCopy?.flags.chown).toBe(user.includes(":") ? user : `${user}:${user}`);

    expect(finalInstructions("STOPSIGNAL").at(-1)?.text).toBe("SIGTERM");
    // No shell or curl in distroless: the health check is the binary's own subcommand, in exec form.
    const healthcheck = finalInstructions("HEALTHCHECK").at(-1)!.text;
    expect(execForm(healthcheck.slice(healthcheck.indexOf("CMD") + 3).trim())).toEqual([entrypoint[0]!, "healthcheck"]);
    const metricsPort = finalEnvironment.METRICS_ADDR!.split(":").at(-1);
    expect(finalInstructions("EXPOSE").map((instruction) => instruction.text)).toContain(metricsPort!);

    const labels = Object.fromEntries(finalInstructions("LABEL").flatMap((instruction) => keyValues(instruction.text)));
    for (const name of ["title", "description", "version", "revision", "licenses"]) {
      expect(labels[`org.opencontainers.image.${name}`]).toBeTruthy();
    }
    expect(labels["org.opencontainers.image.licenses"]).toBe(packageJson.license);
    for (const name of Object.keys(finalEnvironment)) expect(knownVariables.has(name)).toBe(true);
  });

  test("every RUN is a command CI runs as well", () => {
    const ci = readFileSync(join(ROOT, ".ci/run"), "utf8");
    const scripts = Object.values(packageJson.scripts).join("\n");
    const runs = dockerfile.stages.flatMap((stage) => stage.instructions.filter((instruction) => instruction.keyword === "RUN"));
    expect(runs.length).toBeGreaterThan(0);
    for (const instruction of runs) {
      // `npx bun` is what an npm script's PATH gives: node_modules/.bin/bun.
      const command = instruction.text.replace(/^npx /, "");
      expect(ci.includes(command) || scripts.includes(command)).toBe(true);
    }
  });

  test(".dockerignore sends exactly what the build needs: no .git, node_modules, dist, data or .env", () => {
    const files = contextFiles();
    expect(files).toContain("build.ts");
    expect(files).toContain("package-lock.json");
    expect(files).toContain("src/main.ts");
    for (const file of files) expect(file).not.toMatch(/^(\.git|node_modules|dist|data|tests)\/|(^|\/)\.env$/);
    // Docker's rule that a later line wins, and that a directory pattern covers what is under it.
    const rules = parseDockerignore("*\n!src\nsrc/secret.ts\n");
    expect(isIgnored(rules, "src/main.ts")).toBe(false);
    expect(isIgnored(rules, "src/secret.ts")).toBe(true);
    expect(isIgnored(rules, "README.md")).toBe(true);
  });

  test("the build stage, replayed from that context, produces the binary the final stage copies, stamped with REVISION", () => {
    const workspace = mkdtempSync(join(tmpdir(), "xtrader-image-"));
    const revision = "0123456789ab";
    const built = replayStage(dockerfile, dockerfile.stages[0]!, workspace, { REVISION: revision, VERSION: packageJson.version });
    expect(built.commands.some((command) => command.includes("build.ts"))).toBe(true);
    const image = join(workspace, "image");
    const copies = copyFromBuild(finalStage, built, image);
    const entrypoint = execForm(finalInstructions("ENTRYPOINT").at(-1)!.text)[0]!;
    expect(copies.map((copy) => copy.destination)).toContain(entrypoint);
    expect(statSync(join(image, finalEnvironment.OUTPUT_DIRECTORY!)).isDirectory()).toBe(true);

    const version = run([join(image, entrypoint), "--version"]);
    expect(version.exitCode).toBe(0);
    expect(version.stdout).toBe(`xtrader ${packageJson.version} (${revision})\n`);
  });
});

describe("docker-compose.yml", () => {
  const compose = Bun.YAML.parse(readFileSync(join(ROOT, "docker-compose.yml"), "utf8")) as {
    services: Record<string, Record<string, any>>;
    volumes?: Record<string, unknown>;
  };
  const collectors = Object.entries(compose.services).filter(([, service]) => service.build !== undefined);

  test("QuestDB beside several xtrader instances, each a valid configuration", () => {
    const questdb = Object.entries(compose.services).find(([, service]) => String(service.image).startsWith("questdb/questdb:"));
    expect(questdb).toBeDefined();
    expect(questdb![1].image).not.toEndWith(":latest");
    expect(collectors.length).toBeGreaterThanOrEqual(2);
    const keys = new Set<string>();
    for (const [name, service] of collectors) {
      expect(service.build.context).toBe(".");
      const env = service.environment as Record<string, string>;
      for (const variable of Object.keys(env)) expect(knownVariables.has(variable)).toBe(true);
      // Secrets come from the operator's environment by interpolation, never written here.
      for (const secret of ["DERIBIT_CLIENT_ID", "DERIBIT_CLIENT_SECRET"]) {
        if (secret in env) expect(env[secret]).toMatch(/^\$\{[A-Z_]+:-\}$/);
      }
      const config = validateEnvironment(
        Object.fromEntries(Object.entries(env).filter(([variable]) => !variable.startsWith("DERIBIT_CLIENT_"))),
      );
      for (const subscription of config.subscriptions) {
        expect(keys.has(subscription.key)).toBe(false); // sharded: no subscription recorded twice
        keys.add(subscription.key);
      }
      if (config.sink === "questdb") {
        expect(env.QUESTDB_HOST).toBe(questdb![0]);
        const published = (questdb![1].ports as string[]).map((port) => port.split(":").at(-1));
        expect(published).toContain(String(config.questdb.ilpPort));
        expect(published).toContain(String(config.questdb.httpPort));
      } else {
        const mounts = (service.volumes as string[]).map((volume) => volume.split(":"));
        expect(mounts.map((mount) => mount[1])).toContain(env.OUTPUT_DIRECTORY ?? finalEnvironment.OUTPUT_DIRECTORY);
        expect(Object.keys(compose.volumes ?? {})).toContain(mounts[0]![0]!);
      }
      expect(service.stop_signal ?? "SIGTERM").toBe("SIGTERM");
      expect(service.healthcheck.test).toEqual(["CMD", execForm(finalInstructions("ENTRYPOINT").at(-1)!.text)[0], "healthcheck"]);
      expect(parseTimeSpan(String(service.healthcheck.timeout)) * 1000).toBeGreaterThan(HEALTHCHECK_TIMEOUT_MS);
      expect(parseTimeSpan(String(service.stop_grace_period))).toBeGreaterThan(defaultShutdownSeconds);
      expect(name).toMatch(/^xtrader-/);
    }
  });
});

describe("Kubernetes example", () => {
  const directory = join(ROOT, "deploy/kubernetes");
  const kustomization = Bun.YAML.parse(readFileSync(join(directory, "kustomization.yaml"), "utf8")) as {
    resources: string[];
    images: Array<{ name: string; newName: string; newTag: string }>;
  };
  const documents = kustomization.resources.flatMap((file) => {
    const parsed = Bun.YAML.parse(readFileSync(join(directory, file), "utf8"));
    return (Array.isArray(parsed) ? parsed : [parsed]) as Array<Record<string, any>>;
  });
  const configMaps = new Map(documents.filter((doc) => doc.kind === "ConfigMap").map((doc) => [doc.metadata.name, doc.data]));
  const workloads = documents.filter((doc) => doc.kind === "Deployment" || doc.kind === "StatefulSet");

  test("every object is valid against the Kubernetes API schema", () => {
    expect(documents.length).toBeGreaterThanOrEqual(5);
    for (const doc of documents) {
      const Model = kubernetesModels[`${doc.apiVersion}/${doc.kind}`];
      expect(Model).toBeDefined();
      expect(() => new Model!(doc).validate()).not.toThrow();
    }
  });

  test("the schema check does catch mistakes (the check above can fail)", () => {
    const broken = structuredClone(workloads[0]!);
    broken.spec.template.spec.terminationGracePeriodSeconds = "30s";
    const Model = kubernetesModels[`${broken.apiVersion}/${broken.kind}`]!;
    expect(() => new Model(broken).validate()).toThrow("terminationGracePeriodSeconds");
  });

  test("workloads: env from ConfigMaps and a Secret, probes on the metrics port, resources, a grace period above the flush bound", () => {
    expect(workloads.length).toBeGreaterThanOrEqual(2);
    const image = kustomization.images[0]!;
    expect(image.newTag).toMatch(/^\d+\.\d+\.\d+-[0-9a-f]{7,40}$/); // immutable: version and commit
    const keys = new Set<string>();
    let shardedUploading = 0;
    for (const workload of workloads) {
      const pod = workload.spec.template.spec;
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      const [container] = pod.containers as Array<Record<string, any>>;
      expect(container!.image).toBe(image.name);
      expect(container!.args).toBeUndefined(); // configuration (and secrets) only through the environment

      const env: Record<string, string> = {};
      for (const source of container!.envFrom ?? []) {
        expect(configMaps.has(source.configMapRef.name)).toBe(true);
        Object.assign(env, configMaps.get(source.configMapRef.name));
      }
      for (const variable of container!.env ?? []) {
        if (variable.valueFrom?.fieldRef) {
          // The pod's own name, from the downward API: the StatefulSet ordinal of SHARD=ordinal/N.
          expect({ name: variable.name, field: variable.valueFrom.fieldRef.fieldPath }).toEqual({ name: "POD_NAME", field: "metadata.name" });
          continue;
        }
        if (variable.valueFrom) {
          expect(variable.valueFrom.secretKeyRef.key).toBe(variable.name);
          continue;
        }
        env[variable.name] = variable.value;
      }
      for (const variable of Object.keys(env)) expect(knownVariables.has(variable)).toBe(true);
      for (const secret of ["DERIBIT_CLIENT_ID", "DERIBIT_CLIENT_SECRET", "QDB_CLIENT_CONF", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]) expect(env[secret]).toBeUndefined();
      // A sharded StatefulSet: one replica per shard, each pod its ordinal; everything else one replica
      // (two would record everything twice).
      const shardCount = env.SHARD ? Number(/^ordinal\/(\d+)$/.exec(env.SHARD)![1]) : 1;
      if (env.SHARD) expect(workload.kind).toBe("StatefulSet");
      expect(workload.spec.replicas).toBe(shardCount);
      const configs = Array.from({ length: shardCount }, (_, ordinal) =>
        validateEnvironment(env.SHARD ? { ...env, POD_NAME: `${workload.metadata.name}-${ordinal}` } : env),
      );
      for (const shard of configs) {
        expect(shard.subscriptions.length).toBeGreaterThan(0);
        for (const subscription of shard.subscriptions) {
          expect(keys.has(subscription.key)).toBe(false);
          keys.add(subscription.key);
        }
      }
      if (env.SHARD) {
        // The shards together record the whole list, each subscription once.
        const { SHARD: _shard, ...unsharded } = env;
        const all = validateEnvironment(unsharded).subscriptions.map((subscription) => subscription.key);
        expect(configs.flatMap((shard) => shard.subscriptions.map((subscription) => subscription.key)).sort()).toEqual(all.sort());
        if (configs[0]!.upload.target) shardedUploading++;
      }
      const config = configs[0]!;
      if (config.upload.target) {
        // Object names carry the pod name (POD_NAME or HOSTNAME), so replicas never overwrite each other.
        expect(env.INSTANCE_ID).toBeUndefined();
        expect(config.sink).toBe("parquet");
      }

      const metrics = (container!.ports as Array<{ name: string; containerPort: number }>).find((port) => port.name === "metrics")!;
      expect(config.metrics?.port).toBe(metrics.containerPort);
      expect(container!.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "metrics" });
      expect(container!.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "metrics" });
      expect(container!.resources.requests.memory).toBeTruthy();
      expect(container!.resources.limits.memory).toBeTruthy();
      const shutdownSeconds = Number(env.XTRADER_SHUTDOWN_TIMEOUT_SECONDS ?? defaultShutdownSeconds);
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(shutdownSeconds);
      if (config.sink === "parquet") {
        const mount = (container!.volumeMounts as Array<{ name: string; mountPath: string }>).find((volume) => volume.mountPath === env.OUTPUT_DIRECTORY);
        expect(mount).toBeDefined();
        expect(workload.kind).toBe("StatefulSet");
      }
    }
    expect(shardedUploading).toBe(1); // the fleet example: N shards of one list, uploading to one bucket
  });
});
