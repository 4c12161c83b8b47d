export { CredentialRefusedError, startSeeder, SEEDER_AGENT, type SeederOptions, type RunningSeeder } from "./seeder.js";
