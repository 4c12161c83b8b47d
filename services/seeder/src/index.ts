export { CredentialRefusedError, startSeeder, SEEDER_AGENT, type SeederOptions, type RunningSeeder } from "./seeder.js";
export {
  checkOriginNames,
  defaultStreamName,
  OriginListError,
  parseOriginEntry,
  parseOriginList,
  type OriginSpec,
} from "./originList.js";
