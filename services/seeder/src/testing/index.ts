export { TestTracker } from "./testTracker.js";
