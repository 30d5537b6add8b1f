//! PEM files, and a value rebuilt only when one of its files changes: each new
//! connection asks for the current one, so a rotation needs no restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

use super::TlsError;

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

fn pem_error(path: &Path, err: impl std::fmt::Display) -> TlsError {
    TlsError::Pem { path: path.to_path_buf(), reason: err.to_string() }
}

pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Empty { path: path.to_path_buf(), what: "certificate" });
    }
    Ok(certs)
}

pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| pem_error(path, e))
}

pub fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path)? {
        roots.add(cert).map_err(|e| pem_error(path, e))?;
    }
    Ok(roots)
}

/// Each file's length and modification time: what changes when it is rewritten.
type Stamp = Vec<(PathBuf, Option<(u64, SystemTime)>)>;

fn stamp(paths: &[PathBuf]) -> Stamp {
    paths
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok();
            (path.clone(), meta.and_then(|m| Some((m.len(), m.modified().ok()?))))
        })
        .collect()
}

/// A value built from files, rebuilt when any of them changes.
pub struct Reloading<T> {
    paths: Vec<PathBuf>,
    current: Mutex<Option<(Stamp, Arc<T>)>>,
}

impl<T> Reloading<T> {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        Reloading { paths, current: Mutex::new(None) }
    }

    pub fn get(&self, build: impl FnOnce() -> Result<T, TlsError>) -> Result<Arc<T>, TlsError> {
        let now = stamp(&self.paths);
        let mut current = self.current.lock();
        if let Some((seen, value)) = current.as_ref() {
            if *seen == now {
                return Ok(value.clone());
            }
        }
        let value = Arc::new(build()?);
        *current = Some((now, value.clone()));
        Ok(value)
    }
}
