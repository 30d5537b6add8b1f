//! What `cairn-kube up` makes once and keeps under `<dir>/pki`: the cluster
//! CA, a certificate for every component, the kubeconfigs they talk with and
//! the bootstrap token new kubelets start from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{io_error, UpError};
use crate::certificates::{Profile, Signer};

/// Components' certificates last a year, as kubeadm's do.
const CERTIFICATE_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

pub struct Pki {
    dir: PathBuf,
    ca: Signer,
}

fn write_private(path: &Path, contents: &str) -> Result<(), UpError> {
    crate::client::write_private(path, contents.as_bytes()).map_err(io_error(path))
}

impl Pki {
    /// The CA in `dir`, made when there is none.
    pub fn open(dir: &Path) -> Result<Pki, UpError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        let ca = if cert.exists() && key.exists() {
            let read = |p: &Path| std::fs::read_to_string(p).map_err(io_error(p));
            Signer::from_pem(&read(&cert)?, &read(&key)?)?
        } else {
            let ca = Signer::generate("cairn-ca", jiff::Timestamp::now())?;
            write_private(&key, ca.key_pem())?;
            std::fs::write(&cert, ca.cert_pem()).map_err(io_error(&cert))?;
            ca
        };
        Ok(Pki { dir: dir.to_path_buf(), ca })
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn ca_key_file(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// `<name>.crt` and `<name>.key`, issued for `profile` unless they exist.
    pub fn certificate(&self, name: &str, profile: &Profile) -> Result<(PathBuf, PathBuf), UpError> {
        let (cert, key) = (self.dir.join(format!("{name}.crt")), self.dir.join(format!("{name}.key")));
        if !(cert.exists() && key.exists()) {
            let (cert_pem, key_pem) = self.ca.issue(profile, jiff::Timestamp::now(), CERTIFICATE_LIFETIME)?;
            write_private(&key, &key_pem)?;
            std::fs::write(&cert, cert_pem).map_err(io_error(&cert))?;
        }
        Ok((cert, key))
    }

    /// A client certificate for `user` in `groups`.
    pub fn client(&self, name: &str, user: &str, groups: &[&str]) -> Result<(PathBuf, PathBuf), UpError> {
        let profile = Profile {
            common_name: user.into(),
            organizations: groups.iter().map(|g| g.to_string()).collect(),
            client: true,
            ..Profile::default()
        };
        self.certificate(name, &profile)
    }

    /// The bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`), made once.
    pub fn bootstrap_token(&self) -> Result<String, UpError> {
        let path = self.dir.join("bootstrap-token");
        if let Ok(token) = std::fs::read_to_string(&path) {
            if crate::http::auth::bootstrap_token_parts(token.trim()).is_some() {
                return Ok(token.trim().to_string());
            }
        }
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let bytes: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()].iter().flat_map(|u| *u.as_bytes()).collect();
        let text: String = bytes.iter().take(22).map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
        let token = format!("{}.{}", &text[..6], &text[6..]);
        write_private(&path, &token)?;
        Ok(token)
    }
}

/// Who a kubeconfig talks as.
pub enum Credentials<'a> {
    Certificate { cert: &'a Path, key: &'a Path },
    Token(&'a str),
}

pub fn write_kubeconfig(path: &Path, server: &str, ca: &Path, user: &Credentials) -> Result<(), UpError> {
    let user = match user {
        Credentials::Certificate { cert, key } => {
            format!("client-certificate: {}\n    client-key: {}", cert.display(), key.display())
        }
        Credentials::Token(token) => format!("token: {token}"),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: cairn\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: user\n  user:\n    {user}\ncontexts:\n- name: cairn\n  context:\n    cluster: cairn\n    user: user\ncurrent-context: cairn\n",
        ca.display()
    );
    write_private(path, &text)
}
