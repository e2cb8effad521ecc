/** Types of dashboard/build.js, for the tests that build the dashboard before opening it. */
export declare function buildDashboard(options?: { force?: boolean; quiet?: boolean }): Promise<boolean>;
export declare function writeOpenApiTypes(): Promise<void>;
export declare const DASHBOARD_OUT: string;
