// Run under Deno by test/integration/passwords-cross.test.ts: Deno's side of the cross-runtime
// password check. Hashes a password with the native @node-rs/argon2 (src/lib/passwords.ts, what
// the Deno host runs) and with the Wasm build (src/lib/argon2-wasm.ts, what Deno Deploy would
// run, through src/lib/passwords-deno-wasm.ts), verifies the hashes it is given with each, and
// prints one JSON line.
//   PASSWORD_CASES='{"password":"…","salt":"<base64>","verify":[{"hash":"…","password":"…"}]}'
import { readFileSync } from "node:fs";
import { hash as nativeHash } from "@node-rs/argon2";
import { createArgon2 } from "../../src/lib/argon2-wasm";
import { hashPassword, PASSWORD_PARAMS, verifyPassword } from "../../src/lib/passwords";
import { hashPassword as deployHash, verifyPassword as deployVerify } from "../../src/lib/passwords-deno-wasm";

const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
const input = JSON.parse(env.PASSWORD_CASES ?? "{}") as {
  password: string;
  salt: string;
  verify: { hash: string; password: string }[];
};
const wasmBytes = (name: string) => readFileSync(new URL(`../../src/lib/wasm/${name}.wasm`, import.meta.url));
const wasm = createArgon2({
  argon2: new WebAssembly.Module(wasmBytes("argon2")),
  blake2b: new WebAssembly.Module(wasmBytes("blake2b")),
});
const salt = Uint8Array.from(atob(input.salt), (ch) => ch.charCodeAt(0));
const ARGON2ID = 2 as import("@node-rs/argon2").Algorithm;

const result = {
  runtime: typeof (globalThis as { Deno?: unknown }).Deno === "object" ? "deno" : "other",
  native: await hashPassword(input.password),
  wasm: wasm.hash(input.password, crypto.getRandomValues(new Uint8Array(16)), PASSWORD_PARAMS),
  deploy: await deployHash(input.password),
  nativeWithSalt: await nativeHash(input.password, { ...PASSWORD_PARAMS, algorithm: ARGON2ID, salt }),
  wasmWithSalt: wasm.hash(input.password, salt, PASSWORD_PARAMS),
  verified: await Promise.all(
    input.verify.map(async ({ hash, password }) => ({
      native: await verifyPassword(hash, password),
      wasm: wasm.verify(hash, password),
      deploy: await deployVerify(hash, password),
    })),
  ),
};
console.log(JSON.stringify(result));
