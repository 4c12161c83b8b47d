import { Command, Option } from "commander";
import { ConfigError } from "@distribustream/runtime/configError";
import { HEALTHCHECK_USAGE, HealthcheckUsageError, runHealthcheck } from "./healthcheck.js";
import { VERSION } from "./version.js";

// A command's code loads when it runs, not with the definitions: `distribustream healthcheck`,
// which a container runtime or kubelet starts every few seconds, then loads none of the services
// (0.37 -> 0.13 CPU-s, 95 -> 60 MB).
const services = async () => {
  const [preflight, commands, tls] = await Promise.all([
    import("./preflight.js"),
    import("./commands.js"),
    import("@distribustream/runtime/tls"),
  ]);
  tls.ignoreIpServernameWarning(); // the services dial TLS peers by IP address
  return [preflight, commands] as const;
};
const keyCommands = () => import("./keyCommands.js");
const seederTokens = () => import("./seederToken.js");

/** Exit statuses of every command but healthcheck and dsclient, which list their own. */
const EXIT_STATUS = `
Exit status:
  0  done; a service: stopped by SIGTERM or SIGINT after draining
  1  unexpected error, a port already in use, or a service that did not
     drain within 15 s (or got a second signal)
  2  bad usage or configuration: an unknown option, an invalid setting (the
     message names it and where it came from), a missing key file with
     --require-keys
  3  seeder and up: the tracker refused the seeder's credential
`;

/**
 * The \`distribustream\` command line: one command for every service, its
 * definitions only (main.ts runs it). Each service subcommand loads its
 * config, opens what it needs and hands it to the service's start function
 * (see commands.ts). Exported for the README's reference (scripts/readme.mjs).
 */
export const program = new Command()
  .name("distribustream")
  .description("DistribuStream peercasting: tracker, seeder, checksum and dashboard services")
  .version(VERSION)
  .showHelpAfterError("(run with --help for usage)")
  .addHelpText("after", EXIT_STATUS)
  // commander's own usage errors (an unknown option, a missing command) are bad usage: 2, as for dsclient;
  // subcommands inherit this
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

const METRICS_HOST_HELP =
  "bind address of the metrics server (/metrics, /healthz readiness, /livez liveness; default 127.0.0.1, the image sets 0.0.0.0)";
const DRAIN_DELAY_HELP =
  "on SIGTERM, answer NOT_SERVING and keep serving this long before closing, so a load balancer stops sending first (default 0)";

const REDIS_CA_HELP =
  "CA certificate(s) that signed the Redis server certificates, for rediss:// with a private CA (default: the system's, plus NODE_EXTRA_CA_CERTS)";

const TLS_CERT_HELP = "PEM certificate chain: the port speaks TLS (with --tls-key)";
const TLS_KEY_HELP = "PEM private key of --tls-cert";
const LIMIT_HELP = {
  sessions: "sessions open at once from one IP address (IPv6: one /64); 0 = no limit (default 64)",
  messages:
    "messages per second from one IP address over all its sessions and unary calls, with a burst of 10 s worth; 0 = no limit (default 1000)",
};

/** Repeatable --origin: every occurrence is kept. */
const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];
const ORIGIN_HELP =
  'HTTP(S) URL to relay, "URL [NAME]" (repeatable; the name defaults to the URL path\'s last segment); the origin must answer range requests with a length and an ETag or Last-Modified';
const ORIGIN_LIST_HELP = 'file with one "URL [NAME]" origin per line (# comments)';
const ORIGIN_POLL_HELP = "seconds between checks of every origin for a new version (default 30)";
const ORIGIN_ALLOW_HELP =
  "address range (CIDR or address; repeatable, or comma-separated) that HTTP origins may be fetched from although loopback, private, link-local or reserved, all of which are denied otherwise";
const LIVE_HELP = {
  live: "broadcast live as NAME: SOURCE is - (standard input), an http(s):// URL read as a continuous stream (reconnected when it drops), or a file played at --live-bitrate (repeatable)",
  bitrate:
    "bitrate of --live files in BITS per second, e.g. 2M = 2 Mbit/s, 1500k (unlike --max-upload-rate, which is bytes/s); for - and URLs, published as their nominal bitrate",
  loop: "play --live files in a loop (default: the broadcast ends at the end of the file)",
  window: "chunks each live broadcast keeps to serve (default 150: 30 s at the default 200 ms chunks)",
  stateDir: "folder keeping each live broadcast's next sequence number, so a restart continues it",
  record:
    "record each live broadcast whole in this folder; when its input ends, the recording is published as a file under the broadcast's name",
};

const DASHBOARD_HELP = {
  token:
    "access token (16+ characters): send Authorization: Bearer TOKEN, or open the page once with ?token=TOKEN (kept in a cookie); prefer DS_AUTH_TOKEN, a flag shows in ps",
  file: 'file with one "user:password" line: HTTP basic auth (or DS_AUTH_CREDENTIALS=user:password)',
};

const REQUIRE_KEYS_HELP = (flag: string) =>
  `a missing ${flag} file is an error (exit 2) instead of being created: for deployments, where distribustream keys init makes the keys once (also DS_REQUIRE_KEYS=1)`;

const CHECK_CONFIG_HELP =
  'check the whole configuration (flags, DS_* environment, --conf file, and the files, keys, folders and URLs it names) as a start would, print "configuration ok" and the settings (secrets redacted) as JSON, and exit 0, or 2 naming the bad setting; listens on nothing, connects nowhere, writes no file';

const common = (cmd: Command) =>
  cmd
    .addHelpText("after", EXIT_STATUS)
    .option("--conf <file.yml>", "YAML config file (keys as the long flags, snake_case: data_port, chunk_size, ...)")
    .option("--check-config", CHECK_CONFIG_HELP)
    .addOption(
      new Option("--log-level <level>", "log level").choices([
        "fatal",
        "error",
        "warn",
        "info",
        "debug",
        "trace",
        "silent",
      ]),
    )
    .option(
      "--log-format <format>",
      "json (one object a line) or pretty (short human lines); default: pretty when stdout is a terminal, else json",
    );

common(
  program
    .command("up")
    .description(
      "run tracker, checksum, a seeder and the dashboard in one process on the in-memory swarm store (one tracker process only); creates a demo file if the media folder is empty, and broadcasts demo-live (an ffmpeg test pattern, or a media file looped) unless --live is given",
    )
    .option("--media <dir>", "folder to publish (default ./media; original key: file_root)")
    .option("--origin <url>", ORIGIN_HELP, collect)
    .option("--origin-list <file>", ORIGIN_LIST_HELP)
    .option("--origin-poll <seconds>", ORIGIN_POLL_HELP)
    .option("--origin-allow <cidr>", ORIGIN_ALLOW_HELP, collect)
    .option("--live <NAME=SOURCE>", LIVE_HELP.live, collect)
    .option("--live-bitrate <bits/s>", LIVE_HELP.bitrate)
    .option("--live-loop", LIVE_HELP.loop)
    .option("--live-window <chunks>", LIVE_HELP.window)
    .option("--live-record <dir>", LIVE_HELP.record)
    .option("--state-dir <dir>", `${LIVE_HELP.stateDir} (default DATA_DIR/live)`)
    .option("--host <addr>", "bind address of the PDTP port (default 0.0.0.0)")
    .option("--port <n>", "PDTP port (default 6086)")
    .option("--tls-cert <file.pem>", `${TLS_CERT_HELP}; download URLs become pdtps://`)
    .option("--tls-key <file.pem>", TLS_KEY_HELP)
    .option("--max-sessions-per-ip <n>", LIMIT_HELP.sessions)
    .option("--max-messages-per-ip <n>", LIMIT_HELP.messages)
    .option("--vhost <name>", "host name viewers use to reach this machine; handed to peers as the seeder's address")
    .option("--data-port <n>", "seeder data-plane port (default 8000; original key: listen_port)")
    .option("--checksum-port <n>", "checksum service port (default 6088)")
    .option("--metrics-port <n>", "Prometheus /metrics port (default 9086)")
    .option("--metrics-host <addr>", METRICS_HOST_HELP)
    .option("--chunk-size <bytes>", "chunk size of published files (default 262144)")
    .option("--data-dir <dir>", "folder for keys (default .distribustream)")
    .option("--redis <url>", "keep swarm state in Redis (also REDIS_URL); without it, in memory")
    .option("--redis-ca <file.pem>", REDIS_CA_HELP)
    .option("--dashboard-host <addr>", "dashboard bind address (default 127.0.0.1)")
    .option("--dashboard-port <n>", "dashboard port (default 6087; 0 = any free port)")
    .option("--dashboard-auth-token <token>", DASHBOARD_HELP.token)
    .option("--dashboard-auth-file <file>", 'file with one "user:password" line: HTTP basic auth'),
).action(run((p, c) => [p.preflightUp, c.runUp] as const));

common(
  program
    .command("tracker")
    .description(
      "run the PDTP tracker; with --redis any number of replicas share swarm state, without it the in-memory store serves exactly one tracker process",
    )
    .option("--host <addr>", "bind address (default 0.0.0.0)")
    .option(
      "--redis <url>",
      "redis://[:password@]host:port, rediss:// (TLS) or redis+cluster://host1:port1,host2:port2",
    )
    .option("--redis-ca <file.pem>", REDIS_CA_HELP)
    .option("--port <n>", "PDTP port (default 6086)")
    .option("--tls-cert <file.pem>", `${TLS_CERT_HELP}; peers then use pdtps:// URLs`)
    .option("--tls-key <file.pem>", TLS_KEY_HELP)
    .option("--max-sessions-per-ip <n>", LIMIT_HELP.sessions)
    .option("--max-messages-per-ip <n>", LIMIT_HELP.messages)
    .option("--checksum <host:port>", "checksum service (default 127.0.0.1:6088)")
    .option(
      "--checksum-ca <file.pem>",
      "reach the checksum service over TLS, trusting this CA (the checksum service runs with --tls-cert)",
    )
    .option("--chunk-size <bytes>", "chunk size of published files (default 262144)")
    .option("--metrics-port <n>", "Prometheus /metrics port (default 9086)")
    .option("--metrics-host <addr>", METRICS_HOST_HELP)
    .option("--drain-delay <seconds>", DRAIN_DELAY_HELP)
    .option(
      "--ticket-key <file>",
      "Ed25519 PEM key(s) that sign tickets; created if missing unless --require-keys, re-read when it changes (see ticket-key rotate; default .distribustream/ticket-key.pem)",
    )
    .option(
      "--ticket-key-overlap <seconds>",
      "a key added to the ticket key file signs only after this long, once every replica sent it to its peers (default 10)",
    )
    .option("--peer-ttl <seconds>", "forget peers not heard from for this long (default 30)")
    .option(
      "--stream-retire-after <seconds>",
      "forget a stream (meta, manifest, hash pieces, name) once no seeder and no viewer was in it for this long; a seeder publishing it later has it hashed afresh (default 300)",
    )
    .option(
      "--seeder-tokens <file>",
      "credentials file of seeder tokens (see keys init, seeder-token): a seeder must present a valid token; re-read when it changes; required unless --insecure-open-seeding",
    )
    .option(
      "--insecure-open-seeding",
      "accept any peer as a seeder, without credentials: only for a tracker no stranger can reach",
    )
    .option(
      "--skip-peer-probe",
      "use every viewer as a source without first checking that its data port accepts a connection from the tracker (a trusted LAN where every peer reaches every other)",
    )
    .option("--require-keys", REQUIRE_KEYS_HELP("--ticket-key")),
).action(run((p, c) => [p.preflightTracker, c.runTracker] as const));

common(
  program
    .command("checksum")
    .description("run the checksum service (internal): hashes published files over the data plane and signs manifests")
    .option("--host <addr>", "bind address (default 127.0.0.1; open it only to the trackers)")
    .option("--port <n>", "gRPC port (default 6088)")
    .option("--tls-cert <file.pem>", `${TLS_CERT_HELP}; trackers then need --checksum-ca`)
    .option("--tls-key <file.pem>", TLS_KEY_HELP)
    .option("--metrics-port <n>", "Prometheus /metrics port (default 9088)")
    .option("--metrics-host <addr>", METRICS_HOST_HELP)
    .option("--drain-delay <seconds>", DRAIN_DELAY_HELP)
    .option("--origin-allow <cidr>", ORIGIN_ALLOW_HELP, collect)
    .option(
      "--network-key <file>",
      "Ed25519 PEM network key; created if missing unless --require-keys (default .distribustream/network-key.pem)",
    )
    .option("--require-keys", REQUIRE_KEYS_HELP("--network-key")),
).action(run((p, c) => [p.preflightChecksum, c.runChecksum] as const));

common(
  program
    .command("dashboard")
    .description(
      "run the operators' dashboard (web pages, /api/stats.json, /metrics) of the trackers sharing a Redis swarm store: read-only",
    )
    .option("--host <addr>", "bind address (default 127.0.0.1; any other needs --auth-token or --auth-file)")
    .option("--port <n>", "HTTP port (default 6087)")
    .option("--redis <url>", "the trackers' swarm store: redis://, rediss:// or redis+cluster:// (required)")
    .option("--redis-ca <file.pem>", REDIS_CA_HELP)
    .option("--auth-token <token>", DASHBOARD_HELP.token)
    .option(
      "--auth-token-file <file>",
      "file holding the access token (one line, 16+ characters), e.g. keys init's dashboard-token or a mounted Secret",
    )
    .option("--auth-file <file>", DASHBOARD_HELP.file)
    .option(
      "--checksum-metrics <url>",
      "http://HOST:PORT of the checksum service's metrics server (its --metrics-port): show its health and hash rate",
    ),
).action(run((p, c) => [p.preflightDashboard, c.runDashboard] as const));

common(
  program
    .command("seeder")
    .description(
      "publish the files of a folder (watched), HTTP(S) origins (polled) and live inputs (--live), and serve them on the data plane",
    )
    .option(
      "--tracker <address>",
      "tracker PDTP address: HOST:PORT, or pdtps://HOST:PORT for TLS (default 127.0.0.1:6086)",
    )
    .option("--tls-ca <file.pem>", "CA to trust for a pdtps:// tracker (default: the system's roots)")
    .option(
      "--media <dir>",
      "folder to publish (default ./media unless origins or live inputs are given; original key: file_root)",
    )
    .option("--origin <url>", ORIGIN_HELP, collect)
    .option("--origin-list <file>", ORIGIN_LIST_HELP)
    .option("--origin-poll <seconds>", ORIGIN_POLL_HELP)
    .option("--origin-allow <cidr>", ORIGIN_ALLOW_HELP, collect)
    .option("--live <NAME=SOURCE>", LIVE_HELP.live, collect)
    .option("--live-bitrate <bits/s>", LIVE_HELP.bitrate)
    .option("--live-loop", LIVE_HELP.loop)
    .option("--live-window <chunks>", LIVE_HELP.window)
    .option("--live-record <dir>", LIVE_HELP.record)
    .option(
      "--state-dir <dir>",
      `${LIVE_HELP.stateDir} (default .distribustream/live beside the media folder, or in the working directory)`,
    )
    .option("--data-host <addr>", "data-plane bind address (default 0.0.0.0)")
    .option("--data-port <n>", "data-plane port (default 8000; original key: listen_port)")
    .option(
      "--advertise <host[:port]>",
      "address other peers (viewers, outside) are told to reach the data plane by, when it is not the address the tracker sees; a port when the reachable one differs from --data-port (a published port, a NodePort, a NAT forward)",
    )
    .option(
      "--internal-address <host[:port]>",
      "address the checksum service reads the data plane from (inside the cluster or compose network), when it is not the address the tracker sees (default: that address and --data-port)",
    )
    .option("--metrics-port <n>", "Prometheus /metrics port (default 9087)")
    .option("--metrics-host <addr>", METRICS_HOST_HELP)
    .option(
      "--max-upload-rate <rate>",
      "cap the data plane's upload over all fetchers, e.g. 16M (bytes/s; default: none)",
    )
    .option("--token <token>", "seeder token issued by the operator (prefer --token-file or DS_SEEDER_TOKEN)")
    .option("--token-file <file>", "file holding the seeder token, e.g. a mounted Kubernetes Secret"),
).action(run((p, c) => [p.preflightSeeder, c.runSeeder] as const));

const TOKENS_FILE_HELP = "credentials file (also DS_SEEDER_TOKENS; default .distribustream/seeder-tokens)";
const seederToken = program
  .command("seeder-token")
  .description("issue, revoke and list the seeder tokens of a credentials file (the tracker's --seeder-tokens)");
seederToken
  .command("create")
  .description("print a new seeder token once and add its hash to the file (created with mode 0600)")
  .option("--file <file>", TOKENS_FILE_HELP)
  .option("--name <label>", "label to tell the token apart in lists and logs")
  .action(sync(async (opts: { file?: string; name?: string }) => (await seederTokens()).createSeederToken(opts)));
seederToken
  .command("revoke")
  .description("revoke a token: trackers reading the file refuse it and end its sessions within seconds")
  .argument("<id>", "token id (the part after dss_, as listed)")
  .option("--file <file>", TOKENS_FILE_HELP)
  .action(sync(async (id: string, opts: { file?: string }) => (await seederTokens()).revokeSeederToken(id, opts)));
seederToken
  .command("list")
  .description("list ids, labels, creation and revocation times (never secrets)")
  .option("--file <file>", TOKENS_FILE_HELP)
  .action(sync(async (opts: { file?: string }) => (await seederTokens()).listSeederTokens(opts)));

const TICKET_KEY_HELP = "ticket key file (also DS_TICKET_KEY; default .distribustream/ticket-key.pem)";
const ticketKey = program
  .command("ticket-key")
  .description("rotate and list the tracker's ticket keys without dropping a session (the tracker's --ticket-key)");
ticketKey
  .command("rotate")
  .description(
    "add a new key (printed: its id); trackers publish it, sign with it after the overlap; keeps one old key",
  )
  .option("--ticket-key <file>", TICKET_KEY_HELP)
  .action(sync(async (opts: { ticketKey?: string }) => (await keyCommands()).rotateTicketKey(opts)));
ticketKey
  .command("list")
  .description("list the key ids of the file, oldest first")
  .option("--ticket-key <file>", TICKET_KEY_HELP)
  .action(sync(async (opts: { ticketKey?: string }) => (await keyCommands()).listTicketKeys(opts)));
program
  .command("network-key")
  .description("print the network key's fingerprint, which viewers pin (dsclient --network-key, or ?key= in the URL)")
  .option("--network-key <file>", "network key file (also DS_NETWORK_KEY; default .distribustream/network-key.pem)")
  .action(sync(async (opts: { networkKey?: string }) => (await keyCommands()).showNetworkKey(opts)));

program
  .command("dsclient")
  .description(
    "download or watch a stream: the dsclient command (distribustream dsclient --help lists its options and exit codes)",
  )
  .usage("[dsclient options] <pdtp://HOST[:PORT]/NAME...>")
  .helpOption(false)
  .allowUnknownOption()
  .allowExcessArguments()
  .argument("[args...]")
  // reached only through `distribustream help dsclient`: main.ts runs dsclient itself
  .action(async () => {
    const { exitWith, runDsclient } = await import("@distribustream/client/command");
    exitWith(runDsclient(["--help"]));
  });

program
  .command("healthcheck")
  .description(
    "probe a service once, for container healthchecks and Kubernetes probes: grpc://HOST:PORT (gRPC health; grpcs:// over TLS) or http://HOST:PORT/PATH (GET)",
  )
  .addHelpText(
    "after",
    `
Exit status:
  0  healthy
  1  not healthy, or no answer in time (one line on stderr says why)
  2  bad usage
`,
  )
  .argument("<target>", "grpc://HOST:PORT, grpcs://HOST:PORT or http://HOST:PORT/PATH")
  .option("--timeout <ms>", "give up after this many milliseconds (default 3000)")
  .option("--ca <file.pem>", "CA certificate(s) to trust for a grpcs:// target (default: the system's roots)")
  .exitOverride((err) => {
    // commander's own usage errors (no TARGET, an unknown option) are bad usage too
    if (err.exitCode === 0) process.exit(0);
    process.stderr.write(`${HEALTHCHECK_USAGE}\n`);
    process.exit(2);
  })
  .action(async (target: string, opts: { timeout?: string; ca?: string }) => {
    let code: number;
    try {
      code = await runHealthcheck(target, opts, {
        out: (s) => process.stdout.write(s),
        err: (s) => process.stderr.write(s),
      });
    } catch (err) {
      if (!(err instanceof HealthcheckUsageError)) throw err;
      process.stderr.write(`distribustream healthcheck: ${err.message}\n${HEALTHCHECK_USAGE}\n`);
      code = 2;
    }
    process.exit(code);
  });

const keys = program.command("keys").description("the shared keys and credentials of a deployment");
keys
  .command("init")
  .description(
    "create what is missing in DIR and keep what exists (safe on every start of an init container): ticket-key.pem (the trackers' --ticket-key), network-key.pem (the checksum service's --network-key), seeder-tokens (the trackers' --seeder-tokens) and seeder-token (the seeder's --token-file); files mode 0600; prints one line per file, never a secret",
  )
  .option("--dir <dir>", "folder of the keys (also DS_KEYS_DIR), e.g. /data/keys")
  .option("--dashboard-auth", "also dashboard-token, for the dashboard's --auth-token-file (also DS_DASHBOARD_AUTH=1)")
  .action(
    sync(async (opts: { dir?: string; dashboardAuth?: boolean }) => (await import("./keysInit.js")).initKeys(opts)),
  );

/** A command that runs and returns; a ConfigError exits 2 with its message. */
function sync<A extends unknown[]>(fn: (...args: A) => Promise<void>) {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      process.stderr.write(`distribustream: ${err.message}\n`);
      process.exit(2);
    }
  };
}

type Flags = Record<string, unknown>;

/**
 * A service command: its preflight (every check a start makes before it
 * serves) and its start from what the preflight returns. With --check-config
 * only the preflight runs. A ConfigError exits 2 with its message.
 */
function run<P extends { cfg: object }>(
  pick: (
    preflights: typeof import("./preflight.js"),
    starts: typeof import("./commands.js"),
  ) => readonly [
    preflight: (flags: Flags, confFile: string | undefined, env: NodeJS.ProcessEnv) => P,
    start: (plan: P) => Promise<void>,
  ],
) {
  return async (opts: Flags) => {
    const [preflight, start] = pick(...(await services()));
    const { conf, checkConfig, ...flags } = opts;
    try {
      const plan = preflight(flags, conf as string | undefined, process.env);
      if (checkConfig) {
        const { redactedSettings } = await import("./preflight.js");
        process.stdout.write(`configuration ok\n${JSON.stringify(redactedSettings(plan.cfg))}\n`);
        return;
      }
      await start(plan);
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`distribustream: ${err.message}\n`);
        process.exit(2);
      }
      const e = err as NodeJS.ErrnoException;
      if (e.code === "EADDRINUSE") {
        process.stderr.write(`distribustream: ${e.message} (is another instance running? pick another port)\n`);
        process.exit(1);
      }
      process.stderr.write(`distribustream: ${e.stack ?? e.message}\n`);
      process.exit(1);
    }
  };
}

// every command answers --version (dsclient's own program does too)
(function versions(cmd: Command) {
  for (const sub of cmd.commands) {
    if (sub.name() !== "dsclient") sub.version(VERSION);
    versions(sub);
  }
})(program);
