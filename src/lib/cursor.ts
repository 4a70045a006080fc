import * as v from "valibot";
import { badRequest } from "../errors";

/**
 * Opaque keyset cursors: base64url of a JSON tuple. Decoding validates the tuple against the
 * schema of the list that issued it, so a tampered cursor is BAD_REQUEST, never a query error.
 */
export function encodeCursor(values: readonly unknown[]): string {
  return Buffer.from(JSON.stringify(values)).toString("base64url");
}

export function decodeCursor<T extends v.GenericSchema>(cursor: string, schema: T): v.InferOutput<T> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw badRequest("cursor is not valid: pass the nextCursor of the previous page");
  }
  const result = v.safeParse(schema, parsed);
  if (!result.success) throw badRequest("cursor is not valid: pass the nextCursor of the previous page");
  return result.output;
}

/** A database timestamp text as it appears in cursors ("2026-11-24 23:17:00.123456"). */
export const timestampText = v.pipe(v.string(), v.regex(/^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?$/));
export const uuidText = v.pipe(v.string(), v.uuid());


/**
 * `timestampText` that is also a real calendar instant Postgres accepts ("2026-02-31" or month 13
 * pass the shape check but make the `::timestamp` cast fail, which would be a 500, not a 400).
 */
export const calendarTimestampText = v.pipe(
  timestampText,
  v.check((text) => {
    const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})/.exec(text);
    if (!m) return false;
    const [year, month, day, hour, minute, second] = m.slice(1).map(Number);
    const d = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
    return (
      year >= 1 &&
      d.getUTCFullYear() === year &&
      d.getUTCMonth() === month - 1 &&
      d.getUTCDate() === day &&
      d.getUTCHours() === hour &&
      d.getUTCMinutes() === minute &&
      d.getUTCSeconds() === second
    );
  }),
);
