// The password module for Deno where native addons cannot load (Deno Deploy): deno.deploy.json
// maps ./passwords to this file with an import map, as wrangler.toml's [alias] does for the
// Worker. Same exports, same PHC strings, same parameters as src/lib/passwords.ts; the wasm
// modules are compiled from the files next to it (Deno imports a .wasm file as an instance, not
// as the WebAssembly.Module the shared glue takes).
import { readFileSync } from "node:fs";
import { wasmPasswordFunctions } from "./argon2-wasm";
import { PASSWORD_PARAMS } from "./password-policy";

export { needsRehash, PASSWORD_PARAMS } from "./password-policy";

const compile = (name: string) => new WebAssembly.Module(readFileSync(new URL(`./wasm/${name}.wasm`, import.meta.url)));
export const { hashPassword, verifyPassword } = wasmPasswordFunctions(
  { argon2: compile("argon2"), blake2b: compile("blake2b") },
  PASSWORD_PARAMS,
);
