// wrangler bundles `import m from "./x.wasm"` as a compiled WebAssembly.Module (CompiledWasm rule).
declare module "*.wasm" {
  const module: WebAssembly.Module;
  export default module;
}
