//! Codex CLI: a private `CODEX_HOME` whose `config.toml` is the user's `[agents.codex_config]`
//! plus our server, the system prompt and what an unattended run needs; the login linked.

use anyhow::{Result, bail};

use super::{AgentLaunch, Base, Host, LaunchSpec, shim_env};

pub(super) fn spec(l: &AgentLaunch, host: &Host, base: Base) -> Result<LaunchSpec> {
    let Base {
        mut files, mut env, ..
    } = base;
    let model = |flag: &str| super::model_flag(l, flag);
    let config = l.agent_dir.join("config.toml");
    files.push((config, codex_config_toml(l)?));
    env.insert("CODEX_HOME".into(), l.agent_dir.display().to_string());
    let mut links = Vec::new();
    if let Some(home) = &host.codex_home {
        // The user's login (an API key or a ChatGPT sign-in in `auth.json`), shared rather
        // than copied: Codex rewrites the file in place when it refreshes a token, so a
        // link keeps every agent and the user on one refresh token.
        links.push((l.agent_dir.join("auth.json"), home.join("auth.json")));
    }
    Ok(LaunchSpec {
        command: format!(
            "codex --dangerously-bypass-approvals-and-sandbox{}",
            model("-m")
        ),
        env,
        files,
        links,
        prompt_in_first_message: false,
    })
}

/// Codex's `config.toml` for one agent, which is its `CODEX_HOME`: `agents.codex_config` with
/// our MCP server, the system prompt (as `developer_instructions`, after any of the user's own)
/// and what an unattended run needs on top.
///
/// A private home rather than `-c` overrides: Codex splits `-c` keys at every dot, so no
/// override can name the worktree's path in `projects`, and without a trust entry it stops at a
/// "Trust this folder?" screen.
fn codex_config_toml(l: &AgentLaunch) -> Result<String> {
    use toml::Value;
    let mut config = l.codex_config.clone().unwrap_or_default();
    let table = |pairs: Vec<(&str, Value)>| {
        Value::Table(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    };
    let env = shim_env(l)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    // Codex passes only whitelisted variables to MCP servers: the agent's identity must be in
    // the server entry itself.
    let server = table(vec![
        ("command", Value::String(l.exe.display().to_string())),
        ("args", Value::Array(vec![Value::String("shim".into())])),
        ("env", Value::Table(env)),
    ]);
    sub_table(&mut config, "mcp_servers")?.insert("hephaestus".into(), server);
    sub_table(&mut config, "projects")?.insert(
        l.worktree.display().to_string(),
        table(vec![("trust_level", Value::String("trusted".into()))]),
    );
    let instructions = match config.get("developer_instructions") {
        Some(Value::String(own)) => format!("{own}\n\n{}", l.system_prompt),
        Some(other) => bail!(
            "agents.codex_config.developer_instructions must be a string, not a {}",
            other.type_str()
        ),
        None => l.system_prompt.clone(),
    };
    config.insert("developer_instructions".into(), Value::String(instructions));
    // Codex may otherwise send the first turn before our server is up.
    config
        .entry("mcp_optional_startup_grace_ms")
        .or_insert(Value::Integer(20_000));
    // By default the interactive CLI copies itself (about 400 MB in 0.169) into
    // `$CODEX_HOME/packages` and starts a background app server there that outlives the
    // session: one copy and one resident daemon (about 250 MB) per agent. In-process it runs
    // the same and ends with the agent's session.
    sub_table(&mut config, "features")?
        .entry("daemon_auto_start")
        .or_insert(Value::Boolean(false));
    // An update prompt would sit in front of the task: updates are the user's business.
    config
        .entry("check_for_update_on_startup")
        .or_insert(Value::Boolean(false));
    let mut out =
        String::from("# Written by Hephaestus for one agent; regenerated at each launch.\n");
    for (key, value) in &config {
        out.push_str(&format!("{} = {}\n", toml_key(key), toml_value(value)));
    }
    Ok(out)
}

fn sub_table<'a>(config: &'a mut toml::Table, key: &str) -> Result<&'a mut toml::Table> {
    match config
        .entry(key)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
    {
        toml::Value::Table(t) => Ok(t),
        other => bail!(
            "agents.codex_config.{key} must be a table, not a {}",
            other.type_str()
        ),
    }
}

fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        serde_json::to_string(key).expect("json")
    }
}

/// TOML for one value, nested tables inline. The `toml` crate is built without its writer here,
/// and a JSON string is a valid TOML basic string.
fn toml_value(value: &toml::Value) -> String {
    use toml::Value;
    match value {
        Value::String(s) => serde_json::to_string(s).expect("json"),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) if f.is_nan() => "nan".into(),
        Value::Float(f) if f.is_infinite() => if *f > 0.0 { "inf" } else { "-inf" }.into(),
        Value::Float(f) => format!("{f:?}"),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Table(t) => format!(
            "{{ {} }}",
            t.iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), toml_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
