import { TRPCError } from "@trpc/server";
import type { TRPC_ERROR_CODE_KEY } from "@trpc/server/rpc";
import { DomainError, type DomainErrorDetails } from "../errors";

/** The one place where domain errors become tRPC errors. */
export function toTRPCError(error: DomainError): TRPCError {
  return new TRPCError({ code: error.kind, message: error.message, cause: error });
}

interface SchemaIssue {
  message: string;
  path?: ReadonlyArray<PropertyKey | { key: PropertyKey }>;
}

function issuesOf(error: TRPCError): SchemaIssue[] | undefined {
  const issues = (error.cause as { issues?: unknown } | undefined)?.issues;
  return Array.isArray(issues) ? (issues as SchemaIssue[]) : undefined;
}

/** "items.0.quantity must be an integer from 1 to 1000" — names the field, never its value. */
export function describeIssues(issues: SchemaIssue[]): string {
  const parts = issues.slice(0, 5).map((issue) => {
    const path = (issue.path ?? []).map((p) => String(typeof p === "object" ? p.key : p)).join(".");
    if (!path) return issue.message;
    // Our messages usually start with the field's own name; do not say it twice.
    const leaf = path.split(".").pop() ?? path;
    return issue.message.startsWith(leaf) ? `${path}${issue.message.slice(leaf.length)}` : `${path}: ${issue.message}`;
  });
  return `Invalid input: ${[...new Set(parts)].join("; ")}`;
}

const GENERIC: Partial<Record<TRPC_ERROR_CODE_KEY, string>> = {
  PARSE_ERROR: "The request body is not valid JSON",
  BAD_REQUEST: "The request is not valid",
  NOT_FOUND: "No procedure at this path",
  METHOD_NOT_SUPPORTED: "Queries use GET and mutations use POST",
  PAYLOAD_TOO_LARGE: "The request body is too large",
  UNSUPPORTED_MEDIA_TYPE: "Send JSON",
  TIMEOUT: "The request took too long",
  CLIENT_CLOSED_REQUEST: "The request was cancelled",
};

/**
 * What a client may read of an error. Domain errors keep their message; validation errors are
 * rebuilt from the issues (so no input is echoed back); everything else gets a fixed message,
 * because tRPC's and the drivers' messages can carry SQL or input text.
 */
export function publicMessage(error: TRPCError, requestId: string | undefined): string {
  if (error.cause instanceof DomainError) return error.message;
  const issues = issuesOf(error);
  if (issues) return describeIssues(issues);
  if (error.code === "BAD_REQUEST" && error.message === "Batch call exceeds maximum size") {
    return "Too many calls in one batched request";
  }
  if (error.code === "INTERNAL_SERVER_ERROR") {
    return `Something went wrong on our side${requestId ? ` (request id ${requestId})` : ""}; try again later`;
  }
  return GENERIC[error.code] ?? "The request failed";
}

export function publicDetails(error: TRPCError): DomainErrorDetails {
  if (!(error.cause instanceof DomainError)) return {};
  const { productIds, retryAfterSeconds } = error.cause.details;
  return {
    ...(productIds ? { productIds } : {}),
    ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
  };
}
