#![allow(clippy::unwrap_used, clippy::expect_used)]
//! No code or pepper ever appears in list output, error messages, audit
//! rows or tracing output. A binary of its own: tracing's callsite cache is
//! process-wide, and a scoped subscriber must not race other tests.

use std::sync::{Arc, Mutex};

use eos_codes::Purpose;
use eos_codes::format::ID_LEN;
use eos_store::Sql;
use eos_store::codes::{CodeFilter, list_codes};

mod common;
use common::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn codes_and_pepper_never_appear_in_lists_errors_audit_or_traces() {
    on_each_engine(|mut store| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let ring = ring_a();
        let mut secrets: Vec<String> = vec![PEPPER_A.to_owned(), PEPPER_A.to_uppercase()];
        let mut errors = Vec::new();
        tracing::subscriber::with_default(subscriber, || {
            for p in [
                vec![Purpose::RegisterIp],
                vec![Purpose::RegisterCert, Purpose::RegisterIp],
            ] {
                let (code, _) = store.issue_code(&ring, &onboarding(&p), T0, "op").unwrap();
                let c = code.reveal().to_string();
                let bare: String = c.trim_start_matches("EOS-").replace('-', "");
                // The secret half, in any of its written forms.
                secrets.push(bare[ID_LEN..ID_LEN + 20].to_owned());
                secrets.push(c.clone());
                secrets.push(bare.clone());
                spend(&mut store, &ring, &attempt(&c, p[0], "192.0.2.1"), T0).unwrap();
                for bad in [
                    spend(&mut store, &ring, &attempt(&c, p[0], "192.0.2.1"), T0),
                    spend(
                        &mut store,
                        &ring,
                        &attempt(&wrong_secret(&c), p[0], "192.0.2.2"),
                        T0,
                    ),
                    spend(
                        &mut store,
                        &ring,
                        &attempt(&c[..c.len() - 2], p[0], "192.0.2.3"),
                        T0,
                    ),
                ] {
                    let e = bad.unwrap_err();
                    errors.push(format!("{e} {e:?} {e:#}"));
                }
                let _ = format!("{code:?}");
                errors.push(format!("{code:?} {:?}", ring));
            }
        });
        let list = serde_json::to_string(
            &list_codes(
                store.conn(),
                &CodeFilter {
                    include_inactive: true,
                    ..CodeFilter::default()
                },
                T0,
            )
            .unwrap(),
        )
        .unwrap();
        let audit = serde_json::to_string(&store.audit_log(1000).unwrap()).unwrap();
        let traces = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(traces.contains("security code issued"), "{traces}");
        assert!(traces.contains("security code rejected"));
        assert!(audit.contains("code.reject") && list.contains("code_id"));
        // The hash is not in the list either.
        let hashes: Vec<Vec<u8>> = store
            .conn()
            .query("SELECT hash FROM codes", &[], |r| r.get(0))
            .unwrap();
        for h in hashes {
            let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
            secrets.push(hex[..16].to_owned());
        }
        for secret in &secrets {
            for (what, text) in [
                ("list", &list),
                ("audit", &audit),
                ("traces", &traces),
                ("errors", &errors.join("\n")),
            ] {
                assert!(
                    !text.to_uppercase().contains(&secret.to_uppercase()),
                    "{what} contains a secret"
                );
            }
        }
    });
}
