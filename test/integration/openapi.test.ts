// GET /openapi.json: a valid OpenAPI 3.1 document (checked by a real validator) that covers
// every procedure of the app router, with the wire as it is: queries GET ?input=<json>,
// mutations POST with a JSON body, bearer auth, the error envelope, and the contract's shapes.

import { describe, expect, setDefaultTimeout, test } from "bun:test";
import SwaggerParser from "@apidevtools/swagger-parser";
import { createApp } from "../../src/app";
import { procedureOutputs } from "../../src/contract/shapes";
import { buildOpenApiDocument, listProcedures } from "../../src/openapi";
import { appRouter } from "../../src/routers";
import { callHttp, createTestDeps, signUp, signUpAdmin } from "../support/app";
import { getTestDatabase } from "../support/db";

setDefaultTimeout(60_000);

const handle = await getTestDatabase();
const deps = createTestDeps(handle.db);
const app = createApp(deps);

type Doc = {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: {
    schemas: Record<string, { properties?: Record<string, unknown>; required?: string[] }>;
    securitySchemes: Record<string, unknown>;
  };
};
type Operation = {
  operationId: string;
  security: unknown[];
  parameters?: { name: string; in: string; required: boolean; content: Record<string, { schema: Record<string, unknown> }> }[];
  requestBody?: { required: boolean; content: Record<string, { schema: Record<string, unknown> }> };
  responses: Record<string, { $ref?: string; content?: Record<string, { schema: unknown }> }>;
};

async function fetchDocument(): Promise<{ res: Response; doc: Doc }> {
  const res = await app.request("/openapi.json");
  return { res, doc: (await res.clone().json()) as Doc };
}

const dataSchemaOf = (op: Operation) =>
  (op.responses["200"].content!["application/json"].schema as { properties: { result: { properties: { data: unknown } } } }).properties
    .result.properties.data;

describe("openapi: happy path", () => {
  test("GET /openapi.json answers the document as JSON", async () => {
    const { res, doc } = await fetchDocument();
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(doc.openapi).toBe("3.1.0");
  });

  test("it validates under @apidevtools/swagger-parser (OpenAPI 3.1 schema and $refs)", async () => {
    const { doc } = await fetchDocument();
    const validated = await SwaggerParser.validate(structuredClone(doc) as never);
    expect((validated as { openapi: string }).openapi).toBe("3.1.0");
  });

  test("every procedure of the app router is in it, queries as GET and mutations as POST", async () => {
    const { doc } = await fetchDocument();
    const procedures = Object.entries(appRouter._def.procedures as unknown as Record<string, { _def: { type: string } }>);
    expect(procedures.length).toBeGreaterThan(20);
    for (const [path, procedure] of procedures) {
      const method = procedure._def.type === "query" ? "get" : "post";
      const operation = doc.paths[`/trpc/${path}`]?.[method];
      expect(operation?.operationId, path).toBe(path);
    }
    expect(Object.keys(doc.paths).length).toBe(procedures.length);
  });

  test("a query's input is the JSON `input` query parameter, described from its valibot schema", async () => {
    const { doc } = await fetchDocument();
    const byId = doc.paths["/trpc/products.byId"].get;
    expect(byId.parameters?.[0]).toMatchObject({ name: "input", in: "query", required: true });
    const schema = byId.parameters![0].content["application/json"].schema;
    expect(schema).toMatchObject({ type: "object", required: ["id"], properties: { id: { type: "string", format: "uuid" } } });
    // All-optional inputs may be omitted.
    expect(doc.paths["/trpc/products.list"].get.parameters?.[0].required).toBe(false);
    expect(doc.paths["/trpc/auth.me"].get.parameters).toBeUndefined();
  });

  test("a mutation's input is its JSON body, with the validation limits", async () => {
    const { doc } = await fetchDocument();
    const create = doc.paths["/trpc/orders.create"].post;
    expect(create.requestBody?.required).toBe(true);
    expect(create.requestBody!.content["application/json"].schema).toMatchObject({
      type: "object",
      required: ["items"],
      properties: {
        items: {
          type: "array",
          minItems: 1,
          maxItems: 100,
          items: { properties: { quantity: { type: "integer", minimum: 1, maximum: 1000 } } },
        },
      },
    });
    expect(doc.paths["/trpc/auth.logout"].post.requestBody).toBeUndefined();
  });

  test("outputs refer to the contract's shapes, and errors to the one error envelope", async () => {
    const { doc } = await fetchDocument();
    expect(dataSchemaOf(doc.paths["/trpc/products.byId"].get)).toEqual({ $ref: "#/components/schemas/Product" });
    expect(dataSchemaOf(doc.paths["/trpc/auth.login"].post)).toEqual({ $ref: "#/components/schemas/Auth" });
    expect(doc.components.schemas.User.required).toEqual(["id", "email", "role", "emailVerified", "disabled", "createdAt", "updatedAt"]);
    const responses = doc.paths["/trpc/orders.create"].post.responses;
    for (const status of ["400", "401", "403", "404", "409", "429", "500"])
      expect(responses[status].$ref).toStartWith("#/components/responses/");
    const envelope = JSON.stringify(doc.components.schemas.ErrorEnvelope);
    for (const code of [
      "BAD_REQUEST",
      "UNAUTHORIZED",
      "FORBIDDEN",
      "NOT_FOUND",
      "CONFLICT",
      "TOO_MANY_REQUESTS",
      "INTERNAL_SERVER_ERROR",
      "productIds",
    ]) {
      expect(envelope).toContain(code);
    }
  });

  test("the shapes described are the shapes served: a real product and order have exactly their properties", async () => {
    const { doc } = await fetchDocument();
    const admin = await signUpAdmin(deps);
    const product = await admin.caller.products.create({ name: "Described lamp", price: "12.5", stock: 4 });
    const customer = await signUp(deps);
    const ordered = await callHttp(
      deps,
      "orders.create",
      "mutation",
      { items: [{ productId: product.id, quantity: 1 }] },
      { token: customer.accessToken },
    );
    const order = ordered.data as Record<string, unknown> & { items: Record<string, unknown>[] };
    const read = await callHttp(deps, "products.byId", "query", { id: product.id });
    const keys = (o: object) => Object.keys(o).sort();
    const props = (name: string) => Object.keys(doc.components.schemas[name].properties!).sort();
    expect(keys(read.data as object)).toEqual(props("Product"));
    expect(keys(order)).toEqual(props("Order"));
    expect(keys(order.items[0])).toEqual(props("OrderItem"));
    expect(doc.components.schemas.Product.required!.sort()).toEqual(props("Product"));
  });
});

describe("openapi: error path", () => {
  test("the validator is not a rubber stamp: a dangling $ref or a bad method is refused", async () => {
    const { doc } = await fetchDocument();
    const dangling = structuredClone(doc);
    (dangling.paths["/trpc/products.byId"].get.responses["200"] as { $ref?: string }).$ref = "#/components/responses/Missing";
    await expect(SwaggerParser.validate(dangling as never)).rejects.toThrow();
    const badMethod = structuredClone(doc) as unknown as { paths: Record<string, unknown> };
    badMethod.paths["/trpc/products.byId"] = { fetch: {} };
    await expect(SwaggerParser.validate(badMethod as never)).rejects.toThrow();
  });

  test("a procedure without an output schema stops the build, naming it", () => {
    const saved = procedureOutputs["orders.cancel"];
    delete procedureOutputs["orders.cancel"];
    try {
      expect(() => buildOpenApiDocument()).toThrow("orders.cancel");
    } finally {
      procedureOutputs["orders.cancel"] = saved;
    }
    expect(() => buildOpenApiDocument()).not.toThrow();
  });

  test("every procedure with an input has it described (no procedure loses its input)", () => {
    for (const p of listProcedures()) {
      const doc = buildOpenApiDocument() as unknown as Doc;
      const op = doc.paths[`/trpc/${p.path}`][p.type === "query" ? "get" : "post"];
      const described = p.type === "query" ? op.parameters !== undefined : op.requestBody !== undefined;
      expect(described, p.path).toBe(p.input !== undefined);
    }
  });
});

describe("openapi: security", () => {
  test("bearer auth is declared, and required exactly on the procedures that check a token", async () => {
    const { doc } = await fetchDocument();
    expect(doc.components.securitySchemes.bearerAuth).toEqual(expect.objectContaining({ type: "http", scheme: "bearer" }));
    for (const [path, item] of Object.entries(doc.paths)) {
      const [method, op] = Object.entries(item)[0];
      const procedure = path.slice("/trpc/".length);
      // What the server does without a token decides what the document must say.
      const res = await app.request(method === "get" ? `${path}?input=${encodeURIComponent("{}")}` : path, {
        method: method.toUpperCase(),
        headers: { "content-type": "application/json" },
        body: method === "post" ? "{}" : undefined,
      });
      const body = (await res.json()) as { error?: { data: { code: string } } };
      const refusedForToken = body.error?.data.code === "UNAUTHORIZED" && res.status === 401;
      expect(op.security.length > 0, procedure).toBe(refusedForToken);
    }
  });

  test("the document is served with a strict content security policy and no CORS header by default", async () => {
    const { res } = await fetchDocument();
    expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });
});
