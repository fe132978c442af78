//! Workflow definitions as data: `phases/<workflow-id>/NN_name.yaml` plus `phases_config.yaml`.
//!
//! The layout and keys are those of the original Hephaestus phase folders (snake_case or
//! Title_Case), so existing folders load unchanged. Shipped workflows are embedded in the binary;
//! a project's own folder overrides them by id. Parsing only: no database, no side effects.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The workflows shipped with Hephaestus, embedded so a fresh machine has them.
const SHIPPED: &[(&str, &str, &str)] = &[
    (
        "bug-fix",
        "phases_config.yaml",
        include_str!("../phases/bug-fix/phases_config.yaml"),
    ),
    (
        "bug-fix",
        "01_reproduce_and_analyze.yaml",
        include_str!("../phases/bug-fix/01_reproduce_and_analyze.yaml"),
    ),
    (
        "bug-fix",
        "02_implement_fix.yaml",
        include_str!("../phases/bug-fix/02_implement_fix.yaml"),
    ),
    (
        "bug-fix",
        "03_verify_and_document.yaml",
        include_str!("../phases/bug-fix/03_verify_and_document.yaml"),
    ),
    (
        "feature-dev",
        "phases_config.yaml",
        include_str!("../phases/feature-dev/phases_config.yaml"),
    ),
    (
        "feature-dev",
        "01_design.yaml",
        include_str!("../phases/feature-dev/01_design.yaml"),
    ),
    (
        "feature-dev",
        "02_implement.yaml",
        include_str!("../phases/feature-dev/02_implement.yaml"),
    ),
    (
        "feature-dev",
        "03_test_and_review.yaml",
        include_str!("../phases/feature-dev/03_test_and_review.yaml"),
    ),
    (
        "prd-to-software",
        "phases_config.yaml",
        include_str!("../phases/prd-to-software/phases_config.yaml"),
    ),
    (
        "prd-to-software",
        "01_requirements_analysis.yaml",
        include_str!("../phases/prd-to-software/01_requirements_analysis.yaml"),
    ),
    (
        "prd-to-software",
        "02_plan_and_implement.yaml",
        include_str!("../phases/prd-to-software/02_plan_and_implement.yaml"),
    ),
    (
        "prd-to-software",
        "03_validate_and_document.yaml",
        include_str!("../phases/prd-to-software/03_validate_and_document.yaml"),
    ),
];

/// A workflow: its phases in order and its settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkflowDefinition {
    pub id: String,
    pub name: String,
    pub description: String,
    pub phases: Vec<PhaseDefinition>,
    pub config: WorkflowConfig,
    /// `builtin` or the folder it was read from.
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PhaseDefinition {
    /// From the two-digit file prefix; 1-based.
    pub order: i64,
    /// From the rest of the file name: `02_implement_fix` → `Implement Fix`.
    pub name: String,
    pub description: String,
    pub done_definitions: Vec<String>,
    pub additional_notes: String,
    pub outputs: Vec<String>,
    pub next_steps: Vec<String>,
    pub working_directory: Option<String>,
    pub cli_tool: Option<String>,
    pub cli_model: Option<String>,
    pub validation: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkflowConfig {
    #[serde(default, alias = "Name")]
    pub name: Option<String>,
    #[serde(default, alias = "Description")]
    pub description: Option<String>,
    #[serde(default, alias = "Has_Result")]
    pub has_result: bool,
    #[serde(default, alias = "Result_Criteria")]
    pub result_criteria: Option<String>,
    #[serde(default, alias = "On_Result_Found")]
    pub on_result_found: OnResultFound,
    #[serde(default, alias = "Enable_Tickets")]
    pub enable_tickets: bool,
    #[serde(default, alias = "Board_Config")]
    pub board_config: Option<serde_json::Value>,
    #[serde(default, alias = "Launch_Template")]
    pub launch_template: Option<LaunchTemplate>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnResultFound {
    StopAll,
    #[default]
    DoNothing,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LaunchTemplate {
    #[serde(default)]
    pub parameters: Vec<LaunchParameter>,
    #[serde(default)]
    pub phase_1_task_prompt: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchParameter {
    pub name: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: ParameterKind,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParameterKind {
    #[default]
    Text,
    Textarea,
    Number,
    Boolean,
    Dropdown,
}

/// The keys of one phase file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseFile {
    #[serde(alias = "Description")]
    description: String,
    #[serde(default, alias = "Done_Definitions")]
    done_definitions: Option<StringOrList>,
    #[serde(default, alias = "Additional_Notes")]
    additional_notes: Option<String>,
    #[serde(default, alias = "Outputs")]
    outputs: Option<StringOrList>,
    #[serde(default, alias = "Next_Steps")]
    next_steps: Option<StringOrList>,
    #[serde(default, alias = "Working_Directory")]
    working_directory: Option<String>,
    #[serde(default, alias = "Validation")]
    validation: Option<serde_json::Value>,
    #[serde(default, alias = "Cli_Tool")]
    cli_tool: Option<String>,
    #[serde(default, alias = "Cli_Model")]
    cli_model: Option<String>,
    #[serde(default, alias = "Glm_Api_Token_Env")]
    #[allow(dead_code)]
    glm_api_token_env: Option<String>,
}

/// A string is promoted to a one-item list, as the original loader does.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) if s.trim().is_empty() => Vec::new(),
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

/// The workflows built into the binary.
pub fn shipped() -> Result<Vec<WorkflowDefinition>> {
    let mut by_id: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (id, file, text) in SHIPPED {
        by_id.entry(id).or_default().push((file, text));
    }
    by_id
        .into_iter()
        .map(|(id, files)| {
            let files = files
                .into_iter()
                .map(|(f, t)| (f.to_string(), t.to_string()))
                .collect();
            parse_workflow(id, &format!("phases/{id}"), files, "builtin")
        })
        .collect()
}

/// Every workflow folder directly under `dir` (each a folder with `NN_name.yaml` files).
/// A missing `dir` is not an error: the project simply has no workflows of its own.
pub fn load_dir(dir: &Path) -> Result<Vec<WorkflowDefinition>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list workflow folder {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.path();
        let id = entry.file_name().to_string_lossy().to_string();
        let mut files = Vec::new();
        for f in std::fs::read_dir(&path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|e| e.ok())
        {
            let name = f.file_name().to_string_lossy().to_string();
            if name.ends_with(".yaml") || name.ends_with(".yml") {
                let text = std::fs::read_to_string(f.path())
                    .with_context(|| format!("cannot read {}", f.path().display()))?;
                files.push((name, text));
            }
        }
        if files.is_empty() {
            continue;
        }
        out.push(parse_workflow(
            &id,
            &path.display().to_string(),
            files,
            &path.display().to_string(),
        )?);
    }
    Ok(out)
}

/// Shipped workflows overridden by the project's own (same id wins).
pub fn load_all(project_dir: &Path) -> Result<Vec<WorkflowDefinition>> {
    let mut by_id: BTreeMap<String, WorkflowDefinition> =
        shipped()?.into_iter().map(|w| (w.id.clone(), w)).collect();
    for w in load_dir(project_dir)? {
        by_id.insert(w.id.clone(), w);
    }
    Ok(by_id.into_values().collect())
}

fn parse_workflow(
    id: &str,
    folder: &str,
    mut files: Vec<(String, String)>,
    source: &str,
) -> Result<WorkflowDefinition> {
    files.sort();
    let mut config = WorkflowConfig::default();
    let mut phases: Vec<PhaseDefinition> = Vec::new();
    for (name, text) in &files {
        let shown = format!("{folder}/{name}");
        if name == "phases_config.yaml" || name == "phases_config.yml" {
            config = from_yaml(&shown, text)?;
            continue;
        }
        let (order, phase_name) = parse_phase_file_name(name).ok_or_else(|| {
            anyhow!("{shown}: a phase file must be named NN_name.yaml (e.g. 01_investigate.yaml)")
        })?;
        if let Some(prev) = phases.iter().find(|p| p.order == order) {
            bail!(
                "{shown}: phase number {order:02} is already used by phase {:?}",
                prev.name
            );
        }
        let file: PhaseFile = from_yaml(&shown, text)?;
        if file.description.trim().is_empty() {
            bail!("{shown}: key `description` must not be empty");
        }
        phases.push(PhaseDefinition {
            order,
            name: phase_name,
            description: file.description,
            done_definitions: file
                .done_definitions
                .map(StringOrList::into_vec)
                .unwrap_or_default(),
            additional_notes: file.additional_notes.unwrap_or_default(),
            outputs: file.outputs.map(StringOrList::into_vec).unwrap_or_default(),
            next_steps: file
                .next_steps
                .map(StringOrList::into_vec)
                .unwrap_or_default(),
            working_directory: file.working_directory,
            cli_tool: file.cli_tool,
            cli_model: file.cli_model,
            validation: file.validation,
        });
    }
    if phases.is_empty() {
        bail!("{folder}: no phase files (NN_name.yaml) found");
    }
    phases.sort_by_key(|p| p.order);
    let config_file = format!("{folder}/phases_config.yaml");
    if config.has_result
        && config
            .result_criteria
            .as_deref()
            .is_none_or(|c| c.trim().is_empty())
    {
        bail!("{config_file}: key `result_criteria` is required when `has_result` is true");
    }
    if let Some(t) = &config.launch_template {
        let mut seen = std::collections::HashSet::new();
        for p in &t.parameters {
            if !seen.insert(p.name.as_str()) {
                bail!(
                    "{config_file}: launch parameter {:?} is declared twice",
                    p.name
                );
            }
            if p.kind == ParameterKind::Dropdown && p.options.is_empty() {
                bail!(
                    "{config_file}: dropdown parameter {:?} needs `options`",
                    p.name
                );
            }
        }
    }
    Ok(WorkflowDefinition {
        id: id.to_string(),
        name: config.name.clone().unwrap_or_else(|| title_case(id)),
        description: config.description.clone().unwrap_or_default(),
        phases,
        config,
        source: source.to_string(),
    })
}

fn from_yaml<T: serde::de::DeserializeOwned>(shown: &str, text: &str) -> Result<T> {
    serde_yaml::from_str(text).map_err(|e| match e.location() {
        // serde_yaml's message names the key (e.g. "unknown field `Descripton`").
        Some(loc) => anyhow!(
            "{shown}: line {}: {}",
            loc.line(),
            strip_location(&e.to_string())
        ),
        None => anyhow!("{shown}: {e}"),
    })
}

fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// `01_reproduce_and_analyze.yaml` → `(1, "Reproduce And Analyze")`.
fn parse_phase_file_name(name: &str) -> Option<(i64, String)> {
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))?;
    let (num, rest) = stem.split_at_checked(2)?;
    let rest = rest.strip_prefix('_')?;
    if !num.bytes().all(|b| b.is_ascii_digit())
        || rest.is_empty()
        || !rest.chars().all(|c| c.is_alphanumeric() || c == '_')
    {
        return None;
    }
    let order: i64 = num.parse().ok()?;
    (order > 0).then(|| (order, title_case(rest)))
}

fn title_case(s: &str) -> String {
    s.split(['_', '-'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks launch parameters against the template and fills in defaults.
/// Returns the values to substitute, as strings.
pub fn resolve_parameters(
    def: &WorkflowDefinition,
    given: &serde_json::Map<String, serde_json::Value>,
) -> std::result::Result<HashMap<String, String>, String> {
    let declared: &[LaunchParameter] = def
        .config
        .launch_template
        .as_ref()
        .map(|t| t.parameters.as_slice())
        .unwrap_or(&[]);
    for key in given.keys() {
        if !declared.iter().any(|p| &p.name == key) {
            let names: Vec<&str> = declared.iter().map(|p| p.name.as_str()).collect();
            return Err(format!(
                "workflow {:?} has no launch parameter {key:?}; it takes: {}",
                def.id,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ));
        }
    }
    let mut out = HashMap::new();
    for p in declared {
        let value = given.get(&p.name).or(p.default.as_ref());
        let text = match value {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        if p.required && text.trim().is_empty() {
            return Err(format!(
                "launch parameter {:?} is required by workflow {:?}{}",
                p.name,
                def.id,
                p.description
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ));
        }
        if p.kind == ParameterKind::Dropdown && !text.is_empty() && !p.options.contains(&text) {
            return Err(format!(
                "launch parameter {:?} must be one of {}, got {text:?}",
                p.name,
                p.options.join(", ")
            ));
        }
        if p.kind == ParameterKind::Number && !text.is_empty() && text.parse::<f64>().is_err() {
            return Err(format!(
                "launch parameter {:?} must be a number, got {text:?}",
                p.name
            ));
        }
        out.insert(p.name.clone(), text);
    }
    Ok(out)
}

/// Replaces `{name}` for every known parameter; other braces are left as they are.
pub fn substitute(text: &str, params: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) if params.contains_key(&after[..end]) => {
                out.push_str(&params[&after[..end]]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn substitute_json(
    value: &serde_json::Value,
    params: &HashMap<String, String>,
) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(substitute(s, params)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| substitute_json(v, params)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute_json(v, params)))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl PhaseDefinition {
    /// This phase with every `{param}` filled in.
    pub fn substituted(&self, params: &HashMap<String, String>) -> PhaseDefinition {
        let all = |v: &[String]| v.iter().map(|s| substitute(s, params)).collect();
        PhaseDefinition {
            description: substitute(&self.description, params),
            done_definitions: all(&self.done_definitions),
            additional_notes: substitute(&self.additional_notes, params),
            outputs: all(&self.outputs),
            next_steps: all(&self.next_steps),
            validation: self.validation.as_ref().map(|v| substitute_json(v, params)),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let wf = dir.path().join("demo");
        std::fs::create_dir(&wf).unwrap();
        for (name, text) in files {
            std::fs::write(wf.join(name), text).unwrap();
        }
        dir
    }

    /// True when `text` holds a `{identifier}` that substitution left in place.
    fn has_placeholder(text: &str) -> bool {
        text.split('{').skip(1).any(|rest| {
            rest.find('}').is_some_and(|end| {
                end > 0
                    && rest[..end]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
    }

    #[test]
    fn every_shipped_workflow_loads() {
        let all = shipped().unwrap();
        let ids: Vec<&str> = all.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(ids, ["bug-fix", "feature-dev", "prd-to-software"]);
        for w in &all {
            assert!(
                w.phases.len() >= 3,
                "{} has {} phases",
                w.id,
                w.phases.len()
            );
            assert!(!w.description.is_empty(), "{} has no description", w.id);
            let t = w.config.launch_template.as_ref().expect("launch template");
            assert!(
                t.phase_1_task_prompt.is_some(),
                "{} has no first task prompt",
                w.id
            );
            // Every placeholder used must be a declared parameter.
            let names: HashMap<String, String> = t
                .parameters
                .iter()
                .map(|p| (p.name.clone(), "X".to_string()))
                .collect();
            for p in &w.phases {
                let s = p.substituted(&names);
                let text = format!(
                    "{}{}{:?}{:?}{:?}{}",
                    s.description,
                    s.additional_notes,
                    s.done_definitions,
                    s.next_steps,
                    s.outputs,
                    s.validation.map(|v| v.to_string()).unwrap_or_default()
                );
                assert!(
                    !has_placeholder(&text),
                    "{}: phase {} has an unknown placeholder",
                    w.id,
                    p.name
                );
            }
        }
    }

    #[test]
    fn every_file_in_the_phases_folder_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("phases");
        let on_disk = load_dir(&root).unwrap();
        let mut builtin = shipped().unwrap();
        for w in &mut builtin {
            w.source = root.join(&w.id).display().to_string();
        }
        assert_eq!(
            on_disk, builtin,
            "add new files under phases/ to SHIPPED in phases.rs"
        );
    }

    #[test]
    fn title_case_keys_and_string_lists_are_accepted() {
        let dir = folder(&[(
            "01_find_it.yaml",
            "Description: find the bug\nDone_Definitions: bug found\nAdditional_Notes: look\nOutputs:\n  - notes.md\n",
        )]);
        let w = load_dir(dir.path()).unwrap().remove(0);
        assert_eq!(w.id, "demo");
        assert_eq!(w.phases[0].name, "Find It");
        assert_eq!(w.phases[0].done_definitions, vec!["bug found"]);
        assert_eq!(w.phases[0].outputs, vec!["notes.md"]);
    }

    #[test]
    fn a_bad_key_names_the_file_line_and_key() {
        let dir = folder(&[("01_a.yaml", "description: ok\n\nDescripton: typo\n")]);
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("demo/01_a.yaml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("Descripton"), "{err}");

        let dir = folder(&[("01_a.yaml", "description: [1, 2]\n")]);
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("description"),
            "{err}"
        );

        let dir = folder(&[("1_a.yaml", "description: x\n")]);
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("NN_name.yaml"), "{err}");

        let dir = folder(&[
            ("01_a.yaml", "description: x\n"),
            ("phases_config.yaml", "has_result: true\n"),
        ]);
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("result_criteria"), "{err}");
    }

    #[test]
    fn parameters_are_checked_and_substituted() {
        let dir = folder(&[
            (
                "01_a.yaml",
                "description: fix {bug} in {area} {not_a_param}\n",
            ),
            (
                "phases_config.yaml",
                "launch_template:\n  parameters:\n    - name: bug\n      required: true\n    - name: area\n      default: core\n  phase_1_task_prompt: go {bug}\n",
            ),
        ]);
        let w = load_dir(dir.path()).unwrap().remove(0);
        let missing = resolve_parameters(&w, &serde_json::Map::new()).unwrap_err();
        assert!(missing.contains("\"bug\" is required"), "{missing}");
        let unknown: serde_json::Map<_, _> =
            serde_json::from_str(r#"{"bug":"x","colour":"red"}"#).unwrap();
        assert!(
            resolve_parameters(&w, &unknown)
                .unwrap_err()
                .contains("colour")
        );
        let given = serde_json::from_str(r#"{"bug":"the crash"}"#).unwrap();
        let p = resolve_parameters(&w, &given).unwrap();
        assert_eq!(
            w.phases[0].substituted(&p).description,
            "fix the crash in core {not_a_param}"
        );
    }
}
