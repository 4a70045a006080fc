// The Worker's password module: wrangler.toml aliases ./passwords (the @node-rs/argon2 native
// addon, which workerd cannot load) to this file, so callers never know which argon2 they run on.
// Same exports, same PHC string, same parameters: a hash made on one runtime verifies on the other.

import { wasmPasswordFunctions } from "./argon2-wasm";
import { PASSWORD_PARAMS } from "./password-policy";
import argon2Module from "./wasm/argon2.wasm";
import blake2bModule from "./wasm/blake2b.wasm";

export { needsRehash, PASSWORD_PARAMS } from "./password-policy";

export const { hashPassword, verifyPassword } = wasmPasswordFunctions({ argon2: argon2Module, blake2b: blake2bModule }, PASSWORD_PARAMS);
