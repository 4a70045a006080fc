// Timestamps between the database's text and the API's ISO-8601.

// Postgres's text for a TIMESTAMP (and the ISO form JSON functions give): whole seconds, then
// 0 to 6 fraction digits with trailing zeros dropped.
export const DB_TIMESTAMP = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?$/;

/**
 * The design's TIMESTAMP columns hold UTC without a zone; the API speaks ISO-8601 with `Z` and
 * milliseconds, like `Date#toISOString` (the fraction is cut, not rounded). The database's own
 * text is rewritten as a string: a list page formats 40 timestamps, and parsing each into a Date
 * cost twice as much. Anything else (years past 9999, BC) goes through Date.
 */
export function toIso(timestamp: string | Date): string {
  if (timestamp instanceof Date) return timestamp.toISOString();
  if (DB_TIMESTAMP.test(timestamp)) {
    const millis = timestamp.length > 20 ? timestamp.slice(20, 23).padEnd(3, "0") : "000";
    return `${timestamp.slice(0, 10)}T${timestamp.slice(11, 19)}.${millis}Z`;
  }
  return new Date(`${timestamp.replace(" ", "T")}Z`).toISOString();
}

/** The other direction: a Date as the text a TIMESTAMP (UTC, no zone) column takes. */
export function toDbTime(date: Date): string {
  return date.toISOString().replace("T", " ").replace("Z", "");
}

/** A TIMESTAMP column's text (UTC, no zone) as a Date. */
export function fromDbTime(text: string): Date {
  return new Date(`${text.replace(" ", "T")}Z`);
}
