//! JSON Schema: a schema from the registry mapped to columns (`type`, `properties`,
//! `required`, `items`, `additionalProperties`, `format`, local and referenced `$ref`), and JSON
//! payloads projected by property name onto them. A property the reader has and the record
//! lacks is NULL; one only the record has is not loaded; a value of the wrong type is an error.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use crate::model::{Field, Out, Ty, instant};

/// Deepest `$ref` chain followed (a cycle is an error, not a hang).
const MAX_DEPTH: usize = 32;

/// A parsed schema with the schemas it references, by `$ref` name.
#[derive(Debug, Clone)]
pub struct JsonSchema {
    root: Json,
    references: HashMap<String, Json>,
}

/// Parses `text` with its references (`(name, text)`).
pub fn parse(text: &str, references: &[(&str, &str)]) -> Result<JsonSchema, String> {
    let root: Json = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let mut refs = HashMap::new();
    for (name, t) in references {
        refs.insert(
            (*name).to_owned(),
            serde_json::from_str(t).map_err(|e| format!("reference {name}: not JSON: {e}"))?,
        );
    }
    let schema = JsonSchema {
        root,
        references: refs,
    };
    schema.tree()?;
    Ok(schema)
}

impl JsonSchema {
    /// The schema `s` stands for, following `$ref` (`#/definitions/X`, `#/$defs/X`, or a
    /// referenced schema's name, optionally with a `#/...` pointer).
    fn resolve<'a>(&'a self, mut s: &'a Json) -> Result<&'a Json, String> {
        for _ in 0..MAX_DEPTH {
            let Some(r) = s.get("$ref").and_then(Json::as_str) else {
                return Ok(s);
            };
            let (doc, pointer) = match r.split_once('#') {
                Some((doc, p)) => (doc, p),
                None => (r, ""),
            };
            let base = if doc.is_empty() {
                &self.root
            } else {
                self.references
                    .get(doc)
                    .ok_or_else(|| format!("$ref {r}: no reference named {doc}"))?
            };
            s = base
                .pointer(pointer)
                .ok_or_else(|| format!("$ref {r}: nothing at {pointer}"))?;
        }
        Err(format!("$ref chains deeper than {MAX_DEPTH} (a cycle?)"))
    }

    /// The reader-side tree of the root.
    pub fn tree(&self) -> Result<Field, String> {
        self.field("", &self.root, true, &mut vec!["#".to_owned()])
    }

    /// The field for `s`; `refs` are the `$ref`s being expanded: one met again is recursive
    /// and becomes a JSON column there, as a STRUCT cannot hold itself.
    fn field(
        &self,
        name: &str,
        s: &Json,
        required: bool,
        refs: &mut Vec<String>,
    ) -> Result<Field, String> {
        if let Some(r) = s.get("$ref").and_then(Json::as_str) {
            if refs.iter().any(|x| x == r) || refs.len() > MAX_DEPTH {
                return Ok(leaf(name, Ty::Json, true));
            }
            refs.push(r.to_owned());
            let f = self.field(name, self.resolve(s)?, required, refs);
            refs.pop();
            return f;
        }
        let (types, nullable) = types(s);
        let nullable = nullable || !required;
        if let Some(alternatives) = s.get("oneOf").or_else(|| s.get("anyOf")) {
            let arms: Vec<&Json> = alternatives
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let non_null: Vec<&Json> = arms
                .iter()
                .copied()
                .filter(|a| types_of(a) != ["null"])
                .collect();
            let has_null = non_null.len() < arms.len();
            if let [one] = non_null.as_slice() {
                let mut f = self.field(name, one, required, refs)?;
                f.nullable |= has_null;
                return Ok(f);
            }
            return Ok(leaf(name, Ty::Json, true));
        }
        let ty = match types.as_slice() {
            ["object"] => {
                if let Some(props) = s.get("properties").and_then(Json::as_object) {
                    let required: Vec<&str> = s
                        .get("required")
                        .and_then(Json::as_array)
                        .map(|r| r.iter().filter_map(Json::as_str).collect())
                        .unwrap_or_default();
                    let children = props
                        .iter()
                        .map(|(n, p)| self.field(n, p, required.contains(&n.as_str()), refs))
                        .collect::<Result<Vec<_>, _>>()?;
                    let ty = Ty::Struct(
                        children
                            .iter()
                            .map(|c| (c.name.clone(), c.ty.clone()))
                            .collect(),
                    );
                    return Ok(Field {
                        name: name.to_owned(),
                        ty,
                        nullable,
                        children,
                    });
                }
                match s.get("additionalProperties") {
                    Some(v) if v.is_object() => Ty::Map(
                        Box::new(Ty::String),
                        Box::new(self.field("", v, true, refs)?.ty),
                    ),
                    _ => Ty::Json,
                }
            }
            ["array"] => match s.get("items") {
                Some(items) if items.is_object() => {
                    Ty::Array(Box::new(self.field("", items, true, refs)?.ty))
                }
                _ => Ty::Json,
            },
            ["integer"] => Ty::Bigint,
            ["number"] => Ty::Double,
            ["boolean"] => Ty::Boolean,
            ["string"] => match s.get("format").and_then(Json::as_str) {
                Some("date") => Ty::Date,
                Some("date-time") => Ty::Timestamp,
                _ => Ty::String,
            },
            _ => Ty::Json,
        };
        Ok(leaf(name, ty, nullable))
    }
}

fn leaf(name: &str, ty: Ty, nullable: bool) -> Field {
    Field {
        name: name.to_owned(),
        ty,
        nullable,
        children: Vec::new(),
    }
}

fn types_of(s: &Json) -> Vec<&str> {
    match s.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The non-null types of `s`, and whether `null` is one of them.
fn types(s: &Json) -> (Vec<&str>, bool) {
    let all = types_of(s);
    let nullable = all.contains(&"null");
    (all.into_iter().filter(|t| *t != "null").collect(), nullable)
}

/// The cell at `path` (property names) in `v`, as column type `ty`.
pub fn extract(v: &Json, path: &[String], ty: &Ty) -> Result<Out, String> {
    let mut current = v;
    for step in path {
        match current.get(step) {
            Some(next) => current = next,
            None => return Ok(Out::Null),
        }
    }
    convert(current, ty).map_err(|e| match path.last() {
        Some(p) => format!("property '{p}': {e}"),
        None => e,
    })
}

fn convert(v: &Json, ty: &Ty) -> Result<Out, String> {
    let mismatch = || Err(format!("{v} does not fit {}", ty.text()));
    Ok(match (v, ty) {
        (Json::Null, _) => Out::Null,
        (Json::Bool(b), Ty::Boolean) => Out::Bool(*b),
        (Json::Number(n), Ty::Bigint) => match n.as_i64() {
            Some(i) => Out::Int(i),
            None => return mismatch(),
        },
        (Json::Number(n), Ty::Double) => match n.as_f64() {
            Some(x) => Out::Double(x),
            None => return mismatch(),
        },
        (Json::String(s), Ty::String) => Out::Str(s.clone()),
        (Json::String(s), Ty::Date) => {
            let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| format!("'{s}' is not a date (YYYY-MM-DD)"))?;
            Out::Date((d - chrono::NaiveDate::default()).num_days() as i32)
        }
        (Json::String(s), Ty::Timestamp) => {
            let t = chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|_| format!("'{s}' is not an RFC 3339 date-time"))?;
            instant(
                t.timestamp() * 1_000_000_000 + i64::from(t.timestamp_subsec_nanos()),
                1_000_000_000,
            )
        }
        (v, Ty::Json) => Out::Json(v.to_string()),
        (Json::Object(_) | Json::Array(_), t) if t.is_complex() => {
            Out::Json(json(v, t)?.to_string())
        }
        _ => return mismatch(),
    })
}

fn json(v: &Json, ty: &Ty) -> Result<Json, String> {
    Ok(match (v, ty) {
        (Json::Object(o), Ty::Struct(fields)) => {
            let mut out = Map::new();
            for (name, fty) in fields {
                let cell = match o.get(name) {
                    Some(fv) => json(fv, fty)?,
                    None => Json::Null,
                };
                out.insert(name.clone(), cell);
            }
            Json::Object(out)
        }
        (Json::Array(items), Ty::Array(elem)) => Json::Array(
            items
                .iter()
                .map(|i| json(i, elem))
                .collect::<Result<_, _>>()?,
        ),
        (Json::Object(o), Ty::Map(_, vty)) => Json::Object(
            o.iter()
                .map(|(k, ev)| Ok((k.clone(), json(ev, vty)?)))
                .collect::<Result<_, String>>()?,
        ),
        // A value of another shape than its ARRAY, MAP or STRUCT type does not fit: answered
        // here, since `convert` hands every object and array under a complex type back to `json`.
        (Json::Object(_) | Json::Array(_), t) if t.is_complex() => {
            return Err(format!("{v} does not fit {}", t.text()));
        }
        _ => convert(v, ty)?.to_json(),
    })
}

/// The record's properties the reader does not have (top level): what is not loaded.
pub fn dropped_properties(v: &Json, reader: &Field) -> Vec<String> {
    v.as_object()
        .map(|o| {
            o.keys()
                .filter(|k| !reader.children.iter().any(|c| &c.name == *k))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An object or array of another shape than its ARRAY, MAP or STRUCT column is a mismatch
    /// (an `incompatible-schema` dead letter), at the top and nested: it used to send `json`
    /// and `convert` round each other until the stack ran out (found by the fuzz target
    /// `registry_decode`; tests/fuzz/regressions/registry_decode/complex-shape-mismatch).
    #[test]
    fn a_value_of_another_shape_than_its_complex_type_does_not_fit() {
        let strukt = Ty::Struct(vec![("a".into(), Ty::String)]);
        let array = Ty::Array(Box::new(Ty::Double));
        let map = Ty::Map(Box::new(Ty::String), Box::new(Ty::Bigint));
        let nested = Ty::Struct(vec![("a".into(), array.clone())]);
        for (v, ty) in [
            (serde_json::json!({"o": [1]}), &strukt),
            (serde_json::json!({"o": {"a": 1}}), &array),
            (serde_json::json!({"o": [1, 2]}), &map),
            (serde_json::json!({"o": {"a": {"x": 1}}}), &nested),
            (serde_json::json!({"o": [[1]]}), &array),
        ] {
            let e = extract(&v, &["o".into()], ty).unwrap_err();
            assert!(
                e.starts_with("property 'o': ") && e.contains("does not fit"),
                "{v}: {e}"
            );
        }
        // Shapes that fit still convert, and NULL inside stays NULL.
        assert_eq!(
            extract(
                &serde_json::json!({"o": {"a": null}}),
                &["o".into()],
                &nested
            )
            .unwrap(),
            Out::Json(r#"{"a":null}"#.into())
        );
    }

    const SCHEMA: &str = r##"{"type":"object","title":"Order","properties":{
      "id":{"type":"integer"},"price":{"type":"number"},"day":{"type":"string","format":"date"},
      "at":{"type":"string","format":"date-time"},"tags":{"type":"array","items":{"type":"string"}},
      "attrs":{"type":"object","additionalProperties":{"type":"integer"}},
      "address":{"$ref":"#/definitions/Address"},"note":{"type":["string","null"]},
      "any":{"oneOf":[{"type":"integer"},{"type":"string"}]}},
      "required":["id","price","day","at","tags","attrs","address"],
      "definitions":{"Address":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}"##;

    #[test]
    fn json_schema_maps_to_columns() {
        let s = parse(SCHEMA, &[]).unwrap();
        let cols = s.tree().unwrap().described();
        assert_eq!(
            cols,
            [
                ("id".into(), "bigint".into(), false),
                ("price".into(), "double".into(), false),
                ("day".into(), "date".into(), false),
                ("at".into(), "timestamp".into(), false),
                ("tags".into(), "array<string>".into(), false),
                ("attrs".into(), "map<string,bigint>".into(), false),
                ("address".into(), "struct<city:string>".into(), false),
                ("note".into(), "string".into(), true),
                ("any".into(), "json".into(), true),
            ]
        );
    }

    #[test]
    fn recursive_types_become_json_columns_in_every_format() {
        let j = parse(
            r##"{"type":"object","properties":{"kids":{"type":"array","items":{"$ref":"#"}},"n":{"type":"integer"}}}"##,
            &[],
        )
        .unwrap();
        assert_eq!(
            j.tree().unwrap().ty.text(),
            "struct<kids:array<json>,n:bigint>"
        );
        let a = crate::avro::parse(
            r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"long"},{"name":"next","type":["null","Node"]}]}"#,
            &[],
        )
        .unwrap();
        assert_eq!(a.tree().unwrap().children[1].ty, Ty::Json);
        let p = crate::protobuf::parse(
            "syntax = \"proto3\"; message M { int64 v = 1; repeated M kids = 2; map<string, M> named = 3; }",
            &[],
            None,
        )
        .unwrap();
        assert_eq!(
            p.tree().ty.text(),
            "struct<v:bigint,kids:array<json>,named:map<string,json>>"
        );
    }

    #[test]
    fn values_convert_or_say_why_not() {
        let v: Json = serde_json::from_str(
            r#"{"id":5,"day":"2024-02-29","at":"2024-05-01T13:45:30.5+02:00","address":{"city":"H"}}"#,
        )
        .unwrap();
        let p = |s: &str| vec![s.to_owned()];
        assert_eq!(extract(&v, &p("id"), &Ty::Bigint), Ok(Out::Int(5)));
        assert_eq!(extract(&v, &p("day"), &Ty::Date), Ok(Out::Date(19782)));
        assert_eq!(
            extract(&v, &p("at"), &Ty::Timestamp),
            Ok(Out::Timestamp(1_714_563_930, 500_000_000))
        );
        assert_eq!(extract(&v, &p("missing"), &Ty::String), Ok(Out::Null));
        assert!(extract(&v, &p("id"), &Ty::String).is_err());
        assert_eq!(
            extract(&v, &["address".into(), "city".into()], &Ty::String),
            Ok(Out::Str("H".into()))
        );
    }
}
