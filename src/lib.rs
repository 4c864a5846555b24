//! mpgameserver: placeholder crate root, replaced below.
#![no_std]
#![forbid(unsafe_code)]
extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod crypto;
pub mod rng;
pub mod seq;
pub mod time;
pub mod wire;
