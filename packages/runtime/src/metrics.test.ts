import assert from "node:assert/strict";
import { test } from "node:test";
import { createRegistry, LabelCap, OTHER_LABEL, startMetricsServer } from "./metrics.js";

test("LabelCap keeps the first values it sees and counts the rest as other", () => {
  const cap = new LabelCap(2);
  assert.equal(cap.of("a"), "a");
  assert.equal(cap.of("b"), "b");
  assert.equal(cap.of("c"), OTHER_LABEL);
  assert.equal(cap.of("a"), "a", "a value seen before keeps its own label");
  assert.equal(cap.of("d"), OTHER_LABEL);
});

test("the metrics server: /healthz is readiness, /livez liveness whatever readiness says", async () => {
  let ready = false;
  const m = await startMetricsServer(createRegistry(), { port: 0, host: "127.0.0.1", healthy: () => ready });
  try {
    const get = async (path: string) => {
      const res = await fetch(`http://127.0.0.1:${m.port}${path}`);
      return `${res.status} ${(await res.text()).trim()}`;
    };
    assert.equal(await get("/healthz"), "503 not serving");
    assert.equal(await get("/livez"), "200 alive");
    ready = true;
    assert.equal(await get("/healthz"), "200 ok");
    assert.equal(await get("/livez"), "200 alive");
    assert.match(await get("/metrics"), /^200 .*process_cpu_user_seconds_total/s);
  } finally {
    await m.close();
  }
});
