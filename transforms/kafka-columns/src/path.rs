//! JSON paths into a record value, as DataWorks writes them (`a.a1`, `c[1]`, `d[0].AA`), plus two
//! ways to reach keys DataWorks cannot: a backslash escape (`a\.b`) and a quoted segment
//! (`["a.b"]`).

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Parses a path; the error names the byte position.
pub fn parse(path: &str) -> Result<Vec<Step>, String> {
    let bytes = path.as_bytes();
    let mut steps = Vec::new();
    let mut i = 0;
    let mut key = String::new();
    let mut key_open = false;
    let err = |at: usize, why: &str| format!("bad JSON path '{path}' at byte {at}: {why}");
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let c = path[i + 1..]
                    .chars()
                    .next()
                    .ok_or_else(|| err(i, "a backslash must escape a character"))?;
                key.push(c);
                key_open = true;
                i += 1 + c.len_utf8();
            }
            b'.' => {
                if key_open {
                    steps.push(Step::Key(std::mem::take(&mut key)));
                    key_open = false;
                }
                if steps.is_empty() || i + 1 == bytes.len() || bytes[i + 1] == b'.' {
                    return Err(err(i, "empty key"));
                }
                i += 1;
            }
            b'[' => {
                if key_open {
                    steps.push(Step::Key(std::mem::take(&mut key)));
                    key_open = false;
                }
                let close = path[i..]
                    .find(']')
                    .map(|n| i + n)
                    .ok_or_else(|| err(i, "unclosed '['"))?;
                let inner = &path[i + 1..close];
                if let Some(quoted) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    steps.push(Step::Key(quoted.to_owned()));
                } else {
                    let n = inner.parse().map_err(|_| {
                        err(i + 1, "an index must be a whole number or a \"quoted key\"")
                    })?;
                    steps.push(Step::Index(n));
                }
                i = close + 1;
                if i < bytes.len() && bytes[i] != b'.' && bytes[i] != b'[' {
                    return Err(err(i, "expected '.' or '[' after ']'"));
                }
            }
            _ => {
                let c = path[i..]
                    .chars()
                    .next()
                    .ok_or_else(|| err(i, "bad character"))?;
                key.push(c);
                key_open = true;
                i += c.len_utf8();
            }
        }
    }
    if key_open {
        steps.push(Step::Key(key));
    }
    if steps.is_empty() {
        return Err(err(0, "empty path"));
    }
    Ok(steps)
}

/// Follows `steps` into `value`; `None` when any step is missing.
pub fn get<'v>(value: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    steps.iter().try_fold(value, |v, step| match step {
        Step::Key(k) => v.get(k.as_str()),
        Step::Index(n) => v.get(*n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dataworks_examples_and_escapes() {
        let v = json!({"a": {"a1": "hello"}, "b": "world", "c": ["xxxxxxx", "yyyyyyy"],
            "d": [{"AA": "this", "BB": "is_data"}, {"AA": "that", "BB": "is_also_data"}], "a.b": "unreachable"});
        let at = |p: &str| get(&v, &parse(p).unwrap()).cloned();
        assert_eq!(at("a.a1"), Some(json!("hello")));
        assert_eq!(at("b"), Some(json!("world")));
        assert_eq!(at("c[1]"), Some(json!("yyyyyyy")));
        assert_eq!(at("d[0].AA"), Some(json!("this")));
        assert_eq!(at("a.b"), None);
        assert_eq!(at("a\\.b"), Some(json!("unreachable")));
        assert_eq!(at("[\"a.b\"]"), Some(json!("unreachable")));
        assert_eq!(at("c[5]"), None);
    }

    #[test]
    fn errors_name_the_position() {
        for bad in ["", ".a", "a.", "a[", "a[x]", "a[0]b", "a\\"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("at byte"), "{bad}: {e}");
        }
    }
}
