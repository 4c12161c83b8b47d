import type { Logger } from "pino";

type Step = { name: string; run: () => Promise<void> | void };

/**
 * Graceful shutdown: on SIGTERM or SIGINT, runs the registered steps in
 * reverse order of registration (so things stop in reverse order of start),
 * then exits 0. A second signal, or steps taking longer than `graceMs`,
 * exits at once with status 1.
 */
export class Shutdown {
  private readonly steps: Step[] = [];
  private running: Promise<void> | undefined;

  constructor(
    private readonly log: Logger,
    private readonly graceMs = 15_000,
  ) {}

  add(name: string, run: Step["run"]): void {
    this.steps.push({ name, run });
  }

  /** Installs the signal handlers. */
  listen(): void {
    const onSignal = (signal: NodeJS.Signals) => {
      if (this.running) {
        this.log.warn({ signal }, "second signal, exiting now");
        process.exit(1);
      }
      this.log.info({ signal }, "shutting down");
      void this.run().then(() => process.exit(0));
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  }

  /** Runs every step once; later calls return the same promise. */
  run(): Promise<void> {
    this.running ??= (async () => {
      const timer = setTimeout(() => {
        this.log.error({ graceMs: this.graceMs }, "shutdown took too long, exiting");
        process.exit(1);
      }, this.graceMs);
      timer.unref();
      for (const step of [...this.steps].reverse()) {
        try {
          await step.run();
        } catch (err) {
          this.log.error({ err, step: step.name }, "shutdown step failed");
        }
      }
      clearTimeout(timer);
    })();
    return this.running;
  }
}
