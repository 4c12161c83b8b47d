export { download, AGENT, type DownloadOptions, type DownloadResult, type Progress } from "./download.js";
export { DownloadError, OutputClosed, ExitCode, exitCodeOf } from "./errors.js";
export { defaultOutputName, resolveOutput, PART_SUFFIX, type OutputTarget } from "./outputTarget.js";
export { clientConfigSchema, loadClientConfig, type ClientConfig } from "./config.js";
export type { LiveProgress, LiveResult } from "./liveDownload.js";
