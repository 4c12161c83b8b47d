// docker-compose.yml end to end with a real Docker engine (run by test/compose/run.sh, which
// sets the environment: COMPOSE, COMPOSE_PROJECT_NAME, the ports published on 127.0.0.1,
// DS_IMAGE). The stack is reached only through those ports and the project's network.
// Steps depend on each other, in order: up and healthy, downloads and live from the host,
// the dashboard, a tracker replica killed, Redis restarted, a seeder without credential,
// keys kept by `down`, and `down -v`.
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const DSCLIENT = join(root, "packages/client/bin/dsclient.js");
const env = process.env;
const COMPOSE = (env.COMPOSE ?? "docker-compose").split(" ");
const PROJECT = env.COMPOSE_PROJECT_NAME ?? "dstest";
const TRACKER = `127.0.0.1:${env.TRACKER_PORT ?? "26086"}`;
const DASHBOARD = `http://127.0.0.1:${env.DASHBOARD_PORT ?? "26087"}`;
const IMAGE = env.DS_IMAGE ?? "distribustream:compose-test";
const NETWORK = `${PROJECT}_default`;
const LONG_RUNNING = ["redis", "checksum", "tracker-1", "tracker-2", "proxy", "seeder", "dashboard"];
const ONE_SHOTS = ["keys", "demo-media"];

/** `docker compose ARGS` (or docker-compose) in the repository root; its stdout. */
function compose(...args) {
  return execFileSync(COMPOSE[0], [...COMPOSE.slice(1), ...args], {
    cwd: root,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

function docker(...args) {
  return execFileSync("docker", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

/** The container id of a service of the project ("" when there is none); docker, not compose: much quicker. */
function container(service) {
  return docker(
    "ps",
    "-aq",
    "--filter",
    `label=com.docker.compose.project=${PROJECT}`,
    "--filter",
    `label=com.docker.compose.service=${service}`,
  ).split("\n")[0];
}

/** "healthy", "starting", "unhealthy", "exited 0", "running" (no healthcheck), "missing". */
function state(service) {
  const id = container(service);
  if (!id) return "missing";
  const s = JSON.parse(docker("inspect", "-f", "{{json .State}}", id));
  if (s.Status === "exited") return `exited ${s.ExitCode}`;
  return s.Health ? s.Health.Status : s.Status;
}

async function until(what, check, timeoutMs, everyMs = 1000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last === true) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  assert.fail(`${what}: not within ${timeoutMs / 1000} s (last: ${JSON.stringify(last)})`);
}

const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");
const figure = (text) => console.log(`# figure: ${text}`);

/** dsclient on the host downloads NAME through the published tracker port; its exit code and stderr. */
function download(name, out) {
  const r = spawnSync(process.execPath, [DSCLIENT, `pdtp://${TRACKER}/${name}`, "-o", out, "-q"], {
    encoding: "utf8",
    timeout: 120_000,
  });
  return { code: r.status, stderr: r.stderr };
}

function seederSha(file) {
  return docker("exec", container("seeder"), "sha256sum", `/data/media/${file}`).split(/\s+/)[0];
}

async function stats(token) {
  const get = () =>
    fetch(`${DASHBOARD}/api/stats.json`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  // once more when a kept-alive connection was closed by the server as it was reused
  const res = await get().catch(get);
  return { status: res.status, body: res.ok ? await res.json() : undefined };
}

const completedOf = (body, name) => body.streams.find((s) => s.name === name)?.completed ?? 0;

describe("docker-compose.yml with a real engine", { timeout: 480_000 }, () => {
  let dir;
  let dashboardToken;
  /** Every step needs the stack up: when that fails, the rest are skipped rather than piled on. */
  let notUp;
  const step = (name, fn) =>
    test(name, async (t) => {
      if (notUp) return t.skip("the stack did not come up");
      try {
        await fn(t);
      } catch (err) {
        if (name.startsWith("up:")) notUp = true;
        throw err;
      }
    });

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "ds-compose-"));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  step("up: the one-shots succeed and every service turns healthy", async () => {
    const t0 = Date.now();
    compose("up", "-d");
    await until(
      "every service healthy",
      () => {
        const states = Object.fromEntries([...ONE_SHOTS, ...LONG_RUNNING].map((s) => [s, state(s)]));
        for (const s of ONE_SHOTS)
          assert.doesNotMatch(states[s], /^exited [1-9]/, `${s} failed: ${compose("logs", s)}`);
        const ok =
          ONE_SHOTS.every((s) => states[s] === "exited 0") &&
          LONG_RUNNING.every((s) => states[s] === "healthy" || (s === "proxy" && states[s] === "running"));
        return ok || states;
      },
      180_000,
    );
    figure(`up -d to every service healthy: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const published = docker("ps", "--filter", `label=com.docker.compose.project=${PROJECT}`, "--format", "{{.Ports}}");
    for (const line of published.split("\n"))
      for (const binding of line.match(/[\d.:[\]]+->\d+\/tcp/g) ?? [])
        assert.match(binding, /^127\.0\.0\.1:/, `published on loopback only in the test: ${binding}`);
    assert.deepEqual(
      published
        .match(/->\d+\/tcp/g)
        .map((p) => p.slice(2))
        .sort(),
      ["6086/tcp", "6087/tcp", "8000/tcp"],
      "only the tracker proxy, the dashboard and the seeder's data plane are published",
    );
  });

  step("dsclient on the host downloads demo.bin, byte-identical to the seeder's copy", () => {
    const out = join(dir, "first.bin");
    const r = download("demo.bin", out);
    assert.equal(r.code, 0, `dsclient exit ${r.code}: ${r.stderr}`);
    assert.equal(sha256(readFileSync(out)), seederSha("demo.bin"));
  });

  step("the live demo: tuned in from the host, ffmpeg decodes it without a word", async () => {
    const exited = (p) => new Promise((r) => p.on("exit", (code) => r(code)));
    const viewer = spawn(process.execPath, [DSCLIENT, `pdtp://${TRACKER}/demo-live`, "-o", "-", "-q"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const viewerExit = exited(viewer);
    // five seconds of media, decoded as it arrives; ffmpeg closing the pipe ends the viewer (exit 0)
    const ffmpeg = spawn("ffmpeg", ["-v", "error", "-nostdin", "-i", "-", "-t", "5", "-f", "null", "-"], {
      stdio: ["pipe", "ignore", "pipe"],
    });
    const ffmpegExit = exited(ffmpeg);
    const bytes = [];
    viewer.stdout.on("data", (b) => bytes.push(b));
    viewer.stdout.pipe(ffmpeg.stdin);
    ffmpeg.stdin.on("error", () => {}); // ffmpeg done: the viewer's next write finds the pipe closed
    let viewerErr = "";
    let ffmpegErr = "";
    viewer.stderr.setEncoding("utf8").on("data", (t) => (viewerErr += t));
    ffmpeg.stderr.setEncoding("utf8").on("data", (t) => (ffmpegErr += t));
    const kill = setTimeout(() => viewer.kill("SIGKILL"), 60_000);
    const ffmpegCode = await ffmpegExit;
    viewer.stdout.unpipe(ffmpeg.stdin);
    viewer.kill("SIGTERM");
    await viewerExit;
    clearTimeout(kill);
    const said = ffmpegErr.split("\n").slice(0, 8).join("\n");
    assert.ok(ffmpegErr === "", `ffmpeg -v error says nothing; it said:\n${said}\n(viewer: ${viewerErr.slice(-2000)})`);
    assert.equal(ffmpegCode, 0);
    // what the viewer wrote holds those seconds of video, whole frames from the first byte
    const file = join(dir, "live.ts");
    execFileSync("sh", ["-c", 'cat > "$0"', file], { input: Buffer.concat(bytes) });
    const frames = Number(
      execFileSync(
        "ffprobe",
        ["-v", "error", "-count_frames", "-select_streams", "v", "-show_entries", "stream=nb_read_frames"].concat([
          "-of",
          "csv=p=0",
          file,
        ]),
        { encoding: "utf8" },
      )
        .trim()
        .split(/\s+/)[0], // an MPEG-TS program lists its video stream twice: under the program and on its own
    );
    assert.ok(frames >= 100, `at least 4 s of 25 fps video decoded: ${frames} frames`);
  });

  step("the dashboard's /api/stats.json counts the download, with the token from the keys volume", async () => {
    dashboardToken = docker("exec", container("dashboard"), "cat", "/data/keys/dashboard-token");
    assert.equal((await stats()).status, 401, "no token, no stats: the dashboard is published");
    await until(
      "demo.bin counted as completed",
      async () => {
        const { status, body } = await stats(dashboardToken);
        return (
          (status === 200 && completedOf(body, "demo.bin") >= 1) || {
            status,
            completed: body && completedOf(body, "demo.bin"),
          }
        );
      },
      20_000,
    );
    const { body } = await stats(dashboardToken);
    assert.equal(body.fleet.replicas.filter((r) => r.alive).length, 2, "both tracker replicas heard");
  });

  step("tracker-1 killed: a second download finishes through the other replica", async () => {
    const before = completedOf((await stats(dashboardToken)).body, "demo.bin");
    docker("kill", container("tracker-1"));
    assert.notEqual(state("tracker-1"), "healthy");
    const out = join(dir, "second.bin");
    const r = download("demo.bin", out);
    assert.equal(r.code, 0, `dsclient exit ${r.code}: ${r.stderr}`);
    assert.equal(sha256(readFileSync(out)), seederSha("demo.bin"));
    assert.match(state("tracker-1"), /^exited/, "tracker-1 stayed down during the download");
    await until(
      "the second download counted",
      async () => completedOf((await stats(dashboardToken)).body, "demo.bin") > before,
      20_000,
    );
    compose("start", "tracker-1");
  });

  step("Redis restarted: a third download finishes once the swarm is published again", async () => {
    const t0 = Date.now();
    compose("restart", "redis");
    await until("redis healthy again", () => state("redis") === "healthy" || state("redis"), 60_000);
    const out = join(dir, "third.bin");
    let r;
    let attempts = 0;
    // the seeder publishes again after its tracker saw the store come back: an unknown name (3) until then
    await until(
      "a third download",
      () => {
        attempts++;
        r = download("demo.bin", out);
        return r.code === 0 || { code: r.code, stderr: r.stderr.slice(-500) };
      },
      90_000,
      2000,
    );
    assert.equal(sha256(readFileSync(out)), seederSha("demo.bin"));
    figure(`Redis restart to a finished download: ${((Date.now() - t0) / 1000).toFixed(1)} s, ${attempts} attempt(s)`);
  });

  step("a seeder without the credential is refused", () => {
    const r = spawnSync(
      "docker",
      ["run", "--rm", "--network", NETWORK, "--read-only", "--tmpfs", "/tmp", IMAGE, "seeder"].concat([
        "--tracker",
        "proxy:6086",
        "--media",
        "/tmp",
        "--advertise",
        "localhost:1",
      ]),
      { encoding: "utf8", timeout: 60_000 },
    );
    assert.equal(r.status, 3, `exit 3 for a refused credential: ${r.stderr}`);
    assert.match(r.stderr, /refused this seeder's credential \(UNAUTHENTICATED/);
  });

  step("down keeps the keys; down -v removes every volume", () => {
    const created = compose("logs", "--no-color", "keys");
    const ids = (text) => [...text.matchAll(/(ticket key|network key) ([0-9a-f]+)/g)].map((m) => m.slice(1).join(" "));
    assert.equal(ids(created).length, 2);
    compose("down");
    const again = compose("run", "--rm", "keys");
    assert.deepEqual(ids(again), ids(created), "the same ticket and network keys after down");
    assert.match(again, /kept \/data\/keys\/network-key\.pem/);
    compose("down", "-v");
    const left = docker("volume", "ls", "-q", "--filter", `label=com.docker.compose.project=${PROJECT}`);
    assert.equal(left, "", "no volume left");
  });
});
