#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The written form: entropy, shape, typo detection, parser robustness.

use eos_codes::format::{ALPHABET, CODE_LEN, ID_LEN, check_ok, symbol_value};
use eos_codes::{CodeId, FormatError, SecurityCode};
use proptest::prelude::*;

fn symbols(written: &str) -> Vec<u8> {
    written
        .trim_start_matches("EOS-")
        .chars()
        .filter(|&c| c != '-')
        .map(|c| symbol_value(c).unwrap())
        .collect()
}

fn written(values: &[u8]) -> String {
    let mut s = String::from("EOS");
    for (i, v) in values.iter().enumerate() {
        if i % 4 == 0 {
            s.push('-');
        }
        s.push(char::from(ALPHABET[usize::from(*v)]));
    }
    s
}

#[test]
fn length_alphabet_and_distribution() {
    const N: usize = 4000;
    let mut counts = vec![[0u32; 32]; CODE_LEN - 1];
    let mut ids = std::collections::HashSet::new();
    for _ in 0..N {
        let code = SecurityCode::generate().unwrap();
        let w = code.reveal();
        assert_eq!(w.len(), 3 + CODE_LEN + CODE_LEN / 4, "{}", w.len());
        assert!(w.starts_with("EOS-"));
        assert!(
            w[4..].bytes().all(|b| b == b'-' || ALPHABET.contains(&b)),
            "alphabet"
        );
        let v = symbols(&w);
        assert_eq!(v.len(), CODE_LEN);
        assert!(check_ok(&v));
        for (pos, &s) in v.iter().take(CODE_LEN - 1).enumerate() {
            counts[pos][usize::from(s)] += 1;
        }
        ids.insert(code.id().clone());
    }
    // 45-bit ids: 4000 draws collide with probability ~2^-22.
    assert_eq!(ids.len(), N);
    // Each position is uniform over 32 symbols: chi-square with 31 degrees
    // of freedom. 92 is its 1 - 1e-7 quantile (Wilson-Hilferty), so a fair
    // generator fails one of the 35 positions with probability < 4e-6, while
    // a bias of one symbol at 2x its share (chi-square ~ 125) fails.
    let expected = N as f64 / 32.0;
    for (pos, c) in counts.iter().enumerate() {
        let chi: f64 = c
            .iter()
            .map(|&o| (f64::from(o) - expected).powi(2) / expected)
            .sum();
        assert!(chi < 92.0, "position {pos}: chi-square {chi:.1}");
    }
    // And the secret half is not a function of the id half: different
    // codes never share a secret.
    let a = symbols(&SecurityCode::generate().unwrap().reveal());
    let b = symbols(&SecurityCode::generate().unwrap().reveal());
    assert_ne!(a[ID_LEN..], b[ID_LEN..]);
}

#[test]
fn check_symbol_catches_every_substitution() {
    for _ in 0..20 {
        let code = SecurityCode::generate().unwrap();
        let v = symbols(&code.reveal());
        for pos in 0..CODE_LEN {
            for sym in 0..32u8 {
                if sym == v[pos] {
                    continue;
                }
                let mut typo = v.clone();
                typo[pos] = sym;
                assert!(!check_ok(&typo), "pos {pos} sym {sym}");
                assert_eq!(
                    SecurityCode::parse(&written(&typo)).unwrap_err(),
                    FormatError::Check
                );
            }
        }
    }
}

#[test]
fn check_symbol_catches_every_adjacent_transposition() {
    for _ in 0..200 {
        let code = SecurityCode::generate().unwrap();
        let v = symbols(&code.reveal());
        for pos in 0..CODE_LEN - 1 {
            if v[pos] == v[pos + 1] {
                continue;
            }
            let mut typo = v.clone();
            typo.swap(pos, pos + 1);
            assert!(!check_ok(&typo), "swap at {pos}");
        }
    }
    // Exhaustively: every pair of distinct symbols at every pair of
    // neighbouring positions, including a swap with the check symbol.
    let base = symbols(&SecurityCode::generate().unwrap().reveal());
    let valid = |mut s: Vec<u8>| {
        s[CODE_LEN - 1] = eos_codes::format::check_symbol(&s[..CODE_LEN - 1]);
        s
    };
    for pos in 0..CODE_LEN - 1 {
        for a in 0..32u8 {
            for b in 0..32u8 {
                let mut good = base.clone();
                good[pos] = a;
                good[pos + 1] = b;
                let good = valid(good);
                if good[pos] == good[pos + 1] {
                    continue;
                }
                let mut swapped = good.clone();
                swapped.swap(pos, pos + 1);
                assert!(!check_ok(&swapped), "pos {pos}: {a} {b}");
            }
        }
    }
}

#[test]
fn code_id_parse_matches_code() {
    let code = SecurityCode::generate().unwrap();
    let id: CodeId = code.id().as_str().to_lowercase().parse().unwrap();
    assert_eq!(&id, code.id());
}

proptest! {
    #[test]
    fn round_trip(raw in proptest::collection::vec(0u8..32, CODE_LEN - 1)) {
        let mut v = raw.clone();
        v.push(eos_codes::format::check_symbol(&raw));
        let w = written(&v);
        let code = SecurityCode::parse(&w).unwrap();
        prop_assert_eq!(&*code.reveal(), &w);
        let lower = SecurityCode::parse(&w.to_lowercase()).unwrap();
        prop_assert_eq!(lower.id(), code.id());
    }

    #[test]
    fn never_panics(s in "\\PC{0,80}") {
        let _ = SecurityCode::parse(&s);
        let _ = CodeId::parse(&s);
    }

    #[test]
    fn near_codes_never_panic(s in "[0-9A-Za-z -]{30,50}") {
        if let Ok(c) = SecurityCode::parse(&s) {
            // Anything accepted re-parses from its written form.
            let again = SecurityCode::parse(&c.reveal()).unwrap();
            prop_assert_eq!(again.id(), c.id());
        }
    }
}
