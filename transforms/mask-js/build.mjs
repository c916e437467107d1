// Builds mask.js into a WebAssembly component for the row-stage world: node build.mjs [out.wasm]
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const out = process.argv[2] || here("../target/mask_js.wasm");
const { component } = await componentize({
  sourcePath: here("mask.js"),
  witPath: here("../../wit"),
  worldName: "row-stage",
  // No HTTP or fetch: the component imports nothing it would be denied anyway.
  disableFeatures: ["http", "fetch-event"],
});
await writeFile(out, component);
console.log(`wrote ${out} (${component.length} bytes)`);
