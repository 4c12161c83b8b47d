export { CredentialRefusedError, startSeeder, SEEDER_AGENT, type SeederOptions, type RunningSeeder } from "./seeder.js";
export { parseRate, rateSetting } from "@distribustream/data-plane";
export {
  checkOriginNames,
  defaultStreamName,
  OriginListError,
  parseOriginEntry,
  parseOriginList,
  type OriginSpec,
} from "./originList.js";
