import type { Database } from "../db/client";
import type { Env } from "../env";
import type { Logger } from "../lib/logger";
import type { TokenConfig } from "../lib/tokens";

/** What the app is built from: one per process (Bun) or per request (Worker). */
export interface AppDeps {
  db: Database;
  env: Env;
  logger: Logger;
  tokens: TokenConfig;
  /** The current time; tests drive it to cross the throttle window without sleeping. */
  clock: () => Date;
}

export interface Context extends AppDeps {
  requestId: string;
  clientAddress: string;
  /** The bearer token, if the request carried one; checked only by protected procedures. */
  accessToken: string | null;
  resHeaders?: Headers;
}

export function bearerToken(header: string | null | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1] : null;
}

/**
 * The caller's address for throttling. `cf-connecting-ip` is set by Cloudflare itself;
 * `x-forwarded-for` is only believed behind a proxy we were told about (TRUST_PROXY).
 */
export function clientAddressOf(headers: Headers, socketAddress: string | undefined, trustProxy: boolean): string {
  const cf = headers.get("cf-connecting-ip")?.trim();
  if (cf) return cf;
  if (trustProxy) {
    const first = headers.get("x-forwarded-for")?.split(",")[0]?.trim();
    if (first) return first;
  }
  return socketAddress ?? "unknown";
}
