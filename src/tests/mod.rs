//! Protocol tests across modules: the behaviour rules of PROTOCOL.md §15
//! (one test per rule, named after it), regressions for the reference bugs
//! of §16 that concern our side, and whole-connection flows. They drive
//! endpoints over the small virtual-time network in `harness`.

mod bugs;
mod flows;
mod forge;
mod handshake_rules;
mod hardening;
mod harness;
mod rules;
