// A rendered pod's containers run against the built CLI, as the kubelet would
// start them, but with --check-config: each container's args and environment
// resolved as Kubernetes resolves them, its volumes written out under a
// temporary root, and the paths of its mounts rewritten to that root.
//
// What it resolves:
//  - env: value with $(VAR) expanded from the entries before it ($$ escapes,
//    an unknown reference stays as written); valueFrom secretKeyRef and
//    configMapKeyRef from the rendered Secrets and ConfigMaps, or a fake value
//    of the same kind for an operator's existingSecret; fieldRef
//    (metadata.name, metadata.namespace, status.podIP, status.hostIP) as
//    plausible values; args then expanded with that environment.
//  - volumes: secret, configMap and projected sources written as files (their
//    items, or every key); emptyDir, persistentVolumeClaim and
//    volumeClaimTemplates as empty folders. Mounts of one pod share its root,
//    so the init containers' work is seen by the containers after them.
//  - paths: each mountPath in an arg or env value (at the start of the value
//    or after a space, "=" or quote) is prefixed with the pod's root, once,
//    after expansion. Paths outside every mount are left as written: they
//    would have to be in the image.
// What it runs:
//  - containers whose image is the chart's and that run its entry point
//    (no command): `node cmd/distribustream/bin/distribustream.js ARGS
//    --check-config`, in the pod's root, with only the resolved environment
//    and PATH; they must exit 0 saying "configuration ok". `dsclient` has no
//    check mode: its flags are checked against its --help.
//  - init containers with command ["sh", "-c"], in order, before the pod's
//    CLI containers (they prepare the volumes: the seeder's media folder).
//  - exec probes running `distribustream healthcheck`: run as written, the
//    target refusing the connection; exit 2 is a command line the
//    healthcheck refuses, 0 or 1 an accepted one.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { Signer } from "@distribustream/pdtp";
import { issueToken, writeTokenFile } from "@distribustream/tracker";

const podSpec = (o) => (o.kind === "Pod" ? o.spec : o.spec?.template?.spec);

/** A running limit on child processes: the machine running the tests may be busy. */
function limiter(max) {
  let active = 0;
  const queue = [];
  const next = () => {
    if (active >= max || queue.length === 0) return;
    active++;
    const { fn, resolve, reject } = queue.shift();
    fn()
      .then(resolve, reject)
      .finally(() => {
        active--;
        next();
      });
  };
  return (fn) =>
    new Promise((resolve, reject) => {
      queue.push({ fn, resolve, reject });
      next();
    });
}
const limit = limiter(Number(process.env.DS_HELM_JOBS ?? 6));

function run(cmd, args, opts) {
  return limit(
    () =>
      new Promise((resolve) => {
        const child = spawn(cmd, args, { ...opts, stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        let err = "";
        child.stdout.setEncoding("utf8").on("data", (d) => (out += d));
        child.stderr.setEncoding("utf8").on("data", (d) => (err += d));
        // a check that does not end is a check that serves or connects
        const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
        child.on("close", (code, signal) => {
          clearTimeout(timer);
          resolve({ code: code ?? `killed by ${signal}`, out, err });
        });
      }),
  );
}

/**
 * Runs are shared by identical situations: the same command line and
 * environment (Secret values by name: a generated Secret differs at each
 * render, never in kind), the same volumes, ConfigMap texts and init
 * containers. Scenarios share most containers; each distinct one runs once.
 */
const runs = new Map();
function runOnce(situation, fn) {
  const key = JSON.stringify(situation);
  if (!runs.has(key)) runs.set(key, fn());
  return runs.get(key);
}

/**
 * Values of an operator's existingSecret keys, made up but of the kind the
 * key holds (the chart's key names, or the values' *Key settings).
 */
export class FakeSecrets {
  constructor(work) {
    this.work = work;
    this.cache = new Map();
  }
  value(secret, key) {
    const id = `${secret}/${key}`;
    if (!this.cache.has(id)) this.cache.set(id, this.make(secret, key));
    return this.cache.get(id);
  }
  make(secret, key) {
    if (/\.pem$|-key$/.test(key)) return Signer.generate().toPem();
    if (/\.crt$|ca/.test(key)) return this.certificate();
    if (key === "seeder-tokens") return this.tokens(secret).file;
    if (key === "seeder-token") return `${this.tokens(secret).token}\n`;
    if (/token/.test(key)) return "fake-dashboard-token-0123456789abcdef";
    return `fake-${key.replace(/[^a-z0-9]/gi, "")}`;
  }
  /** One credentials file and the token it accepts, per Secret. */
  tokens(secret) {
    const id = `${secret}/(tokens)`;
    if (!this.cache.has(id)) {
      const { token, entry } = issueToken("helm-test");
      const path = join(this.work, `${secret}-seeder-tokens`);
      writeTokenFile(path, [entry]);
      this.cache.set(id, { token, file: readFileSync(path, "utf8") });
    }
    return this.cache.get(id);
  }
  certificate() {
    const dir = join(this.work, "fake-ca");
    mkdirSync(dir, { recursive: true });
    // prettier-ignore
    const r = spawnSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-subj", "/CN=fake-ca", "-days", "1", "-keyout", join(dir, "key.pem"), "-out", join(dir, "ca.crt"),
    ], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
    return readFileSync(join(dir, "ca.crt"), "utf8");
  }
}

/** Key -> text of a rendered Secret or ConfigMap, or undefined when it is not rendered. */
function renderedData(objects, kind, name) {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) return undefined;
  const data = {};
  for (const [k, v] of Object.entries(o.data ?? {}))
    data[k] = kind === "Secret" ? Buffer.from(v, "base64").toString("utf8") : v;
  return { ...data, ...o.stringData };
}

/**
 * The pods a workload makes: one per StatefulSet ordinal (at most 3), one of
 * a Deployment (its replicas are alike), the Pod itself.
 */
function podsOf(w) {
  if (w.kind === "StatefulSet")
    return Array.from({ length: Math.min(w.spec.replicas ?? 1, 3) }, (_, i) => `${w.metadata.name}-${i}`);
  if (w.kind === "Deployment") return [`${w.metadata.name}-5d4f8b7c9-x2x4z`];
  return [w.metadata.name];
}

const FIELDS = {
  "metadata.namespace": () => "streaming",
  "status.podIP": () => "10.1.2.3",
  "status.hostIP": () => "192.0.2.10",
};

/** $(VAR) as Kubernetes expands it: from `vars`, $$(VAR) to $(VAR), unknown names left as written. */
const expand = (s, vars) => String(s).replace(/\$\$|\$\((\w+)\)/g, (m, name) => (m === "$$" ? "$" : (vars[name] ?? m)));

/** Rewrites each mount path in `s` to its place under `root` (once: at the start or after a space, = or quote). */
function rewritePaths(s, mountPaths, root) {
  const alt = [...mountPaths]
    .sort((a, b) => b.length - a.length)
    .map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
    .join("|");
  if (!alt) return s;
  return s.replace(new RegExp(`(^|[\\s="'])(${alt})(?=$|[/\\s"'])`, "g"), (_, pre, p) => `${pre}${root}${p}`);
}

/**
 * Materializes a pod under `root` and runs its containers (see the top of
 * this file). Resolves to the problems found, each naming pod and container.
 */
export async function checkPod(objects, w, podName, { root, cli, dsclientFlags, fakes, tamper }) {
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  const spec = podSpec(w);
  const problems = [];
  const volumes = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
  for (const t of w.spec.volumeClaimTemplates ?? []) volumes.set(t.metadata.name, { persistentVolumeClaim: {} });

  const data = (kind, name, key, where) => {
    const rendered = renderedData(objects, kind, name);
    if (rendered) {
      if (!(key in rendered)) problems.push(`${where}: ${kind} ${name} has no key ${key}`);
      return rendered[key] ?? "";
    }
    return fakes.value(name, key);
  };
  const keysOf = (kind, name) => Object.keys(renderedData(objects, kind, name) ?? {});
  /** The rendered ConfigMaps a volume holds (their text is part of what a run depends on). */
  const configMapsOf = (name) => {
    const v = volumes.get(name);
    const sources = v?.projected ? v.projected.sources : [v ?? {}];
    return sources.filter((x) => x.configMap).map((x) => renderedData(objects, "ConfigMap", x.configMap.name));
  };

  /** Writes the volume `name` at `dir` (a mount of it). */
  const materialize = (name, dir, where) => {
    const v = volumes.get(name);
    mkdirSync(dir, { recursive: true });
    if (!v) {
      problems.push(`${where}: mounts volume ${name}, which the pod does not have`);
      return;
    }
    const sources = v.projected ? v.projected.sources : [v];
    for (const s of sources) {
      const ref = s.secret
        ? ["Secret", s.secret.secretName ?? s.secret.name, s.secret.items]
        : s.configMap
          ? ["ConfigMap", s.configMap.name, s.configMap.items]
          : undefined;
      if (!ref) continue; // emptyDir, persistentVolumeClaim: an empty folder
      const [kind, objName, items] = ref;
      for (const item of items ?? keysOf(kind, objName).map((key) => ({ key, path: key }))) {
        const file = join(dir, item.path);
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, data(kind, objName, item.key, where), { mode: 0o600 });
      }
    }
  };

  const containers = [
    ...(spec.initContainers ?? []).map((c) => ({ c, init: true })),
    ...spec.containers.map((c) => ({ c, init: false })),
  ];
  const mounted = new Set();
  for (const { c } of containers)
    for (const m of c.volumeMounts ?? []) {
      const dir = join(root, m.mountPath);
      if (mounted.has(dir)) continue;
      mounted.add(dir);
      materialize(m.name, dir, `${podName}/${c.name}`);
    }

  // init containers one after the other, then the others at once
  const later = [];
  for (const { c, init } of containers) {
    if (init) await checkContainer(c, true);
    else later.push(checkContainer(c, false));
  }
  await Promise.all(later);
  return problems;

  async function checkContainer(c, init) {
    const at = `${podName}/${c.name}`;
    const vars = {};
    // the same environment with each Secret value as its name: what a run's result depends on
    const sym = {};
    for (const e of c.env ?? []) {
      const from = e.valueFrom;
      if (e.value !== undefined) {
        vars[e.name] = expand(e.value, vars);
        sym[e.name] = expand(e.value, sym);
        continue;
      }
      if (from?.secretKeyRef) {
        vars[e.name] = data("Secret", from.secretKeyRef.name, from.secretKeyRef.key, at);
        sym[e.name] = `<Secret ${from.secretKeyRef.name} ${from.secretKeyRef.key}>`;
        continue;
      }
      if (from?.configMapKeyRef)
        vars[e.name] = data("ConfigMap", from.configMapKeyRef.name, from.configMapKeyRef.key, at);
      else if (from?.fieldRef) {
        const field = from.fieldRef.fieldPath;
        if (field === "metadata.name") vars[e.name] = podName;
        else if (FIELDS[field]) vars[e.name] = FIELDS[field]();
        else problems.push(`${at}: env ${e.name}: fieldRef ${field} is not one this test knows`);
      } else vars[e.name] = "";
      sym[e.name] = vars[e.name];
    }
    const mountPaths = (c.volumeMounts ?? []).map((m) => m.mountPath);
    const fix = (s) => rewritePaths(s, mountPaths, root);
    const env = Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, fix(v)]));
    let args = (c.args ?? []).map((a) => fix(expand(a, vars)));
    if (tamper) args = tamper(c, args);
    const baseEnv = { PATH: process.env.PATH, HOME: root };

    if (c.command) {
      if (c.command[0] === "sh" && c.command[1] === "-c" && init) {
        const r = await run("sh", ["-c", ...args], { cwd: root, env: { ...baseEnv, ...env } });
        if (r.code !== 0) problems.push(`${at}: init script failed (${r.code}): ${r.err.trim()}`);
      } else if (c.command[0] === "distribustream") {
        problems.push(`${at}: runs distribustream through command; this test runs the entry point's args only`);
      }
      return;
    }
    if (!c.image.startsWith("distribustream/")) return;

    for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe].filter((p) => p?.exec)) {
      const [bin, ...probeArgs] = probe.exec.command;
      if (bin !== "distribustream") continue;
      if (probeArgs[0] !== "healthcheck") {
        problems.push(`${at}: probe runs "distribustream ${probeArgs[0]}", not healthcheck`);
        continue;
      }
      const r = await runOnce(probeArgs, () =>
        run(process.execPath, [cli, ...probeArgs.map(fix)], { cwd: root, env: baseEnv }),
      );
      if (r.code === 2 || typeof r.code !== "number")
        problems.push(`${at}: probe "${probe.exec.command.join(" ")}" is refused: ${r.err.trim()}`);
    }

    const [sub, ...rest] = args;
    if (sub === "dsclient") {
      for (const a of rest.filter((x) => x.startsWith("-")))
        if (!dsclientFlags.has(a.split("=")[0])) problems.push(`${at}: dsclient has no flag ${a}`);
      return;
    }
    const situation = {
      args: args.map((a) => a.replaceAll(root, "<root>")),
      env: sym,
      mounts: (c.volumeMounts ?? []).map((m) => [m.mountPath, volumes.get(m.name), configMapsOf(m.name)]),
      init: (spec.initContainers ?? []).map((i) => [i.command, i.args]),
    };
    const r = await runOnce(situation, () =>
      run(process.execPath, [cli, ...args, "--check-config"], { cwd: root, env: { ...baseEnv, ...env } }),
    );
    if (r.code !== 0 || !r.out.startsWith("configuration ok\n"))
      problems.push(`${at}: distribustream ${args.join(" ")} --check-config exited ${r.code}: ${r.err.trim()}`);
  }
}

/** Every pod of the rendered objects checked; resolves to all problems. */
export async function checkPods(objects, opts) {
  const workloads = objects.filter((o) => ["Deployment", "StatefulSet", "Pod"].includes(o.kind));
  const all = await Promise.all(
    workloads.flatMap((w) =>
      podsOf(w).map((pod) => checkPod(objects, w, pod, { ...opts, root: join(opts.root, pod) })),
    ),
  );
  return all.flat();
}
