// Loads TypeScript without type-checking: `npm run build` type-checks once, and the CLI, the tests
// and the offline engine's child process start in about a second instead of ten. SWC does the
// transpiling (about ten times faster than TypeScript's own transpileModule on this code base).
const path = require("path");

require("./node20-inspect");

require("ts-node").register({
  project: path.join(__dirname, "..", "tsconfig.json"),
  swc: true,
});
