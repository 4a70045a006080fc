import type { Database } from "../db/client";
import type { AppDeps } from "../deps";
import { verifyAccessToken } from "../lib/tokens";
import type { AuditContext } from "../services/audit";

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
 * The caller's address for throttling. On Workers there is no socket and `cf-connecting-ip` is
 * set by Cloudflare itself, so it is believed. On the Bun host any client can send that header
 * (or `x-forwarded-for`), so both are believed only behind a proxy we were told about
 * (TRUST_PROXY), and of `x-forwarded-for` only the last entry: the one our proxy appended.
 * The first entry is whatever the client wrote.
 */
export function clientAddressOf(headers: Headers, socketAddress: string | undefined, trustProxy: boolean): string {
  const onWorker = socketAddress === undefined;
  if (onWorker || trustProxy) {
    const cf = headers.get("cf-connecting-ip")?.trim();
    if (cf) return cf.slice(0, MAX_ADDRESS_LENGTH);
  }
  if (trustProxy) {
    const last = headers.get("x-forwarded-for")?.split(",").at(-1)?.trim();
    if (last) return last.slice(0, MAX_ADDRESS_LENGTH);
  }
  return socketAddress ?? "unknown";
}

// An IPv6 address is at most 45 characters; a longer header value is junk, and must not make the
// throttle's key (varchar(320)) overflow into a 500.
const MAX_ADDRESS_LENGTH = 64;

/** The audit trail's view of a request: who acted, from where, under which request id. */
export function auditContextOf(ctx: Context & { user?: { id: string } }): AuditContext {
  return { actorId: ctx.user?.id ?? null, ip: ctx.clientAddress, requestId: ctx.requestId, now: ctx.clock() };
}

/**
 * Where a public catalog read goes (products.list, products.byId, inventory.get). Anonymous
 * callers read `readDb` (the replica, when one is configured), which may lag the primary by the
 * replication delay. A caller whose access token verifies reads the primary: whoever can write
 * (an admin changing a product or its stock, a customer whose order took stock) sees their own
 * write on the next read. Only the signature is checked, no session lookup, so this costs no
 * round trip; a made-up token is not believed and reads the replica like anyone else.
 */
export async function catalogDb(ctx: Context): Promise<Database> {
  if (ctx.readDb === ctx.db || !ctx.accessToken) return ctx.readDb;
  try {
    await verifyAccessToken(ctx.tokens, ctx.accessToken, ctx.clock());
    return ctx.db;
  } catch {
    return ctx.readDb;
  }
}
