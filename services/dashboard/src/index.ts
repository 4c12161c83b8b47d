export { startDashboard, type DashboardOptions, type RunningDashboard } from "./dashboard.js";
export { isLoopback, parseBasicCredentials, type AccessControl } from "./access.js";
export { ChecksumProbe } from "./checksumProbe.js";
export type * from "./api.js";
