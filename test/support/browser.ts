import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { ROOT } from "./procs.js";

/** Debian's Chromium (apt package chromium, installed by .ci/run); never a browser download. */
export const CHROMIUM = "/usr/bin/chromium";
/** Screenshots and other files a test leaves for people to look at (git-ignored). */
export const ARTIFACTS = join(ROOT, "test/artifacts");

/** A headless Chromium driven by playwright-core. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install the Debian package chromium (apt-get install chromium)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/** A page that records what would show in its console: errors and Content-Security-Policy violations. */
export async function openPage(browser: Browser): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems: string[] = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // a refused connection while the dashboard restarts is expected; a script error or a CSP refusal is not
    if (m.type() === "error" && !/ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|status of 401/.test(m.text())) {
      problems.push(`console: ${m.text()}`);
    }
  });
  return { page, problems };
}

/** Writes a full-page screenshot to test/artifacts/NAME.png. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * Cells of the page's tables aligned unlike their column's header (as the
 * browser lays them out), as `#BODY-ID column "HEADER": header right, cell left`.
 */
export async function misalignedCells(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const out: string[] = [];
    for (const table of Array.from(document.querySelectorAll("table"))) {
      const heads = Array.from(table.querySelectorAll("thead th"));
      for (const tr of Array.from(table.querySelectorAll("tbody tr"))) {
        const cells = Array.from(tr.children);
        if (cells.length !== heads.length) continue; // a placeholder row spanning the table
        cells.forEach((td, i) => {
          const want = getComputedStyle(heads[i]!).textAlign;
          const got = getComputedStyle(td).textAlign;
          const line = `#${table.tBodies[0]?.id} column "${heads[i]!.textContent}": header ${want}, cell ${got}`;
          if (want !== got && !out.includes(line)) out.push(line);
        });
      }
    }
    return out;
  });
}

/** The exact value (data-value) of a cell of a row of the table: `field` of the row whose `rowAttr` is `key`. */
export async function cellValue(page: Page, rowSelector: string, field: string): Promise<string | null> {
  return page
    .locator(`${rowSelector} td[data-field="${field}"]`)
    .first()
    .getAttribute("data-value", { timeout: 100 })
    .catch(() => null);
}

/** Polls `read` until `check` holds for what it reads; fails with the last value after `timeoutMs`. */
export async function until<T>(
  what: string,
  read: () => Promise<T>,
  check: (v: T) => boolean,
  timeoutMs = 10_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    last = await read();
    if (check(last)) return last;
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
