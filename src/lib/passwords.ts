// The one password module. The Worker build swaps this file for passwords-wasm.ts (an alias in
// wrangler.toml), so callers never know which argon2 they run on; both write the same PHC string.
import { hash, verify } from "@node-rs/argon2";
import { PASSWORD_PARAMS } from "./password-policy";

export { needsRehash, PASSWORD_PARAMS } from "./password-policy";

/** argon2id with at least OWASP's minimum (m = 19 MiB, t = 2, p = 1); runs off the event loop. */
export function hashPassword(password: string): Promise<string> {
  return hash(password, {
    memoryCost: PASSWORD_PARAMS.memoryCost,
    timeCost: PASSWORD_PARAMS.timeCost,
    parallelism: PASSWORD_PARAMS.parallelism,
    outputLen: PASSWORD_PARAMS.outputLen,
  });
}

/** False for a wrong password and for anything that is not an argon2 hash; never throws. */
export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  try {
    return await verify(passwordHash, password);
  } catch {
    return false;
  }
}
