/**
 * Tags, in one place: a stack transformation adds the deployer's tags to every taggable AWS resource
 * the program creates. A transformation (rather than provider default tags) keeps the tags in each
 * resource's own inputs, so previews, the policy rules and mocked tests all see them.
 */
import * as pulumi from "@pulumi/pulumi";

import { TAGGABLE_TYPES } from "./taggable";

export { TAGGABLE_TYPES, requiredTags } from "./taggable";

/** Registers the transformation; call once, first thing in the program. */
export function applyDefaultTags(tags: Readonly<Record<string, string>>): void {
  pulumi.runtime.registerStackTransformation((args) => {
    if (!TAGGABLE_TYPES.has(args.type)) return undefined;
    const own = (args.props as { tags?: pulumi.Input<Record<string, pulumi.Input<string>>> }).tags;
    const merged = own === undefined ? { ...tags } : pulumi.output(own).apply((t) => ({ ...(t ?? {}), ...tags }));
    return { props: { ...args.props, tags: merged }, opts: args.opts };
  });
}
