//! Origin calibration against a real TLS + HTTP/2 front on 127.0.0.1 (SPEC §4.1): the
//! template recorded from a visitor's `/robots.txt` fetch, its cache, and the DEV / REQUIRED
//! policies when the HTX connection does not match it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use betanet_net::calibrate::{self, Calibration, Policy, Template};
use betanet_net::{NetError, Transport, dial};
use common::{client_cfg, key, quiet, server, tls_pair};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_of_a_tls_front_and_its_cache() {
    let t = tls_pair();
    let mut l = server(Transport::Tls, quiet(), Some(t.server.clone())).await;
    let addr = l.local_addr().to_string();
    let tpl = calibrate::calibrate(&addr, &t.client, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        tpl.alpn_offered,
        vec!["h2".to_owned(), "http/1.1".to_owned()]
    );
    assert_eq!(tpl.alpn.as_deref(), Some("h2"));
    assert_eq!(tpl.version.as_deref(), Some("TLSv1_3"));
    assert!(
        tpl.cipher_suite.as_deref().unwrap().starts_with("TLS13_"),
        "{tpl:?}"
    );
    assert!(tpl.group.is_some(), "{tpl:?}");
    // The front's HTTP/2 SETTINGS, ordered by id: max concurrent streams 128, initial
    // window 6 MiB, max header list 256 KiB; and its connection window update.
    assert!(
        tpl.h2_settings.windows(2).all(|w| w[0].0 < w[1].0),
        "{tpl:?}"
    );
    assert!(tpl.h2_settings.contains(&(3, 128)), "{tpl:?}");
    assert!(tpl.h2_settings.contains(&(4, 6_291_456)), "{tpl:?}");
    assert!(tpl.h2_connection_window.is_some(), "{tpl:?}");
    // Calibrating again gives the same TemplateID.
    let again = calibrate::calibrate(&addr, &t.client, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again.id(), tpl.id(), "{again:?} vs {tpl:?}");

    // A DEV client caches the template in its directory and its HTX connection matches.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = client_cfg(Transport::Tls, quiet(), Some(t.client.clone()));
    cfg.calibration = Calibration {
        policy: Policy::Required,
        dir: Some(dir.path().to_owned()),
    };
    let vk = key(2).verifying_key();
    let c = dial(&addr, &vk, &cfg).await.unwrap();
    l.accept().await.unwrap();
    drop(c);
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(
        calibrate::cached(Some(dir.path()), &addr, "front.example", now),
        Some(tpl)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_unlike_the_origin_fails_closed_under_required() {
    let t = tls_pair();
    let mut l = server(Transport::Tls, quiet(), Some(t.server.clone())).await;
    let addr = l.local_addr().to_string();
    let real = calibrate::calibrate(&addr, &t.client, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    // What visitors of the origin saw yesterday: another HTTP/2 stack (different windows and
    // stream limit) — e.g. the HTX connection now goes to something that is not the origin.
    let other = Template {
        h2_settings: vec![(3, 100), (4, 65_535)],
        ..real.clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    calibrate::store(Some(dir.path()), &addr, "front.example", now, &other).unwrap();
    let vk = key(2).verifying_key();
    let mut cfg = client_cfg(Transport::Tls, quiet(), Some(t.client.clone()));
    cfg.calibration = Calibration {
        policy: Policy::Required,
        dir: Some(dir.path().to_owned()),
    };
    let e = dial(&addr, &vk, &cfg).await.unwrap_err();
    assert!(
        matches!(e, NetError::Calibration(ref m) if m.contains("SETTINGS")),
        "{e}"
    );
    // DEV only warns.
    cfg.calibration.policy = Policy::Dev;
    let c = dial(&addr, &vk, &cfg).await.unwrap();
    l.accept().await.unwrap();
    drop(c);
    // Policy names (BETANET_FP_POLICY) parse case-insensitively.
    assert!("required".parse::<Policy>().unwrap() == Policy::Required);
    assert!("sometimes".parse::<Policy>().is_err());
}
