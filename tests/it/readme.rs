//! The README's "Try it" and reconnect blocks, run verbatim (ports and the
//! binary's path aside) with bash and curl against `leanproxy` started with no
//! configuration.

use std::process::Command;
use std::time::Duration;

use crate::support::{h1_client, Binary};

/// The `sh` code block between `<!-- NAME -->` and `<!-- /NAME -->`.
fn block(name: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find(&format!("<!-- {name} -->"))
        .unwrap_or_else(|| panic!("README has the {name} block"));
    let end = readme
        .find(&format!("<!-- /{name} -->"))
        .unwrap_or_else(|| panic!("README closes the {name} block"));
    let block = &readme[start..end];
    let code = block.split("```sh\n").nth(1).expect("a sh code block");
    code.split("```").next().unwrap().to_string()
}

/// Marks where the reconnect block's output starts.
const BETWEEN: &str = "=== reconnect ===";

#[tokio::test]
async fn readme_try_it_and_reconnect_run_against_the_default_proxy_and_mockbank() {
    if Command::new("curl").arg("--version").output().is_err() {
        crate::support::missing("curl (the README's examples use it)");
        return;
    }
    let bin = Binary::spawn(&[], &[]);
    assert!(
        bin.mockbank.is_some(),
        "no configuration means the embedded Mockbank"
    );
    // `leanproxy` is the built binary; the CLI finds the admin API through
    // LEANPROXY_ADMIN, as a user with another port would.
    let reconnect = block("reconnect").replace(
        "\nleanproxy ",
        &format!("\n{} ", env!("CARGO_BIN_EXE_leanproxy")),
    );
    let script = format!("{}echo '{BETWEEN}'\n{reconnect}", block("try-it"))
        .replace("127.0.0.1:7070", &bin.proxy.to_string());
    let admin = format!("http://{}", bin.admin);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .env("LEANPROXY_ADMIN", admin)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (try_it, reconnect) = stdout.split_once(BETWEEN).expect("both blocks ran");
    let lines: Vec<serde_json::Value> = try_it
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0]["token_type"], "Bearer");
    assert_eq!(lines[1]["status"], "OK");
    assert!(!lines[1]["payload"]["accounts"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(lines[2]["status"], "OK");
    assert!(!lines[2]["data"]["accounts"].as_array().unwrap().is_empty());

    // The reconnect block: expire, the CLI's record (pretty JSON), the
    // reconnect, the OK answer.
    let expired: serde_json::Value =
        serde_json::from_str(reconnect.trim_start().lines().next().unwrap()).unwrap();
    assert_eq!(expired["status"], "EXPIRED", "{reconnect}");
    let entity = expired["entity_id"].as_str().unwrap().to_string();
    let shown_start = reconnect.find("{\n").expect("`reconnects show` printed");
    let shown_end = shown_start + reconnect[shown_start..].find("\n}").unwrap() + 2;
    let shown: serde_json::Value =
        serde_json::from_str(&reconnect[shown_start..shown_end]).unwrap();
    assert_eq!(shown["entity_id"], entity.as_str(), "{reconnect}");
    assert_eq!(shown["state"], "pending");
    assert_eq!(shown["api"], "v1");
    let last: serde_json::Value =
        serde_json::from_str(reconnect.trim_end().lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "OK", "{reconnect}");

    // The record is closed, by the webhook or the OK answer, and found by
    // its entity.
    let client = h1_client();
    let url = format!("http://{}/api/reconnects/{entity}", bin.admin);
    let mut record = serde_json::Value::Null;
    for _ in 0..100 {
        record = crate::support::get(&client, &url).await.json();
        if record["state"] == "resolved" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(record["state"], "resolved", "{record}");
    assert_eq!(record["reconnect_id"], shown["reconnect_id"]);
}
