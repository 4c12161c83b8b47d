export {
  redisForTests,
  redisClusterForTests,
  restartableRedisForTests,
  type RestartableRedis,
  freePort,
  findOnPath,
  type TestRedis,
} from "./redisServer.js";
export { redisTlsForTests, makeTestCertificates, type TestRedisTls } from "./redisTls.js";
