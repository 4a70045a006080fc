// Argon2 (RFC 9106) on two precompiled WebAssembly modules, for runtimes without native addons.
// workerd refuses to compile WebAssembly from bytes at run time ("Wasm code generation disallowed
// by embedder"), so libraries that embed their wasm as base64 fail there; the Worker imports the
// modules instead (wrangler turns `import m from "x.wasm"` into a WebAssembly.Module) and this file
// only instantiates them. The modules are hash-wasm 4.13.0's (MIT) argon2 memory-filling core and
// BLAKE2b, extracted byte for byte (test/integration/passwords-cross.test.ts checks that); the
// glue below is ours: H0, the variable-length hash H', the first blocks, the PHC string.

export interface Argon2Modules {
  argon2: WebAssembly.Module;
  blake2b: WebAssembly.Module;
}

export interface Argon2Params {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
  outputLen: number;
}

type Variant = "argon2d" | "argon2i" | "argon2id";
const VARIANT_CODE: Record<Variant, number> = { argon2d: 0, argon2i: 1, argon2id: 2 };
const VERSION = 0x13;
const BLOCK = 1024;
// hash-wasm's BLAKE2b reads input from a fixed 16 KiB buffer.
const BLAKE_CHUNK = 16 * 1024;

// Bounds for parameters read back from a stored hash, so a corrupt or hostile row cannot make
// the Worker allocate gigabytes or spin for minutes; ours are far inside them.
const LIMITS = { memoryMax: 262_144, timeMax: 16, parallelismMax: 16, saltMin: 8, saltMax: 64, outMin: 4, outMax: 64 };

interface Exports {
  memory: WebAssembly.Memory;
  Hash_GetBuffer(): number;
  Hash_SetMemorySize(bytes: number): number;
  Hash_Init(bits: number): void;
  Hash_Update(length: number): void;
  Hash_Final(): void;
  Hash_Calculate(length: number, param: number): void;
}

const le32 = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
};

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/=+$/, "");
}

function fromBase64(text: string): Uint8Array {
  const bin = atob(text + "=".repeat((4 - (text.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export function createArgon2(modules: Argon2Modules) {
  // BLAKE2b's state is tiny and every call below is synchronous, so one instance serves all.
  let blakeExports: Exports | undefined;
  const blake2b = (outLen: number, parts: Uint8Array[]): Uint8Array => {
    blakeExports ??= new WebAssembly.Instance(modules.blake2b, {}).exports as unknown as Exports;
    const ex = blakeExports;
    const at = ex.Hash_GetBuffer();
    ex.Hash_Init(outLen * 8);
    for (const part of parts) {
      for (let read = 0; read < part.length; read += BLAKE_CHUNK) {
        const chunk = part.subarray(read, read + BLAKE_CHUNK);
        new Uint8Array(ex.memory.buffer, at, chunk.length).set(chunk);
        ex.Hash_Update(chunk.length);
      }
    }
    ex.Hash_Final();
    return new Uint8Array(ex.memory.buffer, at, outLen).slice();
  };

  /** H' of RFC 9106 section 3.3: BLAKE2b stretched to any length. */
  const hashLong = (outLen: number, input: Uint8Array[]): Uint8Array => {
    if (outLen <= 64) return blake2b(outLen, [le32(outLen), ...input]);
    const r = Math.ceil(outLen / 32) - 2;
    const out = new Uint8Array(outLen);
    let v = blake2b(64, [le32(outLen), ...input]);
    out.set(v.subarray(0, 32), 0);
    for (let i = 1; i < r; i++) {
      v = blake2b(64, [v]);
      out.set(v.subarray(0, 32), i * 32);
    }
    out.set(blake2b(outLen - 32 * r, [v]), r * 32);
    return out;
  };

  function compute(variant: Variant, password: Uint8Array, salt: Uint8Array, p: Argon2Params): Uint8Array {
    const { memoryCost: m, timeCost: t, parallelism: lanes, outputLen } = p;
    const type = VARIANT_CODE[variant];
    const h0 = blake2b(64, [
      le32(lanes),
      le32(outputLen),
      le32(m),
      le32(t),
      le32(VERSION),
      le32(type),
      le32(password.length),
      password,
      le32(salt.length),
      salt,
      le32(0),
      le32(0),
    ]);

    // A fresh instance per hash: its memory (m KiB) cannot shrink, so it is dropped with it.
    const ex = new WebAssembly.Instance(modules.argon2, {}).exports as unknown as Exports;
    const base = ex.Hash_GetBuffer();
    // The block after the m blocks carries the parameters the core reads.
    if (ex.Hash_SetMemorySize(m * BLOCK + BLOCK) === -1) throw new Error("argon2: cannot allocate memory");
    const mem = new Uint8Array(ex.memory.buffer, base, m * BLOCK + BLOCK);
    mem.set(concat([le32(lanes), le32(outputLen), le32(m), le32(t), le32(VERSION), le32(type)]), m * BLOCK);

    const laneLength = Math.floor(m / (lanes * 4)) * 4;
    for (let lane = 0; lane < lanes; lane++) {
      mem.set(hashLong(BLOCK, [h0, le32(0), le32(lane)]), lane * laneLength * BLOCK);
      mem.set(hashLong(BLOCK, [h0, le32(1), le32(lane)]), (lane * laneLength + 1) * BLOCK);
    }
    ex.Hash_Calculate(0, m);
    // The core leaves the XOR of the lanes' last blocks at the start of the buffer.
    const final = new Uint8Array(ex.memory.buffer, base, BLOCK).slice();
    return hashLong(outputLen, [final]);
  }

  return {
    /** The PHC string, the same format @node-rs/argon2 and the reference implementation write. */
    hash(password: string, salt: Uint8Array, params: Argon2Params): string {
      const tag = compute("argon2id", new TextEncoder().encode(password), salt, params);
      const { memoryCost: m, timeCost: t, parallelism: p } = params;
      return `$argon2id$v=19$m=${m},t=${t},p=${p}$${toBase64(salt)}$${toBase64(tag)}`;
    },

    /** False for a wrong password and for anything that is not a sane argon2 PHC string. */
    verify(encoded: string, password: string): boolean {
      const match = /^\$(argon2id|argon2i|argon2d)\$v=19\$m=(\d{1,7}),t=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/.exec(
        encoded,
      );
      if (!match) return false;
      const [, variant, mText, tText, pText, saltText, tagText] = match;
      const [m, t, p] = [Number(mText), Number(tText), Number(pText)];
      let salt: Uint8Array, expected: Uint8Array;
      try {
        [salt, expected] = [fromBase64(saltText), fromBase64(tagText)];
      } catch {
        return false; // not base64 (e.g. a length of 4n+1)
      }
      if (p < 1 || p > LIMITS.parallelismMax || t < 1 || t > LIMITS.timeMax) return false;
      if (m < 8 * p || m > LIMITS.memoryMax) return false;
      if (salt.length < LIMITS.saltMin || salt.length > LIMITS.saltMax) return false;
      if (expected.length < LIMITS.outMin || expected.length > LIMITS.outMax) return false;
      const actual = compute(variant as Variant, new TextEncoder().encode(password), salt, {
        memoryCost: m,
        timeCost: t,
        parallelism: p,
        outputLen: expected.length,
      });
      return constantTimeEqual(actual, expected);
    },
  };
}

/**
 * The password module's two functions over compiled argon2 modules: the Worker's and Deno
 * Deploy's stand-ins for the native addon (same exports, PHC strings and parameters).
 */
export function wasmPasswordFunctions(modules: Argon2Modules, params: Argon2Params) {
  const argon2 = createArgon2(modules);
  return {
    /** argon2id with the given parameters and a 16-byte random salt. */
    hashPassword: async (password: string): Promise<string> => argon2.hash(password, crypto.getRandomValues(new Uint8Array(16)), params),
    /** False for a wrong password and for anything that is not an argon2 hash; never throws. */
    verifyPassword: async (passwordHash: string, password: string): Promise<boolean> => {
      try {
        return argon2.verify(passwordHash, password);
      } catch {
        return false;
      }
    },
  };
}
