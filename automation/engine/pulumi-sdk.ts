/**
 * The Automation API, loaded on first use. It pulls in the whole Pulumi runtime (about half a second
 * and 45 MB), which the service's startup, its readiness checks and the offline engine never need.
 */
type AutomationApi = typeof import("@pulumi/pulumi/automation");

let api: AutomationApi | undefined;

export function automationApi(): AutomationApi {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  api ??= require("@pulumi/pulumi/automation") as AutomationApi;
  return api;
}
