// The OpenAPI 3.1 description of the tRPC wire, built from the routers themselves: every
// procedure's valibot input schema, and its output schema from src/contract/shapes.ts. Built
// once per process, on first request.
import { type ConversionConfig, type JsonSchema, toJsonSchema, toJsonSchemaDefs } from "@valibot/to-json-schema";
import type * as v from "valibot";
import { namedShapes, procedureOutputs } from "./contract/shapes";
import { appRouter } from "./routers";
import { TRPC_ENDPOINT } from "./trpc/handler";

type Json = Record<string, unknown>;

interface ProcedureInfo {
  path: string;
  type: "query" | "mutation" | "subscription";
  input: v.GenericSchema | undefined;
}

/** Every procedure the app router serves, by its dotted path. */
export function listProcedures(): ProcedureInfo[] {
  // Typed as the nested record, but at run time a flat map keyed by dotted path.
  const procedures = appRouter._def.procedures as unknown as Record<string, { _def: { type: ProcedureInfo["type"]; inputs: unknown[] } }>;
  return Object.entries(procedures).map(([path, p]) => ({
    path,
    type: p._def.type,
    input: p._def.inputs[0] as v.GenericSchema | undefined,
  }));
}

const COMPONENT_REF = "#/components/schemas/";

// Inputs are described as the client sends them (before trims and transforms). Checks with no
// JSON Schema equivalent (custom `check`s, `never`) are left out rather than failing the build:
// the server still enforces them and answers BAD_REQUEST naming the field.
const conversion: ConversionConfig = {
  target: "draft-2020-12",
  typeMode: "input",
  errorMode: "ignore",
  overrideRef: ({ referenceId }) => `${COMPONENT_REF}${referenceId}`,
};

function schemaOf(schema: v.GenericSchema, definitions?: Record<string, v.GenericSchema>): JsonSchema {
  const json = toJsonSchema(schema, { ...conversion, ...(definitions ? { definitions } : {}) }) as Json;
  delete json.$schema;
  delete json.$defs;
  return json as JsonSchema;
}

const errorCodes = {
  BAD_REQUEST: [400, "The input failed validation; the message names the field."],
  UNAUTHORIZED: [401, "Missing, malformed, expired or revoked token; wrong credentials."],
  FORBIDDEN: [403, "Signed in, but the role does not allow it."],
  NOT_FOUND: [404, "Unknown id (or an order that belongs to someone else)."],
  CONFLICT: [409, "Duplicate email, insufficient stock (data.productIds), illegal status transition, product still referenced."],
  TOO_MANY_REQUESTS: [429, "Throttled; see the Retry-After header."],
  INTERNAL_SERVER_ERROR: [500, "Anything else; logged on the server under data.requestId."],
} as const;

const errorEnvelope = {
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["message", "code", "data"],
      properties: {
        message: { type: "string", description: "What went wrong, in words a person can act on." },
        code: { type: "integer", description: "The JSON-RPC code tRPC pairs with data.code." },
        data: {
          type: "object",
          required: ["code", "httpStatus"],
          properties: {
            code: { type: "string", enum: Object.keys(errorCodes) },
            httpStatus: { type: "integer" },
            path: { type: "string", description: "The procedure, e.g. orders.create." },
            requestId: { type: "string", description: "Also in the x-request-id response header." },
            productIds: {
              type: "array",
              items: { type: "string", format: "uuid" },
              description: "CONFLICT for insufficient stock: every short product.",
            },
          },
        },
      },
    },
  },
};

function isProtected(path: string): boolean {
  // Public procedures: catalog reads and the ones that start or recover a session.
  return !/^(products\.(list|byId)|inventory\.get|auth\.(register|login|requestPasswordReset|resetPassword|verifyEmail))$/.test(path);
}

export function buildOpenApiDocument(): Json {
  const components = toJsonSchemaDefs(namedShapes, conversion) as unknown as Record<string, Json>;
  const paths: Record<string, Json> = {};
  const missing: string[] = [];

  for (const proc of listProcedures()) {
    const output = procedureOutputs[proc.path];
    if (!output) {
      missing.push(proc.path);
      continue;
    }
    const [tag] = proc.path.split(".");
    const success = {
      description: "The procedure's result, wrapped by tRPC as result.data.",
      content: {
        "application/json": {
          schema: {
            type: "object",
            required: ["result"],
            properties: { result: { type: "object", required: ["data"], properties: { data: schemaOf(output, namedShapes) } } },
          },
        },
      },
    };
    const responses: Json = { "200": success };
    for (const [code, [status]] of Object.entries(errorCodes)) responses[String(status)] = { $ref: `#/components/responses/${code}` };
    const input = proc.input ? schemaOf(proc.input) : undefined;
    const inputOptional = proc.input?.type === "optional";
    const operation: Json = {
      operationId: proc.path,
      tags: [tag],
      summary: `${proc.path} (${proc.type})`,
      ...(isProtected(proc.path) ? { security: [{ bearerAuth: [] }] } : { security: [] }),
      responses,
    };
    if (proc.type === "query") {
      if (input) {
        operation.parameters = [
          {
            name: "input",
            in: "query",
            required: !inputOptional,
            description: "The input as JSON, URL-encoded: ?input=%7B%22id%22%3A%22...%22%7D",
            content: { "application/json": { schema: input } },
          },
        ];
      }
      paths[`${TRPC_ENDPOINT}/${proc.path}`] = { get: operation };
    } else if (proc.type === "mutation") {
      if (input) operation.requestBody = { required: !inputOptional, content: { "application/json": { schema: input } } };
      paths[`${TRPC_ENDPOINT}/${proc.path}`] = { post: operation };
    }
  }
  if (missing.length) throw new Error(`No output schema in src/contract/shapes.ts for: ${missing.join(", ")}`);

  return {
    openapi: "3.1.0",
    info: {
      title: "commerce-backend",
      version: "1",
      description:
        "tRPC over plain JSON. Queries are GET with the input as the JSON `input` query parameter; mutations are POST with a JSON body. " +
        "Successful answers are `{ result: { data } }`, errors `{ error: { message, code, data: { code, httpStatus } } }`. " +
        "Money is a decimal string, timestamps are ISO-8601 UTC, lists are keyset-paged with an opaque cursor.",
    },
    servers: [{ url: "/" }],
    tags: ["auth", "products", "inventory", "orders", "users", "audit"]
      .filter((t) => Object.keys(paths).some((p) => p.startsWith(`${TRPC_ENDPOINT}/${t}.`)))
      .map((name) => ({ name })),
    paths,
    components: {
      schemas: { ...components, ErrorEnvelope: errorEnvelope },
      responses: Object.fromEntries(
        Object.entries(errorCodes).map(([code, [, description]]) => [
          code,
          {
            description: `${code}: ${description}`,
            content: { "application/json": { schema: { $ref: `${COMPONENT_REF}ErrorEnvelope` } } },
          },
        ]),
      ),
      securitySchemes: {
        bearerAuth: { type: "http", scheme: "bearer", bearerFormat: "JWT", description: "accessToken from auth.register or auth.login" },
      },
    },
  };
}

let cached: Json | undefined;
export function openApiDocument(): Json {
  cached ??= buildOpenApiDocument();
  return cached;
}
