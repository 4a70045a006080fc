// The password module for Deno where native addons cannot load (Deno Deploy): deno.deploy.json
// maps ./passwords to this file with an import map, as wrangler.toml's [alias] does for the
// Worker. Same exports, same PHC strings, same parameters as src/lib/passwords.ts; the wasm
// modules are compiled from the files next to it (Deno imports a .wasm file as an instance, not
// as the WebAssembly.Module the shared glue takes).
import { readFileSync } from "node:fs";
import { createArgon2 } from "./argon2-wasm";
import { PASSWORD_PARAMS } from "./password-policy";

export { needsRehash, PASSWORD_PARAMS } from "./password-policy";

const compile = (name: string) => new WebAssembly.Module(readFileSync(new URL(`./wasm/${name}.wasm`, import.meta.url)));
const argon2 = createArgon2({ argon2: compile("argon2"), blake2b: compile("blake2b") });

/** argon2id with at least OWASP's minimum (m = 19 MiB, t = 2, p = 1) and a 16-byte random salt. */
export async function hashPassword(password: string): Promise<string> {
  return argon2.hash(password, crypto.getRandomValues(new Uint8Array(16)), PASSWORD_PARAMS);
}

/** False for a wrong password and for anything that is not an argon2 hash; never throws. */
export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  try {
    return argon2.verify(passwordHash, password);
  } catch {
    return false;
  }
}
