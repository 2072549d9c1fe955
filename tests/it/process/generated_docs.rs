//! Issue 16: the man pages and shell completions come from the clap
//! definitions (`--generate-man DIR`, `--generate-completions DIR`, hidden
//! flags the package build runs): every flag `--help` lists is in the page and
//! in each completion script, and the hidden flags are not in the page.

use std::process::Command;

use crate::support::common::run_bounded;
use crate::support::running::{BIN, PROCESS_LIMIT};

/// The long flags `--help` lists (`--listen <ADDR:PORT>` gives `--listen`).
fn help_flags() -> Vec<String> {
    let help = run_bounded(Command::new(BIN).arg("--help"), PROCESS_LIMIT);
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).expect("UTF-8 help");
    let flags: Vec<String> = text
        .split_whitespace()
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(|word| word.trim_end_matches([',', '.']).to_owned())
        .collect();
    assert!(flags.len() > 20, "{text}");
    flags
}

#[test]
fn issue16_man_pages_and_completions_list_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (man, completions) = (dir.path().join("man"), dir.path().join("completions"));
    let out = run_bounded(
        Command::new(BIN)
            .arg("--generate-man")
            .arg(&man)
            .arg("--generate-completions")
            .arg(&completions),
        PROCESS_LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(man.join("net-receiver.1")).expect("net-receiver.1");
    assert!(page.contains(".TH net-receiver 1"), "{page}");
    let sub = std::fs::read_to_string(man.join("net-receiver-hash-password.1")).unwrap();
    assert!(sub.contains("argon2id"), "{sub}");
    let check = std::fs::read_to_string(man.join("net-receiver-check-config.1")).unwrap();
    assert!(check.contains("postfix check"), "{check}");
    let scripts: Vec<(String, String)> =
        ["net-receiver.bash", "_net-receiver", "net-receiver.fish"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(completions.join(name)).unwrap_or_default();
                ((*name).to_owned(), text)
            })
            .collect();
    for flag in help_flags() {
        // roff writes a hyphen as \-.
        assert!(
            page.contains(&flag.replace('-', "\\-")),
            "{flag} not in the man page"
        );
        for (name, text) in &scripts {
            let bare = flag.trim_start_matches('-');
            assert!(text.contains(bare), "{flag} not in {name}");
        }
    }
    for (name, text) in &scripts {
        assert!(text.contains("check-config"), "check-config not in {name}");
    }
    // (clap_complete's bash script completes hidden flags too: only the page
    // is held to this.)
    for hidden in ["generate-man", "generate-completions"] {
        assert!(
            !page.contains(&hidden.replace('-', "\\-")),
            "{hidden} in the man page"
        );
    }
    assert!(
        page.contains("config.md"),
        "the page names the key reference"
    );
}
