//! "No panic on any input": thousands of mutated documents, events and configs through every
//! parser. Each must return Ok or a clear error, never panic.

use std::panic::{catch_unwind, AssertUnwindSafe};

fn repo_root() -> std::path::PathBuf {
    let mut p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    while !p.join("examples/jobs").is_dir() {
        assert!(p.pop());
    }
    p
}

/// Byte-level mutations: flip, insert, delete, duplicate a slice, truncate.
fn mutate(rng: &mut fastrand::Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.usize(1..6) {
        if v.is_empty() {
            v.push(rng.u8(..));
            continue;
        }
        let i = rng.usize(..v.len());
        match rng.u8(0..6) {
            0 => v[i] = rng.u8(..),
            1 => v.insert(i, *b"{}[]\",:0-e.\\ntfu\xff".get(rng.usize(..17)).unwrap_or(&b'x')),
            2 => {
                v.remove(i);
            }
            3 => {
                let j = rng.usize(i..v.len());
                let chunk = v[i..j].to_vec();
                v.splice(i..i, chunk);
            }
            4 => v.truncate(i),
            _ => v[i] = b"0123456789"[rng.usize(..10)],
        }
    }
    v
}

/// Structural mutations of JSON: replace a random value with a value of another type.
fn mutate_json(rng: &mut fastrand::Rng, v: &mut serde_json::Value, depth: usize) {
    use serde_json::{json, Value};
    let replacement = |rng: &mut fastrand::Rng| -> Value {
        match rng.u8(0..9) {
            0 => Value::Null,
            1 => json!(rng.i64(..)),
            2 => json!(f64::from_bits(rng.u64(..)).to_string()),
            3 => json!(""),
            4 => json!([]),
            5 => json!({}),
            6 => json!(true),
            7 => json!(-1e308),
            _ => json!("2026-13-45T99:99:99Z"),
        }
    };
    match v {
        Value::Object(m) if !m.is_empty() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.usize(..keys.len())];
            if depth > 0 && rng.bool() {
                if let Some(x) = m.get_mut(k) {
                    mutate_json(rng, x, depth - 1);
                }
            } else if rng.u8(0..4) == 0 {
                m.remove(k);
            } else {
                m.insert(k.clone(), replacement(rng));
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = rng.usize(..a.len());
            if depth > 0 && rng.bool() {
                mutate_json(rng, &mut a[i], depth - 1);
            } else {
                a[i] = replacement(rng);
            }
        }
        other => *other = replacement(rng),
    }
}

#[test]
fn mutated_job_documents_and_events_never_panic() {
    let mut docs = Vec::new();
    for e in std::fs::read_dir(repo_root().join("examples/jobs")).unwrap() {
        let p = e.unwrap().path();
        for line in std::fs::read_to_string(&p).unwrap().split("\n{") {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(
                if line.starts_with('{') { line.to_string() } else { format!("{{{line}") }.as_str(),
            ) {
                docs.push(v);
            }
        }
    }
    assert!(docs.len() >= 7);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut parsed = 0;
    for round in 0..6000 {
        let mut doc = docs[round % docs.len()].clone();
        for _ in 0..rng.usize(1..4) {
            mutate_json(&mut rng, &mut doc, 4);
        }
        let r = catch_unwind(AssertUnwindSafe(|| sagesync_source_sagemaker::job_from_document(&doc).is_ok()));
        assert!(r.is_ok(), "panic on document {doc}");
        parsed += usize::from(r.unwrap_or(false));
        let event =
            serde_json::json!({"source": "aws.sagemaker", "detail-type": "SageMaker Training Job State Change", "id": "x", "detail": doc});
        let mut ev = event.clone();
        if round % 3 == 0 {
            mutate_json(&mut rng, &mut ev, 1);
        }
        assert!(
            catch_unwind(AssertUnwindSafe(|| {
                let _ = sagesync_source_sagemaker::api::parse_event(&ev);
            }))
            .is_ok(),
            "panic on event {ev}"
        );
        // Byte-level damage through the recorded source's reader.
        let bytes = mutate(&mut rng, doc.to_string().as_bytes());
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
                assert!(
                    catch_unwind(AssertUnwindSafe(|| {
                        let _ = sagesync_source_sagemaker::job_from_document(&v);
                    }))
                    .is_ok(),
                    "panic on {text}"
                );
            }
        }
    }
    assert!(parsed > 100, "the mutations also leave many documents readable ({parsed})");
}

#[test]
fn mutated_configs_never_panic() {
    use sagesync_source_sagemaker as _;
    let base = std::fs::read(repo_root().join("examples/quickstart.toml")).unwrap();
    let extra = b"\n[[sinks]]\ntype = \"file\"\ndir = \"${X:-o}\"\n[pipeline]\nconcurrency = 2\n[tag_keys]\nsync = \"S\"\n[source.x]\ny = [1, {a = 2}]\n";
    let mut input = base.clone();
    input.extend_from_slice(extra);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut errors = 0;
    for _ in 0..4000 {
        let m = mutate(&mut rng, &input);
        let Ok(text) = std::str::from_utf8(&m) else { continue };
        let r = catch_unwind(AssertUnwindSafe(|| {
            match sagesync_core::Config::parse(text, "fuzz.toml", &|k| (k == "X").then(|| "v".to_string())) {
                Ok(c) => c.build().is_err(),
                Err(e) => {
                    // Every error is located.
                    assert!(e.0.iter().all(|x| x.line >= 1 && x.column >= 1 && x.file == "fuzz.toml"));
                    true
                }
            }
        }));
        assert!(r.is_ok(), "panic on config:\n{text}");
        errors += usize::from(r.unwrap_or(false));
    }
    assert!(errors > 100);
}
