import { initTRPC } from "@trpc/server";
import { DomainError, forbidden, unauthorized } from "../errors";
import { authenticate } from "../services/auth";
import type { Context } from "./context";
import { publicDetails, publicMessage, toTRPCError } from "./errors";

const t = initTRPC.context<Context>().create({
  // tRPC adds `data.stack` outside production; this shape never carries it, whatever NODE_ENV is.
  isDev: false,
  errorFormatter({ shape, error, ctx }) {
    return {
      code: shape.code,
      message: publicMessage(error, ctx?.requestId),
      data: {
        code: shape.data.code,
        httpStatus: shape.data.httpStatus,
        ...(shape.data.path ? { path: shape.data.path } : {}),
        ...(ctx?.requestId ? { requestId: ctx.requestId } : {}),
        ...publicDetails(error),
      },
    };
  },
});

export const router = t.router;
export const createCallerFactory = t.createCallerFactory;

/**
 * Every procedure's one outer middleware (each level of tRPC's middleware chain copies the call's
 * options twice, so there is one, not two): the services' DomainErrors become tRPC errors with
 * the right code, for HTTP and callers alike; the span and counters of observability see that
 * final outcome (auth and input errors included).
 */
const base = t.middleware(({ ctx, path, type, next }) => {
  const run = async () => {
    const result = await next();
    if (!result.ok && result.error.cause instanceof DomainError) return { ...result, error: toTRPCError(result.error.cause) };
    return result;
  };
  return ctx.observability ? ctx.observability.procedure({ path, type, requestId: ctx.requestId }, run) : run();
});

export const publicProcedure = t.procedure.use(base);

/** Narrows `ctx.user`: the token is valid and its session row is alive. */
export const protectedProcedure = publicProcedure.use(async ({ ctx, next }) => {
  if (!ctx.accessToken) throw toTRPCError(unauthorized("Sign in first: send Authorization: Bearer <accessToken>"));
  try {
    const user = await authenticate(ctx.db, { tokens: ctx.tokens, now: ctx.clock() }, ctx.accessToken);
    // tRPC merges this into the context: only what is new is passed.
    return next({ ctx: { user } });
  } catch (error) {
    if (error instanceof DomainError) throw toTRPCError(error);
    throw error;
  }
});

export const adminProcedure = protectedProcedure.use(({ ctx, next }) => {
  if (ctx.user.role !== "admin") throw toTRPCError(forbidden("Only an admin may do this"));
  return next();
});
