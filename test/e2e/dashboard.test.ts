import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Browser } from "playwright-core";
import { redisForTests, type TestRedis } from "@distribustream/swarm-store/testing";
import { cellValue, launchChromium, misalignedCells, openPage, screenshot, until } from "../support/browser.js";
import { DISTRIBUSTREAM, DSCLIENT, freePorts, metric, startNode, type Proc } from "../support/procs.js";
import { Services } from "../support/services.js";

/**
 * The operators' dashboard in a real Chromium: `up` with a file, a live
 * stream and dsclient viewers; then a fleet of separate processes (Redis,
 * two tracker replicas, the dashboard), a replica killed and the dashboard
 * restarted under an open page; access control and bad input.
 */

interface Stats {
  generatedMs: number;
  streams: {
    streamId: string;
    name: string;
    kind: string;
    viewers: number;
    completed: number;
    peerBytes: number;
    seederBytes: number;
  }[];
  fleet: { replicas: { replicaId: string; address: string; alive: boolean }[] };
}

const getJson = async <T>(url: string, headers: Record<string, string> = {}): Promise<T> =>
  (await (await fetch(url, { headers })).json()) as T;

let browser: Browser;
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

describe("dashboard of distribustream up", { timeout: 90_000 }, () => {
  let dir: string;
  let up: Proc;
  let pdtp: number;
  let base: string;
  let metricsUrl: string;
  const clients: Proc[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-dashboard-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/film.bin"), randomBytes(6 * 1024 * 1024 + 123));
    writeFileSync(join(dir, "live.bin"), randomBytes(512 * 1024));
    const [p, data, checksum, metrics, dash] = await freePorts(5);
    pdtp = p!;
    base = `http://127.0.0.1:${dash}`;
    metricsUrl = `http://127.0.0.1:${metrics}/metrics`;
    up = startNode(
      DISTRIBUSTREAM,
      ["up", "--media", "media", "--host", "127.0.0.1", "--port", `${pdtp}`, "--data-port", `${data}`].concat(
        ["--checksum-port", `${checksum}`, "--metrics-port", `${metrics}`, "--dashboard-port", `${dash}`],
        ["--live", "cam=live.bin", "--live-bitrate", "1M", "--live-loop"],
      ),
      { cwd: dir },
    );
    await up.waitFor(/npx dsclient '?pdtp:\/\/localhost:\d+\/cam/, 60_000);
  });

  after(async () => {
    for (const c of clients) await c.kill("SIGTERM");
    await up?.kill("SIGTERM");
    if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
  });

  test("up prints the dashboard's address", () => {
    assert.match(up.stdout(), new RegExp(`Dashboard: http://localhost:${base.split(":")[2]}/`));
  });

  test("the pages show each stream, its peers and offload as the tracker counts them, live", async () => {
    const { page, problems } = await openPage(browser);
    await page.goto(`${base}/`);
    const row = (name: string) => `tr[data-stream-id]:has(td[data-field="name"] a:text-is("${name}"))`;
    await page.waitForSelector(row("film.bin"));
    await page.waitForSelector(row("cam"));
    assert.equal(await cellValue(page, row("film.bin"), "kind"), "file");
    assert.equal(await cellValue(page, row("cam"), "kind"), "live");
    assert.equal(await cellValue(page, row("film.bin"), "completed"), "0");

    // three viewers at 1.5 MiB/s: a few seconds each, then they stay on as peers
    const viewer = (i: number) =>
      startNode(
        DSCLIENT,
        [`pdtp://127.0.0.1:${pdtp}/film.bin`, "-o", `v${i}.bin`, "-q", "--max-download-rate", "1536K"].concat([
          "--linger",
          "60",
          "--log-level",
          "info",
        ]),
        { cwd: dir },
      );
    clients.push(viewer(0), viewer(1), viewer(2));
    const live = startNode(DSCLIENT, [`pdtp://127.0.0.1:${pdtp}/cam`, "-o", "cam.out", "-q"], { cwd: dir });
    clients.push(live);

    // the first completion shows up on the open page, without a reload
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
    await until(
      "a completion on the page",
      () => cellValue(page, row("film.bin"), "completed"),
      (v) => Number(v) >= 1,
      30_000,
    );
    assert.equal(await page.evaluate(() => (window as unknown as { marker?: number }).marker), 42, "no reload");
    await Promise.all(clients.slice(0, 3).map((c) => c.waitFor(/lingering/, 30_000)));

    // once the figures stop moving, the page, /api/stats.json and the tracker's /metrics agree
    const figures = async () => {
      const prom = {
        viewers: await metric(metricsUrl, "pdtp_tracker_sessions", { role: "viewer" }),
        peerBytes: await metric(metricsUrl, "pdtp_tracker_delivered_bytes_total", {
          stream: "film.bin",
          source: "peer",
        }),
        seederBytes: await metric(metricsUrl, "pdtp_tracker_delivered_bytes_total", {
          stream: "film.bin",
          source: "seeder",
        }),
        completed: await metric(metricsUrl, "pdtp_tracker_completed_total", { stream: "film.bin" }),
      };
      const api = (await getJson<Stats>(`${base}/api/stats.json`)).streams.find((s) => s.name === "film.bin")!;
      const cells = {
        viewers: Number(await cellValue(page, row("film.bin"), "viewers")),
        peerBytes: Number(await cellValue(page, row("film.bin"), "peerBytes")),
        seederBytes: Number(await cellValue(page, row("film.bin"), "seederBytes")),
        completed: Number(await cellValue(page, row("film.bin"), "completed")),
      };
      const fromApi = {
        viewers: api.viewers,
        peerBytes: api.peerBytes,
        seederBytes: api.seederBytes,
        completed: api.completed,
      };
      // the live viewer is a viewer session too, of the other stream
      return { prom: { ...prom, viewers: prom.viewers - 1 }, api: fromApi, page: cells };
    };
    const agreed = await until(
      "page, /api/stats.json and /metrics agree",
      figures,
      (f) =>
        JSON.stringify(f.prom) === JSON.stringify(f.page) &&
        JSON.stringify(f.api) === JSON.stringify(f.page) &&
        f.page.completed === 3,
      15_000,
    );
    assert.equal(agreed.page.viewers, 3);
    assert.ok(agreed.page.peerBytes > 0, "peers carried some of the file");
    const total = agreed.page.peerBytes + agreed.page.seederBytes;
    assert.ok(total >= 3 * (6 * 1024 * 1024 + 123), `${total} bytes delivered for 3 copies`);
    const offload = Number(await cellValue(page, row("film.bin"), "offload"));
    assert.equal(offload, Math.round((agreed.page.peerBytes / total) * 10_000) / 100);
    await screenshot(page, "dashboard-streams");
    assert.deepEqual(await misalignedCells(page), [], "every column's cells aligned as its header");

    // the file's page: its peers, the strip, the charts, what happened
    await page.click(`${row("film.bin")} a`);
    await page.waitForSelector('#peers tr[data-peer-id] td[data-field="role"][data-value="seeder"]');
    await until(
      "three viewers on the stream page",
      () => page.locator('#peers td[data-field="role"][data-value="viewer"]').count(),
      (n) => n === 3,
    );
    assert.equal(await page.locator("#notices li[data-type=completed]").count(), 3);
    assert.equal((await page.locator("#offload-chart canvas").count()) > 0, true, "uPlot drew the offload chart");
    assert.equal(
      Number(await page.getAttribute("#s-peer-bytes", "data-value")),
      agreed.page.peerBytes,
      "the stream page shows the same bytes",
    );
    const strip = await page.evaluate(() => {
      const c = document.getElementById("strip") as HTMLCanvasElement;
      const px = c.getContext("2d")!.getImageData(c.width - 2, 2, 1, 1).data;
      return [c.width, px[0], px[1], px[2]];
    });
    assert.ok(strip[0]! > 100, "the availability strip is drawn");
    assert.deepEqual(strip.slice(1), [0x9c, 0xcc, 0x65], "the last chunks have 3 copies (light green)");
    await screenshot(page, "dashboard-stream-file");
    assert.deepEqual(await misalignedCells(page), [], "every column's cells aligned as its header");

    // the live stream's page: its edge moves, its viewer's delay shows
    await page.goto(`${base}/`);
    await page.click(`${row("cam")} a`);
    const edge1 = Number(
      await page.waitForSelector("#s-edge[data-value]").then(() => page.getAttribute("#s-edge", "data-value")),
    );
    await until(
      "the live edge moving and the viewer's delay",
      async () => [
        Number(await page.getAttribute("#s-edge", "data-value")),
        await page.getAttribute("#s-delay", "data-value"),
      ],
      ([edge, delay]) => (edge as number) > edge1 && delay !== "null" && delay !== null,
      15_000,
    );
    await screenshot(page, "dashboard-stream-live");
    assert.deepEqual(await misalignedCells(page), [], "every column's cells aligned as its header");

    await page.goto(`${base}/fleet`);
    await page.waitForSelector('#replicas tr[data-replica-id] td[data-field="alive"][data-value="true"]');
    await until(
      "the checksum service seen",
      () => page.getAttribute("#checksum-up", "data-value"),
      (v) => v === "true",
    );
    await screenshot(page, "dashboard-fleet");
    assert.deepEqual(await misalignedCells(page), [], "every column's cells aligned as its header");
    assert.deepEqual(problems, [], "no script error, no Content-Security-Policy refusal");
    await page.close();
  });
});

describe("dashboard of a fleet: Redis, two tracker replicas, the dashboard as processes", { timeout: 90_000 }, () => {
  let dir: string;
  let redis: TestRedis;
  let sys: Services;
  let trackers: Proc[];
  let pdtp: number[];
  let dashPort: number;
  let checksumMetrics: number;
  let dashboard: Proc;
  const clients: Proc[] = [];
  const startDashboard = (extra: string[] = []) =>
    sys.start(
      ["dashboard", "--redis", redis.url, "--port", `${dashPort}`].concat(
        ["--checksum-metrics", `http://127.0.0.1:${checksumMetrics}`],
        extra,
      ),
    );

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-dashboard-fleet-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/fleet.bin"), randomBytes(4 * 1024 * 1024));
    sys = new Services(dir);
    redis = await redisForTests();
    const [t1, t2, checksum, data, m1, m2, m3, m4, dash] = await freePorts(9);
    pdtp = [t1!, t2!];
    dashPort = dash!;
    checksumMetrics = m3!;
    await sys.checksum(checksum!, m3!);
    trackers = [
      await sys.tracker({ port: t1!, checksum: checksum!, metricsPort: m1!, redis: redis.url }),
      await sys.tracker({ port: t2!, checksum: checksum!, metricsPort: m2!, redis: redis.url }),
    ];
    await sys.seeder({ tracker: `127.0.0.1:${t1}`, dataPort: data!, metricsPort: m4! });
    dashboard = startDashboard();
    await dashboard.waitFor(/DistribuStream dashboard: http:\/\/127\.0\.0\.1:\d+\//);
  });

  after(async () => {
    for (const c of clients) await c.kill("SIGTERM");
    try {
      // the replica killed below exits by SIGKILL, the first dashboard by SIGTERM before its restart
      await sys?.stop(new Set(sys.procs.filter((p) => p.child.exitCode !== null || p.child.signalCode !== null)));
    } finally {
      await redis?.stop();
    }
    if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
  });

  test("peers of both replicas appear; a killed replica shows gone; a restarted dashboard is reconnected to", async () => {
    const base = `http://127.0.0.1:${dashPort}`;
    const replicas = await until(
      "both replicas heard",
      async () => (await getJson<Stats>(`${base}/api/stats.json`)).fleet.replicas,
      (r) => r.filter((x) => x.alive).length === 2,
    );
    const idOf = (port: number) => replicas.find((r) => r.address.endsWith(`:${port}`))!.replicaId;
    const ids = [idOf(pdtp[0]!), idOf(pdtp[1]!)];
    for (const i of [0, 1]) {
      clients.push(
        startNode(
          DSCLIENT,
          [
            `pdtp://127.0.0.1:${pdtp[i]}/fleet.bin`,
            "-o",
            `c${i}.bin`,
            "-q",
            "--max-download-rate",
            "1M",
            "--linger",
            "60",
          ],
          { cwd: dir },
        ),
      );
    }
    const streamId = (
      await until(
        "the stream listed",
        async () => (await getJson<Stats>(`${base}/api/stats.json`)).streams,
        (s) => s.some((x) => x.name === "fleet.bin" && x.viewers === 2),
      )
    ).find((x) => x.name === "fleet.bin")!.streamId;

    const { page, problems } = await openPage(browser);
    await page.goto(`${base}/stream?id=${streamId}`);
    await until(
      "viewers of both replicas on the stream page",
      () =>
        page.$$eval('#peers tr:has(td[data-field="role"][data-value="viewer"]) td[data-field="replica"]', (tds) =>
          tds.map((td) => (td as HTMLElement).dataset.value).sort(),
        ),
      (v) => JSON.stringify(v) === JSON.stringify([...ids].sort()),
    );
    await screenshot(page, "dashboard-fleet-stream");

    await page.goto(`${base}/fleet`);
    const state = (id: string) =>
      page.getAttribute(`#replicas tr[data-replica-id="${id}"] td[data-field="alive"]`, "data-value");
    await until(
      "both replicas alive on the fleet page",
      () => Promise.all(ids.map(state)),
      (v) => v.join() === "true,true",
    );
    assert.equal(await page.getAttribute("#store-kind", "data-value"), "redis");
    await until(
      "Redis memory shown",
      () => page.getAttribute("#store-memory", "data-value"),
      (v) => Number(v) > 0,
    );
    const killedAt = Date.now();
    await trackers[1]!.kill("SIGKILL");
    await until(
      "the killed replica gone",
      () => state(ids[1]!),
      (v) => v === "false",
      8_000,
    );
    const goneAfter = Date.now() - killedAt;
    assert.equal(await state(ids[0]!), "true", "the other one stays alive");
    await screenshot(page, "dashboard-fleet-replica-gone");

    // the dashboard restarts under the open page, which reconnects by itself (no reload)
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 7));
    await dashboard.kill("SIGTERM");
    await page.waitForSelector('#status:not([data-state="live"])', { timeout: 10_000 });
    const generated = async () => (await page.$eval("#replicas", (t) => t.textContent ?? "")).length;
    dashboard = startDashboard();
    await dashboard.waitFor(/DistribuStream dashboard: http/);
    await page.waitForSelector('#status[data-state="live"]', { timeout: 15_000 });
    await until("replicas listed again", generated, (n) => n > 0);
    assert.equal(await page.evaluate(() => (window as unknown as { marker?: number }).marker), 7, "no reload");
    assert.deepEqual(problems, []);
    await page.close();
    // a bound that holds on a slow machine: 3 intervals of silence plus an update or two
    assert.ok(goneAfter < 8_000, `gone after ${goneAfter} ms`);
  });

  test("with an access token: 401 and no data without it, SSE and stats included; the page works with ?token=", async () => {
    const [port] = await freePorts(1);
    const token = "fleet-test-token-0123456789";
    const locked = sys.start(
      ["dashboard", "--redis", redis.url, "--port", `${port}`, "--host", "0.0.0.0"].concat(["--auth-token", token]),
    );
    await locked.waitFor(/DistribuStream dashboard: http/);
    const base = `http://127.0.0.1:${port}`;
    const stats = await getJson<Stats>(`${base}/api/stats.json`, { authorization: `Bearer ${token}` });
    const streamId = stats.streams[0]!.streamId;
    for (const path of [
      "/",
      "/fleet",
      `/stream?id=${streamId}`,
      "/api/stats.json",
      `/api/streams/${streamId}.json`,
      "/api/events",
      `/api/events?stream=${streamId}`,
      "/metrics",
      "/assets/stream.js",
    ]) {
      const res = await fetch(`${base}${path}`, { redirect: "manual" });
      assert.equal(res.status, 401, path);
      assert.doesNotMatch(await res.text(), /fleet\.bin|pdtp_/, `${path}: no data`);
    }
    const { page, problems } = await openPage(browser);
    await page.goto(`${base}/?token=${token}`);
    assert.equal(new URL(page.url()).search, "", "the token leaves the address bar");
    await page.waitForSelector('#status[data-state="live"]');
    await page.waitForSelector('tr[data-stream-id] td[data-field="name"] a:text-is("fleet.bin")');
    assert.deepEqual(problems, []);
    await page.close();
  });

  test("bad input gets a clear 4xx and the dashboard keeps serving; a bad setting stops it with exit 2", async () => {
    const base = `http://127.0.0.1:${dashPort}`;
    for (const [path, status] of [
      ["/api/streams/not-a-stream.json", 404],
      ["/api/streams/..%2F..%2Fetc%2Fpasswd.json", 400],
      ["/api/stats.json?streams=1e9", 400],
      ["/api/events?stream=%00", 400],
      ["/stream?id=x&evil=1", 400],
    ] as const) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, status, path);
      assert.ok(((await res.json()) as { error: string }).error.length > 0);
    }
    assert.equal((await fetch(`${base}/api/stats.json`)).status, 200, "still serving");
    const open = startNode(DISTRIBUSTREAM, ["dashboard", "--redis", redis.url, "--host", "0.0.0.0", "--port", "0"], {
      cwd: dir,
    });
    assert.equal(await open.exited, 2);
    assert.match(open.stderr(), /invalid setting host .*would be open to anyone: set --auth-token/);
    const noStore = startNode(DISTRIBUSTREAM, ["dashboard", "--port", "0"], { cwd: dir });
    assert.equal(await noStore.exited, 2);
    assert.match(noStore.stderr(), /invalid setting redis: .*give the same --redis URL as the trackers/);
  });
});
