// The package entry: a TypeScript client imports only the router's type from here.
export type { AppRouter } from "./routers";
