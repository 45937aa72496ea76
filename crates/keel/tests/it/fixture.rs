//! Data directories written by earlier keel builds open with everything intact.
//!
//! Each fixture under `tests/fixtures/` was made by `tests/fixtures/make-datadir.sh` from the
//! build named in its `SOURCE` file: a snapshot, a purge point, a vote and a log tail after
//! the snapshot, and `expected.json` with what that build read back before it stopped.

use std::path::Path;

use serde_json::Value;

use crate::support::{call, http, Server};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every key (all pages) and every lease, as JSON.
async fn read_all(s: &Server) -> (Value, Value) {
    let (status, keys) = call(http().get(s.url("/v1/kv?limit=10000"))).await;
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["more"], false);
    let (status, leases) = call(http().get(s.url("/v1/leases"))).await;
    assert_eq!(status, 200, "{leases}");
    (keys, leases)
}

/// What must survive of a lease: everything but the time left, which restarts from the
/// moment the node leads again.
fn lease_identity(leases: &Value) -> Vec<(u64, u64, u64)> {
    leases["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["id"].as_u64().unwrap(),
                l["ttl_ms"].as_u64().unwrap(),
                l["key_count"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn opens_with_everything(name: &str) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let expected: Value =
        serde_json::from_slice(&std::fs::read(fixture.join("expected.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    copy_dir(&fixture.join("data"), &dir);

    let s = Server::start_in(&dir, &[]).unwrap_or_else(|f| {
        panic!("{name} does not open: {:?}\n{}", f.status, f.stderr);
    });
    let (keys, leases) = read_all(&s).await;
    assert_eq!(keys["revision"], expected["keys"]["revision"], "revision");
    assert_eq!(keys["items"], expected["keys"]["items"], "keys");
    assert_eq!(
        lease_identity(&leases),
        lease_identity(&expected["leases"]),
        "leases"
    );

    // The directory keeps working: a write in today's format, a restart, and both the old
    // and the new data read back.
    let (status, put) = call(http().put(s.url("/v1/kv/after/upgrade")).body("new")).await;
    assert_eq!(status, 200, "{put}");
    let revision = expected["keys"]["revision"].as_u64().unwrap() + 1;
    assert_eq!(put["revision"], revision);
    let s = s.restart();
    let (keys, leases) = read_all(&s).await;
    assert_eq!(keys["revision"], revision);
    let items = keys["items"].as_array().unwrap();
    assert_eq!(items[0]["key"], "after/upgrade");
    assert_eq!(&items[1..], expected["keys"]["items"].as_array().unwrap());
    assert_eq!(lease_identity(&leases), lease_identity(&expected["leases"]));
}

/// Made by keel at bf17ec5 (openraft 0.9, log entry format 1, request format 1).
#[tokio::test]
async fn datadir_v1_opens() {
    opens_with_everything("datadir-v1").await;
}
