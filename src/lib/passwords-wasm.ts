// The Worker's password module: wrangler.toml aliases ./passwords (the @node-rs/argon2 native
// addon, which workerd cannot load) to this file, so callers never know which argon2 they run on.
// Same exports, same PHC string, same parameters: a hash made on one runtime verifies on the other.

import { createArgon2 } from "./argon2-wasm";
import { PASSWORD_PARAMS } from "./password-policy";
import argon2Module from "./wasm/argon2.wasm";
import blake2bModule from "./wasm/blake2b.wasm";

export { needsRehash, PASSWORD_PARAMS } from "./password-policy";

const argon2 = createArgon2({ argon2: argon2Module, blake2b: blake2bModule });

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
