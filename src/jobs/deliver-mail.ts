import type { AppDeps } from "../deps";
import { describeError } from "../lib/logger";
import { mailTransportFor } from "../mail/transport";
import { deliverPendingMail } from "../services/mail";
import { describeHost } from "./runs";
import type { JobReport } from "./types";

export async function runDeliverMail(deps: AppDeps): Promise<JobReport> {
  const report = await deliverPendingMail({
    db: deps.db,
    transport: mailTransportFor(deps),
    logger: deps.logger,
    now: deps.clock(),
    appUrl: deps.env.APP_URL,
    from: deps.env.MAIL_FROM,
    host: describeHost(),
  });
  return { job: "deliver-mail", ok: report.failed === 0, ...report };
}

/**
 * Right after a commit that queued mail: deliver now instead of at the next minute. It runs in
 * the background, so the request's answer does not wait for (or reveal) the delivery; anything
 * it misses, the scheduled job picks up.
 */
export function deliverMailSoon(deps: AppDeps): void {
  if (deps.mailAfterCommit === false) return;
  setTimeout(() => {
    runDeliverMail(deps).catch((error) => deps.logger.warn("mail delivery after commit failed", describeError(error)));
  }, 0);
}
