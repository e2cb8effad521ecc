/** The jobs layer: running one job (execute), the stack lease, the queue, the drift schedule and its webhook. */
export * from "./types";
export * from "./execute";
export * from "./lease";
export * from "./queue";
export * from "./schedule";
export * from "./webhook";
