//! The shipped screen rules read every real pane right: each fixture under
//! `tests/fixtures/panes/<cli>/` was captured from the pinned CLI by its own test (run with
//! `HEPHAESTUS_CAPTURE_PANES=1` to capture them again), and `index.toml` says which state it
//! shows. A pin in `.ci/run` that moves without new captures fails here, so does a rule that an
//! upgrade broke.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hephaestus::guardian::screen::{Look, Rules, read};
use hephaestus::states::AgentState;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    cli: String,
    version: String,
    pane: Vec<Pane>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pane {
    file: String,
    state: AgentState,
    /// The screen had not changed when it was taken.
    still: bool,
    title: String,
}

fn fixtures() -> Vec<(PathBuf, Index)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/panes");
    let mut found: Vec<(PathBuf, Index)> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|dir| {
            let path = dir.join("index.toml");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let index: Index =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (dir, index)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The version `.ci/run` pins for `cli`.
fn pinned(cli: &str) -> String {
    let var = match cli {
        "claude" => "CLAUDE_CODE_VERSION",
        "codex" => "CODEX_VERSION",
        "gemini" => "GEMINI_CLI_VERSION",
        "opencode" => "OPENCODE_VERSION",
        "droid" => "DROID_VERSION",
        other => panic!("no pin in .ci/run for {other}"),
    };
    let run =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run")).unwrap();
    run.lines()
        .find_map(|l| l.strip_prefix(&format!("{var}=")))
        .unwrap_or_else(|| panic!("{var} is not set in .ci/run"))
        .trim()
        .to_string()
}

#[test]
fn the_shipped_rules_read_every_real_pane_as_captured() {
    let mut wrong = Vec::new();
    let mut read_count = 0;
    for (dir, index) in fixtures() {
        let rules = Rules::load(&index.cli, None).unwrap();
        for pane in &index.pane {
            let path = dir.join(&pane.file);
            let screen = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let look = Look {
                screen: &screen,
                title: &pane.title,
                alive: true,
                unchanged_for: Duration::from_millis(if pane.still { 60_000 } else { 0 }),
                delivered: true,
            };
            let reading = read(&rules, &look);
            read_count += 1;
            // Recognised by a rule, not by the screen's stability alone: a working pane whose
            // spinner pauses must still read as working.
            if reading.state != pane.state || reading.rule == "stability" {
                wrong.push(format!(
                    "{}: {} {} read as {} ({}: {})",
                    path.display(),
                    index.version,
                    pane.state,
                    reading.state,
                    reading.rule,
                    reading.why
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "misread panes:\n{}", wrong.join("\n"));
    assert!(read_count > 0, "no fixtures found");
}

#[test]
fn the_fixtures_are_of_the_pinned_versions() {
    for (dir, index) in fixtures() {
        let pin = pinned(&index.cli);
        assert!(
            index.version.split_whitespace().next() == Some(pin.as_str()),
            "{}: captured from {} {}, but .ci/run pins {pin}: capture them again with \
             HEPHAESTUS_CAPTURE_PANES=1 and the CLI's test",
            dir.display(),
            index.cli,
            index.version
        );
        assert_eq!(
            dir.file_name().unwrap().to_str(),
            Some(index.cli.as_str()),
            "{}",
            dir.display()
        );
    }
}

/// A turn over is never believed on a moving screen: every idle pane, seen changing, is not
/// idle.
#[test]
fn an_idle_pane_that_is_still_changing_is_not_read_as_idle() {
    for (dir, index) in fixtures() {
        let rules = Rules::load(&index.cli, None).unwrap();
        for pane in index.pane.iter().filter(|p| p.state == AgentState::Idle) {
            let screen = std::fs::read_to_string(dir.join(&pane.file)).unwrap();
            let look = Look {
                screen: &screen,
                title: &pane.title,
                alive: true,
                unchanged_for: Duration::ZERO,
                delivered: true,
            };
            assert_ne!(read(&rules, &look).state, AgentState::Idle, "{}", pane.file);
        }
    }
}
