// The Worker hashes passwords with argon2 on WebAssembly (src/lib/passwords-wasm.ts), the Bun
// host with the @node-rs/argon2 native addon (src/lib/passwords.ts). Accounts move between the
// two, so each must verify the other's hashes. This runs the same wasm glue the Worker runs, with
// the modules compiled here because Bun does not turn a .wasm import into a WebAssembly.Module.
// The Deno host runs the native addon under Deno (Deno Deploy would run the wasm build): the Deno
// column at the end runs both there, in a real Deno, against hashes from Bun and back.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Algorithm, hash as nativeHash, verify as nativeVerify } from "@node-rs/argon2";
import { createArgon2 } from "../../src/lib/argon2-wasm";
import { hashPassword, PASSWORD_PARAMS, verifyPassword } from "../../src/lib/passwords";

const root = join(import.meta.dir, "../..");
const wasmBytes = (name: string) => readFileSync(join(root, "src/lib/wasm", `${name}.wasm`));
const wasm = createArgon2({
  argon2: new WebAssembly.Module(wasmBytes("argon2")),
  blake2b: new WebAssembly.Module(wasmBytes("blake2b")),
});
const salt = () => crypto.getRandomValues(new Uint8Array(16));
// @node-rs/argon2's Algorithm is an ambient const enum, which isolated modules cannot read.
const ARGON2D = 0 as Algorithm,
  ARGON2I = 1 as Algorithm,
  ARGON2ID = 2 as Algorithm;
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
    for (const bad of [
      "",
      "plain",
      "$argon2id$v=19$m=19456,t=2,p=1$",
      "$argon2id$v=16$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
      "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
    ]) {
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

// ---- The Deno column: the Deno host runs the same native addon (src/lib/passwords.ts), Deno
// ---- Deploy the Wasm build (src/lib/passwords-deno-wasm.ts through deno.deploy.json);
// ---- test/support/passwords-deno.ts does Deno's side in a real Deno.
const DENO = join(root, "node_modules/.bin/deno");

type DenoSide = {
  runtime: string;
  native: string;
  wasm: string;
  deploy: string;
  nativeWithSalt: string;
  wasmWithSalt: string;
  verified: { native: boolean; wasm: boolean; deploy: boolean }[];
};

async function onDeno(password: string, s: Uint8Array, verify: { hash: string; password: string }[]): Promise<DenoSide> {
  const proc = Bun.spawn(
    [DENO, "run", "--allow-read=.,/usr/bin/ldd", "--allow-env", "--allow-ffi=node_modules", "test/support/passwords-deno.ts"],
    {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: process.env.HOME ?? "/tmp",
        NO_COLOR: "1",
        PASSWORD_CASES: JSON.stringify({ password, salt: Buffer.from(s).toString("base64"), verify }),
      },
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`deno exited ${code}:\n${err}`);
  return JSON.parse(out.trim().split("\n").pop()!) as DenoSide;
}

describe("passwords across runtimes, Deno: happy", () => {
  test("hashes from Bun (native, wasm) verify on Deno (native, wasm, Deploy's module), and Deno's verify on Bun", async () => {
    const password = "correct horse battery ✓";
    const fromBunNative = await hashPassword(password);
    const fromBunWasm = wasm.hash(password, salt(), PASSWORD_PARAMS);
    const deno = await onDeno(password, salt(), [
      { hash: fromBunNative, password },
      { hash: fromBunWasm, password },
    ]);
    expect(deno.runtime).toBe("deno");
    expect(deno.verified).toEqual([
      { native: true, wasm: true, deploy: true },
      { native: true, wasm: true, deploy: true },
    ]);
    for (const stored of [deno.native, deno.wasm, deno.deploy]) {
      expect(stored).toMatch(PHC);
      expect(await verifyPassword(stored, password)).toBe(true);
      expect(wasm.verify(stored, password)).toBe(true);
    }
  }, 60_000);

  test("Deno's native and wasm builds write Bun's bytes for the same salt", async () => {
    const s = salt();
    const deno = await onDeno("pässwörd ✓ unicode", s, []);
    const bun = await nativeHash("pässwörd ✓ unicode", { ...PASSWORD_PARAMS, algorithm: ARGON2ID, salt: s });
    expect(deno.nativeWithSalt).toBe(bun);
    expect(deno.wasmWithSalt).toBe(bun);
  }, 60_000);
});

describe("passwords across runtimes, Deno: errors", () => {
  test("a wrong password fails on Deno for hashes from every runtime", async () => {
    const fromBun = await hashPassword("right password");
    const deno = await onDeno("right password", salt(), [
      { hash: fromBun, password: "wrong password" },
      { hash: wasm.hash("right password", salt(), PASSWORD_PARAMS), password: "Right password" },
    ]);
    expect(deno.verified).toEqual([
      { native: false, wasm: false, deploy: false },
      { native: false, wasm: false, deploy: false },
    ]);
    expect(await verifyPassword(deno.native, "wrong password")).toBe(false);
    expect(wasm.verify(deno.wasm, "wrong password")).toBe(false);
  }, 60_000);
});

describe("passwords across runtimes, Deno: security", () => {
  test("malformed and tampered hashes are false on Deno, never an exception", async () => {
    const good = await hashPassword("secret value");
    const parts = good.split("$");
    const tampered = [...parts.slice(0, 5), (parts[5][0] === "A" ? "B" : "A") + parts[5].slice(1)].join("$");
    // (A hash asking for absurd memory is not sent: the native addon would compute it. The wasm
    // build's bound on parameters is the same code on every runtime, tested above.)
    const cases = ["", "plain", "$argon2id$v=19$m=19456,t=2,p=1$", tampered].map((hash) => ({ hash, password: "secret value" }));
    const deno = await onDeno("x", salt(), cases);
    expect(deno.verified).toEqual(cases.map(() => ({ native: false, wasm: false, deploy: false })));
  }, 60_000);
});
