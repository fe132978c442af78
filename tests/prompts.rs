//! Every file in prompts/ is shipped data: each must be embedded and used.

#[test]
fn every_prompt_file_is_embedded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "agent_system.md",
            "agent_task.md",
            "conductor_decision.md",
            "conductor_question.md",
            "conflict_task.md",
            "guardian_judgement.md",
            "guardian_question.md",
            "mcp_instructions.md",
            "nudge_report.md"
        ],
        "embed new prompt files where they are used"
    );
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(
        read("guardian_judgement.md"),
        hephaestus::agents::prompt::GUARDIAN_JUDGEMENT
    );
    assert_eq!(
        read("guardian_question.md"),
        hephaestus::agents::prompt::GUARDIAN_QUESTION
    );
    assert_eq!(
        read("agent_system.md"),
        hephaestus::agents::prompt::AGENT_SYSTEM
    );
    assert_eq!(
        read("agent_task.md"),
        hephaestus::agents::prompt::AGENT_TASK
    );
    assert_eq!(
        read("conflict_task.md"),
        hephaestus::agents::prompt::CONFLICT_TASK
    );
    assert_eq!(
        read("conductor_decision.md"),
        hephaestus::agents::prompt::CONDUCTOR_DECISION
    );
    assert_eq!(
        read("conductor_question.md"),
        hephaestus::agents::prompt::CONDUCTOR_QUESTION
    );
    assert_eq!(
        read("nudge_report.md"),
        hephaestus::agents::prompt::NUDGE_REPORT
    );
    let text = std::fs::read_to_string(dir.join("mcp_instructions.md")).unwrap();
    assert_eq!(text, hephaestus::mcp::INSTRUCTIONS);
    for tool in ["get_task", "update_task_status", "create_task", "get_tasks"] {
        assert!(text.contains(tool), "the instructions name {tool}");
    }
}
