//! OTP codes: drawn from the OS CSPRNG without modulo bias, stored only as
//! argon2id hashes, checked on a thread pool of their own.
//!
//! Hash parameters are chosen for short-lived, attempt-limited codes, not
//! for passwords: argon2id with 1 MiB of memory and one pass verifies in
//! about a millisecond here, so a burst of verifies never queues for long.
//! What stops guessing is the attempt limit and the TTL; what the hash adds
//! is that neither the store nor its backups hold a code in clear. The hash
//! is keyed with the node's secret (argon2's "secret" input, the seal key),
//! so a copy of the store alone does not allow an offline search of the
//! few million possible codes.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Shortest and longest code.
pub const MIN_LENGTH: u8 = 4;
pub const MAX_LENGTH: u8 = 10;

/// argon2id memory in KiB, passes and lanes for codes (see the module doc).
const M_COST_KIB: u32 = 1024;
const T_COST: u32 = 1;
const P_COST: u32 = 1;

/// A code in clear. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Code({} digits)", self.0.len())
    }
}

impl Code {
    /// A code of `length` decimal digits, uniformly drawn.
    ///
    /// # Errors
    /// The system random number generator failed.
    pub fn generate(length: u8) -> Result<Code, getrandom::Error> {
        let length = length.clamp(MIN_LENGTH, MAX_LENGTH);
        let n = 10u64.pow(u32::from(length));
        // Rejection sampling: values in the last, partial run of `n` are
        // drawn again, so every code is exactly as likely.
        let zone = u64::MAX - (u64::MAX % n);
        let value = loop {
            let x = getrandom::u64()?;
            if x < zone {
                break x % n;
            }
        };
        Ok(Code(format!(
            "{value:0width$}",
            width = usize::from(length)
        )))
    }

    /// A code given by a caller, for checking.
    pub fn given(code: &str) -> Code {
        Code(code.to_string())
    }

    /// The digits, for rendering into the SMS.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Hashes and verifies codes on dedicated threads, so OTP verifies never
/// wait behind API-key hashing (which uses tokio's blocking pool) and a
/// burst of them never starves the runtime.
pub struct CodeHasher {
    jobs: Mutex<mpsc::Sender<Job>>,
    secret: Arc<Vec<u8>>,
}

type Job = Box<dyn FnOnce() + Send>;

impl CodeHasher {
    /// A pool of `threads` (at least one) hashing with `secret` as argon2's
    /// secret input.
    pub fn new(threads: usize, secret: Vec<u8>) -> CodeHasher {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("otp-verify-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while taking a job.
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start an OTP verification thread");
            }
        }
        CodeHasher {
            jobs: Mutex::new(tx),
            secret: Arc::new(secret),
        }
    }

    /// The argon2id hash (PHC string) of `code`.
    ///
    /// # Errors
    /// The pool is gone or hashing failed.
    pub async fn hash(&self, code: Code) -> Result<String, String> {
        let secret = self.secret.clone();
        self.run(move || hash_code(&secret, &code)).await?
    }

    /// Whether `code` matches `hash`. A malformed hash matches nothing.
    /// The comparison inside argon2 is constant-time.
    ///
    /// # Errors
    /// The pool is gone.
    pub async fn verify(&self, code: Code, hash: String) -> Result<bool, String> {
        let secret = self.secret.clone();
        self.run(move || verify_code(&secret, &code, &hash)).await
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs
            .lock()
            .map_err(|_| "the OTP verification pool is poisoned".to_string())?
            .send(job)
            .map_err(|_| "the OTP verification pool has stopped".to_string())?;
        rx.await
            .map_err(|_| "an OTP verification thread died".to_string())
    }
}

fn argon2(secret: &[u8]) -> Result<Argon2<'_>, String> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).map_err(|e| e.to_string())?;
    Argon2::new_with_secret(secret, Algorithm::Argon2id, Version::V0x13, params)
        .map_err(|e| e.to_string())
}

fn hash_code(secret: &[u8], code: &Code) -> Result<String, String> {
    argon2(secret)?
        .hash_password(code.0.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify_code(secret: &[u8], code: &Code, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let Ok(argon) = argon2(secret) else {
        return false;
    };
    argon.verify_password(code.0.as_bytes(), &parsed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_asked_length_and_spread_over_every_digit() {
        for length in MIN_LENGTH..=MAX_LENGTH {
            let code = Code::generate(length).expect("code");
            assert_eq!(code.expose().len(), usize::from(length));
            assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
        }
        let mut seen = [0u32; 10];
        for _ in 0..2000 {
            let code = Code::generate(4).expect("code");
            seen[usize::from(code.expose().as_bytes()[0] - b'0')] += 1;
        }
        // 200 expected per leading digit; a biased or broken draw falls out.
        assert!(seen.iter().all(|&n| (120..=280).contains(&n)), "{seen:?}");
        assert_eq!(format!("{:?}", Code::given("123456")), "Code(6 digits)");
    }

    #[tokio::test]
    async fn a_hash_verifies_its_code_only_and_is_salted_and_keyed() {
        let hasher = CodeHasher::new(2, b"node secret".to_vec());
        let hash = hasher.hash(Code::given("123456")).await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert!(!hash.contains("123456"));
        assert!(
            hasher
                .verify(Code::given("123456"), hash.clone())
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify(Code::given("123457"), hash.clone())
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify(Code::given("123456"), "garbage".into())
                .await
                .expect("verify")
        );
        let other = hasher.hash(Code::given("123456")).await.expect("hash");
        assert_ne!(hash, other, "salted");
        let elsewhere = CodeHasher::new(1, b"another secret".to_vec());
        assert!(
            !elsewhere
                .verify(Code::given("123456"), hash)
                .await
                .expect("verify")
        );
    }
}
