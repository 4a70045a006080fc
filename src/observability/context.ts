import { AsyncLocalStorage } from "node:async_hooks";

/** Which request and procedure a SQL statement runs for, so a slow-statement line can name them. */
export interface CallScope {
  requestId: string;
  procedure: string;
}

export const callScope = new AsyncLocalStorage<CallScope>();
