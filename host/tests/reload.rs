//! Reload: a broken file keeps the running configuration; a good one is swapped in, keeping
//! the caches of zones whose cache settings did not change.

mod support;

use std::net::Ipv4Addr;

use support::{forwarding, metric_sum, start_file};
use zonegate_testkit::proto::op::ResponseCode;
use zonegate_testkit::proto::rr::RecordType;
use zonegate_testkit::{AuthServer, Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_reload_keeps_serving_and_a_good_one_swaps() {
    let a = AuthServer::builder()
        .a("www.example.test.", 300, Ipv4Addr::new(192, 0, 2, 1))
        .start()
        .unwrap();
    let b = AuthServer::builder()
        .a("new.corp.test.", 300, Ipv4Addr::new(10, 0, 0, 9))
        .start()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("zonegate-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("zonegate.toml");
    let good = forwarding(a.addr(), "", "");
    std::fs::write(&path, &good).unwrap();
    let zg = start_file(path.clone()).await;
    let client = Client::new();
    let www = |c: Client, addr| async move {
        c.query_udp(addr, "www.example.test.", RecordType::A)
            .await
            .unwrap()
    };
    assert_eq!(
        www(client.clone(), zg.addr()).await.rcode(),
        ResponseCode::NoError
    );

    std::fs::write(
        &path,
        good.replace("forward = \"up\"", "forward = \"nowhere\""),
    )
    .unwrap();
    let err = zg
        .reload()
        .await
        .expect_err("a zone forwarding to an unknown group is rejected");
    assert!(err.to_string().contains("nowhere"), "{err}");
    assert_eq!(
        www(client.clone(), zg.addr()).await.rcode(),
        ResponseCode::NoError
    );
    // The file watcher may notice the same change and try too: at least one failure counted.
    assert!(metric_sum(&zg, "coredns_reload_failed_total", &[]) >= 1.0);

    let with_corp = format!(
        "{good}\n[upstreams.corp]\nservers = [\"{}\"]\n\n[[zone]]\nview = \"default\"\nname = \"corp.test.\"\nforward = \"corp\"\n",
        b.addr()
    );
    std::fs::write(&path, with_corp).unwrap();
    zg.reload().await.expect("good reload");
    let r = client
        .query_udp(zg.addr(), "new.corp.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(r.ipv4(), vec![Ipv4Addr::new(10, 0, 0, 9)]);
    // The root zone's cache settings did not change: its cache survived the swap.
    assert_eq!(
        www(client.clone(), zg.addr()).await.rcode(),
        ResponseCode::NoError
    );
    assert_eq!(a.queries("www.example.test.", RecordType::A), 1);
    assert!(metric_sum(&zg, "zonegate_reload_total", &[("result", "success")]) >= 1.0);
    zg.drain().await;
    let _ = std::fs::remove_dir_all(dir);
}
