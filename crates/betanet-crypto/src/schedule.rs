//! The key schedule (SPEC §4.5) and per-direction frame protection (SPEC §4.6, PD-7).
//!
//! ```text
//! EKM  = HKDF-Expand(HKDF-Extract(salt = h, IKM = k1 ‖ k2 ‖ ss_pq), "betanet/1.2/inner" ‖ SHA-256(ctx), 32)
//! K0   = HKDF-Extract(salt = 0^32, IKM = EKM)
//! TS_c = Expand-Label(K0, "ts_c", 32)        TS_s = Expand-Label(K0, "ts_s", 32)
//! Key  = Expand-Label(TS, "key", 32)         NonceSalt = Expand-Label(TS, "nonce", 12)
//! nonce = NonceSalt XOR (u64le(counter) ‖ 0^4)
//! TS'  = Expand-Label(TS, "next", 32)        (KEY_UPDATE)
//! ```

use zeroize::Zeroizing;

use crate::CryptoError;
use crate::aead::{AeadKey, NONCE_LEN, TAG_LEN};
use crate::hash::sha256;
use crate::kdf::{expand_label, expand_label32, hkdf_expand, hkdf_extract, hkdf_extract_parts};
use crate::suite::KEY_UPDATE_OVERLAP;

/// Which side of the connection we are (the initiator is the dialer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The dialer; sends with `TS_c`.
    Initiator,
    /// The listener; sends with `TS_s`.
    Responder,
}

/// `EKM` from the Noise outputs, the optional ML-KEM shared secret and the det-CBOR `ctx`.
pub fn derive_ekm(
    h: &[u8; 32],
    k1: &[u8; 32],
    k2: &[u8; 32],
    ss_pq: Option<&[u8]>,
    ctx: &[u8],
) -> Zeroizing<[u8; 32]> {
    let prk = hkdf_extract_parts(h, &[k1, k2, ss_pq.unwrap_or_default()]);
    let ctx_hash = sha256(ctx);
    let mut ekm = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid length.
    let _ = hkdf_expand(
        prk.as_ref(),
        &[b"betanet/1.2/inner", &ctx_hash],
        ekm.as_mut(),
    );
    ekm
}

/// The session's root secret `K0` and everything derived from it.
pub struct KeySchedule {
    k0: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for KeySchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySchedule(<redacted>)")
    }
}

impl KeySchedule {
    /// `K0 = HKDF-Extract(0^32, EKM)`.
    pub fn from_ekm(ekm: &[u8; 32]) -> Self {
        KeySchedule {
            k0: hkdf_extract(&[0u8; 32], ekm),
        }
    }

    /// `TS_c`, the initiator→responder traffic secret.
    pub fn client_secret(&self) -> Zeroizing<[u8; 32]> {
        expand_label32(self.k0.as_ref(), "ts_c")
    }

    /// `TS_s`, the responder→initiator traffic secret.
    pub fn server_secret(&self) -> Zeroizing<[u8; 32]> {
        expand_label32(self.k0.as_ref(), "ts_s")
    }

    /// PD-2: `exporter_secret = Expand-Label(K0, "bn-ticket", 32)`.
    pub fn ticket_exporter(&self) -> Zeroizing<[u8; 32]> {
        expand_label32(self.k0.as_ref(), "bn-ticket")
    }

    /// SPEC §4.3: `tok = HKDF-Expand(exporter_secret, "BN-Ticket v1" ‖ ctx, 120)`.
    pub fn bn_ticket_token(&self, ctx: &str) -> [u8; 120] {
        let exp = self.ticket_exporter();
        let mut tok = [0u8; 120];
        let _ = hkdf_expand(exp.as_ref(), &[b"BN-Ticket v1", ctx.as_bytes()], &mut tok);
        tok
    }

    /// The frame protection for one side: `(sealer for what we send, opener for what we
    /// receive)`.
    pub fn frame_keys(&self, role: Role) -> (FrameSealer, FrameOpener) {
        let (tx, rx) = match role {
            Role::Initiator => (self.client_secret(), self.server_secret()),
            Role::Responder => (self.server_secret(), self.client_secret()),
        };
        (FrameSealer::new(tx), FrameOpener::new(rx))
    }
}

/// One generation of one direction's keys.
struct Generation {
    ts: Zeroizing<[u8; 32]>,
    aead: AeadKey,
    salt: [u8; NONCE_LEN],
    counter: u64,
    number: u32,
}

impl Generation {
    fn new(ts: Zeroizing<[u8; 32]>, number: u32) -> Self {
        let key = expand_label32(ts.as_ref(), "key");
        let mut salt = [0u8; NONCE_LEN];
        // 12 bytes is always a valid length.
        let _ = expand_label(ts.as_ref(), "nonce", &mut salt);
        Generation {
            aead: AeadKey::new(&key),
            ts,
            salt,
            counter: 0,
            number,
        }
    }

    fn next(&self) -> Self {
        Generation::new(
            expand_label32(self.ts.as_ref(), "next"),
            self.number.wrapping_add(1),
        )
    }

    fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut n = self.salt;
        for (b, c) in n.iter_mut().zip(self.counter.to_le_bytes()) {
            *b ^= c;
        }
        n
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.salt.zeroize();
    }
}

/// Seals the frames one side sends.
pub struct FrameSealer {
    cur: Generation,
    bytes: u64,
}

impl std::fmt::Debug for FrameSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameSealer")
            .field("generation", &self.cur.number)
            .field("counter", &self.cur.counter)
            .finish()
    }
}

impl FrameSealer {
    /// A sealer starting at generation 0 of traffic secret `ts`.
    pub fn new(ts: Zeroizing<[u8; 32]>) -> Self {
        FrameSealer {
            cur: Generation::new(ts, 0),
            bytes: 0,
        }
    }

    /// Encrypts `in_out` in place with associated data `aad` (the frame header) and returns
    /// the tag. Refuses when the counter would wrap.
    pub fn seal(&mut self, aad: &[u8], in_out: &mut [u8]) -> Result<[u8; TAG_LEN], CryptoError> {
        if self.cur.counter == u64::MAX {
            return Err(CryptoError::NonceExhausted);
        }
        let tag = self.cur.aead.seal_in_place(self.cur.nonce(), aad, in_out)?;
        self.cur.counter += 1;
        self.bytes = self.bytes.saturating_add(in_out.len() as u64);
        Ok(tag)
    }

    /// Moves to the next generation (`TS' = Expand-Label(TS, "next", 32)`, counter 0). Call
    /// right after sealing the KEY_UPDATE frame.
    pub fn key_update(&mut self) {
        self.cur = self.cur.next();
        self.bytes = 0;
    }

    /// The current generation number (0 after the handshake).
    pub fn generation(&self) -> u32 {
        self.cur.number
    }

    /// Frames sealed under the current key.
    pub fn frames_under_key(&self) -> u64 {
        self.cur.counter
    }

    /// Plaintext bytes sealed under the current key.
    pub fn bytes_under_key(&self) -> u64 {
        self.bytes
    }

    #[cfg(test)]
    fn set_counter(&mut self, c: u64) {
        self.cur.counter = c;
    }
}

/// How a frame opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// Length of the plaintext at the start of the buffer.
    pub len: usize,
    /// The generation whose key opened it.
    pub generation: u32,
}

/// Opens the frames one side receives, tracking KEY_UPDATE generations.
pub struct FrameOpener {
    cur: Generation,
    /// The previous generation and how many overlap frames remain.
    prev: Option<(Generation, u8)>,
    /// The generation before `prev`, kept only to classify frames as `OLD_KEY_FRAME`.
    retired: Option<Generation>,
    scratch: Vec<u8>,
    reordering: bool,
}

impl std::fmt::Debug for FrameOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameOpener")
            .field("generation", &self.cur.number)
            .field("counter", &self.cur.counter)
            .finish()
    }
}

impl FrameOpener {
    /// An opener starting at generation 0 of traffic secret `ts`.
    pub fn new(ts: Zeroizing<[u8; 32]>) -> Self {
        FrameOpener {
            cur: Generation::new(ts, 0),
            prev: None,
            retired: None,
            scratch: Vec::new(),
            reordering: false,
        }
    }

    /// Verifies and decrypts `buf` (ciphertext ‖ tag) in place with associated data `aad`.
    ///
    /// Tries the current generation, then — for the first [`KEY_UPDATE_OVERLAP`] frames after
    /// a KEY_UPDATE — the previous one. A frame that opens under neither gives
    /// [`CryptoError::Decrypt`]; when the opener can tell that it opens under an older
    /// generation (during the overlap, or always with [`FrameOpener::set_reordering`]) it gives
    /// [`CryptoError::OldKeyFrame`]. The receive counter does not advance on failure.
    pub fn open(&mut self, aad: &[u8], buf: &mut [u8]) -> Result<Opened, CryptoError> {
        if self.cur.counter == u64::MAX {
            return Err(CryptoError::NonceExhausted);
        }
        let in_overlap = self.prev.as_ref().is_some_and(|(_, n)| *n > 0);
        let keep_copy =
            in_overlap || (self.reordering && (self.prev.is_some() || self.retired.is_some()));
        self.scratch.clear();
        if keep_copy {
            self.scratch.extend_from_slice(buf);
        }
        let result = match self.cur.aead.open_in_place(self.cur.nonce(), aad, buf) {
            Ok(pt) => {
                self.cur.counter += 1;
                Ok(Opened {
                    len: pt.len(),
                    generation: self.cur.number,
                })
            }
            Err(_) => self.open_older(aad, buf, in_overlap),
        };
        if let (Ok(_), Some((_, n))) = (&result, self.prev.as_mut()) {
            *n = n.saturating_sub(1);
        }
        result
    }

    fn open_older(
        &mut self,
        aad: &[u8],
        buf: &mut [u8],
        in_overlap: bool,
    ) -> Result<Opened, CryptoError> {
        if self.scratch.len() != buf.len() {
            return Err(CryptoError::Decrypt);
        }
        if let (true, Some((prev, _))) = (in_overlap, self.prev.as_mut()) {
            buf.copy_from_slice(&self.scratch);
            if let Ok(pt) = prev.aead.open_in_place(prev.nonce(), aad, buf) {
                prev.counter += 1;
                return Ok(Opened {
                    len: pt.len(),
                    generation: prev.number,
                });
            }
        }
        let prev_expired = self.prev.as_ref().filter(|(_, n)| *n == 0).map(|(g, _)| g);
        for g in self.retired.iter().chain(prev_expired) {
            buf.copy_from_slice(&self.scratch);
            if g.aead.open_in_place(g.nonce(), aad, buf).is_ok() {
                return Err(CryptoError::OldKeyFrame);
            }
        }
        Err(CryptoError::Decrypt)
    }

    /// For carriages that may reorder frames: always keep a copy so that frames of retired
    /// generations are reported as [`CryptoError::OldKeyFrame`] (costs one copy per frame).
    pub fn set_reordering(&mut self, on: bool) {
        self.reordering = on;
    }

    /// Records that a KEY_UPDATE frame was received (opened under the current generation): the
    /// peer now sends under the next generation; the current one stays usable for the overlap.
    pub fn key_update(&mut self) {
        let next = self.cur.next();
        let old = std::mem::replace(&mut self.cur, next);
        if let Some((p, _)) = self.prev.take() {
            self.retired = Some(p);
        }
        self.prev = Some((old, KEY_UPDATE_OVERLAP));
    }

    /// The current generation number.
    pub fn generation(&self) -> u32 {
        self.cur.number
    }

    /// Frames opened under the current generation.
    pub fn frames_under_key(&self) -> u64 {
        self.cur.counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (FrameSealer, FrameOpener) {
        let ks = KeySchedule::from_ekm(&[9u8; 32]);
        let (tx, _) = ks.frame_keys(Role::Initiator);
        let (_, rx) = ks.frame_keys(Role::Responder);
        (tx, rx)
    }

    fn send(tx: &mut FrameSealer, msg: &[u8]) -> Vec<u8> {
        let mut b = msg.to_vec();
        let tag = tx.seal(b"hdr", &mut b).unwrap();
        b.extend_from_slice(&tag);
        b
    }

    fn recv(rx: &mut FrameOpener, mut b: Vec<u8>) -> Result<(Vec<u8>, u32), CryptoError> {
        let o = rx.open(b"hdr", &mut b)?;
        b.truncate(o.len);
        Ok((b, o.generation))
    }

    #[test]
    fn directions_differ_and_match() {
        let ks = KeySchedule::from_ekm(&[1u8; 32]);
        assert_ne!(ks.client_secret().as_ref(), ks.server_secret().as_ref());
        let (mut itx, mut irx) = ks.frame_keys(Role::Initiator);
        let (mut rtx, mut rrx) = ks.frame_keys(Role::Responder);
        for i in 0..5u8 {
            let f = send(&mut itx, &[i; 10]);
            assert_eq!(recv(&mut rrx, f).unwrap().0, vec![i; 10]);
            let f = send(&mut rtx, &[i; 3]);
            assert_eq!(recv(&mut irx, f).unwrap().0, vec![i; 3]);
        }
        // Own frames do not open with our own receive key.
        let f = send(&mut itx, b"x");
        assert!(recv(&mut irx, f).is_err());
    }

    #[test]
    fn nonce_layout() {
        let g = Generation::new(Zeroizing::new([5u8; 32]), 0);
        let mut g2 = Generation::new(Zeroizing::new([5u8; 32]), 0);
        g2.counter = 0x0102;
        let (a, b) = (g.nonce(), g2.nonce());
        assert_eq!(a[0] ^ b[0], 0x02);
        assert_eq!(a[1] ^ b[1], 0x01);
        assert_eq!(&a[8..], &b[8..]);
    }

    #[test]
    fn failed_open_does_not_advance_counter() {
        let (mut tx, mut rx) = pair();
        let mut f = send(&mut tx, b"hello");
        f[0] ^= 1;
        assert!(matches!(recv(&mut rx, f), Err(CryptoError::Decrypt)));
        assert_eq!(rx.frames_under_key(), 0);
        let f = send(&mut tx, b"next");
        // Counter 1 was used by the sender; the receiver still expects 0: fails.
        assert!(recv(&mut rx, f).is_err());
    }

    #[test]
    fn key_update_with_overlap() {
        let (mut tx, mut rx) = pair();
        let f = send(&mut tx, b"a");
        recv(&mut rx, f).unwrap();
        // The sender had two more frames sealed under generation 0 in its pipeline when it
        // switched: they arrive after the KEY_UPDATE, interleaved with generation-1 frames.
        let ku = send(&mut tx, b"");
        let mut old_tx = FrameSealer {
            cur: Generation::new(tx.cur.ts.clone(), 0),
            bytes: 0,
        };
        old_tx.cur.counter = tx.cur.counter;
        tx.key_update();
        assert_eq!(tx.generation(), 1);
        let late1 = send(&mut old_tx, b"late1");
        let late2 = send(&mut old_tx, b"late2");
        recv(&mut rx, ku).unwrap();
        rx.key_update();
        let new1 = send(&mut tx, b"new1");
        assert_eq!(recv(&mut rx, new1).unwrap(), (b"new1".to_vec(), 1));
        assert_eq!(recv(&mut rx, late1).unwrap(), (b"late1".to_vec(), 0));
        assert_eq!(recv(&mut rx, late2).unwrap(), (b"late2".to_vec(), 0));
        // Overlap of 3 frames is used up: a generation-0 frame is now an old-key frame.
        let stale = send(&mut old_tx, b"stale");
        // In-order carriage: just an undecryptable frame (CLOSE 7).
        assert!(matches!(
            recv(&mut rx, stale.clone()),
            Err(CryptoError::Decrypt)
        ));
        // A reordering carriage classifies it.
        rx.set_reordering(true);
        assert!(matches!(
            recv(&mut rx, stale),
            Err(CryptoError::OldKeyFrame)
        ));
        let new2 = send(&mut tx, b"new2");
        assert_eq!(recv(&mut rx, new2).unwrap(), (b"new2".to_vec(), 1));
    }

    #[test]
    fn many_generations_and_retired_key() {
        let (mut tx, mut rx) = pair();
        let mut keep = None;
        for g in 0..300u32 {
            for i in 0..4u8 {
                let f = send(&mut tx, &[i]);
                assert_eq!(recv(&mut rx, f).unwrap(), (vec![i], g));
            }
            if g == 10 {
                // A frame of generation 10 that will arrive two generations later.
                let mut probe = FrameSealer {
                    cur: Generation::new(tx.cur.ts.clone(), 10),
                    bytes: 0,
                };
                // The KEY_UPDATE takes the current counter; the stray frame the one after it.
                probe.cur.counter = tx.cur.counter + 1;
                keep = Some(send(&mut probe, b"old"));
            }
            let ku = send(&mut tx, b"");
            tx.key_update();
            recv(&mut rx, ku).unwrap();
            rx.key_update();
            if g == 11 {
                let f = keep.take().unwrap();
                assert!(matches!(recv(&mut rx, f), Err(CryptoError::OldKeyFrame)));
            }
        }
        assert_eq!(rx.generation(), 300);
    }

    #[test]
    fn concurrent_updates() {
        let ks = KeySchedule::from_ekm(&[3u8; 32]);
        let (mut itx, mut irx) = ks.frame_keys(Role::Initiator);
        let (mut rtx, mut rrx) = ks.frame_keys(Role::Responder);
        // Both sides send KEY_UPDATE at the same time, then data.
        let ku_i = send(&mut itx, b"");
        itx.key_update();
        let ku_r = send(&mut rtx, b"");
        rtx.key_update();
        let d_i = send(&mut itx, b"from-i");
        let d_r = send(&mut rtx, b"from-r");
        recv(&mut rrx, ku_i).unwrap();
        rrx.key_update();
        recv(&mut irx, ku_r).unwrap();
        irx.key_update();
        assert_eq!(recv(&mut rrx, d_i).unwrap(), (b"from-i".to_vec(), 1));
        assert_eq!(recv(&mut irx, d_r).unwrap(), (b"from-r".to_vec(), 1));
    }

    #[test]
    fn counter_exhaustion_refused() {
        let (mut tx, _) = pair();
        tx.set_counter(u64::MAX - 1);
        send(&mut tx, b"last");
        let mut b = b"one too many".to_vec();
        assert!(matches!(
            tx.seal(b"hdr", &mut b),
            Err(CryptoError::NonceExhausted)
        ));
        tx.key_update();
        assert_eq!(tx.frames_under_key(), 0);
        send(&mut tx, b"fresh key");
    }

    #[test]
    fn ticket_tokens_differ_by_ctx() {
        let ks = KeySchedule::from_ekm(&[4u8; 32]);
        assert_ne!(ks.bn_ticket_token("r1"), ks.bn_ticket_token("r2"));
        assert_eq!(ks.bn_ticket_token("r1"), ks.bn_ticket_token("r1"));
    }

    #[test]
    fn ekm_binds_every_input() {
        let base = derive_ekm(&[1; 32], &[2; 32], &[3; 32], Some(&[4; 32]), b"ctx");
        assert_ne!(
            *base,
            *derive_ekm(&[1; 32], &[2; 32], &[3; 32], None, b"ctx")
        );
        assert_ne!(
            *base,
            *derive_ekm(&[1; 32], &[2; 32], &[3; 32], Some(&[4; 32]), b"ctX")
        );
        assert_ne!(
            *base,
            *derive_ekm(&[0; 32], &[2; 32], &[3; 32], Some(&[4; 32]), b"ctx")
        );
        // EKM = Expand(Extract(h, k1‖k2‖ss), "betanet/1.2/inner" ‖ SHA-256(ctx)).
        let prk = hkdf_extract(&[1; 32], &[[2u8; 32], [3; 32], [4; 32]].concat());
        let mut want = [0u8; 32];
        hkdf_expand(
            prk.as_ref(),
            &[b"betanet/1.2/inner", &sha256(b"ctx")],
            &mut want,
        )
        .unwrap();
        assert_eq!(*base, want);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Send { from_initiator: bool, len: usize },
        KeyUpdate { from_initiator: bool },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (any::<bool>(), 0usize..200).prop_map(|(f, len)| Op::Send { from_initiator: f, len }),
            1 => any::<bool>().prop_map(|f| Op::KeyUpdate { from_initiator: f }),
        ]
    }

    proptest::proptest! {
        /// Random interleavings of data and KEY_UPDATEs from both sides: every frame opens on
        /// the other side, in order, with the generation the sender used.
        #[test]
        fn random_sessions_stay_in_sync(ops in proptest::collection::vec(op(), 1..80)) {
            let ks = KeySchedule::from_ekm(&[11u8; 32]);
            let (mut itx, mut irx) = ks.frame_keys(Role::Initiator);
            let (mut rtx, mut rrx) = ks.frame_keys(Role::Responder);
            for (n, op) in ops.into_iter().enumerate() {
                let (from_i, msg, ku) = match op {
                    Op::Send { from_initiator, len } => (from_initiator, vec![n as u8; len], false),
                    Op::KeyUpdate { from_initiator } => (from_initiator, Vec::new(), true),
                };
                let (tx, rx) = if from_i { (&mut itx, &mut rrx) } else { (&mut rtx, &mut irx) };
                let gen_before = tx.generation();
                let frame = send(tx, &msg);
                if ku {
                    tx.key_update();
                }
                let (pt, generation) = recv(rx, frame).unwrap();
                proptest::prop_assert_eq!(pt, msg);
                proptest::prop_assert_eq!(generation, gen_before);
                if ku {
                    rx.key_update();
                }
                proptest::prop_assert_eq!(rx.generation(), tx.generation());
            }
        }
    }
}
