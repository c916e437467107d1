//! The config parser (`Config::parse`): the TOML file, then the `K2MC__` environment overrides,
//! then the checks. Input: the file's text, optionally a NUL byte and `NAME=value` lines as the
//! environment (names get the `K2MC__` prefix when they lack it). A config loads or fails with a
//! message; a loaded one lists its secret references and resolves paths.
#![no_main]

use std::path::Path;

use k2mc_formats::config::{Config, ENV_PREFIX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file, env) = text.split_once('\0').unwrap_or((text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| {
            let name = if name.starts_with(ENV_PREFIX) {
                name.to_owned()
            } else {
                format!("{ENV_PREFIX}{name}")
            };
            (name, value.to_owned())
        })
        .collect();
    match Config::parse(file, env) {
        Ok(config) => {
            for (key, _) in config.secret_refs() {
                assert!(!key.is_empty());
            }
            for stage in &config.transforms {
                let _ = config.resolve_path(&stage.wasm);
            }
            let _ = config.resolve_path(Path::new("relative"));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
