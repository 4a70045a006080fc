import * as v from "valibot";
import { isCommonPassword } from "./common-passwords";

// Valibot's default messages quote the received value ("received \"hunter22\""). An error must
// never echo input back, so every default message is replaced by one built from the expectation.
v.setGlobalMessage((issue) => {
  switch (issue.kind) {
    case "schema":
      return issue.type === "object" || issue.type === "strict_object"
        ? "must be an object"
        : `must be ${describeExpected(issue.expected)}`;
    default:
      return `is invalid (${issue.type.replace(/_/g, " ")})`;
  }
});

function describeExpected(expected: string | null): string {
  if (!expected) return "valid";
  const simple: Record<string, string> = {
    string: "a string",
    number: "a number",
    boolean: "true or false",
    Array: "an array",
    Object: "an object",
  };
  return simple[expected] ?? `one of ${expected}`;
}

export const uuid = (field: string) => v.pipe(v.string(`${field} must be a UUID`), v.uuid(`${field} must be a UUID`), v.toLowerCase());

const MONEY_RE = /^(\d{1,8})(?:\.(\d{1,2}))?$/;

/** Normalises an accepted money string to exactly two fraction digits ("19.9" → "19.90"). */
export function normalizeMoney(input: string): string {
  const m = MONEY_RE.exec(input);
  if (!m) throw new Error("not a money string");
  const whole = m[1].replace(/^0+(?=\d)/, "");
  return `${whole}.${(m[2] ?? "").padEnd(2, "0")}`;
}

/** A decimal string from 0 to 99999999.99 with at most two fraction digits; no sign, no exponent. */
export const money = (field: string) =>
  v.pipe(
    v.string(`${field} must be a decimal string such as "19.99"`),
    v.regex(MONEY_RE, `${field} must be a decimal string from "0" to "99999999.99" with at most two fraction digits`),
    v.transform(normalizeMoney),
  );

export const email = v.pipe(
  v.string("email must be a string"),
  v.trim(),
  v.toLowerCase(),
  v.maxLength(255, "email must be at most 255 characters"),
  v.email("email must be a valid email address"),
);

export const PASSWORD_MIN_LENGTH = 8;
export const PASSWORD_MAX_LENGTH = 128;

/** The contract's password length, for API inputs and for ADMIN_PASSWORD alike. */
export const password = (field = "password") =>
  v.pipe(
    v.string(`${field} must be a string`),
    v.minLength(PASSWORD_MIN_LENGTH, `${field} must be ${PASSWORD_MIN_LENGTH} to ${PASSWORD_MAX_LENGTH} characters`),
    v.maxLength(PASSWORD_MAX_LENGTH, `${field} must be ${PASSWORD_MIN_LENGTH} to ${PASSWORD_MAX_LENGTH} characters`),
  );

/** Postgres text cannot hold NUL: refuse it at the edge instead of failing in the database. */
export const noNul = (field: string) => v.check((s: string) => !s.includes("\0"), `${field} must not contain NUL characters`);

export const limit = v.optional(
  v.pipe(
    v.number("limit must be an integer from 1 to 100"),
    v.integer("limit must be an integer from 1 to 100"),
    v.minValue(1, "limit must be an integer from 1 to 100"),
    v.maxValue(100, "limit must be an integer from 1 to 100"),
  ),
  20,
);

export const cursor = v.optional(v.nullable(v.pipe(v.string("cursor must be a string"), v.maxLength(1024, "cursor is not valid"))));

export const boundedInt = (field: string, min: number, max: number) =>
  v.pipe(
    v.number(`${field} must be an integer from ${min} to ${max}`),
    v.integer(`${field} must be an integer from ${min} to ${max}`),
    v.minValue(min, `${field} must be an integer from ${min} to ${max}`),
    v.maxValue(max, `${field} must be an integer from ${min} to ${max}`),
  );

/** For inputs whose fields are all optional: the whole input may be omitted. */
export const optionalInput = <T extends v.ObjectEntries>(entries: T) =>
  v.optional(v.object(entries), {} as v.InferInput<v.ObjectSchema<T, undefined>>);

/** A password being set (register, change, reset): also not one of the most common passwords. */
export const newPassword = (field = "password") =>
  v.pipe(
    password(field),
    v.check((p: string) => !isCommonPassword(p), `${field} is one of the most common passwords: choose another`),
  );

/** A password-reset or email-verification token as mailed (base64url, 43 characters). */
export const accountToken = v.pipe(
  v.string("token must be a string"),
  v.minLength(1, "token must not be empty"),
  v.maxLength(256, "token is not valid"),
  v.regex(/^[A-Za-z0-9_-]+$/, "token is not valid"),
);
