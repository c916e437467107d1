//! The masking rules as plain functions, so that they are tested natively and shared with the
//! native baseline of the transform benchmark.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// What to do with one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Phone,
    Email,
    IdNumber,
    Sha256,
    HmacSha256,
    Drop,
    Null,
}

/// The validated configuration: a rule (or none) per input column, and the HMAC key.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rules: Vec<Option<Rule>>,
    /// `debug = "true"`: print one line per batch to stdout (the host logs it under the stage).
    pub debug: bool,
    hmac_key: Vec<u8>,
}

impl Plan {
    /// Validates `config` against the input columns `(name, is_string)`. Errors name the key and
    /// the fix.
    pub fn new(config: &[(String, String)], columns: &[(String, bool)]) -> Result<Self, String> {
        let mut rules = vec![None; columns.len()];
        let mut hmac_key = None;
        let mut debug = false;
        for (key, value) in config {
            if key == "hmac-key" {
                hmac_key = Some(value.as_bytes().to_vec());
                continue;
            }
            if key == "debug" {
                debug = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    other => return Err(format!("debug = '{other}': use true or false")),
                };
                continue;
            }
            let Some(name) = key.strip_prefix("column.") else {
                return Err(format!(
                    "unknown key '{key}': use column.<name> = <rule>, hmac-key or debug"
                ));
            };
            let rule = match value.as_str() {
                "phone" => Rule::Phone,
                "email" => Rule::Email,
                "id-number" => Rule::IdNumber,
                "sha256" => Rule::Sha256,
                "hmac-sha256" => Rule::HmacSha256,
                "drop" => Rule::Drop,
                "null" => Rule::Null,
                other => {
                    return Err(format!(
                        "{key} = '{other}': the rule must be phone, email, id-number, sha256, hmac-sha256, drop or null"
                    ));
                }
            };
            let index = columns
                .iter()
                .position(|(n, _)| n.eq_ignore_ascii_case(name))
                .ok_or_else(|| format!("{key}: the input has no column '{name}'"))?;
            if !matches!(rule, Rule::Drop | Rule::Null) && !columns[index].1 {
                return Err(format!(
                    "{key}: column '{name}' is not a string column, so it cannot be masked as {value}"
                ));
            }
            rules[index] = Some(rule);
        }
        let uses_hmac = rules.contains(&Some(Rule::HmacSha256));
        let hmac_key = match (uses_hmac, hmac_key) {
            (true, None) => return Err("a column uses hmac-sha256 but hmac-key is not set".into()),
            (true, Some(k)) if k.is_empty() => return Err("hmac-key is empty".into()),
            (_, k) => k.unwrap_or_default(),
        };
        Ok(Plan {
            rules,
            debug,
            hmac_key,
        })
    }

    /// The input columns a rule reads or rewrites, ascending: the columns the stage declares
    /// to the host (WIT 1.2 `projection`); the others pass through the host untouched, and a
    /// dropped column is not read at all.
    pub fn columns_read(&self) -> Vec<u32> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| !matches!(r, None | Some(Rule::Drop)))
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// Applies a value-rewriting rule to a string.
    pub fn apply(&self, rule: Rule, value: &str) -> String {
        match rule {
            Rule::Phone => keep_ends(value, 3, 4),
            Rule::IdNumber => keep_ends(value, 6, 4),
            Rule::Email => email(value),
            Rule::Sha256 => hex_digest(Sha256::digest(value.as_bytes()).into()),
            Rule::HmacSha256 => {
                // HMAC takes keys of any length.
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.hmac_key)
                    .unwrap_or_else(|_| unreachable!());
                mac.update(value.as_bytes());
                hex_digest(mac.finalize().into_bytes().into())
            }
            Rule::Drop | Rule::Null => String::new(),
        }
    }
}

/// A SHA-256 digest as lower-case hex, written into one buffer of its final size (`hex::encode`
/// pushes one `char` at a time into a growing `String`: a measurable share of `mask`'s time,
/// `docs/bench/README.md`, "Per-record leftovers of the profile").
fn hex_digest(digest: [u8; 32]) -> String {
    let mut text = [0u8; 64];
    // 64 bytes always hold 32 bytes as hex, and hex digits are ASCII: neither step can fail.
    let _ = hex::encode_to_slice(digest, &mut text);
    // `from_utf8_lossy` walks the bytes as UTF-8 chunks, slower than the plain check (about 0.7 %
    // of the function's samples at 1 KB, `docs/bench/README.md`, "Talc in the shipped components").
    std::str::from_utf8(&text)
        .map(str::to_owned)
        .unwrap_or_default()
}

/// Keeps `head` leading and `tail` trailing characters, `*` between; all `*` when too short.
/// The kept ends are copied as slices of `value` (no `char` list).
pub fn keep_ends(value: &str, head: usize, tail: usize) -> String {
    let count = value.chars().count();
    if count <= head + tail {
        return "*".repeat(count);
    }
    let at = |nth: usize| {
        value
            .char_indices()
            .nth(nth)
            .map_or(value.len(), |(i, _)| i)
    };
    let (start, end) = (at(head), at(count - tail));
    let mut out = String::with_capacity(value.len());
    out.push_str(&value[..start]);
    out.extend(std::iter::repeat_n('*', count - head - tail));
    out.push_str(&value[end..]);
    out
}

/// `alice@example.com` → `a****@example.com`; no `@` → all `*`.
pub fn email(value: &str) -> String {
    match value.split_once('@') {
        Some((local, domain)) => {
            // One buffer of the final size: `format!` and its two temporaries were a tenth of the
            // stage's time (`docs/bench/README.md`, "Talc in the shipped components").
            let mut chars = local.chars();
            let mut out = String::with_capacity(value.len());
            out.extend(chars.next());
            out.extend(std::iter::repeat_n('*', chars.count()));
            out.push('@');
            out.push_str(domain);
            out
        }
        None => "*".repeat(value.chars().count()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(pairs: &[(&str, &str)]) -> Result<Plan, String> {
        let config: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Plan::new(
            &config,
            &[
                ("phone".into(), true),
                ("mail".into(), true),
                ("n".into(), false),
            ],
        )
    }

    #[test]
    fn masks_values() {
        assert_eq!(keep_ends("13800138000", 3, 4), "138****8000");
        assert_eq!(keep_ends("1234567", 3, 4), "*******");
        assert_eq!(keep_ends("110101199003077777", 6, 4), "110101********7777");
        assert_eq!(email("alice@example.com"), "a****@example.com");
        assert_eq!(email("ü@x"), "ü@x");
        assert_eq!(email("nobody"), "******");
        assert_eq!(email("@x"), "@x");
        assert_eq!(email("bob@b@c"), "b**@b@c");
        let p = plan(&[("column.phone", "hmac-sha256"), ("hmac-key", "k")]).unwrap();
        assert_eq!(
            p.apply(Rule::Sha256, "abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(p.apply(Rule::HmacSha256, "abc").len(), 64);
        let fox = plan(&[("column.phone", "hmac-sha256"), ("hmac-key", "key")]).unwrap();
        assert_eq!(
            fox.apply(
                Rule::HmacSha256,
                "The quick brown fox jumps over the lazy dog"
            ),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    /// `keep_ends` as it was written first (a `char` list): the slices give the same text.
    fn keep_ends_by_chars(value: &str, head: usize, tail: usize) -> String {
        let chars: Vec<char> = value.chars().collect();
        if chars.len() <= head + tail {
            return "*".repeat(chars.len());
        }
        let mut out: String = chars[..head].iter().collect();
        out.extend(std::iter::repeat_n('*', chars.len() - head - tail));
        out.extend(&chars[chars.len() - tail..]);
        out
    }

    #[test]
    fn keep_ends_equals_the_char_list_version() {
        let alphabet = ['1', 'a', 'ü', '中', '😀', ' ', '*'];
        for len in 0..12 {
            for seed in 0..40usize {
                let value: String = (0..len)
                    .map(|i| alphabet[(seed * 7 + i * (seed % 5 + 1)) % alphabet.len()])
                    .collect();
                for (head, tail) in [(3, 4), (6, 4), (0, 0), (0, 2), (5, 0)] {
                    assert_eq!(
                        keep_ends(&value, head, tail),
                        keep_ends_by_chars(&value, head, tail),
                        "{value:?} {head} {tail}"
                    );
                }
            }
        }
    }

    #[test]
    fn digests_are_hex_of_their_bytes() {
        let digest = Sha256::digest(b"k2mc");
        assert_eq!(hex_digest(digest.into()), hex::encode(digest));
        let mut bytes = [0u8; 32];
        bytes[..3].copy_from_slice(&[0x00, 0xff, 0x0a]);
        assert!(hex_digest(bytes).starts_with("00ff0a00"));
    }

    #[test]
    fn reads_only_the_columns_with_a_rule_that_keeps_them() {
        let p = plan(&[("column.mail", "email"), ("column.n", "null")]).unwrap();
        assert_eq!(p.columns_read(), vec![1, 2]);
        let p = plan(&[("column.phone", "drop"), ("column.mail", "sha256")]).unwrap();
        assert_eq!(p.columns_read(), vec![1]);
        assert!(plan(&[]).unwrap().columns_read().is_empty());
    }

    #[test]
    fn configuration_errors_name_the_key() {
        assert!(
            plan(&[("column.phone", "blur")])
                .unwrap_err()
                .contains("column.phone")
        );
        assert!(
            plan(&[("column.missing", "phone")])
                .unwrap_err()
                .contains("no column 'missing'")
        );
        assert!(
            plan(&[("column.n", "phone")])
                .unwrap_err()
                .contains("not a string column")
        );
        assert!(
            plan(&[("column.mail", "hmac-sha256")])
                .unwrap_err()
                .contains("hmac-key")
        );
        assert!(
            plan(&[("colum.phone", "phone")])
                .unwrap_err()
                .contains("unknown key")
        );
        assert!(plan(&[("column.n", "drop")]).is_ok());
    }

    #[test]
    fn debug_is_a_switch() {
        assert!(!plan(&[]).unwrap().debug);
        assert!(plan(&[("debug", "true")]).unwrap().debug);
        assert!(!plan(&[("debug", "false")]).unwrap().debug);
        let e = plan(&[("debug", "yes")]).unwrap_err();
        assert!(e.contains("debug = 'yes'"), "{e}");
    }
}
