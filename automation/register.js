// Loads TypeScript without type-checking: `npm run build` type-checks once, and the CLI, the tests
// and the offline engine's child process start in about a second instead of ten.
process.env.TS_NODE_TRANSPILE_ONLY = "true";
process.env.TS_NODE_PROJECT = process.env.TS_NODE_PROJECT ?? require("path").join(__dirname, "..", "tsconfig.json");
require("ts-node/register/transpile-only");
