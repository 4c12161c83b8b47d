export { startSeeder, SEEDER_AGENT, type SeederOptions, type RunningSeeder } from "./seeder.js";
