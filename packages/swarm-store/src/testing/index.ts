export { redisForTests, redisClusterForTests, freePort, findOnPath, type TestRedis } from "./redisServer.js";
