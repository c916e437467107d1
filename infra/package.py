"""Assembles and checks the Lambda zip (called by infra/package, which builds what this packs)."""

import argparse
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path


def fail(message: str) -> None:
    print(f"package: error: {message}", file=sys.stderr)
    sys.exit(1)


def say(message: str) -> None:
    print(f"package: {message}", file=sys.stderr)


def referenced_files(config: dict) -> list[str]:
    """Every file the config names, relative to the config (as the function resolves them)."""
    files = [stage["wasm"] for stage in config.get("transforms", [])]
    ca = config.get("kafka", {}).get("tls", {}).get("ca_file")
    if ca:
        files.append(ca)
    for f in files:
        if os.path.isabs(f) or ".." in Path(f).parts:
            fail(f"{f}: the packaged config must name files inside the package (relative, no '..')")
    return files


def check_static(binary: Path) -> None:
    headers = subprocess.run(["readelf", "-lW", str(binary)], capture_output=True, text=True, check=True).stdout
    dynamic = subprocess.run(["readelf", "-dW", str(binary)], capture_output=True, text=True, check=True).stdout
    if "INTERP" in headers or "(NEEDED)" in dynamic:
        fail(f"{binary} is not statically linked:\n{headers}\n{dynamic}")
    say(f"{binary.name}: statically linked (no interpreter, no shared libraries)")


def run(runner: str, binary: Path, *args: str) -> str:
    command = ([runner] if runner else []) + [str(binary), *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"{' '.join(command)} failed:\n{done.stderr}")
    return done.stdout + done.stderr


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--binary", type=Path, required=True)
    p.add_argument("--arch", required=True)
    p.add_argument("--runner", default="")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--builtins", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()

    config = tomllib.loads(a.config.read_text())
    stage = a.out / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)

    shutil.copy2(a.binary, stage / "bootstrap")
    os.chmod(stage / "bootstrap", 0o755)
    shutil.copy2(a.config, stage / "k2mc.toml")
    files = referenced_files(config)
    wasm = []
    for rel in files:
        source = a.config.parent / rel
        if not source.exists():
            builtin = a.builtins / (Path(rel).stem.replace("-", "_") + ".wasm")
            if not builtin.exists():
                fail(f"{rel} (named in {a.config}) is neither a file next to the config nor a built-in transform")
            source = builtin
        target = stage / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        if rel.endswith(".wasm"):
            wasm.append(target)

    check_static(stage / "bootstrap")
    runner = "" if a.runner in ("", "true") else a.runner
    if runner == "missing":
        say(f"warning: no way to run the {a.arch} binary here: not checked with --version, transforms not precompiled")
    else:
        version = run(runner, stage / "bootstrap", "--version").strip()
        say(f"bootstrap --version: {version}" + (f" (under {runner})" if runner else ""))
        by_dir: dict[Path, list[Path]] = {}
        for w in wasm:
            by_dir.setdefault(w.parent, []).append(w)
        for directory, items in by_dir.items():
            run(runner, stage / "bootstrap", "transforms", "precompile", "--out", str(directory), *map(str, items))
        say(f"precompiled {len(wasm)} transform(s) for {a.arch}")

    zip_path = a.out / "k2mc.zip"
    zip_path.unlink(missing_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for path in sorted(stage.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo.from_file(path, path.relative_to(stage).as_posix())
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (0o755 if path.name == "bootstrap" else 0o644) << 16
                z.writestr(info, path.read_bytes())

    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        mode = z.getinfo("bootstrap").external_attr >> 16
    missing = [f for f in ["bootstrap", "k2mc.toml", *files] if f not in names]
    if missing:
        fail(f"the zip lacks {missing}")
    if not mode & 0o111:
        fail("bootstrap is not executable in the zip")
    cwasm = sorted(n for n in names if n.endswith(".cwasm"))
    size = zip_path.stat().st_size
    say(f"{zip_path}: {size / 1_048_576:.1f} MiB ({size} bytes), {len(names)} files: " + ", ".join(sorted(names)))
    say(f"checked: every file the config names is in the zip; {len(cwasm)} precompiled transform(s)")
    if size > 50 * 1_048_576:
        fail("the zip is over Lambda's 50 MB direct-upload limit")


if __name__ == "__main__":
    main()
