/** What fetchChunks needs of an HTTP/1.x response head. */
export interface ResponseHead {
  status: number;
  /** Undefined when the header is absent. */
  contentLength: number | undefined;
  /** A transfer-encoding was sent (the body is not delimited by content-length). */
  chunked: boolean;
  /** The connection may carry another request after this response. */
  keepAlive: boolean;
}

export class ResponseHeadError extends Error {
  override name = "ResponseHeadError";
}

const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: [^\r\n]*)?$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Parses a response head: the status line and header lines, without the final CRLFCRLF. */
export function parseResponseHead(text: string): ResponseHead {
  const lines = text.split("\r\n");
  const first = lines[0] ?? "";
  const m = STATUS_LINE.exec(first);
  if (!m) throw new ResponseHeadError(`not an HTTP/1.x status line: ${printable(first)}`);
  const head: ResponseHead = {
    status: Number(m[2]),
    contentLength: undefined,
    chunked: false,
    keepAlive: m[1] === "1",
  };
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!HEADER_NAME.test(name)) throw new ResponseHeadError(`bad header line: ${printable(line)}`);
    const value = line.slice(colon + 1).trim();
    switch (name.toLowerCase()) {
      case "content-length": {
        if (!/^\d{1,15}$/.test(value)) throw new ResponseHeadError(`bad content-length: ${printable(value)}`);
        const n = Number(value);
        if (head.contentLength !== undefined && head.contentLength !== n) {
          throw new ResponseHeadError("conflicting content-length headers");
        }
        head.contentLength = n;
        break;
      }
      case "transfer-encoding":
        head.chunked = true;
        break;
      case "connection":
        for (const token of value.toLowerCase().split(",")) {
          const t = token.trim();
          if (t === "close") head.keepAlive = false;
          else if (t === "keep-alive" && m[1] === "0") head.keepAlive = true;
        }
        break;
    }
  }
  return head;
}

function printable(s: string): string {
  const clean = s.replace(/[^\x20-\x7e]+/g, " ");
  return clean.length > 80 ? `${clean.slice(0, 80)}...` : clean;
}
