// The Worker hashes passwords with argon2 on WebAssembly (src/lib/passwords-wasm.ts), the Bun
// host with the @node-rs/argon2 native addon (src/lib/passwords.ts). Accounts move between the
// two, so each must verify the other's hashes. This runs the same wasm glue the Worker runs, with
// the modules compiled here because Bun does not turn a .wasm import into a WebAssembly.Module.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { hash as nativeHash, verify as nativeVerify, type Algorithm } from "@node-rs/argon2";
import { createArgon2 } from "../../src/lib/argon2-wasm";
import { PASSWORD_PARAMS, hashPassword, verifyPassword } from "../../src/lib/passwords";

const root = join(import.meta.dir, "../..");
const wasmBytes = (name: string) => readFileSync(join(root, "src/lib/wasm", `${name}.wasm`));
const wasm = createArgon2({
  argon2: new WebAssembly.Module(wasmBytes("argon2")),
  blake2b: new WebAssembly.Module(wasmBytes("blake2b")),
});
const salt = () => crypto.getRandomValues(new Uint8Array(16));
// @node-rs/argon2's Algorithm is an ambient const enum, which isolated modules cannot read.
const ARGON2D = 0 as Algorithm, ARGON2I = 1 as Algorithm, ARGON2ID = 2 as Algorithm;
const PHC = /^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/;

describe("passwords across runtimes: happy", () => {
  test("a hash made by the native module verifies on wasm", async () => {
    const stored = await hashPassword("correct horse battery");
    expect(stored).toMatch(PHC);
    expect(wasm.verify(stored, "correct horse battery")).toBe(true);
  });

  test("a hash made on wasm verifies with the native module", async () => {
    const stored = wasm.hash("correct horse battery", salt(), PASSWORD_PARAMS);
    expect(stored).toMatch(PHC);
    expect(await verifyPassword(stored, "correct horse battery")).toBe(true);
  });

  test("both write the same bytes for the same salt (RFC 9106 argon2id)", async () => {
    const s = salt();
    const native = await nativeHash("pässwörd ✓ unicode", { ...PASSWORD_PARAMS, algorithm: ARGON2ID, salt: s });
    expect(wasm.hash("pässwörd ✓ unicode", s, PASSWORD_PARAMS)).toBe(native);
  });

  test("other variants and parameters stored by older builds still verify", async () => {
    for (const opts of [
      { algorithm: ARGON2I, memoryCost: 4096, timeCost: 3, parallelism: 1 },
      { algorithm: ARGON2D, memoryCost: 1024, timeCost: 1, parallelism: 2 },
      { algorithm: ARGON2ID, memoryCost: 2051, timeCost: 1, parallelism: 4, outputLen: 16 },
    ]) {
      const stored = await nativeHash("old password", opts);
      expect(wasm.verify(stored, "old password")).toBe(true);
      expect(wasm.verify(stored, "old passwore")).toBe(false);
    }
  });

  test("the wasm modules are hash-wasm's, byte for byte", () => {
    const dist = readFileSync(join(root, "node_modules/hash-wasm/dist/index.esm.js"), "utf8");
    for (const name of ["argon2", "blake2b"]) {
      const m = new RegExp(`var name\\$(\\w+) = "${name}";\\s*var data\\$\\1 = "([A-Za-z0-9+/=]+)"`).exec(dist);
      expect(m).not.toBeNull();
      expect(Buffer.from(m![2], "base64").equals(wasmBytes(name))).toBe(true);
    }
  });
});

describe("passwords across runtimes: errors", () => {
  test("a wrong password fails on both, whichever made the hash", async () => {
    const native = await hashPassword("right password");
    const onWasm = wasm.hash("right password", salt(), PASSWORD_PARAMS);
    expect(wasm.verify(native, "wrong password")).toBe(false);
    expect(await verifyPassword(onWasm, "wrong password")).toBe(false);
    expect(await nativeVerify(onWasm, "right password")).toBe(true);
  });

  test("malformed hashes are false, not exceptions", () => {
    for (const bad of ["", "plain", "$argon2id$v=19$m=19456,t=2,p=1$", "$argon2id$v=16$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
      "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"]) {
      expect(wasm.verify(bad, "x")).toBe(false);
    }
  });
});

describe("passwords across runtimes: security", () => {
  test("a stored hash asking for absurd memory or time is refused without computing", () => {
    const huge = "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    const slow = "$argon2id$v=19$m=19456,t=999,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    expect(wasm.verify(huge, "x")).toBe(false);
    expect(wasm.verify(slow, "x")).toBe(false);
  });

  test("a tampered tag or salt does not verify", async () => {
    const stored = await hashPassword("secret value");
    const parts = stored.split("$");
    const flip = (s: string) => (s[0] === "A" ? "B" : "A") + s.slice(1);
    expect(wasm.verify([...parts.slice(0, 5), flip(parts[5])].join("$"), "secret value")).toBe(false);
    expect(wasm.verify([...parts.slice(0, 4), flip(parts[4]), parts[5]].join("$"), "secret value")).toBe(false);
  });

  test("each hash gets its own salt", () => {
    expect(wasm.hash("same", salt(), PASSWORD_PARAMS)).not.toBe(wasm.hash("same", salt(), PASSWORD_PARAMS));
  });
});
