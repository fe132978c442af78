//! Reading an agent's state from its terminal, without an LLM: per-CLI screen rules kept as data
//! (`rules/<cli>.toml`, embedded; a project may replace one), tried in order over the screen,
//! its bottom lines or its title, then the screen's stability. Pure: the guardian hands it what
//! it saw, and it says which state and which rule said so.
//!
//! It never guesses `idle`: a prompt on a screen that is still changing is `unknown`, and so is a
//! still screen no rule recognises.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::states::AgentState;

/// The shipped rules, by CLI (`agents.cli`).
const SHIPPED: &[(&str, &str)] = &[
    ("claude", include_str!("rules/claude.toml")),
    ("codex", include_str!("rules/codex.toml")),
    ("gemini", include_str!("rules/gemini.toml")),
    ("opencode", include_str!("rules/opencode.toml")),
    ("droid", include_str!("rules/droid.toml")),
    ("custom", include_str!("rules/custom.toml")),
];

/// One CLI's rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// A screen unchanged this long counts as still.
    #[serde(default = "default_still_after_ms")]
    pub still_after_ms: u64,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

fn default_still_after_ms() -> u64 {
    1500
}

/// Where a rule looks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    /// The whole visible screen.
    #[default]
    Screen,
    /// The last `lines` non-blank lines.
    Bottom,
    /// The terminal's title (the CLI sets it).
    Title,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Says what it recognises; `agents explain` prints it.
    pub name: String,
    pub state: AgentState,
    #[serde(default, rename = "in")]
    pub region: Region,
    /// For `in = "bottom"`: how many non-blank lines.
    #[serde(default = "default_lines")]
    pub lines: usize,
    /// Every one of these must appear.
    #[serde(default)]
    pub all: Vec<String>,
    /// At least one of these must appear (when given).
    #[serde(default)]
    pub any: Vec<String>,
    /// None of these may appear.
    #[serde(default)]
    pub none: Vec<String>,
    /// The last non-blank line of the region, trimmed, ends with one of these (when given).
    #[serde(default)]
    pub last_line_ends_with: Vec<String>,
    /// How a person's answer goes into the dialog this rule recognises (`agents answer`);
    /// without it the answer is typed as a line.
    #[serde(default)]
    pub answer: Option<AnswerBy>,
    /// Keys the guardian presses by itself when this rule matches (tmux key names): for a
    /// `blocked_screen` dialog that is safe to answer, such as trusting the agent's own
    /// worktree. Only where `guardian.answer_screens` is on.
    #[serde(default)]
    pub press: Vec<String>,
}

/// How to type a free-text answer into a CLI's dialog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerBy {
    /// First pick the dialog's option with this label, by pressing its number (a dialog of
    /// numbered choices whose free-text field is one of them, e.g. "3. Type something.").
    pub choose: String,
}

fn default_lines() -> usize {
    12
}

impl Rules {
    /// The rules for `cli`: the project's own file when it has one, else the shipped ones.
    pub fn load(cli: &str, project_dir: Option<&std::path::Path>) -> Result<Rules> {
        if let Some(dir) = project_dir {
            let path = dir.join(format!("{cli}.toml"));
            if path.is_file() {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                return Rules::parse(&text)
                    .with_context(|| format!("invalid screen rules {}", path.display()));
            }
        }
        match SHIPPED.iter().find(|(name, _)| *name == cli) {
            Some((_, text)) => Rules::parse(text).with_context(|| format!("shipped rules {cli}")),
            None => bail!("no screen rules for the {cli} CLI"),
        }
    }

    pub fn parse(text: &str) -> Result<Rules> {
        let rules: Rules = toml::from_str(text)?;
        for r in &rules.rules {
            if r.all.is_empty() && r.any.is_empty() && r.last_line_ends_with.is_empty() {
                bail!(
                    "rule {:?} matches everything: give it all, any or last_line_ends_with",
                    r.name
                );
            }
            if matches!(r.state, AgentState::Exited | AgentState::Unknown) {
                bail!("rule {:?}: {} is not read from the screen", r.name, r.state);
            }
            // Pressing keys at a question or a permission prompt would answer for the person.
            if !r.press.is_empty() && r.state != AgentState::BlockedScreen {
                bail!(
                    "rule {:?}: press is only for blocked_screen dialogs, not {}",
                    r.name,
                    r.state
                );
            }
        }
        Ok(rules)
    }

    /// The name of every CLI with shipped rules.
    pub fn shipped() -> impl Iterator<Item = (&'static str, &'static str)> {
        SHIPPED.iter().copied()
    }
}

impl Rules {
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }
}

/// The keys to press before a person's answer is typed into the screen the rule `rule_name`
/// recognised: none for a plain prompt, the option's number for a dialog that wants its
/// free-text option chosen first. An error says why the answer cannot go in.
pub fn keys_before_answer(
    rules: &Rules,
    rule_name: &str,
    screen: &str,
) -> Result<Vec<String>, String> {
    let Some(by) = rules.rule(rule_name).and_then(|r| r.answer.as_ref()) else {
        return Ok(Vec::new());
    };
    let number = screen.lines().find_map(|line| {
        // An option line: an optional cursor mark, its number, ". ", its label.
        let rest = line
            .trim_start()
            .trim_start_matches(['❯', '›', '>'])
            .trim_start();
        let (digits, label) = rest.split_once(". ")?;
        (label.trim() == by.choose
            && !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit()))
        .then(|| digits.to_string())
    });
    match number {
        // One key per option: "12" would be typed as 1, then 2.
        Some(n) if n.len() > 1 => Err(format!(
            "the dialog's option {:?} is number {n}; only options 1 to 9 can be picked by their key",
            by.choose
        )),
        Some(n) => Ok(vec![n]),
        None => Err(format!(
            "the dialog has no option {:?} to type an answer into",
            by.choose
        )),
    }
}

/// What the guardian saw of an agent at one look.
#[derive(Debug, Clone, Copy)]
pub struct Look<'a> {
    pub screen: &'a str,
    pub title: &'a str,
    /// Its program still runs.
    pub alive: bool,
    /// How long the screen has been as it is now.
    pub unchanged_for: Duration,
    /// It has been handed its first message.
    pub delivered: bool,
}

/// A state and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    pub state: AgentState,
    /// The rule that matched, or what else decided it.
    pub rule: String,
    pub why: String,
}

fn reading(state: AgentState, rule: &str, why: impl Into<String>) -> Reading {
    Reading {
        state,
        rule: rule.to_string(),
        why: why.into(),
    }
}

impl Rule {
    fn region<'a>(&self, look: &Look<'a>) -> String {
        match self.region {
            Region::Screen => look.screen.to_string(),
            Region::Title => look.title.to_string(),
            Region::Bottom => {
                let lines: Vec<&str> = look
                    .screen
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .collect();
                lines[lines.len().saturating_sub(self.lines)..].join("\n")
            }
        }
    }

    /// Why it matches, or none.
    fn matches(&self, look: &Look<'_>) -> Option<String> {
        let text = self.region(look);
        if !self.all.iter().all(|s| text.contains(s.as_str())) {
            return None;
        }
        let any = self.any.iter().find(|s| text.contains(s.as_str()));
        if !self.any.is_empty() && any.is_none() {
            return None;
        }
        if let Some(bad) = self.none.iter().find(|s| text.contains(s.as_str())) {
            let _ = bad;
            return None;
        }
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        let ending = self
            .last_line_ends_with
            .iter()
            .find(|e| last.ends_with(e.as_str()));
        if !self.last_line_ends_with.is_empty() && ending.is_none() {
            return None;
        }
        let mut found: Vec<String> = self.all.iter().map(|s| format!("{s:?}")).collect();
        found.extend(any.map(|s| format!("{s:?}")));
        if let Some(e) = ending {
            found.push(format!("a last line ending in {e:?}"));
        }
        let place = match self.region {
            Region::Screen => "on the screen".to_string(),
            Region::Bottom => format!("in the bottom {} lines", self.lines),
            Region::Title => "in the title".to_string(),
        };
        Some(format!("{} {place}", found.join(", ")))
    }
}

/// The agent's state from what was seen: the first rule that matches, checked against the
/// screen's stability; with no rule, stability alone.
pub fn read(rules: &Rules, look: &Look<'_>) -> Reading {
    if !look.alive {
        return reading(
            AgentState::Exited,
            "exited",
            "its program is no longer running",
        );
    }
    let still = look.unchanged_for >= Duration::from_millis(rules.still_after_ms);
    for rule in &rules.rules {
        if let Some(why) = rule.matches(look) {
            // A turn over is only believed on a still screen.
            if !still && matches!(rule.state, AgentState::Idle | AgentState::BlockedQuestion) {
                return reading(
                    AgentState::Unknown,
                    &rule.name,
                    format!("{why}, but the screen is still changing"),
                );
            }
            return reading(rule.state, &rule.name, why);
        }
    }
    match (still, look.delivered) {
        (false, false) => reading(
            AgentState::Starting,
            "stability",
            "no rule matched and the screen is changing before the first message",
        ),
        (false, true) => reading(
            AgentState::Working,
            "stability",
            "no rule matched and the screen is changing",
        ),
        (true, _) => reading(
            AgentState::Unknown,
            "stability",
            "no rule matched and the screen is still",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(screen: &str, unchanged_ms: u64) -> Look<'_> {
        Look {
            screen,
            title: "",
            alive: true,
            unchanged_for: Duration::from_millis(unchanged_ms),
            delivered: true,
        }
    }

    const RULES: &str = r#"
still_after_ms = 1000
[[rule]]
name = "spinner"
state = "working"
in = "bottom"
lines = 3
any = ["esc to interrupt"]
[[rule]]
name = "question"
state = "blocked_question"
all = ["●"]
last_line_ends_with = ["?"]
[[rule]]
name = "prompt"
state = "idle"
in = "bottom"
lines = 2
all = ["> "]
none = ["Thinking"]
"#;

    #[test]
    fn the_first_matching_rule_decides_and_says_why() {
        let rules = Rules::parse(RULES).unwrap();
        let r = read(&rules, &look("text\n✻ Working (esc to interrupt)\n> ", 0));
        assert_eq!(r.state, AgentState::Working);
        assert_eq!(r.rule, "spinner");
        assert!(
            r.why.contains("\"esc to interrupt\" in the bottom 3 lines"),
            "{}",
            r.why
        );
        let r = read(&rules, &look("● Shall I use SQLite?", 5000));
        assert_eq!(
            (r.state, r.rule.as_str()),
            (AgentState::BlockedQuestion, "question")
        );
        assert!(r.why.contains("ending in \"?\""), "{}", r.why);
        let r = read(&rules, &look("done.\n> ", 5000));
        assert_eq!(r.state, AgentState::Idle);
        // `none` vetoes.
        let r = read(&rules, &look("Thinking\n> ", 5000));
        assert_eq!(r.rule, "stability");
    }

    #[test]
    fn idle_is_never_guessed() {
        let rules = Rules::parse(RULES).unwrap();
        // The prompt shows, but the screen moved a moment ago.
        let r = read(&rules, &look("done.\n> ", 200));
        assert_eq!(r.state, AgentState::Unknown);
        assert!(r.why.contains("still changing"), "{}", r.why);
        // Nothing recognised on a still screen.
        assert_eq!(read(&rules, &look("???", 5000)).state, AgentState::Unknown);
        // Nothing recognised, moving: working once the task is in, starting before.
        assert_eq!(read(&rules, &look("...", 0)).state, AgentState::Working);
        let starting = Look {
            delivered: false,
            ..look("...", 0)
        };
        assert_eq!(read(&rules, &starting).state, AgentState::Starting);
        let gone = Look {
            alive: false,
            ..look("> ", 5000)
        };
        assert_eq!(read(&rules, &gone).state, AgentState::Exited);
    }

    #[test]
    fn bad_rule_files_are_refused_with_the_rule_named() {
        let everything = "[[rule]]\nname = \"all\"\nstate = \"idle\"\n";
        assert!(
            Rules::parse(everything)
                .unwrap_err()
                .to_string()
                .contains("\"all\" matches everything")
        );
        let pressing = "[[rule]]\nname = \"q\"\nstate = \"blocked_question\"\nany = [\"?\"]\npress = [\"Enter\"]\n";
        assert!(
            Rules::parse(pressing)
                .unwrap_err()
                .to_string()
                .contains("press is only for blocked_screen")
        );
        let exited = "[[rule]]\nname = \"x\"\nstate = \"exited\"\nany = [\"bye\"]\n";
        assert!(Rules::parse(exited).is_err());
        assert!(
            Rules::parse("[[rule]]\nname = \"x\"\nstate = \"idle\"\nany = [\"a\"]\nwhere = 1\n")
                .is_err()
        );
    }

    #[test]
    fn an_answer_picks_the_free_text_option_by_its_number() {
        let rules = Rules::parse(
            "[[rule]]\nname = \"dialog\"\nstate = \"blocked_question\"\nany = [\"Enter to select\"]\n\
             answer = { choose = \"Type something.\" }\n\
             [[rule]]\nname = \"prompt\"\nstate = \"idle\"\nany = [\"> \"]\n",
        )
        .unwrap();
        let dialog = "Which file?\n\n❯ 1. NOTES.md\n     the usual place\n  2. README.md\n  3. Type something.\n  4. Chat about this\nEnter to select";
        assert_eq!(keys_before_answer(&rules, "dialog", dialog).unwrap(), ["3"]);
        // The option moved: its number is read from the screen, not assumed.
        let shorter = "❯ 1. Yes\n  2. Type something.\nEnter to select";
        assert_eq!(
            keys_before_answer(&rules, "dialog", shorter).unwrap(),
            ["2"]
        );
        assert!(
            keys_before_answer(&rules, "dialog", "❯ 1. Yes\nEnter to select")
                .unwrap_err()
                .contains("no option \"Type something.\"")
        );
        assert!(
            keys_before_answer(&rules, "prompt", "> ")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn every_rule_file_is_shipped_and_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/guardian/rules");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut shipped: Vec<String> = Rules::shipped()
            .map(|(cli, _)| format!("{cli}.toml"))
            .collect();
        shipped.sort();
        assert_eq!(files, shipped, "embed every rule file in SHIPPED");
        for (cli, _) in Rules::shipped() {
            Rules::load(cli, None).unwrap_or_else(|e| panic!("{cli}: {e:#}"));
        }
    }
}
