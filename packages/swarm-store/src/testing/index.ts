export {
  redisForTests,
  redisClusterForTests,
  restartableRedisForTests,
  type RestartableRedis,
  freePort,
  findOnPath,
  type TestRedis,
} from "./redisServer.js";
