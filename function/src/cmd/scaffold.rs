//! `k2mc transforms new NAME --lang rust|js|python|c [--world row|parser]`: a standalone folder
//! with a working stage, its own build command and output path, a copy of the WIT contract, test
//! input and the settings to run it with. The templates of one world (`function/templates/`)
//! behave identically in every language, so their outputs can be compared with
//! `k2mc transforms run --expect`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The languages a stage can be scaffolded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    Rust,
    Js,
    Python,
    /// C with Debian's clang and wasi-libc, `wit-bindgen c` and `wasm-tools component new`.
    C,
}

const WIT: &str = include_str!("../../../wit/transform.wit");
const INPUT: &str = include_str!("../../templates/input.jsonl.tmpl");
/// The parser before the new stage: the built-in kafka-columns reading the sample's fields.
const PARSER: &str = r#"{"columns": "[{\"name\": \"id\", \"type\": \"bigint\"}, {\"name\": \"brand\", \"type\": \"string\"}, {\"name\": \"city\", \"type\": \"string\"}]"}"#;
/// The WIT worlds a stage can be written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum World {
    /// Rows in, rows out: after the parser.
    Row,
    /// Kafka records in, rows out: the first stage.
    Parser,
}

impl World {
    fn wit_name(self) -> &'static str {
        match self {
            World::Row => "row-stage",
            World::Parser => "parser-stage",
        }
    }

    fn settings(self) -> &'static str {
        match self {
            World::Row => "{\"column\": \"brand\"}\n",
            World::Parser => "{\"max\": \"60\"}\n",
        }
    }
}

/// The files of a language's template: (path in the new folder, text).
fn files(lang: Lang, world: World) -> Vec<(&'static str, &'static str)> {
    let row = world == World::Row;
    match lang {
        Lang::Rust => vec![
            (
                "Cargo.toml",
                include_str!("../../templates/rust/Cargo.toml.tmpl"),
            ),
            (
                ".cargo/config.toml",
                include_str!("../../templates/rust/config.toml.tmpl"),
            ),
            (
                ".gitignore",
                include_str!("../../templates/rust/gitignore.tmpl"),
            ),
            (
                "src/lib.rs",
                if row {
                    include_str!("../../templates/rust/lib.rs.tmpl")
                } else {
                    include_str!("../../templates/rust/parser.rs.tmpl")
                },
            ),
        ],
        Lang::Js => vec![
            (
                "package.json",
                include_str!("../../templates/js/package.json.tmpl"),
            ),
            (
                "build.mjs",
                include_str!("../../templates/js/build.mjs.tmpl"),
            ),
            (
                "stage.js",
                if row {
                    include_str!("../../templates/js/stage.js.tmpl")
                } else {
                    include_str!("../../templates/js/parser.js.tmpl")
                },
            ),
            (
                ".gitignore",
                include_str!("../../templates/js/gitignore.tmpl"),
            ),
        ],
        Lang::C => vec![
            ("build.sh", include_str!("../../templates/c/build.sh.tmpl")),
            (
                if row { "stage.c" } else { "parser.c" },
                if row {
                    include_str!("../../templates/c/stage.c.tmpl")
                } else {
                    include_str!("../../templates/c/parser.c.tmpl")
                },
            ),
            (
                ".gitignore",
                include_str!("../../templates/c/gitignore.tmpl"),
            ),
        ],
        Lang::Python => vec![
            (
                "app.py",
                if row {
                    include_str!("../../templates/python/app.py.tmpl")
                } else {
                    include_str!("../../templates/python/parser.py.tmpl")
                },
            ),
            (
                ".gitignore",
                include_str!("../../templates/python/gitignore.tmpl"),
            ),
        ],
    }
}

/// How to build, and where the component lands (relative to the folder).
fn build(lang: Lang, world: World, wasm: &str) -> (String, String) {
    match lang {
        Lang::Rust => (
            "cargo build --release".into(),
            format!("target/wasm32-wasip2/release/{wasm}.wasm"),
        ),
        Lang::Js => (
            "npm install && node build.mjs".into(),
            format!("{wasm}.wasm"),
        ),
        Lang::C => ("./build.sh".into(), format!("{wasm}.wasm")),
        Lang::Python => (
            format!(
                "componentize-py -d wit -w {} componentize app -o {wasm}.wasm",
                world.wit_name()
            ),
            format!("{wasm}.wasm"),
        ),
    }
}

/// Checks that `name` can be a crate, package and file name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "transform name '{name}': use lower-case letters, digits and '-', starting with a letter (e.g. upper-brand)"
        );
    }
    Ok(())
}

/// Writes the folder `dir/NAME` and prints how to build and run it.
pub(crate) fn new(name: &str, lang: Lang, world: World, dir: &Path) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let root = dir.join(name);
    if root.exists() {
        bail!(
            "{} already exists; pick another name or --dir",
            root.display()
        );
    }
    let wasm = name.replace('-', "_");
    let (build_cmd, output) = build(lang, world, &wasm);
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{wasm}}", &wasm)
            .replace("{{world}}", world.wit_name())
            .replace(
                "{{source}}",
                if world == World::Row {
                    "stage.c"
                } else {
                    "parser.c"
                },
            )
    };
    let mut all: Vec<(&str, String)> = files(lang, world)
        .into_iter()
        .map(|(path, text)| (path, fill(text)))
        .collect();
    all.push(("wit/transform.wit", WIT.to_owned()));
    all.push(("input.jsonl", INPUT.to_owned()));
    all.push(("settings.json", world.settings().to_owned()));
    let run = match world {
        World::Row => {
            all.push(("parser.json", format!("{PARSER}\n")));
            format!(
                "k2mc transforms run --stage KAFKA_COLUMNS.wasm=@parser.json --stage {output}=@settings.json --input input.jsonl"
            )
        }
        World::Parser => {
            format!("k2mc transforms run --stage {output}=@settings.json --input input.jsonl")
        }
    };
    let what = match world {
        World::Row => {
            "A row stage: upper-cases the column named by `column`, adds `<column>_chars`, and makes a record whose value is over `max` characters (default 20) a dead letter."
        }
        World::Parser => {
            "A parser stage: each record becomes a row of its offset, key, value as text and the value's length in characters; a value that is missing, not UTF-8 or over `max` characters is a dead letter."
        }
    };
    all.push((
        "README.md",
        format!(
            "# {name}\n\n{what} ({lang:?})\n\n```sh\n{build_cmd}   # writes {output}\n{run}\n```\n\n\
             KAFKA_COLUMNS (row stages) is the built-in parser: `transforms/target/wasm32-wasip2/release/kafka_columns` in \
             the k2mc repository after `cargo build --release` in `transforms/`. `wit/transform.wit` is a copy of the \
             contract this stage was written against.\n"
        ),
    ));
    let mut all: Vec<(&str, Vec<u8>)> = all
        .into_iter()
        .map(|(path, text)| (path, text.into_bytes()))
        .collect();
    if lang == Lang::C {
        // The adapter that turns the module's WASI preview-1 imports into the component
        // model's, from the wasmtime release k2mc runs on.
        all.push((
            "wasi_snapshot_preview1.reactor.wasm",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER
                .to_vec(),
        ));
    }
    for (path, data) in &all {
        let file = root.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&file, data).with_context(|| format!("writing {}", file.display()))?;
        if path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", file.display()))?;
        }
    }
    eprintln!(
        "wrote {} ({lang:?}, {} world)\n  build: cd {} && {build_cmd}\n  run:   {run}",
        root.display(),
        world.wit_name(),
        root.display()
    );
    Ok(root)
}
