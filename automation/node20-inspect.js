// Node 20's util.inspect, asked for colors, loops for 15-50 s and then throws "Invalid string length"
// on an error whose stack names a file directly under a scoped node_modules directory, such as
// `node_modules/@pulumi/resource.ts` (where @pulumi/pulumi's own source maps point). Pulumi's
// program runner inspects a program's uncaught error exactly so, so on Node 20 a program that throws
// took that long to fail. Node 22 and 24 do not have the bug. On Node 20 only, errors are inspected
// without colors (the runner's fallback after the throw is the same text, uncoloured); nothing
// else changes. Loaded by automation/register.js, which the programs' nodeargs require.
"use strict";
if (process.versions.node.split(".")[0] === "20") {
  const util = require("util");
  const inspect = util.inspect;
  if (!inspect.__deployerNode20Guard) {
    const guarded = function (value, options, ...rest) {
      if (value instanceof Error && options !== null && typeof options === "object" && options.colors) options = { ...options, colors: false };
      return inspect.call(this, value, options, ...rest);
    };
    const descriptors = Object.getOwnPropertyDescriptors(inspect);
    delete descriptors.prototype;
    Object.defineProperties(guarded, descriptors);
    Object.defineProperty(guarded, "__deployerNode20Guard", { value: true });
    util.inspect = guarded;
  }
}
