//! The golden traces: the `lossy_sim` example's scenario, run through the
//! very code the example runs, must print the trace digests MPGS/1 produced
//! at commit 60fe7c7 for seeds 7, 8 and 11 over every link preset. Any change
//! to what MPGS/1 puts on the wire, or when, changes a digest and fails here.

use mpgameserver::ProtocolVersion;
use mpgameserver_sim::{Preset, hex};

#[path = "../../examples/lossy_sim/game.rs"]
#[allow(dead_code, reason = "the example's module; the test needs only `run`")]
mod game;

/// `(seed, preset, digest)` as `cargo run --release --example lossy_sim --
/// --seed S --preset P` printed them at 60fe7c7.
const GOLDEN: [(u64, Preset, &str); 12] = [
    (7, Preset::Perfect, "a277e46df0909ed86ceb52a110a68bf6b5f86a740376b388133b67e25e2511a8"),
    (7, Preset::Lan, "a116a8e1a5985f44d1a271cb8ee548ea73be7f9ba22e806147304447c566a49a"),
    (7, Preset::Wifi, "e107ed9671a6b1a449291b9d7caa7b4b6ad67712d58e242c06a2662ecf581a51"),
    (7, Preset::MobileLossy, "8b94ea5c3e3f95501fc418b8c374899253e4fe84608a4551c1060eaefd5fad86"),
    (8, Preset::Perfect, "a8d1c107ee0ac3998c53158d83265fcab5caf7e612a3bf10959955a26cd9fe47"),
    (8, Preset::Lan, "29911d8b2ab17eb3ca622a82dc3064931aa4d6d978ce14750815c2093bcac9c9"),
    (8, Preset::Wifi, "be24562f3eee69d46e65d159019922d2c4e17b44d019dc8877a35b076e7320ea"),
    (8, Preset::MobileLossy, "19c7a11abcb993b6e6f124dddd044f480a28c4580ad4a8db5170c1ace29cbe8d"),
    (11, Preset::Perfect, "649822e7f0c98fb6d92cb1e4e7a6343168663e23450a4a85073698155f6857a5"),
    (11, Preset::Lan, "faafc16c54b1fad22a64ef78cbb525ec558a24fbd3a056919036d0c9ce99a395"),
    (11, Preset::Wifi, "0e841510a1152c01d1c76bb2206f8750ce84758411ea26e4b4fd872d10b44000"),
    (11, Preset::MobileLossy, "0fc8b87901e1202a0b36b4e2b11a6769476dba4b4b7463a77b2b848fe98bed73"),
];

#[test]
fn lossy_sim_traces_match_the_pinned_digests() {
    let mut wrong = Vec::new();
    for (seed, preset, want) in GOLDEN {
        let mut report = String::new();
        let digest = hex(&game::run(seed, preset, ProtocolVersion::V1, &mut report));
        assert!(report.ends_with(&format!("trace digest {digest}\n")), "the report ends with the digest it returns");
        if digest != want {
            wrong.push(format!("seed {seed} preset {preset}: got {digest}, pinned {want}"));
        }
    }
    assert!(wrong.is_empty(), "MPGS/1 behaviour changed:\n{}", wrong.join("\n"));
}
