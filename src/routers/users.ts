import * as v from "valibot";
import { userRoles } from "../db/schema";
import { cursor, limit, optionalInput, uuid } from "../lib/validation";
import * as usersService from "../services/users";
import { auditContextOf } from "../trpc/context";
import { adminProcedure, router } from "../trpc/init";

const role = v.picklist(userRoles, `role must be one of ${userRoles.join(", ")}`);
const byId = v.object({ id: uuid("id") });

export const usersRouter = router({
  list: adminProcedure
    .input(
      optionalInput({
        search: v.optional(
          v.pipe(
            v.string("search must be a string"),
            v.maxLength(255, "search must be at most 255 characters"),
            v.check((s: string) => !s.includes("\0"), "search must not contain NUL characters"),
          ),
        ),
        role: v.optional(role),
        limit,
        cursor,
      }),
    )
    .query(({ ctx, input }) => usersService.listUsers(ctx.db, input)),
  byId: adminProcedure.input(byId).query(({ ctx, input }) => usersService.getUserById(ctx.db, input.id)),
  setRole: adminProcedure
    .input(v.object({ id: uuid("id"), role }))
    .mutation(({ ctx, input }) => usersService.setRole(ctx.db, auditContextOf(ctx), input)),
  revokeSessions: adminProcedure
    .input(byId)
    .mutation(({ ctx, input }) => usersService.revokeUserSessions(ctx.db, auditContextOf(ctx), input.id)),
  disable: adminProcedure.input(byId).mutation(({ ctx, input }) => usersService.disableUser(ctx.db, auditContextOf(ctx), input.id)),
  enable: adminProcedure.input(byId).mutation(({ ctx, input }) => usersService.enableUser(ctx.db, auditContextOf(ctx), input.id)),
});
