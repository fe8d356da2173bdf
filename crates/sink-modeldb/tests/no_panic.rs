//! Damaged Thrift replies never panic the decoder.

use sagesync_sink_modeldb::v1::client::interpret;
use sagesync_sink_modeldb::v1::codec::decode;

#[test]
fn mutated_replies_never_panic() {
    let golden = [
        "800100020000001173746f726550726f6a6563744576656e74000000000c0000080001000000010000",
        "800100020000000d73746f72654669744576656e74000000000c000008000100000001080002000000010800030000000108000400000001080005000000010000",
        "800100020000001073746f72654d65747269634576656e74000000000c0000080001000000010800020000000208000300000002080004000000010000",
    ];
    let mut rng = fastrand::Rng::with_seed(3);
    for round in 0..20000 {
        let hex = golden[round % golden.len()];
        let mut b: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        for _ in 0..rng.usize(1..5) {
            let i = rng.usize(..b.len());
            match rng.u8(0..4) {
                0 => b[i] = rng.u8(..),
                1 => b.truncate(i.max(1)),
                2 => b.insert(i, rng.u8(..)),
                _ => b[i] = [0x00, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0xff, 0x7f][rng.usize(..8)],
            }
        }
        let r = std::panic::catch_unwind(|| {
            if let Ok(m) = decode(&b) {
                let _ = interpret("storeProjectEvent", m.name, m.kind, m.body);
            }
        });
        assert!(r.is_ok(), "panic on {b:02x?}");
    }
}
