//! The README's "Try it" block, run verbatim (ports aside) with bash and curl
//! against `leanproxy` started with no configuration.

use std::process::Command;

use crate::support::Binary;

fn try_it_block() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("<!-- try-it -->")
        .expect("README has the try-it block");
    let end = readme
        .find("<!-- /try-it -->")
        .expect("README closes the try-it block");
    let block = &readme[start..end];
    let code = block.split("```sh\n").nth(1).expect("a sh code block");
    code.split("```").next().unwrap().to_string()
}

#[tokio::test]
async fn readme_try_it_runs_against_the_default_proxy_and_mockbank() {
    if Command::new("curl").arg("--version").output().is_err() {
        // .ci/run installs curl; a developer machine without it skips loudly.
        eprintln!("SKIPPED: curl is not installed");
        return;
    }
    let bin = Binary::spawn(&[], &[]);
    assert!(
        bin.mockbank.is_some(),
        "no configuration means the embedded Mockbank"
    );
    let script = try_it_block().replace("127.0.0.1:7070", &bin.proxy.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
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
    let lines: Vec<serde_json::Value> = stdout
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
}
