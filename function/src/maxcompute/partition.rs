//! Partition specs (`ds=20240101,hr=00`) and the three ways MaxCompute wants them written: bare for
//! the Tunnel, quoted for the REST existence check and SQL, slash-separated in `SHOW PARTITIONS`.

use std::fmt;

use k2mc_formats::tunnel::SchemaError;

/// An ordered list of partition column values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PartitionSpec(Vec<(String, String)>);

impl PartitionSpec {
    /// A spec from (column, value) pairs in the table's partition-key order.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        PartitionSpec(pairs)
    }

    /// Parses `ds=20240101,hr=00`, `ds='20240101',hr='00'` or `ds=20240101/hr=00`.
    pub fn parse(text: &str) -> Result<Self, SchemaError> {
        let bad = |reason: &str| SchemaError::BadPartitionSpec {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let mut pairs = Vec::new();
        for part in text.split([',', '/']) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad("every part must be key=value"))?;
            let k = k.trim();
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
                .unwrap_or(v);
            if k.is_empty() || !k.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(bad("partition column names are letters, digits and '_'"));
            }
            pairs.push((k.to_owned(), v.to_owned()));
        }
        if pairs.is_empty() {
            return Err(bad("empty partition spec"));
        }
        Ok(PartitionSpec(pairs))
    }

    /// The (column, value) pairs.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// The value of a partition column, by case-insensitive name.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// `ds=20240101,hr=00`: the Tunnel `partition` parameter, unquoted.
    pub fn tunnel_form(&self) -> String {
        self.join(",", false)
    }

    /// `ds='20240101',hr='00'`: the REST existence check and SQL `PARTITION (…)`.
    pub fn quoted_form(&self) -> String {
        self.join(",", true)
    }

    /// `ds=20240101/hr=00`: how `SHOW PARTITIONS` lists a partition.
    pub fn path_form(&self) -> String {
        self.join("/", false)
    }

    fn join(&self, sep: &str, quoted: bool) -> String {
        self.0
            .iter()
            .map(|(k, v)| {
                if quoted {
                    format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join(sep)
    }
}

impl fmt::Display for PartitionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tunnel_form())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_each_form() {
        for text in [
            "ds=20240101,hr=00",
            "ds='20240101', hr='00'",
            "ds=20240101/hr=00",
        ] {
            let spec = PartitionSpec::parse(text).unwrap();
            assert_eq!(spec.tunnel_form(), "ds=20240101,hr=00");
            assert_eq!(spec.quoted_form(), "ds='20240101',hr='00'");
            assert_eq!(spec.path_form(), "ds=20240101/hr=00");
            assert_eq!(spec.get("HR"), Some("00"));
        }
        assert!(PartitionSpec::parse("").is_err());
        assert!(PartitionSpec::parse("ds").is_err());
        assert!(PartitionSpec::parse("d s=1").is_err());
    }
}
