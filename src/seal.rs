//! Sealed message text: the clear text of a message that must not rest in
//! the store (an OTP's code), encrypted with a key kept outside the store.
//!
//! An OTP's SMS has to survive a crash until it is submitted, so its text
//! must be stored; but a store file keeps old page versions and Redis keeps
//! an append-only log, so text written in clear and overwritten later would
//! linger. The message therefore stores a masked body for every reader
//! (API, webhooks, scripts) and the clear text only sealed: ChaCha20-Poly1305
//! under a 256-bit key from a file the store never sees, bound to the
//! message id. The dispatcher opens the seal right before `submit_sm`; the
//! recorder drops it once the message is submitted or final. Nodes sharing a
//! Redis store must share the key file.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::model::MessageId;

/// Key length in bytes.
const KEY_LEN: usize = 32;

/// Why a key could not be loaded, or a seal not opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("seal key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the sealed text of message {0} cannot be opened with this node's seal key")]
    Open(MessageId),
    #[error("the system random number generator failed")]
    Random,
}

/// Seals and opens message text with one key.
pub struct Sealer {
    key: LessSafeKey,
    /// The key bytes, only to derive other keys from ([`Sealer::derive_key`]).
    secret: [u8; KEY_LEN],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer with `bytes` as its key.
    ///
    /// # Errors
    /// `bytes` is not 32 bytes long.
    pub fn from_key(bytes: &[u8]) -> Result<Sealer, String> {
        let secret: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| format!("a seal key is {KEY_LEN} bytes"))?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &secret)
            .map_err(|_| format!("a seal key is {KEY_LEN} bytes"))?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
            secret,
        })
    }

    /// A sealer with a fresh random key, kept in memory only (tests, bench).
    ///
    /// # Errors
    /// The system random number generator failed.
    pub fn ephemeral() -> Result<Sealer, SealError> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|_| SealError::Random)?;
        Sealer::from_key(&key).map_err(|_| SealError::Random)
    }

    /// The key in `path` (hex), created with a fresh random key and mode
    /// 0600 when the file does not exist yet.
    ///
    /// # Errors
    /// The file cannot be read or created, or holds no valid key.
    pub fn load_or_create(path: &Path) -> Result<Sealer, SealError> {
        let fail = |reason: String| SealError::Key {
            path: path.to_path_buf(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim())
                    .map_err(|_| fail(format!("not {KEY_LEN} hex-encoded bytes")))?;
                Sealer::from_key(&bytes).map_err(fail)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_LEN];
                getrandom::fill(&mut key).map_err(|_| SealError::Random)?;
                write_private(path, hex::encode(key).as_bytes())
                    .map_err(|e| fail(e.to_string()))?;
                Sealer::from_key(&key).map_err(fail)
            }
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// A key for another purpose, derived from this one (HMAC-SHA256 of
    /// `purpose`), so one key file serves every secret a node needs.
    pub fn derive_key(&self, purpose: &str) -> Vec<u8> {
        use hmac::{KeyInit, Mac};
        match hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.secret) {
            Ok(mut mac) => {
                mac.update(purpose.as_bytes());
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => self.secret.to_vec(),
        }
    }

    /// `text` sealed for message `id`, hex-encoded (nonce, ciphertext, tag).
    ///
    /// # Errors
    /// The system random number generator failed.
    pub fn seal(&self, id: MessageId, text: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut buf = text.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(id.0.to_be_bytes()),
                &mut buf,
            )
            .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(hex::encode(out))
    }

    /// The text sealed for message `id`.
    ///
    /// # Errors
    /// The seal was made with another key, for another message, or altered.
    pub fn open(&self, id: MessageId, sealed: &str) -> Result<String, SealError> {
        let bytes = hex::decode(sealed).map_err(|_| SealError::Open(id))?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Open(id));
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open(id))?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(id.0.to_be_bytes()), &mut buf)
            .map_err(|_| SealError::Open(id))?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Open(id))
    }
}

/// Writes `bytes` to a new file readable by its owner only, from the start.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_opens_only_for_its_message_and_key() {
        let sealer = Sealer::ephemeral().expect("key");
        let id = MessageId::generate();
        let sealed = sealer.seal(id, "Your code is 123456").expect("seal");
        assert!(!sealed.contains("123456"));
        assert_eq!(
            sealer.open(id, &sealed).expect("open"),
            "Your code is 123456"
        );
        assert!(sealer.open(MessageId::generate(), &sealed).is_err());
        let other = Sealer::ephemeral().expect("key");
        assert!(other.open(id, &sealed).is_err());
        assert!(sealer.open(id, "zz").is_err());
    }

    #[test]
    fn the_key_file_is_created_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/seal.key");
        let first = Sealer::load_or_create(&path).expect("create");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let id = MessageId::generate();
        let sealed = first.seal(id, "x").expect("seal");
        let again = Sealer::load_or_create(&path).expect("load");
        assert_eq!(again.open(id, &sealed).expect("open"), "x");
        std::fs::write(&path, "nothex").expect("write");
        assert!(Sealer::load_or_create(&path).is_err());
    }
}
