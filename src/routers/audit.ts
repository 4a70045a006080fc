import * as v from "valibot";
import { cursor, limit, optionalInput, uuid } from "../lib/validation";
import { auditActions, listAuditEvents } from "../services/audit";
import { adminProcedure, router } from "../trpc/init";

export const auditRouter = router({
  list: adminProcedure
    .input(
      optionalInput({
        actorId: v.optional(uuid("actorId")),
        targetId: v.optional(uuid("targetId")),
        action: v.optional(v.picklist(auditActions, "action must be one of the audited actions (see the API docs)")),
        limit,
        cursor,
      }),
    )
    .query(({ ctx, input }) => listAuditEvents(ctx.db, input)),
});
