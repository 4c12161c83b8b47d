#!/usr/bin/env node
// Lints the Dockerfile against hadolint's main rules (hadolint itself is not in a registry
// these machines reach), plus this project's: no secret baked in, .dockerignore keeps keys,
// tokens and .env files out of the build context.
//   node scripts/lint-dockerfile.mjs [Dockerfile]
// Exit 1 with one line per finding: FILE:LINE RULE message.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const file = process.argv[2] ?? join(root, "Dockerfile");

/** The instructions of a Dockerfile: continuation lines joined, comments dropped. */
export function parse(text) {
  const out = [];
  let current;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trimEnd();
    if (current === undefined) {
      if (/^\s*(#.*)?$/.test(line)) return;
      current = { line: i + 1, text: "" };
    } else if (/^\s*#/.test(line)) {
      return; // a comment inside a continued instruction
    }
    const continued = line.endsWith("\\");
    current.text += (continued ? line.slice(0, -1) : line) + " ";
    if (!continued) {
      const m = /^\s*(\S+)\s*(.*)$/.exec(current.text.trim());
      out.push({ line: current.line, keyword: m[1].toUpperCase(), args: m[2].trim() });
      current = undefined;
    }
  });
  return out;
}

/** The shell commands of a RUN, split on && ; || and |. */
function commands(args) {
  return args
    .split(/&&|\|\||;|\|/)
    .map((c) => c.trim())
    .filter(Boolean);
}

const isJsonArray = (args) => {
  try {
    return Array.isArray(JSON.parse(args));
  } catch {
    return false;
  }
};

const SECRET_NAME = /(TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE|API_?KEY|CREDENTIAL)/i;

/** hadolint's rules (their codes) and this project's (DS…); returns findings. */
export function lint(instructions) {
  const findings = [];
  const add = (ins, rule, message) => findings.push({ line: ins.line, rule, message });
  const stages = [];
  let user;
  let workdir = false;
  let pipefail = false;
  const perStage = () => ({ cmd: 0, entrypoint: 0, healthcheck: 0 });
  let counts = perStage();
  for (const ins of instructions) {
    const { keyword, args } = ins;
    switch (keyword) {
      case "FROM": {
        const parts = args.split(/\s+/);
        const platform = parts.find((p) => p.startsWith("--platform"));
        if (platform) add(ins, "DL3029", "do not use --platform with FROM");
        const [image, as, alias] = parts.filter((p) => !p.startsWith("--"));
        const isStage = stages.includes(image);
        if (!isStage && !image.includes(":") && !image.includes("@") && image !== "scratch")
          add(ins, "DL3006", `always tag the version of an image explicitly: ${image}`);
        if (!isStage && /:latest$/.test(image)) add(ins, "DL3007", `do not use the latest tag: ${image}`);
        if (as && as.toUpperCase() === "AS") {
          if (stages.includes(alias)) add(ins, "DL3024", `FROM aliases must be unique: ${alias}`);
          stages.push(alias);
        }
        user = undefined;
        counts = perStage();
        break;
      }
      case "MAINTAINER":
        add(ins, "DL4000", "MAINTAINER is deprecated: use a LABEL");
        break;
      case "WORKDIR":
        if (!args.startsWith("/") && !args.startsWith("$")) add(ins, "DL3000", "use an absolute WORKDIR");
        workdir = true;
        break;
      case "USER":
        user = args;
        break;
      case "ADD":
        if (!/https?:\/\/|\.(tar|tar\.gz|tgz|tar\.xz|tar\.bz2)\b/.test(args))
          add(ins, "DL3020", "use COPY instead of ADD for files and folders");
        break;
      case "COPY": {
        const from = /--from=(\S+)/.exec(args)?.[1];
        if (from !== undefined && !/^\d+$/.test(from) && !from.includes(":") && !stages.includes(from))
          add(ins, "DL3022", `COPY --from should reference a previously defined FROM alias: ${from}`);
        if (from !== undefined && stageOf(instructions, ins) === from)
          add(ins, "DL3023", "COPY --from cannot reference its own FROM alias");
        const paths = args.split(/\s+/).filter((p) => !p.startsWith("--"));
        const dest = paths.at(-1) ?? "";
        if (paths.length > 2 && !dest.endsWith("/"))
          add(ins, "DL3021", "COPY with more than 2 arguments requires the last argument to end with /");
        if (!workdir && !dest.startsWith("/") && !dest.startsWith("$"))
          add(ins, "DL3045", "COPY to a relative destination without WORKDIR set");
        break;
      }
      case "CMD":
      case "ENTRYPOINT":
        if (!isJsonArray(args)) add(ins, "DL3025", `use JSON notation for ${keyword}`);
        if (keyword === "CMD" && ++counts.cmd > 1) add(ins, "DL4003", "multiple CMD instructions in one stage");
        if (keyword === "ENTRYPOINT" && ++counts.entrypoint > 1)
          add(ins, "DL4004", "multiple ENTRYPOINT instructions in one stage");
        break;
      case "HEALTHCHECK":
        if (++counts.healthcheck > 1) add(ins, "DL3012", "multiple HEALTHCHECK instructions");
        break;
      case "EXPOSE":
        for (const p of args.split(/\s+/)) {
          const port = Number(p.split("/")[0].split("-")[0]);
          if (!p.startsWith("$") && !(Number.isInteger(port) && port >= 0 && port <= 65535))
            add(ins, "DL3011", `valid UNIX ports range from 0 to 65535: ${p}`);
        }
        break;
      case "ENV":
      case "ARG":
        for (const name of args.matchAll(/(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)/g))
          if (SECRET_NAME.test(name[1]) && !/_(FILE|DIR|PATH)$/.test(name[1]))
            add(ins, "DS001", `${keyword} ${name[1]}: a secret is never baked into an image (pass it at run time)`);
        break;
      case "SHELL":
        pipefail = /pipefail/.test(args);
        break;
      case "RUN":
        lintRun(ins, add, pipefail);
        break;
      default:
    }
  }
  if (user === undefined || user === "root" || user === "0" || user.startsWith("root:") || user.startsWith("0:"))
    findings.push({
      line: instructions.at(-1)?.line ?? 1,
      rule: "DL3002",
      message: "the last USER should not be root",
    });
  return findings;
}

function stageOf(instructions, target) {
  let alias;
  for (const ins of instructions) {
    if (ins.keyword === "FROM") alias = /\sAS\s+(\S+)/i.exec(ins.args)?.[1];
    if (ins === target) return alias;
  }
  return undefined;
}

function lintRun(ins, add, pipefail) {
  const { args } = ins;
  if (isJsonArray(args)) return;
  const cmds = commands(args);
  const words = (c) => c.split(/\s+/);
  for (const c of cmds) {
    const [first, second] = words(c);
    if (first === "sudo") add(ins, "DL3004", "do not use sudo");
    if (first === "cd") add(ins, "DL3003", "use WORKDIR to switch to a folder");
    if (["ssh", "vim", "shutdown", "service", "ps", "free", "top", "kill", "mount", "ifconfig"].includes(first))
      add(ins, "DL3001", `${first} makes no sense in a container`);
    if (first === "apt") add(ins, "DL3027", "do not use apt, use apt-get or apt-cache");
    if (first === "apt-get" && second === "upgrade") add(ins, "DL3005", "do not use apt-get upgrade");
    if (first === "apt-get" && second === "install") {
      const w = words(c);
      if (!w.some((x) => /^(-y|--yes|-qq|--assume-yes|-[a-z]*y[a-z]*)$/.test(x)))
        add(ins, "DL3014", "use the -y switch with apt-get install");
      if (!w.includes("--no-install-recommends"))
        add(ins, "DL3015", "avoid additional packages: apt-get install --no-install-recommends");
      for (const pkg of w.slice(2).filter((x) => !x.startsWith("-")))
        if (!pkg.includes("=")) add(ins, "DL3008", `pin versions in apt-get install: ${pkg}`);
    }
    if (first === "npm" && (second === "install" || second === "i")) {
      for (const pkg of words(c)
        .slice(2)
        .filter((x) => !x.startsWith("-")))
        if (!/@[^/]*\d|^\.|^\//.test(pkg.replace(/^@/, ""))) add(ins, "DL3016", `pin versions in npm install: ${pkg}`);
    }
    if (first === "pip" || first === "pip3") add(ins, "DL3013", "pin versions in pip (and prefer a lock file)");
  }
  if (cmds.some((c) => /^apt-get\s+install/.test(c)) && !/rm -rf \/var\/lib\/apt\/lists/.test(args))
    add(ins, "DL3009", "delete the apt-get lists after installing something");
  if (cmds.some((c) => words(c)[0] === "wget") && cmds.some((c) => words(c)[0] === "curl"))
    add(ins, "DL4001", "use either wget or curl, not both");
  // DL4006 needs a SHELL with pipefail; single | only (not ||)
  if (!pipefail && !/set -[a-z]*o pipefail/.test(args) && /(^|[^|])\|([^|]|$)/.test(args))
    add(ins, "DL4006", "set -o pipefail (SHELL) before RUN with a pipe");
}

/** This project's rule for the build context: nothing secret reaches the engine. */
export function lintDockerignore(text) {
  const lines = text.split("\n").map((l) => l.trim());
  const findings = [];
  const allowList = lines.includes("*");
  for (const needed of ["**/.distribustream", "**/*.pem", "**/.env"])
    if (!allowList && !lines.includes(needed))
      findings.push({ line: 1, rule: "DS002", message: `.dockerignore must exclude ${needed}` });
  for (const needed of ["**/node_modules", "**/dist"])
    if (!lines.includes(needed))
      findings.push({ line: 1, rule: "DS002", message: `.dockerignore must exclude ${needed}` });
  return findings;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const findings = lint(parse(readFileSync(file, "utf8"))).map((f) => ({ ...f, file }));
  const ignore = join(dirname(file), ".dockerignore");
  if (!existsSync(ignore)) findings.push({ file: ignore, line: 1, rule: "DS002", message: "missing .dockerignore" });
  else findings.push(...lintDockerignore(readFileSync(ignore, "utf8")).map((f) => ({ ...f, file: ignore })));
  for (const f of findings) console.error(`${f.file}:${f.line} ${f.rule} ${f.message}`);
  if (findings.length) process.exit(1);
  console.log(`lint-dockerfile: ${file} and its .dockerignore follow hadolint's rules`);
}
