// The Cloudflare Workers host: the same app factory and jobs as the Bun host, one postgres.js
// client per invocation (a socket cannot outlive the request that opened it on Workers). The
// Worker never migrates: run `bun run db:migrate` against the database before deploying.
// wrangler.toml swaps ./lib/passwords (native argon2) for ./lib/passwords-wasm at bundle time.
import { createApp } from "./app";
import { createPostgresDatabase, type DatabaseHandle } from "./db/client";
import { createDeps } from "./deps";
import { type Env, EnvError, parseEnv } from "./env";
import { runScheduledJob } from "./jobs/dispatch";
import { describeError } from "./lib/logger";

// The few Workers runtime types used here; @cloudflare/workers-types would redeclare the DOM
// globals that bun-types already declares.
interface ExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
}
interface ScheduledController {
  readonly cron: string;
  readonly scheduledTime: number;
}
interface ExportedHandler<B> {
  fetch(request: Request, bindings: B, ctx: ExecutionContext): Promise<Response>;
  scheduled(controller: ScheduledController, bindings: B, ctx: ExecutionContext): Promise<void>;
}

/** What wrangler.toml and `wrangler secret put` provide: strings, plus the optional Hyperdrive. */
export interface WorkerBindings {
  HYPERDRIVE?: { connectionString: string };
  /** A second Hyperdrive configuration in front of the read replica; it stands for DATABASE_READ_URL. */
  HYPERDRIVE_READ?: { connectionString: string };
  [name: string]: unknown;
}

// Hyperdrive keeps a warm pool next to the database; Cloudflare allows 6 open connections per
// invocation, and a tRPC batch runs its calls in parallel, so a handful is plenty.
const MAX_CONNECTIONS_PER_INVOCATION = 5;

/** Validated every invocation: a bad binding answers 500 with one log line, it never crash-loops. */
export function parseWorkerEnv(bindings: WorkerBindings): Env & { DATABASE_URL: string; JWT_SECRET: string } {
  const hyperdrive = bindings.HYPERDRIVE?.connectionString;
  const hyperdriveRead = bindings.HYPERDRIVE_READ?.connectionString;
  const env = parseEnv({
    ...bindings,
    ...(hyperdrive ? { DATABASE_URL: hyperdrive } : {}),
    ...(hyperdriveRead ? { DATABASE_READ_URL: hyperdriveRead } : {}),
  });
  if (!env.DATABASE_URL) {
    throw new EnvError("Invalid environment: DATABASE_URL (a secret) or a HYPERDRIVE binding is required on Workers");
  }
  // workerd opens no SMTP connections and has no file system: mail is logged there (or delivered
  // by a Bun host running the deliver-mail job on the same database).
  if (env.MAIL_TRANSPORT !== "log") {
    throw new EnvError(
      `Invalid environment: MAIL_TRANSPORT=${env.MAIL_TRANSPORT} is not available on Workers (no SMTP sockets, no file system): use MAIL_TRANSPORT=log, or run the deliver-mail job on a Bun host`,
    );
  }
  // parseEnv already requires JWT_SECRET whenever DATABASE_URL is set.
  return env as Env & { DATABASE_URL: string; JWT_SECRET: string };
}

/**
 * postgres.js asks the server for the array type ids on each new connection, and a Worker opens
 * new connections on every request; the app never sends arrays as parameters (it builds array
 * literals), so that round trip is skipped. A fetch_types in the URL itself still wins.
 */
export function withWorkerUrlDefaults(url: string): string {
  const u = new URL(url);
  if (!u.searchParams.has("fetch_types")) u.searchParams.set("fetch_types", "false");
  return u.toString();
}

async function openInvocation(env: ReturnType<typeof parseWorkerEnv>) {
  const poolMax = Math.min(env.DATABASE_POOL_MAX, MAX_CONNECTIONS_PER_INVOCATION);
  // With a replica the invocation's connections are shared between the two pools (5 → 3 + 2),
  // so both together stay under Cloudflare's 6 per invocation.
  const readPoolMax = Math.max(1, Math.floor(poolMax / 2));
  const replica = env.DATABASE_READ_URL
    ? { readUrl: withWorkerUrlDefaults(env.DATABASE_READ_URL), readPoolMax, readMaxLagSeconds: env.DATABASE_READ_MAX_LAG_SECONDS }
    : {};
  const handle = await createPostgresDatabase({
    url: withWorkerUrlDefaults(env.DATABASE_URL),
    poolMax: env.DATABASE_READ_URL ? Math.max(1, poolMax - readPoolMax) : poolMax,
    prepare: env.DATABASE_PREPARE,
    ...replica,
  });
  // The invocation's database closes with its response: queued mail waits for the cron.
  return { handle, deps: { ...createDeps(env, handle), mailAfterCommit: false } };
}

function configError(error: unknown): Response {
  // One line, without the stack: the message already names the binding and what is wrong.
  console.error(
    JSON.stringify({ time: new Date().toISOString(), level: "error", msg: "worker misconfigured", error: (error as Error).message }),
  );
  return Response.json({ error: { message: "The service is misconfigured; the operator has been told" } }, { status: 500 });
}

/**
 * Closes the database once the body has been sent, not when the handler returns: a streamed tRPC
 * response (`trpc-accept: application/jsonl`) still runs queries after that.
 */
function closeAfterBody(response: Response, handle: DatabaseHandle, ctx: ExecutionContext): Response {
  const close = () => handle.close().catch(() => {});
  if (!response.body) {
    ctx.waitUntil(close());
    return response;
  }
  const { readable, writable } = new TransformStream();
  ctx.waitUntil(
    response.body
      .pipeTo(writable)
      .catch(() => {})
      .then(close),
  );
  return new Response(readable, response);
}

export default {
  async fetch(request, bindings, ctx) {
    let env: ReturnType<typeof parseWorkerEnv>;
    try {
      env = parseWorkerEnv(bindings);
    } catch (error) {
      if (error instanceof EnvError) return configError(error);
      throw error;
    }
    const { handle, deps } = await openInvocation(env);
    let response: Response;
    try {
      // No socket address on Workers: createApp takes the client from cf-connecting-ip.
      response = await createApp(deps).fetch(request, {});
    } catch (error) {
      ctx.waitUntil(handle.close().catch(() => {}));
      throw error;
    }
    return closeAfterBody(response, handle, ctx);
  },

  async scheduled(controller, bindings, _ctx) {
    let env: ReturnType<typeof parseWorkerEnv>;
    try {
      env = parseWorkerEnv(bindings);
    } catch (error) {
      if (error instanceof EnvError) {
        configError(error);
        return;
      }
      throw error;
    }
    const { handle, deps } = await openInvocation(env);
    try {
      const report = await runScheduledJob(controller.cron, deps, new Date(controller.scheduledTime));
      deps.logger[report.ok ? "info" : "error"]("scheduled job finished", { cron: controller.cron, ...report });
    } catch (error) {
      deps.logger.error("scheduled job failed", { cron: controller.cron, ...describeError(error) });
      throw error;
    } finally {
      await handle.close().catch(() => {});
    }
  },
} satisfies ExportedHandler<WorkerBindings>;
