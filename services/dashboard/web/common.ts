/**
 * What every page shares: the live connection (Server-Sent Events, which
 * reconnects by itself), number formats and small DOM helpers. Values are
 * always set as text, never parsed as HTML.
 */

export type Status = "connecting" | "live" | "reconnecting" | "unauthorized" | "busy";

/**
 * Listens to `url` for the named events; shows the connection's state in
 * #status. A dropped connection (the dashboard restarting) is reopened by
 * the browser, and again here if the browser gave up on it.
 */
export function listen(url: string, handlers: Record<string, (data: unknown) => void>): void {
  const status = document.getElementById("status");
  const show = (s: Status, text: string) => {
    if (!status) return;
    status.dataset.state = s;
    status.textContent = text;
  };
  let source: EventSource | undefined;
  const open = () => {
    show("connecting", "connecting…");
    const es = new EventSource(url);
    source = es;
    for (const [event, handle] of Object.entries(handlers)) {
      es.addEventListener(event, (e) => {
        show("live", "live");
        handle(JSON.parse((e as MessageEvent<string>).data));
      });
    }
    es.addEventListener("busy", () => {
      show("busy", "the dashboard is busy: retrying");
      es.close();
      setTimeout(open, 5000);
    });
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        // the browser gave up (an HTTP error such as 401): find out why, then try again
        void fetch(url.replace(/\/api\/events.*/, "/api/stats.json"), { method: "HEAD" }).then(
          (r) =>
            show(
              r.status === 401 ? "unauthorized" : "reconnecting",
              r.status === 401 ? "unauthorized" : "reconnecting…",
            ),
          () => show("reconnecting", "reconnecting…"),
        );
        if (source === es) setTimeout(open, 2000);
      } else show("reconnecting", "reconnecting…");
    };
  };
  open();
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function bytes(n: number | null): string {
  if (n === null) return "—";
  let v = n;
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${UNITS[i]}`;
}

export const rate = (n: number | null) => (n === null ? "—" : `${bytes(n)}/s`);
export const percent = (n: number | null) => (n === null ? "—" : `${n.toFixed(1)} %`);
export const ms = (n: number | null) =>
  n === null ? "—" : n >= 10_000 ? `${(n / 1000).toFixed(0)} s` : `${(n / 1000).toFixed(2)} s`;
export const count = (n: number | null) => (n === null ? "—" : n.toLocaleString("en-US"));

export function duration(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86_400)} d`;
}

export function clock(t: number): string {
  return new Date(t).toLocaleTimeString("en-GB", { hour12: false });
}

/** A short form of a peer or replica id, the whole of it in the title. */
export function shortId(id: string): string {
  return id.length > 10 ? `${id.slice(0, 8)}…` : id;
}

/** A table cell with its text, and its exact value in data-value (for tooltips and tests). */
export function cell(
  field: string,
  text: string,
  value?: string | number | boolean | null,
  title?: string,
): HTMLTableCellElement {
  const td = document.createElement("td");
  td.dataset.field = field;
  td.textContent = text;
  if (value !== undefined) td.dataset.value = String(value);
  if (title) td.title = title;
  return td;
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  text?: string,
  attrs: Record<string, string> = {},
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

/** Sets the text (and exact value) of the element with this id. */
export function setTile(id: string, text: string, value?: string | number | null): void {
  const e = document.getElementById(id);
  if (!e) return;
  e.textContent = text;
  if (value !== undefined) e.dataset.value = String(value);
}

/** Replaces a table body's rows. */
export function fillTable(tbodyId: string, rows: HTMLTableRowElement[], empty: string, columns: number): void {
  const tbody = document.getElementById(tbodyId);
  if (!tbody) return;
  if (rows.length === 0) {
    const tr = el("tr");
    const td = el("td", empty, { class: "empty", colspan: String(columns) });
    tr.append(td);
    rows = [tr];
  }
  tbody.replaceChildren(...rows);
}
