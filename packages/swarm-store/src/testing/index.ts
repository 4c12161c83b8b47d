export {
  redisForTests,
  redisClusterForTests,
  restartableRedisForTests,
  type RestartableRedis,
  findOnPath,
  type TestRedis,
} from "./redisServer.js";
export { redisTlsForTests, makeTestCertificates, type TestRedisTls } from "./redisTls.js";
export { freePort } from "./freePort.js";
