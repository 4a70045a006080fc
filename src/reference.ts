// GET /openapi.json and GET /docs: the API described for machines and rendered for people.
// The page's script is Scalar's standalone bundle, served from this origin by the host that can
// read it from node_modules (the Bun host); nothing is loaded from a CDN.
import { Scalar } from "@scalar/hono-api-reference";
import type { Hono } from "hono";
import { REFERENCE_PATH } from "./browser";
import { openApiDocument } from "./openapi";

export const OPENAPI_PATH = "/openapi.json";
const SCRIPT_PATH = `${REFERENCE_PATH}/reference.js`;

/** Reads the reference page's script; a host without one serves /openapi.json only. */
export type ReferenceScript = () => Promise<Blob>;

// biome-ignore lint/suspicious/noExplicitAny: any Hono app, whatever its bindings
export function mountReference(app: Hono<any>, script: ReferenceScript | undefined) {
  app.get(OPENAPI_PATH, (c) => c.json(openApiDocument()));
  if (!script) return;

  // Browsers ask for it on every page; a 404 there is a console error on the reference page.
  app.get("/favicon.ico", (c) => c.body(null, 204));
  app.get(SCRIPT_PATH, async (c) => {
    c.header("content-type", "text/javascript; charset=utf-8");
    c.header("cache-control", "public, max-age=3600");
    return c.body(await (await script()).arrayBuffer());
  });
  app.get(REFERENCE_PATH, (c, next) =>
    Scalar({
      url: OPENAPI_PATH,
      cdn: SCRIPT_PATH,
      nonce: c.get("secureHeadersNonce"),
      pageTitle: "commerce-backend API",
      withDefaultFonts: false,
      telemetry: false,
      hideClientButton: true,
      showDeveloperTools: "never",
      defaultOpenAllTags: true,
    })(c, next),
  );
}

/** The Bun host's script: Scalar's standalone bundle, read from the installed package. */
export function standaloneScriptFromNodeModules(resolve: (specifier: string) => string, file: (path: string) => Blob): ReferenceScript {
  const entry = resolve("@scalar/api-reference");
  const path = entry.replace(/\/dist\/index\.js$/, "/dist/browser/standalone.js");
  return async () => file(path);
}
