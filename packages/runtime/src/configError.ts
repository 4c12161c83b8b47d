/**
 * Invalid configuration; the message names the setting, where it came from and what was wrong.
 * A module of its own, so that a command can catch it without loading the config schemas.
 */
export class ConfigError extends Error {
  override name = "ConfigError";
}
