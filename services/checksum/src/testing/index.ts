export { readManifest } from "./readManifest.js";
