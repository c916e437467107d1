//! `k2mc transforms run` as a transform author uses it, and guest output: a transform that prints
//! (Rust `println!`/`eprintln!`, JavaScript `console.log`, Python `print()`) runs in `transforms
//! run` and in the pipeline, its output reaches the logs under the stage's name, and a flood is
//! cut off, never crashing the host; `--expect` diffs a port against the original in one step.

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::stack::k2mc_env;
use harness::{foreign_wasm, repo_root, transform_wasm, workspace_bin};

use crate::case::Case;

/// Runs `cmd` to its end: (success, stdout, stderr).
fn outcome(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `k2mc transforms run` on the golden vehicle records: kafka-columns, then `stage`.
fn transforms_run(wasm: &Path, settings: &serde_json::Value) -> (bool, String, String) {
    transforms_run_with(wasm, settings, &[])
}

fn transforms_run_with(
    wasm: &Path,
    settings: &serde_json::Value,
    extra: &[&std::ffi::OsStr],
) -> (bool, String, String) {
    let golden = repo_root().join("transforms/golden");
    let columns = std::fs::read_to_string(golden.join("vehicle-columns.json")).unwrap();
    let parser = serde_json::json!({ "columns": columns });
    outcome(
        Command::new(workspace_bin("k2mc").unwrap())
            .args(["transforms", "run", "--stage"])
            .arg(format!(
                "{}={parser}",
                transform_wasm("kafka-columns").unwrap().display()
            ))
            .arg("--stage")
            .arg(format!("{}={settings}", wasm.display()))
            .arg("--input")
            .arg(golden.join("vehicle-records.jsonl"))
            .args(extra)
            .envs(k2mc_env())
            .env_remove("RUST_LOG"),
    )
}

#[test]
fn a_stage_that_prints_runs_in_transforms_run_and_its_output_is_logged_under_its_name() {
    let debug = serde_json::json!({ "column.owner_phone": "phone", "debug": "true" });
    let cases: Vec<(&str, PathBuf, serde_json::Value, &str)> = vec![
        (
            "println!",
            transform_wasm("mask").unwrap(),
            debug.clone(),
            "mask: ",
        ),
        (
            "console.log",
            foreign_wasm("mask-js").unwrap(),
            debug.clone(),
            "mask: ",
        ),
        ("print()", foreign_wasm("mask-py").unwrap(), debug, "mask: "),
        (
            "println! and eprintln!",
            transform_wasm("hostile").unwrap(),
            serde_json::json!({ "mode": "print" }),
            "hostile: to stderr",
        ),
    ];
    for (what, wasm, settings, line) in cases {
        let (ok, out, err) = transforms_run(&wasm, &settings);
        assert!(ok, "{what}: transforms run failed:\n{err}");
        // `transforms run` labels a stage by the name its component declares.
        let stage = if what.contains("eprintln") {
            "hostile"
        } else {
            "mask"
        };
        let logged = err
            .lines()
            .find(|l| l.contains(line))
            .unwrap_or_else(|| panic!("{what}: no guest line {line:?} in the logs:\n{err}"));
        assert!(
            logged.contains(&format!("stage={stage} ")),
            "{what}: the line does not name the stage {stage}: {logged}"
        );
        assert!(
            !out.contains(line),
            "{what}: guest output leaked into the rows"
        );
        assert!(
            out.lines().filter(|l| l.starts_with('{')).count() >= 1,
            "{what}: no rows:\n{out}"
        );
    }
}

#[test]
fn a_flood_of_guest_output_is_cut_off_and_counted() {
    // 1 MB to stdout on every call: the host forwards at most 64 KiB per stream per instance.
    let wasm = transform_wasm("hostile").unwrap();
    let (ok, _, err) = transforms_run(
        &wasm,
        &serde_json::json!({ "mode": "print", "value": "1000000" }),
    );
    assert!(ok, "{err}");
    assert!(
        err.len() < 400_000,
        "{} bytes of logs for a 1 MB flood",
        err.len()
    );
    assert!(
        err.contains("dropped"),
        "the cut is not reported:\n{}",
        &err[err.len().saturating_sub(2000)..]
    );
}

#[test]
fn a_stage_that_prints_runs_in_the_pipeline() {
    // println!/eprintln! (Rust), console.log (JavaScript) and print() (Python) stages after the
    // case's chain, each under its own name.
    let stage = |name: &str, wasm: PathBuf, settings: &str| {
        format!(
            "[[transforms]]\nname = \"{name}\"\nwasm = {:?}\nsettings = {{ {settings} }}\n",
            wasm.display().to_string()
        )
    };
    let extra = [
        stage(
            "noisy",
            transform_wasm("hostile").unwrap(),
            "mode = \"print\"",
        ),
        stage(
            "noisy-js",
            foreign_wasm("mask-js").unwrap(),
            "debug = \"true\"",
        ),
        stage(
            "noisy-py",
            foreign_wasm("mask-py").unwrap(),
            "debug = \"true\"",
        ),
    ]
    .concat();
    let case = Case::new("printing", 1, &extra);
    case.produce(0, 0..5, 1);
    let (ok, out, err) = case.k2mc(&["run"], &[]);
    assert!(ok, "the run failed:\n{err}\n{out}");
    assert_eq!(case.landed().len(), 5, "every record lands");
    for (line, stage) in [
        ("hostile: 5 rows", "noisy"),
        ("hostile: to stderr", "noisy"),
        ("mask: 5 rows", "noisy-js"),
        ("mask: 5 rows", "noisy-py"),
    ] {
        let tag = format!("stage={stage} ");
        assert!(
            err.lines().any(|l| l.contains(line) && l.contains(&tag)),
            "no {line:?} from {stage} in the logs:\n{err}"
        );
    }
}

#[test]
fn expect_diffs_a_port_against_the_original_in_one_step() {
    let masks = serde_json::json!({ "column.owner_phone": "phone", "column.owner_email": "email" });
    let (ok, rust_rows, err) = transforms_run(&transform_wasm("mask").unwrap(), &masks);
    assert!(ok, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let expected = dir.path().join("rust.jsonl");
    std::fs::write(&expected, &rust_rows).unwrap();
    let expect = [std::ffi::OsStr::new("--expect"), expected.as_os_str()];
    let js = foreign_wasm("mask-js").unwrap();
    let (ok, _, err) = transforms_run_with(&js, &masks, &expect);
    assert!(ok && err.contains("rows match"), "{err}");
    // One changed cell: the command fails and names the row and both values.
    let mut lines: Vec<String> = rust_rows.lines().map(str::to_owned).collect();
    assert!(lines.len() >= 2, "{rust_rows}");
    let mut row: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    row["owner_phone"] = serde_json::json!("000****0000");
    lines[1] = row.to_string();
    std::fs::write(&expected, lines.join("\n")).unwrap();
    let (ok, _, err) = transforms_run_with(&js, &masks, &expect);
    assert!(!ok, "a difference must fail:\n{err}");
    assert!(
        err.contains("row 2: expected") && err.contains("000****0000") && err.contains("1 of"),
        "{err}"
    );
}

/// Runs `program args` in `dir`; fails the test with its output when it fails.
fn run_in(dir: &Path, program: &Path, args: &[&str]) {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    harness::clean_cargo_env(&mut cmd);
    let (ok, out, err) = outcome(&mut cmd);
    assert!(
        ok,
        "{} {args:?} in {} failed:\n{out}{err}",
        program.display(),
        dir.display()
    );
}

/// Scaffolds `world` in Rust, JavaScript, Python and C, builds each, runs each on its sample
/// input and checks that the other ports' rows equal the Rust rows (`--expect`). Returns the Rust
/// folder, its rows and the run's stderr.
fn scaffold_in_every_language(
    dir: &Path,
    world: &str,
    stem: &str,
) -> (PathBuf, Vec<serde_json::Value>, String) {
    let k2mc = workspace_bin("k2mc").unwrap();
    let new = |lang: &str| -> (PathBuf, String) {
        let name = format!("{stem}-{lang}");
        let (ok, _, err) = outcome(
            Command::new(&k2mc)
                .args([
                    "transforms",
                    "new",
                    &name,
                    "--lang",
                    lang,
                    "--world",
                    world,
                    "--dir",
                ])
                .arg(dir),
        );
        assert!(ok, "{err}");
        (dir.join(&name), name.replace('-', "_"))
    };
    let wit_world = format!("{world}-stage");
    // Rust: its own crate and target folder, never this repository's transforms/ workspace.
    let (rust, rust_wasm) = new("rust");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_in(
        &rust,
        Path::new(&cargo),
        &["build", "--release", "--quiet", "--target-dir", "target"],
    );
    // JavaScript: componentize-js from the project's install (a user runs `npm install`).
    let (js, js_wasm) = new("js");
    std::os::unix::fs::symlink(
        repo_root().join("transforms/mask-js/node_modules"),
        js.join("node_modules"),
    )
    .unwrap();
    run_in(&js, Path::new("node"), &["build.mjs"]);
    // Python: componentize-py from the project's venv.
    let (py, py_wasm) = new("python");
    let componentize = harness::python().unwrap().with_file_name("componentize-py");
    let py_out = format!("{py_wasm}.wasm");
    run_in(
        &py,
        &componentize,
        &[
            "-d",
            "wit",
            "-w",
            &wit_world,
            "componentize",
            "app",
            "-o",
            &py_out,
        ],
    );

    // C: its build script, with the tools setup installed (clang-14 from Debian, wasm-tools in
    // the venv, wit-bindgen in ~/.cargo/bin).
    let (c, c_wasm) = new("c");
    let mut build = Command::new(c.join("build.sh"));
    build
        .current_dir(&c)
        .env(
            "WASM_TOOLS",
            harness::python().unwrap().with_file_name("wasm-tools"),
        )
        .env(
            "WIT_BINDGEN",
            harness::stack::cargo_tool("wit-bindgen").unwrap(),
        );
    let (ok, out, err) = outcome(&mut build);
    assert!(ok, "{} build.sh failed:\n{out}{err}", c.display());

    let rust_out = format!("target/wasm32-wasip2/release/{rust_wasm}.wasm");
    let (ok, rows, err) = scaffold_run(&rust, world, &rust_out, None);
    assert!(ok, "{err}");
    let rows: Vec<serde_json::Value> = rows
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected = dir.join(format!("{world}-rust.jsonl"));
    std::fs::write(
        &expected,
        rows.iter().map(|r| format!("{r}\n")).collect::<String>(),
    )
    .unwrap();
    for (folder, wasm) in [
        (&js, format!("{js_wasm}.wasm")),
        (&py, py_out),
        (&c, format!("{c_wasm}.wasm")),
    ] {
        let (ok, _, other) = scaffold_run(folder, world, &wasm, Some(&expected));
        assert!(
            ok && other.contains("rows match"),
            "{}:\n{other}",
            folder.display()
        );
        assert!(other.contains("too-long"), "{other}");
    }
    (rust, rows, err)
}

/// `k2mc transforms run` in a scaffolded folder, as its README says (a row stage after the
/// built-in parser).
fn scaffold_run(
    folder: &Path,
    world: &str,
    wasm: &str,
    expect: Option<&Path>,
) -> (bool, String, String) {
    let mut cmd = Command::new(workspace_bin("k2mc").unwrap());
    cmd.current_dir(folder).args(["transforms", "run"]);
    if world == "row" {
        cmd.arg("--stage").arg(format!(
            "{}=@parser.json",
            transform_wasm("kafka-columns").unwrap().display()
        ));
    }
    cmd.args(["--stage", &format!("{wasm}=@settings.json")])
        .args(["--input", "input.jsonl"])
        .envs(k2mc_env())
        .env_remove("RUST_LOG");
    if let Some(file) = expect {
        cmd.arg("--expect").arg(file);
    }
    outcome(&mut cmd)
}

#[test]
fn a_new_row_stage_in_each_language_builds_runs_and_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let (rust, rows, err) = scaffold_in_every_language(dir.path(), "row", "upper");
    // Five rows: upper-cased, counted in scalar values (20 emoji fit max 20); one too long.
    assert_eq!(rows.len(), 5, "{rows:?}");
    // ASCII upper-casing in every port: ß has no one-letter capital and C no Unicode mapping.
    assert_eq!(rows[2]["brand"], "STRAßE");
    assert_eq!(rows[3]["brand_chars"], serde_json::Value::Null);
    assert_eq!(rows[4]["brand_chars"], 20);
    assert!(
        err.contains("too-long: column brand: 41 characters is over max 20"),
        "{err}"
    );
    // A configuration error names the key and the fix.
    std::fs::write(rust.join("settings.json"), "{\"max\": \"many\"}").unwrap();
    let wasm = "target/wasm32-wasip2/release/upper_rust.wasm";
    let (ok, _, err) = scaffold_run(&rust, "row", wasm, None);
    assert!(
        !ok && err.contains("max = 'many': use a whole number above 0"),
        "{err}"
    );
}

#[test]
fn a_new_parser_stage_in_each_language_builds_runs_and_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let (_, rows, err) = scaffold_in_every_language(dir.path(), "parser", "lines");
    // One row per record but the 77-character one; 57 characters of which 20 are emoji (77
    // UTF-16 units) fit max 60.
    let offsets: Vec<i64> = rows.iter().map(|r| r["offset"].as_i64().unwrap()).collect();
    assert_eq!(offsets, [0, 1, 2, 3, 5]);
    assert_eq!(rows[4]["value_chars"], 57);
    assert!(
        err.contains("too-long: offset 4: 77 characters is over max 60"),
        "{err}"
    );
}
