// The Helm chart's tests (npm run test:helm, or test/helm/run.sh): render the
// chart for every values file in test/helm/values with test/helm/render (Go
// text/template + Sprig, as Helm), then check the values against
// values.schema.json, every object against the Kubernetes OpenAPI schemas
// (kubernetes-models 5.1.0: Kubernetes 1.34), the references a typo breaks, what an
// operator relies on, and that the CLI accepts what the chart gives it: every
// container's command line and environment run with --check-config against
// the built CLI, its volumes written out (see pods.mjs).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, basename } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { describe, test, before } from "node:test";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import Ajv from "ajv";
import { checkPods, FakeSecrets } from "./pods.mjs";

const root = fileURLToPath(new URL("../..", import.meta.url));
const chart = join(root, "deploy/helm/distribustream");
const here = join(root, "test/helm");
const cli = join(root, "cmd/distribustream/bin/distribustream.js");
const work = mkdtempSync(join(tmpdir(), "ds-helm-"));
const renderBin = process.env.DS_HELM_RENDER ?? join(work, "render");

function render(args, { expectFail = false } = {}) {
  const r = spawnSync(renderBin, ["--chart", chart, "--release", "ds", "--namespace", "streaming", ...args], {
    encoding: "utf8",
  });
  if (expectFail) {
    assert.notEqual(r.status, 0, "the render should have failed");
    return r.stderr;
  }
  assert.equal(r.status, 0, `render ${args.join(" ")} failed:\n${r.stderr}`);
  const out = JSON.parse(r.stdout);
  const objects = [];
  for (const [file, text] of Object.entries(out.files)) {
    for (const doc of parseAllDocuments(text)) {
      assert.deepEqual(doc.errors, [], `${file}: YAML error ${doc.errors.join("; ")}\n${text}`);
      const obj = doc.toJS();
      if (obj != null) objects.push({ ...obj, _file: file });
    }
  }
  return { objects, notes: out.notes, values: out.values };
}

const find = (objs, kind, nameSuffix) => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name.endsWith(nameSuffix));
  assert.ok(o, `no ${kind} named *${nameSuffix}`);
  return o;
};
const podSpec = (o) => (o.kind === "Pod" ? o.spec : o.spec?.template?.spec);
const workloads = (objs) => objs.filter((o) => ["Deployment", "StatefulSet", "Pod"].includes(o.kind));
const containersOf = (o) => [...(podSpec(o).initContainers ?? []), ...podSpec(o).containers];
const envOf = (c) => Object.fromEntries((c.env ?? []).map((e) => [e.name, e]));

const schema = JSON.parse(readFileSync(join(chart, "values.schema.json"), "utf8"));
const ajv = new Ajv({ allErrors: true, strict: false });
const validateValues = ajv.compile(schema);
const schemaErrors = (values) =>
  validateValues(values)
    ? []
    : validateValues.errors.map(
        (e) =>
          `${e.instancePath || "/"} ${e.message}` +
          (e.params?.additionalProperty ? ` (${e.params.additionalProperty})` : "") +
          (e.params?.allowedValues ? ` (${e.params.allowedValues.join(", ")})` : ""),
      );

/** Kubernetes models by apiVersion and kind: kubernetes-models/GROUP/VERSION/KIND. */
async function modelFor(apiVersion, kind) {
  const path = apiVersion.includes("/") ? apiVersion : `v1`;
  try {
    return (await import(`kubernetes-models/${path}/${kind}`))[kind];
  } catch {
    return undefined;
  }
}

before(() => {
  if (!process.env.DS_HELM_RENDER) {
    const r = spawnSync("go", ["build", "-o", renderBin, "."], {
      cwd: join(here, "render"),
      env: { ...process.env, GO111MODULE: "off", GOPATH: "/usr/share/gocode", GOFLAGS: "" },
      encoding: "utf8",
    });
    assert.equal(r.status, 0, `go build of the renderer failed (run test/helm/run.sh):\n${r.stderr}`);
  }
});

const scenarios = [
  ["defaults", []],
  ...readdirSync(join(here, "values"))
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f) => [basename(f, ".yaml"), ["-f", join(here, "values", f)]]),
];

/** Secrets (and keys) a scenario names as existing, made by the operator. */
function existingSecrets(values) {
  const names = new Set();
  (function walk(v, key) {
    if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, k);
    else if ((key === "existingSecret" || key === "caSecret") && v) names.add(v);
  })(values, "");
  return names;
}

/**
 * Every scenario rendered once, and its CLI checks started at once: they run
 * child processes, in parallel (pods.mjs limits how many), while the other
 * tests run.
 */
const rendered = new Map();
const cliChecks = new Map();
const fakes = new FakeSecrets(work);
let dsclientFlags;
const camel = (s) => s.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
before(() => {
  for (const [name, args] of scenarios) {
    const r = render(args);
    rendered.set(name, r);
    const check = cliProblems(r.objects, name);
    check.catch(() => {}); // awaited by its test
    cliChecks.set(name, check);
  }
});

for (const [name] of scenarios) {
  describe(`chart rendered with ${name}`, () => {
    let r;
    before(() => {
      r = rendered.get(name);
    });

    test("the values pass values.schema.json", () => {
      assert.deepEqual(schemaErrors(r.values), []);
    });

    test("every object is valid against the Kubernetes 1.34 OpenAPI schema", async () => {
      const problems = [];
      for (const o of r.objects) {
        if (o.apiVersion === "monitoring.coreos.com/v1") continue; // a CRD: kubeconform checks it in CI
        const Model = await modelFor(o.apiVersion, o.kind);
        if (!Model) {
          problems.push(`${o.kind} ${o.apiVersion}: no such Kubernetes model`);
          continue;
        }
        const { _file, ...obj } = o;
        try {
          new Model(obj).validate();
        } catch (err) {
          problems.push(`${_file} ${o.kind}/${o.metadata?.name}: ${err.message}`);
        }
      }
      assert.deepEqual(problems, []);
    });

    test("objects carry the app.kubernetes.io labels and the release namespace", () => {
      for (const o of r.objects) {
        const l = o.metadata.labels ?? {};
        for (const k of ["name", "instance", "component", "managed-by", "version"])
          assert.ok(l[`app.kubernetes.io/${k}`], `${o.kind}/${o.metadata.name} lacks app.kubernetes.io/${k}`);
        assert.equal(o.metadata.namespace, "streaming", `${o.kind}/${o.metadata.name}`);
      }
    });

    test("every Service selects pods that have its target ports", () => {
      for (const svc of r.objects.filter((o) => o.kind === "Service")) {
        const sel = svc.spec.selector;
        assert.ok(sel && Object.keys(sel).length > 0, `Service ${svc.metadata.name} has no selector`);
        const pods = workloads(r.objects).filter((w) => {
          const labels = w.kind === "Pod" ? w.metadata.labels : w.spec.template.metadata.labels;
          // statefulset.kubernetes.io/pod-name is set by the StatefulSet controller
          return Object.entries(sel).every(
            ([k, v]) => labels[k] === v || (k === "statefulset.kubernetes.io/pod-name" && w.kind === "StatefulSet"),
          );
        });
        assert.ok(pods.length > 0, `Service ${svc.metadata.name} selects no pod template`);
        for (const port of svc.spec.ports) {
          for (const p of pods) {
            const ports = containersOf(p).flatMap((c) => c.ports ?? []);
            const ok = ports.some((cp) => cp.name === port.targetPort || cp.containerPort === port.targetPort);
            assert.ok(
              ok,
              `Service ${svc.metadata.name} port ${port.name}: ${p.metadata.name} has no ${port.targetPort}`,
            );
          }
        }
      }
    });

    test("probe ports exist in their containers", () => {
      for (const w of workloads(r.objects))
        for (const c of containersOf(w))
          for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe].filter(Boolean)) {
            const port = probe.httpGet?.port ?? probe.tcpSocket?.port;
            if (port === undefined) continue;
            const ok = (c.ports ?? []).some((p) => p.name === port || p.containerPort === port);
            assert.ok(ok, `${w.metadata.name}/${c.name}: probe port ${port} is not a container port`);
          }
    });

    test("every referenced Secret and ConfigMap key is rendered or named as existing", () => {
      const existing = existingSecrets(r.values);
      const rendered = new Map(
        r.objects
          .filter((o) => o.kind === "Secret" || o.kind === "ConfigMap")
          .map((o) => [`${o.kind}/${o.metadata.name}`, Object.keys({ ...o.data, ...o.stringData })]),
      );
      const check = (kind, name, key, where) => {
        const keys = rendered.get(`${kind}/${name}`);
        if (keys) assert.ok(keys.includes(key), `${where}: ${kind} ${name} has no key ${key}`);
        else
          assert.ok(
            kind === "Secret" && existing.has(name),
            `${where}: ${kind} ${name} is neither rendered nor an existingSecret`,
          );
      };
      for (const w of workloads(r.objects)) {
        const spec = podSpec(w);
        for (const c of containersOf(w))
          for (const e of c.env ?? []) {
            const ref = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef;
            if (ref)
              check(
                e.valueFrom.secretKeyRef ? "Secret" : "ConfigMap",
                ref.name,
                ref.key,
                `${w.metadata.name} env ${e.name}`,
              );
          }
        for (const v of spec.volumes ?? []) {
          const sources = v.projected ? v.projected.sources : [v];
          for (const s of sources) {
            const ref = s.secret
              ? ["Secret", s.secret.secretName ?? s.secret.name, s.secret.items]
              : s.configMap
                ? ["ConfigMap", s.configMap.name, s.configMap.items]
                : undefined;
            if (!ref) continue;
            if (!rendered.has(`${ref[0]}/${ref[1]}`)) check(ref[0], ref[1], "", `${w.metadata.name} volume ${v.name}`);
            for (const item of ref[2] ?? []) check(ref[0], ref[1], item.key, `${w.metadata.name} volume ${v.name}`);
          }
        }
      }
    });

    test("every pod is hardened: non-root, read-only root, no capabilities, seccomp, resources", () => {
      for (const w of workloads(r.objects)) {
        const spec = podSpec(w);
        assert.equal(spec.securityContext?.runAsNonRoot, true, `${w.metadata.name}: runAsNonRoot`);
        assert.equal(spec.securityContext?.seccompProfile?.type, "RuntimeDefault", `${w.metadata.name}: seccomp`);
        assert.equal(spec.automountServiceAccountToken, false, `${w.metadata.name}: service account token`);
        for (const c of containersOf(w)) {
          const sc = c.securityContext ?? {};
          const at = `${w.metadata.name}/${c.name}`;
          assert.equal(sc.readOnlyRootFilesystem, true, `${at}: readOnlyRootFilesystem`);
          assert.equal(sc.allowPrivilegeEscalation, false, `${at}: allowPrivilegeEscalation`);
          assert.deepEqual(sc.capabilities?.drop, ["ALL"], `${at}: capabilities`);
          assert.ok(c.resources?.requests?.cpu && c.resources?.requests?.memory, `${at}: resource requests`);
          assert.ok(c.resources?.limits?.memory, `${at}: memory limit`);
        }
      }
    });

    test("every container's command line and environment pass distribustream --check-config", async () => {
      assert.deepEqual(await cliChecks.get(name), []);
    });
  });
}

describe("what an operator relies on", () => {
  test("trackers: LoadBalancer keeping peer addresses, gRPC-health readiness, liveness without Redis, drain", () => {
    const { objects } = render([]);
    const svc = find(objects, "Service", "-tracker");
    assert.equal(svc.spec.type, "LoadBalancer");
    assert.equal(svc.spec.externalTrafficPolicy, "Local");
    assert.equal(svc.spec.ports[0].port, 6086);
    const dep = find(objects, "Deployment", "-tracker");
    const c = dep.spec.template.spec.containers[0];
    assert.deepEqual(c.readinessProbe.exec.command, ["distribustream", "healthcheck", "grpc://127.0.0.1:6086"]);
    assert.equal(c.livenessProbe.exec, undefined, "liveness must not be the gRPC health (it follows Redis)");
    assert.equal(c.livenessProbe.tcpSocket.port, "pdtp");
    assert.doesNotMatch(JSON.stringify(c.livenessProbe), /redis|healthcheck/i);
    const preStop = Number(c.lifecycle.preStop.exec.command[1]);
    assert.ok(preStop > 0 && dep.spec.template.spec.terminationGracePeriodSeconds > preStop + 20);
    assert.equal(dep.spec.replicas, undefined, "the HPA owns the replica count");
    const hpa = find(objects, "HorizontalPodAutoscaler", "-tracker");
    assert.equal(hpa.apiVersion, "autoscaling/v2");
    assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: "apps/v1", kind: "Deployment", name: dep.metadata.name });
    assert.equal(hpa.spec.minReplicas, 2);
    const pdb = find(objects, "PodDisruptionBudget", "-tracker");
    assert.deepEqual(pdb.spec.selector.matchLabels, dep.spec.selector.matchLabels);
    assert.ok(dep.spec.template.spec.topologySpreadConstraints.length >= 1);
    assert.ok(c.args.includes("--require-keys"), "a missing key stops the tracker instead of making a new one");
  });

  test("autoscaling off: a fixed replica count and no HPA", () => {
    const { objects } = render(["-f", join(here, "values/autoscaling-off.yaml")]);
    assert.equal(find(objects, "Deployment", "-tracker").spec.replicas, 3);
    assert.equal(objects.filter((o) => o.kind === "HorizontalPodAutoscaler").length, 0);
  });

  test("one ticket key Secret, mounted by every tracker replica; the generated keys and credentials work", async () => {
    const { objects } = render([]);
    const keySecrets = objects.filter((o) => o.kind === "Secret" && o.data?.["ticket-key.pem"]);
    assert.equal(keySecrets.length, 1);
    const dep = find(objects, "Deployment", "-tracker");
    const keys = dep.spec.template.spec.volumes.find((v) => v.name === "keys");
    assert.deepEqual(
      keys.projected.sources.map((s) => s.secret.name),
      [keySecrets[0].metadata.name, find(objects, "Secret", "-seeder-auth").metadata.name],
    );
    assert.ok(dep.spec.template.spec.containers[0].args.join(" ").includes("--ticket-key /data/keys/ticket-key.pem"));
    const { Signer } = await import("@distribustream/pdtp");
    const b64 = (o, k) => Buffer.from(o.data[k], "base64").toString("utf8");
    for (const [secret, key] of [
      ["-ticket-key", "ticket-key.pem"],
      ["-network-key", "network-key.pem"],
    ])
      assert.match(Signer.fromPem(b64(find(objects, "Secret", secret), key)).keyId, /./);
    const { readTokenFile, verifyToken } = await import("@distribustream/tracker");
    const auth = find(objects, "Secret", "-seeder-auth");
    writeFileSync(join(work, "seeder-tokens"), b64(auth, "seeder-tokens"));
    const entries = readTokenFile(join(work, "seeder-tokens"));
    const verdict = verifyToken(b64(auth, "seeder-token"), new Map(entries.map((e) => [e.id, e])));
    assert.deepEqual(verdict, { ok: true, id: entries[0].id });
    assert.ok(b64(find(objects, "Secret", "-dashboard-auth"), "dashboard-token").length >= 16);
  });

  test("generated Secrets are kept across helm upgrade (lookup) and helm uninstall (keep policy)", () => {
    const first = render([]).objects.filter((o) => o.kind === "Secret");
    const again = render([]).objects.filter((o) => o.kind === "Secret");
    assert.notDeepEqual(
      first.map((s) => s.data),
      again.map((s) => s.data),
      "without lookup each render generates new values (as helm template does)",
    );
    const live = join(work, "live-secrets.yaml");
    writeFileSync(live, first.map(({ _file, ...s }) => JSON.stringify(s)).join("\n---\n"));
    const upgraded = render(["--existing", live, "--upgrade"]).objects.filter((o) => o.kind === "Secret");
    assert.deepEqual(
      upgraded.map((s) => [s.metadata.name, s.data]),
      first.map((s) => [s.metadata.name, s.data]),
    );
    for (const s of first) assert.equal(s.metadata.annotations["helm.sh/resource-policy"], "keep", s.metadata.name);
  });

  test("external Redis Cluster with TLS and existingSecrets: no generated Secret, password and CA from Secrets", () => {
    const { objects } = render(["-f", join(here, "values/external-redis-cluster-tls.yaml")]);
    assert.equal(objects.filter((o) => o.kind === "Secret").length, 0);
    assert.equal(objects.filter((o) => o.metadata.name.endsWith("-redis")).length, 0);
    for (const name of ["-tracker", "-dashboard"]) {
      const c = find(objects, "Deployment", name).spec.template.spec.containers[0];
      const env = envOf(c);
      assert.deepEqual(env.REDIS_PASSWORD.valueFrom.secretKeyRef, { name: "redis-auth", key: "password" });
      assert.equal(
        env.DS_REDIS.value,
        "rediss+cluster://:$(REDIS_PASSWORD)@redis-0.redis.data:6379,redis-1.redis.data:6379,redis-2.redis.data:6379",
      );
      assert.ok(c.args.join(" ").includes("--redis-ca /etc/distribustream/redis-ca/ca.crt"));
      assert.ok(c.volumeMounts.some((m) => m.mountPath === "/etc/distribustream/redis-ca"));
    }
    const keys = find(objects, "Deployment", "-tracker").spec.template.spec.volumes.find((v) => v.name === "keys");
    assert.deepEqual(
      keys.projected.sources.map((s) => s.secret.name),
      ["ds-ticket-key", "ds-seeder-auth"],
    );
  });

  test("the checksum service admits only the trackers (and the dashboard and scraper on metrics)", () => {
    const { objects } = render([]);
    assert.equal(find(objects, "Service", "-checksum").spec.type, "ClusterIP");
    const np = find(objects, "NetworkPolicy", "-checksum");
    const tracker = find(objects, "Deployment", "-tracker").spec.selector.matchLabels;
    const dashboard = find(objects, "Deployment", "-dashboard").spec.selector.matchLabels;
    assert.deepEqual(
      np.spec.podSelector.matchLabels,
      find(objects, "Deployment", "-checksum").spec.selector.matchLabels,
    );
    assert.deepEqual(np.spec.policyTypes, ["Ingress"]);
    const grpc = np.spec.ingress.find((rule) => rule.ports.some((p) => p.port === "grpc"));
    assert.deepEqual(grpc.from, [{ podSelector: { matchLabels: tracker } }]);
    const metrics = np.spec.ingress.find((rule) => rule.ports.some((p) => p.port === "metrics"));
    assert.deepEqual(metrics.from[0], { podSelector: { matchLabels: dashboard } });
    assert.equal(metrics.from[1].podSelector.matchLabels["app.kubernetes.io/name"], "prometheus");
    for (const rule of np.spec.ingress) assert.ok(rule.from.length > 0, "an empty from admits everyone");
    const off = render(["--set", "dashboard.enabled=false", "--set", "checksum.networkPolicy.metricsFrom=null"]);
    const np2 = find(off.objects, "NetworkPolicy", "-checksum");
    assert.equal(np2.spec.ingress.length, 1, "no metrics rule rather than one admitting everyone");
  });

  test("seeders: advertised address per pod (hostPort, NodePort, LoadBalancer) and internal address", () => {
    const def = find(render([]).objects, "StatefulSet", "-seeder").spec.template.spec.containers[0];
    assert.equal(envOf(def).DS_ADVERTISE.value, "$(NODE_IP):8000");
    assert.equal(envOf(def).NODE_IP.valueFrom.fieldRef.fieldPath, "status.hostIP");
    assert.equal(envOf(def).DS_INTERNAL_ADDRESS.value, "$(POD_IP):8000");
    assert.equal(def.ports.find((p) => p.name === "data").hostPort, 8000);

    const np = render(["-f", join(here, "values/nodeport.yaml")]).objects;
    const sts = find(np, "StatefulSet", "-seeder");
    const c = sts.spec.template.spec.containers[0];
    assert.equal(envOf(c).DS_ADVERTISE, undefined);
    assert.ok(c.args.join(" ").includes("--conf /etc/distribustream/seeder/$(POD_NAME).yml"));
    const cm = find(np, "ConfigMap", "-seeder-advertise");
    for (const i of [0, 1]) {
      const pod = `${sts.metadata.name}-${i}`;
      assert.deepEqual(parseYaml(cm.data[`${pod}.yml`]), { advertise: `peers.example.net:${30800 + i}` });
      const svc = find(np, "Service", `-seeder-${i}`);
      assert.equal(svc.spec.type, "NodePort");
      assert.equal(svc.spec.ports[0].nodePort, 30800 + i);
      assert.equal(svc.spec.selector["statefulset.kubernetes.io/pod-name"], pod);
    }
    const trackerSvc = find(np, "Service", "-tracker");
    assert.equal(trackerSvc.spec.ports[0].nodePort, 30086);
    assert.equal(trackerSvc.spec.externalTrafficPolicy, "Local");

    const lb = render(["-f", join(here, "values/seeders-loadbalancer.yaml")]).objects;
    const lbCm = find(lb, "ConfigMap", "-seeder-advertise");
    assert.deepEqual(
      Object.values(lbCm.data).map((t) => parseYaml(t).advertise),
      ["seed-0.example.net:8000", "seed-1.example.net:8000"],
    );
    assert.equal(find(lb, "Service", "-seeder-1").spec.type, "LoadBalancer");
  });

  test("seeders: ready by the metrics server's /healthz, alive by its /livez, token from the mounted Secret, origin ranges allowed", () => {
    const def = find(render([]).objects, "StatefulSet", "-seeder").spec.template.spec.containers[0];
    assert.deepEqual(def.readinessProbe.exec.command, [
      "distribustream",
      "healthcheck",
      "http://127.0.0.1:9087/healthz",
    ]);
    assert.deepEqual(def.livenessProbe.exec.command, ["distribustream", "healthcheck", "http://127.0.0.1:9087/livez"]);
    const cs = find(render([]).objects, "Deployment", "-checksum").spec.template.spec.containers[0];
    assert.equal(cs.livenessProbe.httpGet.path, "/livez", "liveness never follows readiness");
    assert.ok(def.args.join(" ").includes("--token-file /data/keys/seeder-token"));
    assert.equal(envOf(def).DS_TOKEN_FILE, undefined);
    assert.ok(!def.args.includes("--origin-allow"), "nothing allowed by default");

    const all = render(["-f", join(here, "values/everything.yaml")]).objects;
    const argsOf = (kind, suffix) => find(all, kind, suffix).spec.template.spec.containers[0].args;
    const allowed = (args) => args.flatMap((a, i) => (args[i - 1] === "--origin-allow" ? [a] : []));
    assert.deepEqual(allowed(argsOf("StatefulSet", "-seeder")), ["10.20.0.0/16", "192.168.7.9"]);
    assert.deepEqual(allowed(argsOf("Deployment", "-checksum")), ["10.20.0.0/16"]);
  });

  test("dashboard Ingress with TLS; NOTES give the pdtp:// URL and dashboard address for the Service type", () => {
    const r = render(["-f", join(here, "values/ingress-tls.yaml")]);
    const ing = find(r.objects, "Ingress", "-dashboard");
    assert.equal(ing.spec.ingressClassName, "nginx");
    assert.deepEqual(ing.spec.tls, [{ hosts: ["dashboard.example.net"], secretName: "dashboard.example.net-tls" }]);
    assert.equal(ing.metadata.annotations["cert-manager.io/cluster-issuer"], "letsencrypt");
    assert.match(r.notes, /https:\/\/dashboard\.example\.net\//);
    assert.match(r.notes, /dsclient pdtp:\/\/\$PDTP_HOST:6086\/demo\.bin/);
    assert.match(
      render(["-f", join(here, "values/nodeport.yaml")]).notes,
      /nodePort.*\n.*\n.*pdtp:\/\/\$PDTP_HOST:\$PDTP_PORT\/demo\.bin/,
    );
    assert.match(
      render(["-f", join(here, "values/minimal-clusterip.yaml")]).notes,
      /pdtp:\/\/ds-distribustream-tracker\.streaming\.svc:6086\//,
    );
  });

  test("helm test downloads the demo file through the trackers with dsclient", () => {
    const pod = find(render([]).objects, "Pod", "-test-download");
    assert.equal(pod.metadata.annotations["helm.sh/hook"], "test");
    assert.deepEqual(pod.spec.containers[0].args.slice(0, 2), [
      "dsclient",
      "pdtp://ds-distribustream-tracker:6086/demo.bin",
    ]);
  });

  test("values the templates refuse together fail with every message at once", () => {
    const err = render(
      [
        "--set",
        "redis.enabled=false",
        "--set",
        "tracker.autoscaling.minReplicas=5",
        "--set",
        "tracker.autoscaling.maxReplicas=3",
        "--set",
        "seeder.expose.type=NodePort",
      ],
      { expectFail: true },
    );
    assert.match(err, /externalRedis\.url: give the swarm store's URL/);
    assert.match(err, /minReplicas \(5\) is greater than maxReplicas \(3\)/);
    assert.match(err, /seeder\.expose\.advertiseHost: with NodePort/);
  });
});

describe("bad values files are refused by values.schema.json with a clear message", () => {
  for (const f of readdirSync(join(here, "bad-values")).filter((x) => x.endsWith(".yaml"))) {
    test(f, () => {
      const text = readFileSync(join(here, "bad-values", f), "utf8");
      const expected = /^# expect: (.+)$/m.exec(text)[1];
      const { values } = render(["--values-only", "-f", join(here, "bad-values", f)]);
      assert.ok(
        schemaErrors(values).includes(expected),
        `expected "${expected}", got:\n${schemaErrors(values).join("\n")}`,
      );
    });
  }
});

// ---------------------------------------------------------------------------
// The CLI accepts what the chart renders.

describe("a template's misspelt flag or setting fails the check", () => {
  test("a tracker flag misspelt in one rendered container", async () => {
    const { objects } = render([]);
    const tamper = (c, args) =>
      c.name === "tracker" ? args.map((a) => a.replace("--ticket-key", "--ticket-kye")) : args;
    const problems = await cliProblems(objects, "tampered-flag", tamper);
    assert.equal(problems.length, 1, problems.join("\n"));
    assert.match(problems[0], /-tracker-.*\/tracker: .*exited 2: error: unknown option '--ticket-kye'/);
  });

  test("a seeder env variable that names no setting, and a bad value", async () => {
    const { objects } = render([]);
    const sts = find(objects, "StatefulSet", "-seeder");
    const env = sts.spec.template.spec.containers[0].env;
    env.push({ name: "DS_TOKEN_FILE", value: "/data/keys/seeder-token" });
    env.find((e) => e.name === "DS_INTERNAL_ADDRESS").value = "$(POD_IP):80000";
    const problems = await cliProblems(objects, "tampered-env");
    assert.equal(problems.length, 2, problems.join("\n"));
    assert.match(problems[0], /seeder: DS_TOKEN_FILE is no setting of "distribustream seeder"/);
    assert.match(
      problems[1],
      /seeder: .*exited 2: distribustream: invalid setting internal_address from DS_INTERNAL_ADDRESS/,
    );
  });
});

/**
 * What the CLI refuses of the rendered pods: each container run with
 * --check-config (pods.mjs), and each DS_* variable naming a setting of its
 * command (the CLI ignores other DS_* names, so a misspelt one would pass
 * unnoticed).
 */
async function cliProblems(objects, scenario, tamper) {
  if (!dsclientFlags) {
    const text = spawnSync(process.execPath, [cli, "dsclient", "--help"], { encoding: "utf8" }).stdout;
    dsclientFlags = new Set([...text.matchAll(/^\s+(?:(-\w), )?(--[a-z0-9-]+)/gm)].flatMap((m) => m.slice(1, 3)));
    assert.ok(dsclientFlags.has("--output"), `distribustream dsclient --help lists no --output:\n${text}`);
  }
  const config = await import(join(root, "cmd/distribustream/dist/config.js"));
  const shape = (schema) => schema.shape ?? schema._def?.schema?.shape ?? schema.def?.in?.shape ?? {};
  const schemas = {
    tracker: config.trackerSchema,
    seeder: config.seederSchema,
    checksum: config.checksumSchema,
    dashboard: config.dashboardSchema,
  };
  const problems = [];
  for (const w of workloads(objects))
    for (const c of containersOf(w)) {
      const schema = !c.command && schemas[c.args?.[0]];
      if (!schema) continue;
      const keys = Object.keys(shape(schema));
      assert.ok(keys.length > 0, `no settings found in the ${c.args[0]} schema`);
      for (const e of c.env ?? []) {
        if (!e.name.startsWith("DS_") || e.name === "DS_CONF") continue;
        const key = camel(e.name.slice(3).toLowerCase().replace(/_/g, "-"));
        if (!keys.includes(key))
          problems.push(`${w.metadata.name}/${c.name}: ${e.name} is no setting of "distribustream ${c.args[0]}"`);
      }
    }
  const runs = await checkPods(objects, { root: join(work, "pods", scenario), cli, dsclientFlags, fakes, tamper });
  return [...problems, ...runs];
}
