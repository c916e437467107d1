//! The stage's settings and output columns: which fields of the decoded key and value become
//! which columns (all top-level fields by default, nested records flattened on request, or a
//! chosen list with renames), and how a decoded record becomes a row.

use serde_json::Value as Json;

use crate::model::{Col, Field, Ty};

/// Settings of the stage (`transforms/README.md`, "registry").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub subject: String,
    pub version: Option<i32>,
    pub key_subject: Option<String>,
    pub key_version: Option<i32>,
    /// Protobuf: the reader message's full name (default: the schema's first message).
    pub message: Option<String>,
    pub key_message: Option<String>,
    /// `[{"name", "source"?}]`, as given.
    pub columns: Option<String>,
    pub flatten: bool,
    pub tombstones: Tombstones,
    /// `schema.evolution`: what a writer schema with fields the reader lacks does.
    pub evolution: Evolution,
}

/// What a record whose writer schema has fields the reader (the table) lacks does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Evolution {
    /// Decoded without them; logged once per schema id.
    #[default]
    Ignore,
    /// Fails the batch (`schema-changed`) so the host adds the columns and reloads the stage
    /// before any such row is loaded. The host sets this from `maxcompute.schema_evolution`.
    AddColumns,
}

/// What a record without a value (a tombstone) becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tombstones {
    /// Filtered out (counted as filtered in the stage's metrics).
    #[default]
    Skip,
    DeadLetter,
}

impl Settings {
    /// Parses the string map; an error names the key and the fix.
    pub fn parse(config: &[(String, String)]) -> Result<Settings, String> {
        let mut s = Settings::default();
        let int = |k: &str, v: &str| {
            v.trim().parse::<i32>().map_err(|_| {
                format!("{k}: '{v}' is not a version number; use a number, or leave it out for the latest")
            })
        };
        for (k, v) in config {
            match k.as_str() {
                "subject" => s.subject = v.trim().to_owned(),
                "version" => s.version = Some(int(k, v)?),
                "key-subject" => s.key_subject = Some(v.trim().to_owned()),
                "key-version" => s.key_version = Some(int(k, v)?),
                "message" => s.message = Some(v.trim().to_owned()),
                "key-message" => s.key_message = Some(v.trim().to_owned()),
                "columns" => s.columns = Some(v.clone()),
                "flatten" => {
                    s.flatten = match v.trim() {
                        "true" => true,
                        "false" => false,
                        other => return Err(format!("flatten: '{other}' is not true or false")),
                    }
                }
                "schema.evolution" => {
                    s.evolution = match v.trim() {
                        "ignore" | "strict" => Evolution::Ignore,
                        "add-columns" => Evolution::AddColumns,
                        other => {
                            return Err(format!(
                                "schema.evolution: '{other}' is not ignore or add-columns"
                            ));
                        }
                    }
                }
                "tombstones" => {
                    s.tombstones = match v.trim() {
                        "skip" => Tombstones::Skip,
                        "dead-letter" => Tombstones::DeadLetter,
                        other => {
                            return Err(format!(
                                "tombstones: '{other}' is not skip or dead-letter"
                            ));
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "unknown setting '{other}'; the settings are subject, version, message, key-subject, key-version, key-message, columns, flatten, tombstones, schema.evolution"
                    ));
                }
            }
        }
        if s.subject.is_empty() {
            return Err(
                "subject: missing; name the value schema's subject, e.g. \"orders-value\" (topic name strategy)"
                    .into(),
            );
        }
        Ok(s)
    }
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Offset,
    Timestamp,
    Partition,
    Topic,
    /// The key as text (no key subject).
    KeyText,
    /// A field path into the decoded value, or into the decoded key.
    Field {
        key: bool,
        path: Vec<String>,
    },
}

/// One output column and its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub col: Col,
    pub source: Source,
}

/// The output columns for a value schema (and a key schema, when decoded), given as their
/// reader-side trees.
pub fn plan(
    settings: &Settings,
    value: &Field,
    key: Option<&Field>,
) -> Result<Vec<Planned>, String> {
    let Some(text) = &settings.columns else {
        let mut out = Vec::new();
        fields(value, &mut Vec::new(), false, settings.flatten, &mut out);
        return Ok(out);
    };
    let specs: Vec<Json> = serde_json::from_str(text)
        .map_err(|e| format!("columns: not a JSON array of {{\"name\", \"source\"?}}: {e}"))?;
    let mut out = Vec::new();
    for spec in specs {
        let name = spec
            .get("name")
            .and_then(Json::as_str)
            .ok_or_else(|| format!("columns: {spec} has no \"name\""))?;
        let source = spec.get("source").and_then(Json::as_str).unwrap_or(name);
        let (source, ty, nullable) = match source {
            "__offset__" | "__timestamp__" | "__partition__" => (
                match source {
                    "__offset__" => Source::Offset,
                    "__timestamp__" => Source::Timestamp,
                    _ => Source::Partition,
                },
                Ty::Bigint,
                false,
            ),
            "__topic__" => (Source::Topic, Ty::String, false),
            "__key__" if key.is_none() => (Source::KeyText, Ty::String, true),
            path => {
                let (is_key, rest) = match path.strip_prefix("__key__") {
                    Some(rest) => (true, rest.trim_start_matches('.')),
                    None => (false, path),
                };
                let root = if is_key {
                    key.ok_or_else(|| {
                        format!("columns: '{name}' reads the key's {path}; set key-subject")
                    })?
                } else {
                    value
                };
                let path: Vec<String> = if rest.is_empty() {
                    Vec::new()
                } else {
                    rest.split('.').map(str::to_owned).collect()
                };
                let (ty, nullable) = walk(root, &path)
                    .map_err(|why| format!("columns: '{name}' (source {source}): {why}"))?;
                (Source::Field { key: is_key, path }, ty, nullable)
            }
        };
        out.push(Planned {
            col: Col {
                name: name.to_owned(),
                ty,
                nullable,
            },
            source,
        });
    }
    if out.is_empty() {
        return Err("columns: the list is empty; name at least one column".into());
    }
    Ok(out)
}

/// Columns for the fields under `f` (flattening nested records into `a_b` when asked); a root
/// that is not a record is one column, `value`.
fn fields(
    f: &Field,
    prefix: &mut Vec<String>,
    nullable: bool,
    flatten: bool,
    out: &mut Vec<Planned>,
) {
    if f.children.is_empty() {
        out.push(Planned {
            col: Col {
                name: if prefix.is_empty() {
                    "value".into()
                } else {
                    prefix.join("_")
                },
                ty: f.ty.clone(),
                nullable: nullable || f.nullable,
            },
            source: Source::Field {
                key: false,
                path: prefix.clone(),
            },
        });
        return;
    }
    for child in &f.children {
        prefix.push(child.name.clone());
        if flatten && !child.children.is_empty() {
            fields(child, prefix, nullable || child.nullable, flatten, out);
        } else {
            out.push(Planned {
                col: Col {
                    name: prefix.join("_"),
                    ty: child.ty.clone(),
                    nullable: nullable || child.nullable,
                },
                source: Source::Field {
                    key: false,
                    path: prefix.clone(),
                },
            });
        }
        prefix.pop();
    }
}

/// The type at `path` under `root`, and whether any step admits NULL.
fn walk(root: &Field, path: &[String]) -> Result<(Ty, bool), String> {
    let mut f = root;
    let mut nullable = false;
    for (i, step) in path.iter().enumerate() {
        nullable |= f.nullable;
        if f.children.is_empty() {
            return Err(format!("'{}' is not a record", path[..i].join(".")));
        }
        f = f.children.iter().find(|c| c.name == *step).ok_or_else(|| {
            format!(
                "no field '{step}' (fields: {})",
                f.children
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    }
    Ok((f.ty.clone(), nullable || f.nullable))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(name: &str, ty: Ty, nullable: bool) -> Field {
        Field {
            name: name.into(),
            ty,
            nullable,
            children: Vec::new(),
        }
    }

    fn tree() -> Field {
        let address = Field {
            name: "address".into(),
            ty: Ty::Struct(vec![("city".into(), Ty::String)]),
            nullable: true,
            children: vec![leaf("city", Ty::String, false)],
        };
        Field {
            name: String::new(),
            ty: Ty::Struct(Vec::new()),
            nullable: false,
            children: vec![leaf("id", Ty::Bigint, false), address],
        }
    }

    #[test]
    fn default_columns_are_top_level_fields_or_flattened_leaves() {
        let settings = Settings::parse(&[("subject".into(), "s".into())]).unwrap();
        let names: Vec<(String, bool)> = plan(&settings, &tree(), None)
            .unwrap()
            .into_iter()
            .map(|p| (p.col.name, p.col.nullable))
            .collect();
        assert_eq!(names, [("id".into(), false), ("address".into(), true)]);
        let flat = Settings {
            flatten: true,
            ..settings
        };
        let names: Vec<(String, bool)> = plan(&flat, &tree(), None)
            .unwrap()
            .into_iter()
            .map(|p| (p.col.name, p.col.nullable))
            .collect();
        assert_eq!(names, [("id".into(), false), ("address_city".into(), true)]);
    }

    #[test]
    fn chosen_columns_rename_reach_into_records_and_name_missing_fields() {
        let settings = Settings::parse(&[
            ("subject".into(), "s".into()),
            (
                "columns".into(),
                r#"[{"name":"town","source":"address.city"},{"name":"o","source":"__offset__"}]"#
                    .into(),
            ),
        ])
        .unwrap();
        let p = plan(&settings, &tree(), None).unwrap();
        assert_eq!(p[0].col.ty, Ty::String);
        assert!(
            p[0].col.nullable,
            "a nullable parent makes the leaf nullable"
        );
        assert_eq!(p[1].source, Source::Offset);
        let bad = Settings {
            columns: Some(r#"[{"name":"x","source":"address.zip"}]"#.into()),
            ..settings.clone()
        };
        let e = plan(&bad, &tree(), None).unwrap_err();
        assert!(e.contains("no field 'zip'") && e.contains("city"), "{e}");
        let key = Settings {
            columns: Some(r#"[{"name":"k","source":"__key__.id"}]"#.into()),
            ..settings
        };
        assert!(
            plan(&key, &tree(), None)
                .unwrap_err()
                .contains("key-subject")
        );
    }

    #[test]
    fn settings_name_the_bad_key() {
        assert!(Settings::parse(&[]).unwrap_err().contains("subject"));
        let e = Settings::parse(&[("subjet".into(), "x".into())]).unwrap_err();
        assert!(e.contains("unknown setting 'subjet'"), "{e}");
        let e = Settings::parse(&[
            ("subject".into(), "x".into()),
            ("version".into(), "v2".into()),
        ])
        .unwrap_err();
        assert!(e.contains("version"), "{e}");
    }
}
