// The `mask` row stage in JavaScript: the same rules as transforms/mask (Rust) for phone, email,
// id-number, drop and null, character for character (strings are split into code points, as the
// Rust version splits them into Unicode scalar values). The digest rules (sha256, hmac-sha256)
// need a synchronous SHA-256, which this runtime's WebCrypto does not offer; configuring them is an
// error that says so.

let plan = null;

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
      if (key === "hmac-key") continue;
      if (!key.startsWith("column.")) throw `unknown key '${key}': use column.<name> = <rule> or hmac-key`;
      const name = key.slice("column.".length);
      if (!RULES.includes(value)) {
        throw `${key} = '${value}': the rule must be phone, email, id-number, sha256, hmac-sha256, drop or null`;
      }
      if (value === "sha256" || value === "hmac-sha256") {
        throw `${key} = '${value}': the JavaScript port does not support digests; use the Rust mask component`;
      }
      const index = input.findIndex((c) => c.name.toLowerCase() === name.toLowerCase());
      if (index < 0) throw `${key}: the input has no column '${name}'`;
      if (value !== "drop" && value !== "null" && !isText(input[index].ty)) {
        throw `${key}: column '${name}' is not a string column, so it cannot be masked as ${value}`;
      }
      rules[index] = value;
    }
    plan = rules;
    const output = [];
    input.forEach((column, i) => {
      if (rules[i] === "drop") return;
      output.push(rules[i] === "null" ? { ...column, nullable: true } : column);
    });
    return { name: "mask", version: "1.0.0-js", output };
  },

  transform(rows) {
    const rules = plan || [];
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
        else cells.push({ tag: "string", val: email(cell.val) });
      });
      return { source: row.source, cells };
    });
    return { rows: out, errors: [] };
  },
};
