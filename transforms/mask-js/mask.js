// The `mask` row stage in JavaScript: the same rules and messages as transforms/mask (Rust),
// character for character (strings are split into code points, as the Rust version splits them
// into Unicode scalar values). The runtime's WebCrypto is asynchronous, so the digests come from
// @noble/hashes (synchronous, audited), bundled into one module by build.mjs.

import { hmac } from "@noble/hashes/hmac";
import { sha256 } from "@noble/hashes/sha256";
import { bytesToHex, utf8ToBytes } from "@noble/hashes/utils";

let plan = null;
let hmacKey = null;
let debug = false;

const RULES = ["phone", "email", "id-number", "sha256", "hmac-sha256", "drop", "null"];

function keepEnds(value, head, tail) {
  const chars = Array.from(value);
  if (chars.length <= head + tail) return "*".repeat(chars.length);
  return chars.slice(0, head).join("") + "*".repeat(chars.length - head - tail) + chars.slice(chars.length - tail).join("");
}

function email(value) {
  const at = value.indexOf("@");
  if (at < 0) return "*".repeat(Array.from(value).length);
  const local = Array.from(value.slice(0, at));
  const first = local.length > 0 ? local[0] : "";
  return first + "*".repeat(Math.max(local.length - 1, 0)) + value.slice(at);
}

function isText(ty) {
  return ty.tag === "string" || ty.tag === "varchar" || ty.tag === "fixed-char";
}

export const rowTransform = {
  configure(config, input) {
    const rules = input.map(() => null);
    for (const [key, value] of config) {
      if (key === "hmac-key") {
        hmacKey = utf8ToBytes(value);
        continue;
      }
      if (key === "debug") {
        if (value !== "true" && value !== "false") throw `debug = '${value}': use true or false`;
        debug = value === "true";
        continue;
      }
      if (!key.startsWith("column.")) throw `unknown key '${key}': use column.<name> = <rule>, hmac-key or debug`;
      const name = key.slice("column.".length);
      if (!RULES.includes(value)) {
        throw `${key} = '${value}': the rule must be phone, email, id-number, sha256, hmac-sha256, drop or null`;
      }
      const index = input.findIndex((c) => c.name.toLowerCase() === name.toLowerCase());
      if (index < 0) throw `${key}: the input has no column '${name}'`;
      if (value !== "drop" && value !== "null" && !isText(input[index].ty)) {
        throw `${key}: column '${name}' is not a string column, so it cannot be masked as ${value}`;
      }
      rules[index] = value;
    }
    if (rules.includes("hmac-sha256")) {
      if (hmacKey === null) throw "a column uses hmac-sha256 but hmac-key is not set";
      if (hmacKey.length === 0) throw "hmac-key is empty";
    }
    plan = rules;
    const output = [];
    input.forEach((column, i) => {
      if (rules[i] === "drop") return;
      if (rules[i] === "sha256" || rules[i] === "hmac-sha256") output.push({ ...column, ty: { tag: "string" } });
      else output.push(rules[i] === "null" ? { ...column, nullable: true } : column);
    });
    return { name: "mask", version: "1.0.0-js", output };
  },

  transform(rows) {
    const rules = plan || [];
    if (debug) console.log(`mask: ${rows.length} rows`);
    const out = rows.map((row) => {
      const cells = [];
      row.cells.forEach((cell, i) => {
        const rule = rules[i];
        if (!rule) cells.push(cell);
        else if (rule === "drop") return;
        else if (rule === "null") cells.push({ tag: "null" });
        else if (cell.tag !== "string") cells.push(cell);
        else if (rule === "phone") cells.push({ tag: "string", val: keepEnds(cell.val, 3, 4) });
        else if (rule === "id-number") cells.push({ tag: "string", val: keepEnds(cell.val, 6, 4) });
        else if (rule === "sha256") cells.push({ tag: "string", val: bytesToHex(sha256(utf8ToBytes(cell.val))) });
        else if (rule === "hmac-sha256") {
          cells.push({ tag: "string", val: bytesToHex(hmac(sha256, hmacKey, utf8ToBytes(cell.val))) });
        } else cells.push({ tag: "string", val: email(cell.val) });
      });
      return { source: row.source, cells };
    });
    return { rows: out, errors: [] };
  },
};
