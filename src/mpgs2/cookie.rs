//! The stateless cookie (MPGS2.md §2.4).
//!
//! ```text
//! cookie (21 B) = key_id u8 ‖ issued u32 ‖ mac[16]
//! mac = HMAC-SHA256(K[key_id], "MPGS/2 cookie\0" ‖ family u8 ‖ ip(4|16) ‖ port u16
//!                   ‖ issued ‖ client_random)[0..16]
//! ```
//! One HMAC per check, compared in constant time, and no per-client state:
//! a spoofed hello costs the server what the kernel costs.

use core::net::{IpAddr, SocketAddr};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::RANDOM_LEN;
use super::keys::Zeroizing;
use super::tlv::COOKIE_LEN;
use crate::{Duration, Instant, Rng};

/// How often the cookie key is replaced (§2.4).
pub const ROTATE_EVERY: Duration = Duration::from_secs(30);
/// How long a cookie stays valid, in whole seconds (§2.4).
pub const VALID_SECS: u32 = 10;

const CONTEXT: &[u8] = b"MPGS/2 cookie\0";

/// The MAC of a cookie. `family` is 4 or 6 with the address as the socket
/// reports it (Decision in §2.4: an IPv4-mapped IPv6 address is family 6).
pub fn cookie_mac(key: &[u8; 32], addr: SocketAddr, issued: u32, client_random: &[u8; RANDOM_LEN]) -> [u8; 16] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        // Invariant: HMAC accepts keys of any length.
        .expect("HMAC key of any length");
    absorb(&mut mac, addr, issued, client_random);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

fn absorb(mac: &mut Hmac<Sha256>, addr: SocketAddr, issued: u32, client_random: &[u8; RANDOM_LEN]) {
    mac.update(CONTEXT);
    match addr.ip() {
        IpAddr::V4(ip) => {
            mac.update(&[4]);
            mac.update(&ip.octets());
        }
        IpAddr::V6(ip) => {
            mac.update(&[6]);
            mac.update(&ip.octets());
        }
    }
    mac.update(&addr.port().to_be_bytes());
    mac.update(&issued.to_be_bytes());
    mac.update(client_random);
}

/// The endpoint's cookie keys: the current one and the previous one, each
/// 32 bytes from the endpoint CSPRNG, replaced every 30 s.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub struct CookieKeys {
    current: (u8, Zeroizing<[u8; 32]>),
    previous: Option<(u8, Zeroizing<[u8; 32]>)>,
    rotated_at: Instant,
}

impl core::fmt::Debug for CookieKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieKeys").field("key_id", &self.current.0).finish_non_exhaustive()
    }
}

/// Whole seconds of the injected clock, as cookies carry them.
fn secs(now: Instant) -> u32 {
    // The clock starts at the endpoint's zero; u32 seconds last 136 years,
    // and wrapping arithmetic keeps the age check right across a wrap.
    now.as_secs() as u32
}

impl CookieKeys {
    /// The first key (id 0), drawn from `rng`.
    pub fn new(now: Instant, rng: &mut Rng) -> CookieKeys {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill(k.as_mut());
        CookieKeys { current: (0, k), previous: None, rotated_at: now }
    }

    /// A fixed key (test vectors).
    pub fn with_key(key_id: u8, key: [u8; 32], now: Instant) -> CookieKeys {
        CookieKeys { current: (key_id, Zeroizing::new(key)), previous: None, rotated_at: now }
    }

    /// When the next rotation is due.
    pub fn next_rotation(&self) -> Instant {
        self.rotated_at.saturating_add(ROTATE_EVERY)
    }

    /// Replaces the key if 30 s have passed (the current one becomes the
    /// previous one). An early call does nothing.
    pub fn rotate_if_due(&mut self, now: Instant, rng: &mut Rng) {
        if now < self.next_rotation() {
            return;
        }
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill(k.as_mut());
        let id = self.current.0.wrapping_add(1);
        let old = core::mem::replace(&mut self.current, (id, k));
        self.previous = Some(old);
        self.rotated_at = now;
    }

    /// A cookie for `addr` and `client_random`, issued now.
    pub fn issue(&self, now: Instant, addr: SocketAddr, client_random: &[u8; RANDOM_LEN]) -> [u8; COOKIE_LEN] {
        let issued = secs(now);
        let mut out = [0u8; COOKIE_LEN];
        out[0] = self.current.0;
        out[1..5].copy_from_slice(&issued.to_be_bytes());
        out[5..].copy_from_slice(&cookie_mac(&self.current.1, addr, issued, client_random));
        out
    }

    /// Whether `cookie` was issued by us, for this `addr` and
    /// `client_random`, within the last 10 s. The MAC is compared in
    /// constant time.
    pub fn check(
        &self,
        now: Instant,
        addr: SocketAddr,
        client_random: &[u8; RANDOM_LEN],
        cookie: &[u8; COOKIE_LEN],
    ) -> bool {
        let key_id = cookie[0];
        let issued = u32::from_be_bytes([cookie[1], cookie[2], cookie[3], cookie[4]]);
        if secs(now).wrapping_sub(issued) > VALID_SECS {
            return false;
        }
        let key = if self.current.0 == key_id {
            &self.current.1
        } else {
            match &self.previous {
                Some((id, k)) if *id == key_id => k,
                _ => return false,
            }
        };
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_ref())
            // Invariant: HMAC accepts keys of any length.
            .expect("HMAC key of any length");
        absorb(&mut mac, addr, issued, client_random);
        mac.verify_truncated_left(&cookie[5..]).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Seed;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn issue_check_expiry_and_binding() {
        let mut rng = Rng::new(Seed::from_u64(9));
        let t0 = Instant::from_secs(100);
        let mut keys = CookieKeys::new(t0, &mut rng);
        let a = addr("192.0.2.1:4433");
        let cr = [5u8; 16];
        let c = keys.issue(t0, a, &cr);
        assert!(keys.check(t0, a, &cr, &c));
        assert!(keys.check(t0 + Duration::from_secs(10), a, &cr, &c), "valid for 10 s");
        assert!(!keys.check(t0 + Duration::from_secs(11), a, &cr, &c), "expired");
        assert!(!keys.check(t0 - Duration::from_secs(1), a, &cr, &c), "issued in the future");
        assert!(!keys.check(t0, addr("192.0.2.1:4434"), &cr, &c), "other port");
        assert!(!keys.check(t0, addr("192.0.2.2:4433"), &cr, &c), "other ip");
        assert!(!keys.check(t0, addr("[::ffff:192.0.2.1]:4433"), &cr, &c), "other family");
        assert!(!keys.check(t0, a, &[6u8; 16], &c), "other client_random");
        for i in 0..COOKIE_LEN {
            let mut bad = c;
            bad[i] ^= 1;
            assert!(!keys.check(t0, a, &cr, &bad), "byte {i}");
        }
        // Rotation: the previous key still verifies, the one before does not.
        keys.rotate_if_due(t0 + Duration::from_secs(29), &mut rng);
        assert_eq!(keys.issue(t0, a, &cr), c, "no rotation before 30 s");
        let t1 = t0 + ROTATE_EVERY;
        keys.rotate_if_due(t1, &mut rng);
        let c1 = keys.issue(t1, a, &cr);
        assert_eq!(c1[0], 1);
        assert!(keys.check(t0 + Duration::from_secs(5), a, &cr, &c), "previous key kept");
        assert!(keys.check(t1, a, &cr, &c1));
        keys.rotate_if_due(t1 + ROTATE_EVERY, &mut rng);
        let t = t1 + ROTATE_EVERY;
        let c2 = keys.issue(t, a, &cr);
        assert!(keys.check(t, a, &cr, &c2));
        let mut forged = c;
        forged[1..5].copy_from_slice(&(t.as_secs() as u32).to_be_bytes());
        assert!(!keys.check(t, a, &cr, &forged), "key 0 retired");
        let v6 = addr("[2001:db8::1]:4433");
        let c6 = keys.issue(t, v6, &cr);
        assert!(keys.check(t, v6, &cr, &c6));
        assert!(!keys.check(t, a, &cr, &c6));
    }
}
