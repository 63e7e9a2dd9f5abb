//! The cipher-suite registry (SPEC §2): the single place that names Betanet's primitives and
//! their parameters, so a future suite can be added without touching wire formats.

/// A cipher suite: the primitives of the inner handshake and the frame protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suite {
    /// Registry name.
    pub name: &'static str,
    /// The Noise protocol name the handshake runs.
    pub noise_protocol: &'static str,
    /// Hash output length.
    pub hash_len: usize,
    /// AEAD key length.
    pub key_len: usize,
    /// AEAD nonce length.
    pub nonce_len: usize,
    /// AEAD tag length.
    pub tag_len: usize,
    /// Post-quantum KEM mixed into the key schedule, if any.
    pub kem: Option<Kem>,
}

/// A post-quantum KEM with its sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kem {
    /// Registry name.
    pub name: &'static str,
    /// Encapsulation key length.
    pub ek_len: usize,
    /// Ciphertext length.
    pub ct_len: usize,
    /// Shared secret length.
    pub ss_len: usize,
}

/// ML-KEM-768 (FIPS 203).
pub const ML_KEM_768: Kem = Kem {
    name: "ML-KEM-768",
    ek_len: 1184,
    ct_len: 1088,
    ss_len: 32,
};

/// Betanet 1.2 with the X25519 + ML-KEM-768 hybrid (the default).
pub const BETANET_1_2_HYBRID: Suite = Suite {
    name: "betanet-1.2/x25519+mlkem768/chachapoly/sha256",
    noise_protocol: "Noise_XK_25519_ChaChaPoly_SHA256",
    hash_len: 32,
    key_len: 32,
    nonce_len: 12,
    tag_len: 16,
    kem: Some(ML_KEM_768),
};

/// Betanet 1.2 without the post-quantum hybrid (only for peers that do not offer it).
pub const BETANET_1_2_CLASSIC: Suite = Suite {
    name: "betanet-1.2/x25519/chachapoly/sha256",
    kem: None,
    ..BETANET_1_2_HYBRID
};

/// All registered suites, most preferred first.
pub const SUITES: &[Suite] = &[BETANET_1_2_HYBRID, BETANET_1_2_CLASSIC];

/// Send a KEY_UPDATE after this many bytes under one key (8 GiB).
pub const REKEY_BYTES: u64 = 8 << 30;
/// Send a KEY_UPDATE after this many frames under one key (2¹⁶).
pub const REKEY_FRAMES: u64 = 1 << 16;
/// Send a KEY_UPDATE after this many seconds under one key (1 h).
pub const REKEY_SECS: u64 = 3600;
/// Frames received after a KEY_UPDATE during which the previous generation still opens.
pub const KEY_UPDATE_OVERLAP: u8 = 3;

/// The date (2027-01-01, Unix seconds) from which PQ is mandatory for the inner handshake.
pub const PQ_MANDATORY_FROM_UNIX: u64 = 1_798_761_600;
