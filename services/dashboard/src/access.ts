import { createHash, timingSafeEqual } from "node:crypto";
import type { NextFunction, Request, Response } from "express";

/** Who may read the dashboard: a bearer token, a basic-auth user, or both (either lets in). */
export interface AccessControl {
  token?: string | undefined;
  basic?: { user: string; password: string } | undefined;
}

/** Cookie that carries the token for a browser, once given as ?token= (EventSource cannot send headers). */
export const TOKEN_COOKIE = "ds_dashboard_token";

const digest = (s: string) => createHash("sha256").update(s).digest();
/** Compares secrets in constant time (of their digests, so lengths do not leak either). */
const same = (a: string, b: string) => timingSafeEqual(digest(a), digest(b));

/** Whether an address binds to the loopback interface only. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Reads a basic-auth credentials file or variable: one "user:password" line. */
export function parseBasicCredentials(text: string, where: string): { user: string; password: string } {
  const line = text.split(/\r?\n/).find((l) => l.trim() !== "" && !l.trim().startsWith("#"));
  const colon = line?.indexOf(":") ?? -1;
  if (!line || colon <= 0 || colon === line.length - 1) {
    throw new Error(`${where} must hold one line "user:password" (a user name, a colon, a password)`);
  }
  return { user: line.slice(0, colon).trim(), password: line.slice(colon + 1).trim() };
}

function cookie(req: Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return undefined;
}

/**
 * The access check in front of every route but /healthz: with a token, a
 * request passes with `Authorization: Bearer TOKEN` or the token cookie; a
 * page opened with `?token=TOKEN` gets the cookie (HttpOnly, SameSite=Strict)
 * and is redirected to itself without the token in the URL. With a basic
 * user, `Authorization: Basic`. Anything else: 401, no data.
 */
export function requireAccess(ac: AccessControl, refused: () => void) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const auth = req.headers.authorization ?? "";
    if (ac.token !== undefined) {
      const bearer = /^Bearer +(.+)$/i.exec(auth)?.[1];
      const given = bearer ?? cookie(req, TOKEN_COOKIE);
      if (given !== undefined && same(given, ac.token)) return next();
      const inUrl = req.query.token;
      if (typeof inUrl === "string" && same(inUrl, ac.token) && (req.method === "GET" || req.method === "HEAD")) {
        const url = new URL(req.originalUrl, "http://dashboard");
        url.searchParams.delete("token");
        res.setHeader(
          "set-cookie",
          `${TOKEN_COOKIE}=${encodeURIComponent(ac.token)}; Path=/; HttpOnly; SameSite=Strict${req.secure ? "; Secure" : ""}`,
        );
        res.redirect(303, url.pathname + url.search);
        return;
      }
    }
    if (ac.basic !== undefined) {
      const encoded = /^Basic +([A-Za-z0-9+/=]+)$/i.exec(auth)?.[1];
      if (encoded !== undefined) {
        const text = Buffer.from(encoded, "base64").toString("utf8");
        const colon = text.indexOf(":");
        if (colon > 0 && same(text.slice(0, colon), ac.basic.user) && same(text.slice(colon + 1), ac.basic.password)) {
          return next();
        }
      }
      res.setHeader("www-authenticate", 'Basic realm="DistribuStream dashboard", charset="UTF-8"');
    }
    refused();
    res
      .status(401)
      .type("text/plain")
      .send(
        ac.token !== undefined
          ? "unauthorized: open the dashboard with ?token=TOKEN once, or send Authorization: Bearer TOKEN\n"
          : "unauthorized: sign in with the dashboard's user and password\n",
      );
  };
}
