import * as v from "valibot";
import * as auth from "../services/auth";
import { email, password, uuid } from "../lib/validation";
import { protectedProcedure, publicProcedure, router } from "../trpc/init";

const credentials = v.object({ email, password: password("password") });

export const authRouter = router({
  register: publicProcedure
    .input(credentials)
    .mutation(({ ctx, input }) => auth.register(ctx.db, { tokens: ctx.tokens, now: ctx.clock() }, input)),

  login: publicProcedure
    .input(credentials)
    .mutation(({ ctx, input }) =>
      auth.login(ctx.db, { tokens: ctx.tokens, now: ctx.clock(), clientAddress: ctx.clientAddress }, input),
    ),

  me: protectedProcedure.query(({ ctx }) => auth.getUser(ctx.db, ctx.user.id)),

  refresh: protectedProcedure.mutation(({ ctx }) =>
    auth.refreshSession(ctx.db, { tokens: ctx.tokens, now: ctx.clock() }, ctx.user),
  ),

  logout: protectedProcedure.mutation(({ ctx }) => auth.logout(ctx.db, ctx.user)),

  logoutAll: protectedProcedure.mutation(({ ctx }) => auth.logoutAll(ctx.db, ctx.user.id)),

  sessions: protectedProcedure.query(({ ctx }) => auth.listSessions(ctx.db, { now: ctx.clock() }, ctx.user)),

  revokeSession: protectedProcedure
    .input(v.object({ sessionId: uuid("sessionId") }))
    .mutation(({ ctx, input }) => auth.revokeSession(ctx.db, ctx.user.id, input.sessionId)),

  changePassword: protectedProcedure
    .input(v.object({ currentPassword: password("currentPassword"), newPassword: password("newPassword") }))
    .mutation(({ ctx, input }) =>
      auth.changePassword(
        ctx.db,
        { tokens: ctx.tokens, now: ctx.clock(), clientAddress: ctx.clientAddress },
        ctx.user,
        input,
      ),
    ),
});
