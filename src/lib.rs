//! mpgameserver: placeholder crate root, replaced below.
#![no_std]
#![forbid(unsafe_code)]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod rng;
pub mod seq;
pub mod time;
