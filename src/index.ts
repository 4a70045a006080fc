// The package entry. Client projects take these types from the typed-client package instead
// (`npm run pack:client`, docs/api.md): importing AppRouter from here compiles the server's own
// sources, which only a project set up like this one (Bundler resolution, Bun's or Node's types) can.

export type * from "./contract/types";
export type { AppRouter } from "./routers";
