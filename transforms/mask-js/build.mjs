// Builds mask.js into a WebAssembly component for the row-stage world: node build.mjs [out.wasm]
import { componentize } from "@bytecodealliance/componentize-js";
import { build } from "esbuild";
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const out = process.argv[2] || here("../target/mask_js.wasm");
// componentize-js takes one module: bundle mask.js with its npm imports first.
// componentize-js reads its source from inside this folder only, so the bundle is written here.
const bundled = here("mask.bundle.mjs");
await build({ entryPoints: [here("mask.js")], bundle: true, format: "esm", platform: "neutral", outfile: bundled, logLevel: "warning" });
const { component } = await componentize({
  sourcePath: bundled,
  witPath: here("../../wit"),
  worldName: "row-stage",
  // No HTTP or fetch: the component imports nothing it would be denied anyway.
  disableFeatures: ["http", "fetch-event"],
});
await writeFile(out, component);
console.log(`wrote ${out} (${component.length} bytes)`);
