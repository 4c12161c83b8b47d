import js from "@eslint/js";
import { createTypeScriptImportResolver } from "eslint-import-resolver-typescript";
import importX from "eslint-plugin-import-x";
import tseslint from "typescript-eslint";

/** node:test's test(), describe() and hooks return promises the runner awaits itself. */
const NODE_TEST_CALLS = {
  from: "package",
  package: "node:test",
  name: ["test", "describe", "it", "suite", "before", "after", "beforeEach", "afterEach"],
};

export default tseslint.config(
  { ignores: ["**/dist/**", "**/node_modules/**", "packages/pdtp/src/gen/**", "bench/results/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: "readonly",
        console: "readonly",
        Buffer: "readonly",
        URL: "readonly",
        setTimeout: "readonly",
        clearTimeout: "readonly",
        setInterval: "readonly",
        clearInterval: "readonly",
        setImmediate: "readonly",
        fetch: "readonly",
      },
    },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["@distribustream/*/src/*", "@distribustream/*/dist/*"],
              message: "import a package by its name, not its internals",
            },
          ],
        },
      ],
    },
  },
  {
    // Typed rules: what a type checker knows and a plain linter does not (a promise nobody awaits,
    // a promise where a callback's void was expected, a switch that misses a case).
    files: ["**/*.ts"],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { "import-x": importX },
    settings: {
      "import-x/resolver-next": [createTypeScriptImportResolver({ alwaysTryTypes: true })],
      // without these, import-x does not parse .ts dependencies and sees no cycle at all
      "import-x/extensions": [".ts", ".js", ".mjs"],
      "import-x/parsers": { "@typescript-eslint/parser": [".ts"] },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": ["error", { allowForKnownSafeCalls: [NODE_TEST_CALLS] }],
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/await-thenable": "error",
      "@typescript-eslint/switch-exhaustiveness-check": ["error", { considerDefaultExhaustiveForUnions: true }],
      // Packages cannot import each other in a cycle (tsc -b refuses circular project references);
      // this catches cycles between the modules of one package.
      "import-x/no-cycle": ["error", { ignoreExternal: true }],
    },
  },
);
