//! `hephaestus memory`: search, list, save, delete, reindex, export and import memories.

use anyhow::{Context, Result};
use clap::Subcommand;

use super::{Output, print_json};
use crate::control::Request;
use crate::control::replies::{Deleted, ImportReport, ImportedMemory, Status};
use crate::memory::{Found, ReindexReport, Saved};
use crate::store::MemoryRow;
use crate::text::first_line;

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// Find memories by meaning
    Search {
        query: String,
        #[arg(long, default_value_t = 5)]
        limit: usize,
        /// Only this type (repeatable): error_fix, discovery, decision, learning, warning, codebase_knowledge
        #[arg(long = "type")]
        types: Vec<String>,
    },
    /// The newest memories
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Embed memories that lack a vector (or token vectors) from the current embedder and rebuild
    /// the index
    Reindex,
    /// Delete a memory that is wrong or out of date
    Delete { id: i64 },
    /// Write every memory as JSON lines, oldest first (to move them to another project)
    Export {
        /// Write here instead of to standard output
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Save the memories of an export; near-duplicates of stored ones are skipped
    Import { file: std::path::PathBuf },
    /// Save what agents should know, as a person (agents use the save_memory tool)
    Save {
        content: String,
        /// error_fix, discovery, decision, learning, warning or codebase_knowledge
        #[arg(long = "type")]
        memory_type: String,
        /// A tag (repeatable)
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// A file it concerns (repeatable)
        #[arg(long = "file")]
        related_files: Vec<String>,
    },
}

pub(super) fn run(out: &Output, cmd: MemoryCommand) -> Result<()> {
    let now = crate::time::now_ms();
    match cmd {
        MemoryCommand::Search {
            query,
            limit,
            types,
        } => out.show(
            Request::MemorySearch {
                query,
                limit: Some(limit),
                memory_types: types,
            },
            |found: Vec<Found>| {
                if found.is_empty() {
                    println!("no memory matches");
                }
                for f in &found {
                    let m = &f.memory;
                    println!(
                        "{:>5} {:.2} {:<18} {:>4} {}",
                        m.id,
                        f.similarity,
                        m.memory_type.as_str(),
                        crate::time::age(m.created_at_ms, now),
                        first_line(&m.content, 90)
                    );
                }
            },
        ),
        MemoryCommand::List { limit } => out.show(
            Request::MemoryList { limit: Some(limit) },
            |memories: Vec<MemoryRow>| {
                if memories.is_empty() {
                    println!("no memories yet");
                }
                for m in &memories {
                    println!(
                        "{:>5} {:<18} {:>4} {}",
                        m.id,
                        m.memory_type.as_str(),
                        crate::time::age(m.created_at_ms, now),
                        first_line(&m.content, 90)
                    );
                }
            },
        ),
        MemoryCommand::Export { out: file } => {
            let (_, memories) = out.ask::<Vec<serde_json::Value>>(Request::MemoryExport)?;
            let mut text = String::new();
            for m in &memories {
                text.push_str(&serde_json::to_string(m)?);
                text.push('\n');
            }
            match file {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("exported {} memories to {}", memories.len(), path.display());
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        MemoryCommand::Import { file } => import(out, &file),
        MemoryCommand::Delete { id } => out.show(Request::MemoryDelete { id }, |d: Deleted| {
            println!("deleted memory {}", d.deleted)
        }),
        MemoryCommand::Save {
            content,
            memory_type,
            tags,
            related_files,
        } => out.show(
            Request::MemorySave {
                content,
                memory_type,
                tags,
                related_files,
            },
            |saved: Saved| match saved {
                Saved::Duplicate { id, similarity } => println!(
                    "not stored: memory {id} already says this (similarity {similarity:.2})"
                ),
                Saved::Pending { id } => {
                    println!("saved memory {id}; it becomes searchable once the embedder answers")
                }
                Saved::Stored { id } => println!("saved memory {id}"),
            },
        ),
        MemoryCommand::Reindex => {
            // One request does the whole job; say up front what it will take.
            if !out.json
                && let Ok((_, status)) = out.ask::<Status>(Request::Status)
                && status.memory.pending > 0
            {
                eprintln!(
                    "embedding {} memories with {}, then rebuilding the index…",
                    status.memory.pending, status.memory.embedder
                );
            }
            let started = std::time::Instant::now();
            out.show(Request::MemoryReindex, |r: ReindexReport| {
                println!(
                    "embedded {} memories; {} indexed with {} in {:.1} s",
                    r.embedded,
                    r.indexed,
                    r.embedder,
                    started.elapsed().as_secs_f64()
                );
            })
        }
    }
}

/// Imports an export file in batches the coordinator accepts, with progress for big files.
fn import(out: &Output, file: &std::path::Path) -> Result<()> {
    let memories = read_export(file)?;
    let total = memories.len();
    let mut sum = ImportReport::default();
    let mut done = 0;
    for batch in import_batches(memories) {
        done += batch.len();
        let (_, r) = out.ask::<ImportReport>(Request::MemoryImport { memories: batch })?;
        sum.stored += r.stored;
        sum.duplicates += r.duplicates;
        sum.pending += r.pending;
        if total > 100 {
            eprintln!("imported {done}/{total}");
        }
    }
    if out.json {
        print_json(&serde_json::to_value(&sum)?);
    } else {
        println!(
            "imported {total} memories: {} stored, {} already known, {} pending",
            sum.stored, sum.duplicates, sum.pending
        );
    }
    Ok(())
}

/// The memories of an export file, each checked, or an error naming the first bad line.
fn read_export(path: &std::path::Path) -> Result<Vec<ImportedMemory>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let m: ImportedMemory = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: not a memory (expected one JSON object per line, as `memory export` writes)",
                path.display(),
                i + 1
            )
        })?;
        m.check()
            .map_err(|e| anyhow::anyhow!("{} line {}: {e}", path.display(), i + 1))?;
        out.push(m);
    }
    Ok(out)
}

/// Splits an import into requests the coordinator takes: at most 100 memories and about 256 KiB
/// of text each (a control request may be 1 MiB); a bigger memory goes alone.
fn import_batches(memories: Vec<ImportedMemory>) -> Vec<Vec<ImportedMemory>> {
    let mut batches: Vec<Vec<ImportedMemory>> = Vec::new();
    let mut bytes = 0;
    for m in memories {
        let size = m.content.len()
            + m.tags
                .iter()
                .chain(&m.related_files)
                .map(String::len)
                .sum::<usize>()
            + 100;
        match batches.last_mut() {
            Some(batch) if batch.len() < 100 && bytes + size <= 256 * 1024 => {
                bytes += size;
                batch.push(m);
            }
            _ => {
                bytes = size;
                batches.push(vec![m]);
            }
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(bytes: usize) -> ImportedMemory {
        ImportedMemory {
            content: "x".repeat(bytes),
            memory_type: "learning".into(),
            tags: Vec::new(),
            related_files: Vec::new(),
            created_at_ms: None,
        }
    }

    #[test]
    fn imports_go_in_requests_the_coordinator_accepts() {
        let sizes =
            |b: Vec<Vec<ImportedMemory>>| -> Vec<usize> { b.iter().map(Vec::len).collect() };
        assert_eq!(
            sizes(import_batches((0..250).map(|_| memory(10)).collect())),
            vec![100, 100, 50]
        );
        // 100 KiB each: two fit in 256 KiB, the third starts a new request.
        assert_eq!(
            sizes(import_batches((0..5).map(|_| memory(100 * 1024)).collect())),
            vec![2, 2, 1]
        );
        assert_eq!(
            sizes(import_batches(vec![
                memory(10),
                memory(600 * 1024),
                memory(10)
            ])),
            vec![1, 1, 1],
            "a big memory goes alone"
        );
        assert!(import_batches(Vec::new()).is_empty());
    }
}
