import * as v from "valibot";
import { deliverMailSoon } from "../jobs/deliver-mail";
import { accountToken, email, newPassword, password, uuid } from "../lib/validation";
import * as auth from "../services/auth";
import { auditContextOf, type Context } from "../trpc/context";
import { protectedProcedure, publicProcedure, router } from "../trpc/init";

const authDeps = (ctx: Context) => ({
  tokens: ctx.tokens,
  now: ctx.clock(),
  clientAddress: ctx.clientAddress,
  maxAgeSeconds: ctx.env.SESSION_MAX_AGE_SECONDS,
});

export const authRouter = router({
  register: publicProcedure.input(v.object({ email, password: newPassword("password") })).mutation(async ({ ctx, input }) => {
    const result = await auth.register(
      ctx.db,
      { ...authDeps(ctx), registerLimitPerHour: ctx.env.REGISTER_LIMIT_PER_HOUR },
      auditContextOf(ctx),
      input,
    );
    deliverMailSoon(ctx);
    return result;
  }),

  login: publicProcedure
    .input(v.object({ email, password: password("password") }))
    .mutation(({ ctx, input }) => auth.login(ctx.db, authDeps(ctx), auditContextOf(ctx), input)),

  me: protectedProcedure.query(({ ctx }) => auth.getUser(ctx.db, ctx.user.id)),

  refresh: protectedProcedure.mutation(({ ctx }) => auth.refreshSession(ctx.db, authDeps(ctx), ctx.user)),

  logout: protectedProcedure.mutation(({ ctx }) => auth.logout(ctx.db, auditContextOf(ctx), ctx.user)),

  logoutAll: protectedProcedure.mutation(({ ctx }) => auth.logoutAll(ctx.db, auditContextOf(ctx), ctx.user.id)),

  sessions: protectedProcedure.query(({ ctx }) => auth.listSessions(ctx.db, { now: ctx.clock() }, ctx.user)),

  revokeSession: protectedProcedure
    .input(v.object({ sessionId: uuid("sessionId") }))
    .mutation(({ ctx, input }) => auth.revokeSession(ctx.db, auditContextOf(ctx), ctx.user.id, input.sessionId)),

  changePassword: protectedProcedure
    .input(v.object({ currentPassword: password("currentPassword"), newPassword: newPassword("newPassword") }))
    .mutation(({ ctx, input }) => auth.changePassword(ctx.db, authDeps(ctx), auditContextOf(ctx), ctx.user, input)),

  requestPasswordReset: publicProcedure.input(v.object({ email })).mutation(async ({ ctx, input }) => {
    const result = await auth.requestPasswordReset(ctx.db, authDeps(ctx), auditContextOf(ctx), input.email);
    deliverMailSoon(ctx);
    return result;
  }),

  resetPassword: publicProcedure
    .input(v.object({ token: accountToken, newPassword: newPassword("newPassword") }))
    .mutation(({ ctx, input }) => auth.resetPassword(ctx.db, authDeps(ctx), auditContextOf(ctx), input)),

  requestEmailVerification: protectedProcedure.mutation(async ({ ctx }) => {
    const result = await auth.requestEmailVerification(ctx.db, { now: ctx.clock() }, ctx.user);
    deliverMailSoon(ctx);
    return result;
  }),

  verifyEmail: publicProcedure
    .input(v.object({ token: accountToken }))
    .mutation(({ ctx, input }) => auth.verifyEmail(ctx.db, { now: ctx.clock() }, auditContextOf(ctx), input.token)),
});
