//! Agent worktrees: one git worktree and branch per agent, its checkpoints, and merging its branch
//! back into the base branch. The only module that touches git, and only through git2.
//!
//! A merge is computed in memory and moves the target branch's ref. When the user has that branch
//! checked out, a moved ref alone would leave their index and files behind the branch (and a
//! `git commit -a` would revert the agents' work), so the merge also updates the files it changed,
//! in the working tree and the index, and only when the user has no change of their own, staged
//! or not, on any of them; otherwise it waits (`MergeOutcome::Waiting`) and changes nothing. Git's
//! own answer to a push into a checked-out branch (`receive.denyCurrentBranch = updateInstead`) is
//! the same idea, stricter: it refuses any change at all. Files the merge did not change are never
//! written.
//!
//! Every call opens the repository afresh, because `git2::Repository` is not `Sync` and a fresh
//! handle sees refs the user's own git moved in the meantime. Every call blocks: async callers run
//! them on `spawn_blocking`.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result, bail};
use git2::{
    BranchType, ErrorCode, IndexAddOption, Oid, Repository, Signature, WorktreeAddOptions,
    WorktreePruneOptions,
};

/// Agent branches live under their own namespace so they never collide with the user's.
const BRANCH_PREFIX: &str = "hephaestus/agent-";
/// The directory name under `base_dir` and the worktree's name in git's metadata.
const NAME_PREFIX: &str = "agent-";
/// Kept in the worktree's private git dir (pruned with it): the files `create` copied in, which
/// `checkpoint` must never commit, since they are the user's local secrets and settings.
const COPIED_LIST: &str = "hephaestus-copied";
/// The hint every "no usable base branch" error ends with.
const BASE_BRANCH_HINT: &str = "set `base_branch` to the branch agents should start from";

/// The agent worktrees of one repository.
#[derive(Debug)]
pub struct Worktrees {
    /// The main repository's git dir, even when `open` was given a path inside a linked worktree.
    git_dir: PathBuf,
    /// Canonical, so paths compare equal to the ones libgit2 records.
    base_dir: PathBuf,
    /// Merges read the target, compute, then move it: two at once would lose one of them.
    merge_lock: Mutex<()>,
    /// Adds and removals of worktrees, one at a time. libgit2 refuses a worktree add or a
    /// branch delete as "already checked out" when another worktree's metadata is half
    /// written or half removed at that moment (`git_repository_foreach_worktree` turns any
    /// failed lookup into "found"), so parallel launches failed at random.
    admin_lock: Mutex<()>,
}

/// Where a new worktree starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseRef {
    /// A local branch's short name.
    Branch(String),
    /// A full hex commit id.
    Commit(String),
}

/// An agent's work as it stands (`Worktrees::snapshot`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The tree its files make now.
    pub tree: String,
    /// Where it started.
    pub base_commit: String,
    /// The paths that differ from there, sorted.
    pub changed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeInfo {
    pub path: PathBuf,
    pub branch: String,
    pub base_commit: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The branch has nothing the target lacks.
    UpToDate,
    FastForward {
        commit: String,
    },
    Merged {
        commit: String,
    },
    /// Nothing was changed; these paths conflict.
    Conflict {
        files: Vec<String>,
    },
    /// Nothing was changed: the target is checked out in the user's working tree, and these
    /// paths of the merge have changes of the user's own there.
    Waiting {
        files: Vec<String>,
    },
}

impl Worktrees {
    /// `repo` is the user's repository (any path inside it); `base_dir` is where agent worktrees
    /// go (created if missing).
    pub fn open(repo: &Path, base_dir: &Path) -> Result<Worktrees> {
        let found = Repository::discover(repo)
            .with_context(|| format!("no git repository at {}", repo.display()))?;
        // From inside a linked worktree, discover finds that worktree; the agents' worktrees
        // belong to the repository they all share.
        let git_dir = fs::canonicalize(found.commondir())
            .with_context(|| format!("resolving git dir {}", found.commondir().display()))?;
        fs::create_dir_all(base_dir)
            .with_context(|| format!("creating worktree dir {}", base_dir.display()))?;
        let base_dir = fs::canonicalize(base_dir)
            .with_context(|| format!("resolving worktree dir {}", base_dir.display()))?;
        let worktrees = Worktrees {
            git_dir,
            base_dir,
            merge_lock: Mutex::new(()),
            admin_lock: Mutex::new(()),
        };
        worktrees.repo()?;
        Ok(worktrees)
    }

    /// The branch the user's HEAD is on (short name, e.g. "main" or "trunk"); an error that says
    /// to set `base_branch` when HEAD is detached or unborn.
    pub fn current_branch(&self) -> Result<String> {
        let repo = self.repo()?;
        let head = repo
            .find_reference("HEAD")
            .with_context(|| format!("reading HEAD of {}", self.git_dir.display()))?;
        let target = head
            .symbolic_target()
            .with_context(|| format!("HEAD of {} is not utf-8", self.git_dir.display()))?;
        let Some(target) = target else {
            bail!(
                "HEAD of {} is detached, so there is no current branch; {BASE_BRANCH_HINT}",
                self.git_dir.display()
            );
        };
        let Some(name) = target.strip_prefix("refs/heads/") else {
            bail!("HEAD points at {target}, not a local branch; {BASE_BRANCH_HINT}");
        };
        match repo.find_reference(target) {
            Ok(_) => Ok(name.to_string()),
            Err(err) if err.code() == ErrorCode::NotFound => {
                bail!("branch {name} has no commits yet; {BASE_BRANCH_HINT}")
            }
            Err(err) => Err(err).with_context(|| format!("reading branch {name}")),
        }
    }

    /// Creates branch `hephaestus/agent-<id8>` at `base` and a worktree `<base_dir>/agent-<id8>`
    /// checked out on it, then copies each path in `copy_untracked` (relative to the repo's
    /// workdir) into it when it exists there. A copy never replaces a file the checkout wrote, and
    /// `checkpoint` never commits a copied file. Fails if the branch or directory already exists.
    pub fn create(
        &self,
        id8: &str,
        base: &BaseRef,
        copy_untracked: &[String],
    ) -> Result<WorktreeInfo> {
        check_id(id8)?;
        let copies = copy_untracked
            .iter()
            .map(|rel| check_relative(rel))
            .collect::<Result<Vec<_>>>()?;
        let repo = self.repo()?;
        let name = format!("{NAME_PREFIX}{id8}");
        let branch = format!("{BRANCH_PREFIX}{id8}");
        let path = self.base_dir.join(&name);

        let commit = resolve_base(&repo, base)?;
        let _admin = self
            .admin_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if repo.find_branch(&branch, BranchType::Local).is_ok() {
            bail!("branch {branch} already exists");
        }
        if path.symlink_metadata().is_ok() {
            bail!("worktree dir {} already exists", path.display());
        }
        self.clear_stale_metadata(&repo, &name)?;
        // Someone may have cleaned the data dir since `open`.
        fs::create_dir_all(&self.base_dir)
            .with_context(|| format!("creating worktree dir {}", self.base_dir.display()))?;

        let created = repo
            .branch(&branch, &commit, false)
            .with_context(|| format!("creating branch {branch}"))?;
        let added = self.add_worktree(&repo, &name, &path, created.get(), &copies);
        if let Err(err) = added {
            // Everything that exists now was made by this call (checked above), so undo it all
            // and let a retry with the same id start clean.
            self.discard(&repo, &name, &path, &branch);
            return Err(err);
        }
        Ok(WorktreeInfo {
            path,
            branch,
            base_commit: commit.id().to_string(),
        })
    }

    /// Stages everything in the worktree (new, modified, deleted files; respecting .gitignore)
    /// and commits on its branch if anything changed. Returns the new commit id, or None when
    /// clean. Signature: the repo's configured user if any, else "Hephaestus <hephaestus@localhost>".
    pub fn checkpoint(&self, worktree: &Path, message: &str) -> Result<Option<String>> {
        let (repo, mut index) = self.staged(worktree)?;
        index
            .write()
            .with_context(|| format!("writing the index of {}", worktree.display()))?;
        let tree_id = index
            .write_tree()
            .with_context(|| format!("writing the tree of {}", worktree.display()))?;

        let parent = match repo.head() {
            Ok(head) => Some(
                head.peel_to_commit()
                    .with_context(|| format!("reading HEAD of {}", worktree.display()))?,
            ),
            Err(err) if err.code() == ErrorCode::UnbornBranch => None,
            Err(err) => {
                return Err(err).with_context(|| format!("reading HEAD of {}", worktree.display()));
            }
        };
        let unchanged = match &parent {
            Some(parent) => parent.tree_id() == tree_id,
            None => index.is_empty(),
        };
        if unchanged {
            return Ok(None);
        }
        let tree = repo
            .find_tree(tree_id)
            .with_context(|| format!("reading tree {tree_id}"))?;
        let sig = signature(&repo)?;
        let parents: Vec<_> = parent.iter().collect();
        let id = repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .with_context(|| format!("committing in {}", worktree.display()))?;
        Ok(Some(id.to_string()))
    }

    /// Merges `branch` into `target` entirely in memory, serialized with other merges: a
    /// fast-forward when target is an ancestor of branch, a merge commit (two parents, message
    /// `message`) when both moved and nothing conflicts, and Conflict (sorted, deduplicated paths)
    /// with no change at all otherwise. Moves only `refs/heads/<target>`; never touches any
    /// working tree, index or HEAD.
    pub fn merge(&self, branch: &str, target: &str, message: &str) -> Result<MergeOutcome> {
        let _serialized = self
            .merge_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let repo = self.repo()?;
        let theirs = branch_tip(&repo, branch)?;
        let ours = branch_tip(&repo, target)?;
        let (theirs_id, ours_id) = (theirs.id(), ours.id());
        let target_ref = format!("refs/heads/{target}");

        if theirs_id == ours_id
            || repo
                .graph_descendant_of(ours_id, theirs_id)
                .with_context(|| format!("comparing {branch} with {target}"))?
        {
            return Ok(MergeOutcome::UpToDate);
        }
        if repo
            .graph_descendant_of(theirs_id, ours_id)
            .with_context(|| format!("comparing {branch} with {target}"))?
        {
            if let Some(files) = update_checkout(&repo, &target_ref, &ours, &theirs)? {
                return Ok(MergeOutcome::Waiting { files });
            }
            let log = format!("hephaestus: fast-forward {target} to {branch}");
            move_ref(&repo, &target_ref, theirs_id, ours_id, &log)?;
            return Ok(MergeOutcome::FastForward {
                commit: theirs_id.to_string(),
            });
        }
        match repo.merge_base(ours_id, theirs_id) {
            Ok(_) => {}
            Err(err) if err.code() == ErrorCode::NotFound => {
                bail!("branches {branch} and {target} share no history")
            }
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("finding the merge base of {branch} and {target}"));
            }
        }

        let mut merged = repo
            .merge_commits(&ours, &theirs, None)
            .with_context(|| format!("merging {branch} into {target}"))?;
        if merged.has_conflicts() {
            let mut files = Vec::new();
            for conflict in merged
                .conflicts()
                .with_context(|| format!("listing conflicts of {branch} into {target}"))?
            {
                let conflict = conflict
                    .with_context(|| format!("listing conflicts of {branch} into {target}"))?;
                let entry = conflict.our.or(conflict.their).or(conflict.ancestor);
                if let Some(entry) = entry {
                    files.push(String::from_utf8_lossy(&entry.path).into_owned());
                }
            }
            files.sort();
            files.dedup();
            return Ok(MergeOutcome::Conflict { files });
        }
        let tree_id = merged
            .write_tree_to(&repo)
            .with_context(|| format!("writing the merged tree of {branch} into {target}"))?;
        let tree = repo
            .find_tree(tree_id)
            .with_context(|| format!("reading tree {tree_id}"))?;
        let sig = signature(&repo)?;
        let commit = repo
            .commit(None, &sig, &sig, message, &tree, &[&ours, &theirs])
            .with_context(|| format!("committing the merge of {branch} into {target}"))?;
        let merged_commit = repo
            .find_commit(commit)
            .with_context(|| format!("reading commit {commit}"))?;
        if let Some(files) = update_checkout(&repo, &target_ref, &ours, &merged_commit)? {
            return Ok(MergeOutcome::Waiting { files });
        }
        let log = format!("hephaestus: merge {branch} into {target}");
        move_ref(&repo, &target_ref, commit, ours_id, &log)?;
        Ok(MergeOutcome::Merged {
            commit: commit.to_string(),
        })
    }

    /// An agent's work as it stands, committed or not, for the conductor: the tree its files
    /// make now (written to the object store; its index on disk is left as it is) and the paths
    /// that differ from the commit it started from.
    pub fn snapshot(&self, worktree: &Path, base_commit: &str) -> Result<Snapshot> {
        // The index in memory only (it is not written back): what the agent staged stays.
        let (repo, mut index) = self.staged(worktree)?;
        let tree_id = index
            .write_tree()
            .with_context(|| format!("writing the tree of {}", worktree.display()))?;
        let base = repo
            .find_commit(Oid::from_str(base_commit).context("a base commit id")?)
            .with_context(|| format!("reading base commit {base_commit}"))?;
        let tree = repo.find_tree(tree_id)?;
        let diff = repo
            .diff_tree_to_tree(Some(&base.tree()?), Some(&tree), None)
            .with_context(|| format!("comparing {} with its base", worktree.display()))?;
        let mut changed: Vec<String> = diff
            .deltas()
            .filter_map(|d| d.new_file().path().or_else(|| d.old_file().path()))
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        changed.sort();
        changed.dedup();
        Ok(Snapshot {
            tree: tree_id.to_string(),
            base_commit: base_commit.to_string(),
            changed,
        })
    }

    /// The paths on which merging two agents' work, as it stands, would conflict: the two
    /// trees merged in memory over the merge base of where they started. Nothing is written
    /// but objects.
    pub fn forecast_conflicts(&self, a: &Snapshot, b: &Snapshot) -> Result<Vec<String>> {
        let repo = self.repo()?;
        let (base_a, base_b) = (
            Oid::from_str(&a.base_commit)?,
            Oid::from_str(&b.base_commit)?,
        );
        let ancestor = repo
            .merge_base(base_a, base_b)
            .with_context(|| format!("the merge base of {base_a} and {base_b}"))?;
        let ancestor = repo.find_commit(ancestor)?.tree()?;
        let (tree_a, tree_b) = (
            repo.find_tree(Oid::from_str(&a.tree)?)?,
            repo.find_tree(Oid::from_str(&b.tree)?)?,
        );
        let merged = repo
            .merge_trees(&ancestor, &tree_a, &tree_b, None)
            .context("merging the two agents' trees")?;
        let mut files = Vec::new();
        if merged.has_conflicts() {
            for conflict in merged.conflicts()? {
                let conflict = conflict?;
                if let Some(entry) = conflict.our.or(conflict.their).or(conflict.ancestor) {
                    files.push(String::from_utf8_lossy(&entry.path).into_owned());
                }
            }
        }
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// An agent worktree's repository and its index with every file staged, in memory: new,
    /// modified and deleted files, not ignored or copied ones. Only a linked worktree of this
    /// repository is accepted: staging "everything" in the user's own checkout would be a
    /// disaster.
    fn staged(&self, worktree: &Path) -> Result<(Repository, git2::Index)> {
        let repo = Repository::open(worktree)
            .with_context(|| format!("no git worktree at {}", worktree.display()))?;
        let same_repo = fs::canonicalize(repo.commondir()).is_ok_and(|dir| dir == self.git_dir);
        if !repo.is_worktree() || !same_repo {
            bail!(
                "{} is not an agent worktree of {}",
                worktree.display(),
                self.git_dir.display()
            );
        }
        for rule in copied_ignore_rules(&repo)? {
            repo.add_ignore_rule(&rule)
                .with_context(|| format!("ignoring copied file in {}", worktree.display()))?;
        }
        let mut index = repo
            .index()
            .with_context(|| format!("reading the index of {}", worktree.display()))?;
        index
            .add_all(["*"], IndexAddOption::DEFAULT, None)
            .with_context(|| format!("staging files in {}", worktree.display()))?;
        // add_all stages new and modified files but leaves deleted ones in the index.
        index
            .update_all(["*"], None)
            .with_context(|| format!("staging deletions in {}", worktree.display()))?;
        Ok((repo, index))
    }

    /// The commit a branch points at (full hex).
    pub fn branch_commit(&self, branch: &str) -> Result<String> {
        let repo = self.repo()?;
        Ok(branch_tip(&repo, branch)?.id().to_string())
    }

    /// Removes the worktree (its directory and git's worktree metadata) and, if `delete_branch`,
    /// the branch. Idempotent: a missing worktree is not an error.
    pub fn remove(&self, id8: &str, delete_branch: bool) -> Result<()> {
        check_id(id8)?;
        let repo = self.repo()?;
        let name = format!("{NAME_PREFIX}{id8}");
        let path = self.base_dir.join(&name);
        let _admin = self
            .admin_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);

        let metadata = self.git_dir.join("worktrees").join(&name);
        match repo.find_worktree(&name) {
            Ok(worktree) => {
                let mut opts = WorktreePruneOptions::new();
                opts.valid(true).working_tree(true);
                // With `valid` set, only a lock stops a prune, and a lock is someone saying "keep
                // this" (a worktree on a removable disk, say).
                let prunable = worktree
                    .is_prunable(Some(&mut opts))
                    .with_context(|| format!("checking worktree {name}"))?;
                if !prunable {
                    bail!(
                        "worktree {name} is locked; unlock it with `git worktree unlock {}`",
                        worktree.path().display()
                    );
                }
                worktree
                    .prune(Some(&mut opts))
                    .with_context(|| format!("removing worktree {name}"))?;
            }
            // libgit2 reports a missing worktree as a generic error, so look at the metadata
            // itself: gone means already removed; present but unreadable is ours to delete.
            Err(_) if !metadata.exists() => {}
            Err(_) => fs::remove_dir_all(&metadata)
                .with_context(|| format!("removing worktree metadata {}", metadata.display()))?,
        }
        match fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).with_context(|| format!("removing {}", path.display()));
            }
        }

        if delete_branch {
            let branch = format!("{BRANCH_PREFIX}{id8}");
            match repo.find_branch(&branch, BranchType::Local) {
                Ok(mut found) => found
                    .delete()
                    .with_context(|| format!("deleting branch {branch}"))?,
                Err(err) if err.code() == ErrorCode::NotFound => {}
                Err(err) => return Err(err).with_context(|| format!("reading branch {branch}")),
            }
        }
        Ok(())
    }

    /// Agent worktrees that exist under base_dir or in git's worktree list, as (id8, path),
    /// sorted by id.
    pub fn list(&self) -> Result<Vec<(String, PathBuf)>> {
        let repo = self.repo()?;
        let mut found = BTreeMap::new();
        let names = repo
            .worktrees()
            .with_context(|| format!("listing worktrees of {}", self.git_dir.display()))?;
        // Names that are not utf-8 cannot be ours.
        for name in names.iter().filter_map(|name| name.ok().flatten()) {
            let Some(id8) = name.strip_prefix(NAME_PREFIX) else {
                continue;
            };
            if check_id(id8).is_err() {
                continue;
            }
            let path = match repo.find_worktree(name) {
                Ok(worktree) => worktree.path().to_path_buf(),
                Err(_) => self.base_dir.join(name),
            };
            found.insert(id8.to_string(), path);
        }

        let entries = match fs::read_dir(&self.base_dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == ErrorKind::NotFound => {
                return Ok(found.into_iter().collect());
            }
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("reading worktree dir {}", self.base_dir.display()));
            }
        };
        for entry in entries {
            let entry = entry
                .with_context(|| format!("reading worktree dir {}", self.base_dir.display()))?;
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            let file_name = entry.file_name();
            let Some(id8) = file_name
                .to_str()
                .and_then(|name| name.strip_prefix(NAME_PREFIX))
            else {
                continue;
            };
            if is_dir && check_id(id8).is_ok() {
                found.entry(id8.to_string()).or_insert_with(|| entry.path());
            }
        }
        Ok(found.into_iter().collect())
    }

    fn repo(&self) -> Result<Repository> {
        Repository::open(&self.git_dir)
            .with_context(|| format!("opening git repository {}", self.git_dir.display()))
    }

    /// Adds the worktree on the already created branch, puts the files on disk and copies the
    /// user's untracked files in.
    fn add_worktree(
        &self,
        repo: &Repository,
        name: &str,
        path: &Path,
        branch: &git2::Reference<'_>,
        copies: &[PathBuf],
    ) -> Result<()> {
        let mut opts = WorktreeAddOptions::new();
        opts.reference(Some(branch));
        repo.worktree(name, path, Some(&opts))
            .with_context(|| format!("adding worktree {name} at {}", path.display()))?;
        let worktree = Repository::open(path)
            .with_context(|| format!("opening worktree {}", path.display()))?;

        let Some(workdir) = repo.workdir() else {
            return Ok(());
        };
        let mut copied = Vec::new();
        for rel in copies {
            copy_entry(&workdir.join(rel), &path.join(rel), rel, &mut copied)?;
        }
        if !copied.is_empty() {
            let list = worktree.path().join(COPIED_LIST);
            let text: String = copied.iter().map(|rel| format!("{rel}\n")).collect();
            fs::write(&list, text).with_context(|| format!("writing {}", list.display()))?;
        }
        Ok(())
    }

    /// Metadata for `name` whose directory is gone (say, deleted by hand) would make the add fail
    /// halfway; anything else registered under the name is refused.
    fn clear_stale_metadata(&self, repo: &Repository, name: &str) -> Result<()> {
        if let Ok(worktree) = repo.find_worktree(name) {
            let stale = worktree
                .is_prunable(None)
                .with_context(|| format!("checking worktree {name}"))?;
            if !stale {
                bail!(
                    "git already has a worktree named {name} at {}",
                    worktree.path().display()
                );
            }
            worktree
                .prune(None)
                .with_context(|| format!("pruning stale worktree {name}"))?;
        }
        let metadata = self.git_dir.join("worktrees").join(name);
        if metadata.exists() {
            bail!(
                "unreadable worktree metadata at {}; run `git worktree prune`",
                metadata.display()
            );
        }
        Ok(())
    }

    /// Best-effort undo of a half-made `create`; the original error is the one worth reporting.
    fn discard(&self, repo: &Repository, name: &str, path: &Path, branch: &str) {
        let metadata = self.git_dir.join("worktrees").join(name);
        for dir in [&metadata, path] {
            if let Err(err) = fs::remove_dir_all(dir)
                && err.kind() != ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), "undoing a failed worktree: {err}");
            }
        }
        if let Ok(mut found) = repo.find_branch(branch, BranchType::Local)
            && let Err(err) = found.delete()
        {
            tracing::warn!(branch, "undoing a failed worktree: {err}");
        }
    }
}

/// Ids become directory, worktree and branch names, so they must not carry path separators.
fn check_id(id8: &str) -> Result<()> {
    let valid = !id8.is_empty()
        && id8.len() <= 64
        && id8
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        bail!("invalid agent id {id8:?}: use 1 to 64 letters, digits, '-' or '_'");
    }
    Ok(())
}

/// A copy must stay inside both trees, and must not overwrite the worktree's `.git` link.
fn check_relative(rel: &str) -> Result<PathBuf> {
    let mut clean = PathBuf::new();
    for component in Path::new(rel).components() {
        match component {
            Component::Normal(part) if part == ".git" => {
                bail!("cannot copy {rel:?} into a worktree: it is inside .git")
            }
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            _ => bail!("cannot copy {rel:?} into a worktree: use a path inside the repository"),
        }
    }
    if clean.as_os_str().is_empty() {
        bail!("cannot copy {rel:?} into a worktree: use a path inside the repository");
    }
    Ok(clean)
}

fn resolve_base<'r>(repo: &'r Repository, base: &BaseRef) -> Result<git2::Commit<'r>> {
    match base {
        BaseRef::Branch(name) => branch_tip(repo, name),
        BaseRef::Commit(hex) => {
            // Oid::from_str zero-pads a short id, which would name some other object.
            let full = matches!(hex.len(), 40 | 64) && hex.bytes().all(|b| b.is_ascii_hexdigit());
            if !full {
                bail!("base commit {hex:?} is not a full hex commit id");
            }
            let id = Oid::from_str(hex).with_context(|| format!("parsing commit id {hex}"))?;
            repo.find_commit(id)
                .with_context(|| format!("base commit {hex} not found"))
        }
    }
}

fn branch_tip<'r>(repo: &'r Repository, branch: &str) -> Result<git2::Commit<'r>> {
    let found = repo
        .find_branch(branch, BranchType::Local)
        .with_context(|| format!("branch {branch} not found"))?;
    found
        .get()
        .peel_to_commit()
        .with_context(|| format!("branch {branch} does not point at a commit"))
}

/// Moves `name` from `from` to `to`, failing rather than overwriting if someone else moved it
/// since we read it (the user committing on the base branch mid-merge).
/// When `target_ref` is checked out in the user's working tree: checks that no path `from → to`
/// changes has a change of the user's own, staged or not, and if so writes those paths, files
/// and index entries, as of `to`. Returns the paths in the way when it may not;
/// then nothing was written. A target that is not checked out needs nothing.
fn update_checkout(
    repo: &Repository,
    target_ref: &str,
    from: &git2::Commit<'_>,
    to: &git2::Commit<'_>,
) -> Result<Option<Vec<String>>> {
    if repo.is_bare() {
        return Ok(None);
    }
    let head = repo.find_reference("HEAD").context("reading HEAD")?;
    if head.symbolic_target().ok().flatten() != Some(target_ref) {
        return Ok(None);
    }
    let workdir = repo
        .workdir()
        .map(Path::to_path_buf)
        .context("the repository has no working tree")?;
    let (old_tree, new_tree) = (
        from.tree().context("reading the target's tree")?,
        to.tree().context("reading the merged tree")?,
    );
    let diff = repo
        .diff_tree_to_tree(Some(&old_tree), Some(&new_tree), None)
        .context("listing what the merge changes")?;
    let mut changed = std::collections::BTreeSet::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(p) = file.path().and_then(Path::to_str) {
                changed.insert(p.to_string());
            }
        }
    }
    let mut in_the_way = Vec::new();
    if repo.state() != git2::RepositoryState::Clean || repo.index().is_ok_and(|i| i.has_conflicts())
    {
        in_the_way.push(format!(
            "{} (a git operation is in progress)",
            workdir.display()
        ));
    }
    if changed.is_empty() {
        return Ok((!in_the_way.is_empty()).then_some(in_the_way));
    }
    // Only the merge's own paths are looked at: a status of the whole tree costs tens of
    // milliseconds on a few thousand files, and changes to other paths stay as they are.
    let mut options = git2::StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .exclude_submodules(true)
        .disable_pathspec_match(true);
    for path in &changed {
        options.pathspec(path);
    }
    let statuses = repo
        .statuses(Some(&mut options))
        .with_context(|| format!("reading the status of {}", workdir.display()))?;
    for entry in statuses.iter() {
        let Ok(path) = entry.path() else { continue };
        if !entry.status().is_ignored() && changed.contains(path) {
            in_the_way.push(path.to_string());
        }
    }
    // A new file of the merge may land where the user keeps an ignored file.
    for path in &changed {
        if new_tree.get_path(Path::new(path)).is_ok()
            && old_tree.get_path(Path::new(path)).is_err()
            && workdir.join(path).symlink_metadata().is_ok()
        {
            in_the_way.push(path.clone());
        }
    }
    if !in_the_way.is_empty() {
        in_the_way.sort();
        in_the_way.dedup();
        return Ok(Some(in_the_way));
    }
    let mut checkout = git2::build::CheckoutBuilder::new();
    checkout.safe();
    for path in &changed {
        checkout.path(path);
    }
    repo.checkout_tree(to.as_object(), Some(&mut checkout))
        .with_context(|| format!("updating the merged files in {}", workdir.display()))?;
    Ok(None)
}

fn move_ref(repo: &Repository, name: &str, to: Oid, from: Oid, log: &str) -> Result<()> {
    match repo.reference_matching(name, to, true, from, log) {
        Ok(_) => Ok(()),
        Err(err) if err.code() == ErrorCode::Modified => {
            bail!("{name} moved while merging into it; nothing was changed, try again")
        }
        Err(err) => Err(err).with_context(|| format!("moving {name} to {to}")),
    }
}

fn signature(repo: &Repository) -> Result<Signature<'static>> {
    repo.signature()
        .or_else(|_| Signature::now("Hephaestus", "hephaestus@localhost"))
        .context("making a commit signature")
}

/// Copies `src` to `dst` (files, symlinks, directories recursively), skipping a missing `src` and
/// never replacing what is already at `dst`. Records each copied file's repo-relative path.
fn copy_entry(src: &Path, dst: &Path, rel: &Path, copied: &mut Vec<String>) -> Result<()> {
    let meta = match src.symlink_metadata() {
        Ok(meta) => meta,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("reading {}", src.display())),
    };
    if meta.is_dir() {
        fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
        let entries = fs::read_dir(src).with_context(|| format!("reading {}", src.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", src.display()))?;
            let file_name = entry.file_name();
            copy_entry(
                &entry.path(),
                &dst.join(&file_name),
                &rel.join(&file_name),
                copied,
            )?;
        }
        return Ok(());
    }
    if dst.symlink_metadata().is_ok() {
        return Ok(());
    }
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    if meta.file_type().is_symlink() {
        let link = fs::read_link(src).with_context(|| format!("reading {}", src.display()))?;
        std::os::unix::fs::symlink(&link, dst)
            .with_context(|| format!("linking {}", dst.display()))?;
    } else {
        fs::copy(src, dst)
            .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    }
    let Some(rel) = rel.to_str() else {
        bail!("cannot copy {}: its name is not utf-8", src.display());
    };
    copied.push(rel.to_string());
    Ok(())
}

/// Ignore rules, anchored at the worktree root, for the files `create` copied in.
fn copied_ignore_rules(repo: &Repository) -> Result<Vec<String>> {
    let list = repo.path().join(COPIED_LIST);
    let text = match fs::read_to_string(&list) {
        Ok(text) => text,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("reading {}", list.display())),
    };
    Ok(text
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            // Escape everything gitignore would read as a pattern, so the rule names one file.
            let mut rule = String::from("/");
            for ch in line.chars() {
                if matches!(ch, '\\' | '*' | '?' | '[' | ']' | '!' | '#' | ' ') {
                    rule.push('\\');
                }
                rule.push(ch);
            }
            rule
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Once};

    use git2::{ConfigLevel, RepositoryInitOptions, Time};
    use tempfile::TempDir;

    use super::*;

    const ID: &str = "abcd1234";

    /// libgit2 reads the developer's ~/.gitconfig (user.name, excludesFile, ...); point every
    /// config level at nothing so the tests see only what they set up.
    fn hermetic() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            for level in [ConfigLevel::System, ConfigLevel::XDG, ConfigLevel::Global] {
                // SAFETY: every test calls this before any other libgit2 use, and `Once` makes the
                // others wait until it returns, so nothing reads the search path concurrently.
                unsafe { git2::opts::set_search_path(level, "/nonexistent/hephaestus-test") }
                    .expect("set git config search path");
            }
        });
    }

    fn sig() -> Signature<'static> {
        Signature::new("Test", "test@example.com", &Time::new(1_700_000_000, 0)).unwrap()
    }

    struct Fixture {
        _tmp: TempDir,
        workdir: PathBuf,
        base_dir: PathBuf,
        repo: Repository,
        wt: Worktrees,
    }

    /// A repo on branch "trunk" with a.txt, sub/b.txt and a .gitignore, one commit.
    fn fixture() -> Fixture {
        hermetic();
        let tmp = TempDir::new().unwrap();
        let workdir = tmp.path().join("repo");
        let base_dir = tmp.path().join("data/worktrees");
        let repo =
            Repository::init_opts(&workdir, RepositoryInitOptions::new().initial_head("trunk"))
                .unwrap();
        write(&workdir, "a.txt", "one\ntwo\nthree\n");
        write(&workdir, "sub/b.txt", "bee\n");
        write(&workdir, ".gitignore", ".env\n*.log\n");
        commit_workdir(&repo, "initial");
        let wt = Worktrees::open(&workdir.join("sub"), &base_dir).unwrap();
        Fixture {
            _tmp: tmp,
            workdir,
            base_dir,
            repo,
            wt,
        }
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn read(dir: &Path, rel: &str) -> String {
        fs::read_to_string(dir.join(rel)).unwrap()
    }

    /// Commits the whole working tree of `repo` on its HEAD, the way a person would.
    fn commit_workdir(repo: &Repository, message: &str) -> Oid {
        let mut index = repo.index().unwrap();
        index.add_all(["*"], IndexAddOption::DEFAULT, None).unwrap();
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let parent = repo.head().ok().map(|head| head.peel_to_commit().unwrap());
        let parents: Vec<_> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig(), &sig(), message, &tree, &parents)
            .unwrap()
    }

    fn tip(repo: &Repository, branch: &str) -> Oid {
        repo.find_branch(branch, BranchType::Local)
            .unwrap()
            .get()
            .target()
            .unwrap()
    }

    /// The text of `rel` in a commit's tree, or None when the tree lacks it.
    fn blob_at(repo: &Repository, commit: &str, rel: &str) -> Option<String> {
        let commit = repo.find_commit(Oid::from_str(commit).unwrap()).unwrap();
        let entry = commit.tree().unwrap().get_path(Path::new(rel)).ok()?;
        let blob = repo.find_blob(entry.id()).unwrap();
        Some(String::from_utf8(blob.content().to_vec()).unwrap())
    }

    fn create(fx: &Fixture) -> WorktreeInfo {
        fx.wt
            .create(ID, &BaseRef::Branch("trunk".into()), &[])
            .unwrap()
    }

    /// What a merge must leave alone: the user's files, index and HEAD, byte for byte.
    /// The user's checkout as `git status` sees it: (path, status), sorted, untracked included.
    fn changes(fx: &Fixture) -> Vec<(String, git2::Status)> {
        let mut options = git2::StatusOptions::new();
        options.include_untracked(true);
        let mut out: Vec<(String, git2::Status)> = fx
            .repo
            .statuses(Some(&mut options))
            .unwrap()
            .iter()
            .map(|e| (e.path().unwrap().to_string(), e.status()))
            .collect();
        out.sort();
        out
    }

    fn user_side(fx: &Fixture) -> (Vec<u8>, Vec<u8>, Option<String>) {
        let head = fx.repo.find_reference("HEAD").unwrap();
        (
            fs::read(fx.workdir.join("a.txt")).unwrap(),
            fs::read(fx.workdir.join(".git/index")).unwrap(),
            head.symbolic_target().unwrap().map(str::to_string),
        )
    }

    #[test]
    fn create_checks_out_the_current_branch_and_copies_untracked_files() {
        let fx = fixture();
        write(&fx.workdir, ".env", "SECRET=1\n");
        write(&fx.workdir, "config/local.toml", "port = 1\n");
        write(&fx.workdir, "secrets/key", "k\n");
        write(&fx.workdir, "secrets/nested/key2", "k2\n");
        // Tracked, with an uncommitted edit: the agent must start from the commit, not this.
        write(&fx.workdir, "a.txt", "user edit\n");
        let base = fx.wt.current_branch().unwrap();
        assert_eq!(base, "trunk");

        let copy = [
            ".env",
            "./config/local.toml",
            "missing.txt",
            "a.txt",
            "secrets",
        ]
        .map(String::from);
        let info = fx.wt.create(ID, &BaseRef::Branch(base), &copy).unwrap();

        assert_eq!(
            info.path,
            fs::canonicalize(&fx.base_dir)
                .unwrap()
                .join("agent-abcd1234")
        );
        assert_eq!(info.branch, "hephaestus/agent-abcd1234");
        assert_eq!(info.base_commit, tip(&fx.repo, "trunk").to_string());
        assert_eq!(read(&info.path, "a.txt"), "one\ntwo\nthree\n");
        assert_eq!(read(&info.path, "sub/b.txt"), "bee\n");
        assert_eq!(read(&info.path, ".env"), "SECRET=1\n");
        assert_eq!(read(&info.path, "config/local.toml"), "port = 1\n");
        assert_eq!(read(&info.path, "secrets/key"), "k\n");
        assert_eq!(read(&info.path, "secrets/nested/key2"), "k2\n");
        assert!(!info.path.join("missing.txt").exists());

        let agent = Repository::open(&info.path).unwrap();
        assert_eq!(
            agent.head().unwrap().name().unwrap(),
            "refs/heads/hephaestus/agent-abcd1234"
        );
        // Checked out for real: nothing tracked differs, only the copies are untracked.
        let statuses = agent.statuses(None).unwrap();
        let dirty: Vec<_> = statuses
            .iter()
            .filter(|entry| !matches!(entry.status(), git2::Status::WT_NEW | git2::Status::IGNORED))
            .map(|entry| entry.path().unwrap().to_string())
            .collect();
        assert!(dirty.is_empty(), "{dirty:?}");
        assert_eq!(
            fx.wt.list().unwrap(),
            vec![(ID.to_string(), info.path.clone())]
        );

        let again = fx.wt.create(ID, &BaseRef::Branch("trunk".into()), &[]);
        assert!(format!("{:#}", again.unwrap_err()).contains("already exists"));
        // The user's checkout is still on trunk.
        assert_eq!(fx.wt.current_branch().unwrap(), "trunk");
    }

    #[test]
    fn two_agents_work_is_compared_as_it_stands_without_touching_their_index() {
        let fx = fixture();
        let a = fx
            .wt
            .create("aaaa0001", &BaseRef::Branch("trunk".into()), &[])
            .unwrap();
        let b = fx
            .wt
            .create("bbbb0002", &BaseRef::Branch("trunk".into()), &[])
            .unwrap();
        // Both change a.txt's second line, differently, uncommitted; b also adds a file.
        write(&a.path, "a.txt", "one\nTWO (a)\nthree\n");
        write(&b.path, "a.txt", "one\nTWO (b)\nthree\n");
        write(&b.path, "new.txt", "b's\n");
        let index_before =
            fs::read(Repository::open(&a.path).unwrap().path().join("index")).unwrap();
        let sa = fx.wt.snapshot(&a.path, &a.base_commit).unwrap();
        let sb = fx.wt.snapshot(&b.path, &b.base_commit).unwrap();
        assert_eq!(sa.changed, ["a.txt"]);
        assert_eq!(sb.changed, ["a.txt", "new.txt"]);
        assert_eq!(
            fs::read(Repository::open(&a.path).unwrap().path().join("index")).unwrap(),
            index_before,
            "the agent's index is left as it was"
        );
        assert_eq!(fx.wt.forecast_conflicts(&sa, &sb).unwrap(), ["a.txt"]);
        // Changes to different lines of the same file merge cleanly: an overlap, no conflict.
        write(&b.path, "a.txt", "one\ntwo\nthree\nfour (b)\n");
        let sb = fx.wt.snapshot(&b.path, &b.base_commit).unwrap();
        assert!(fx.wt.forecast_conflicts(&sa, &sb).unwrap().is_empty());
        assert!(
            fx.wt
                .snapshot(&fx.workdir, &a.base_commit)
                .unwrap_err()
                .to_string()
                .contains("is not an agent worktree")
        );
    }

    #[test]
    fn create_refuses_bad_ids_and_paths_and_leaves_nothing_behind() {
        let fx = fixture();
        let trunk = BaseRef::Branch("trunk".into());
        for id in ["", "../x", "a/b", "a b"] {
            assert!(fx.wt.create(id, &trunk, &[]).is_err(), "{id:?}");
        }
        for rel in [
            "../outside",
            "/etc/passwd",
            ".git/config",
            ".",
            "sub/../../x",
        ] {
            let err = fx.wt.create(ID, &trunk, &[rel.to_string()]).unwrap_err();
            assert!(format!("{err:#}").contains("cannot copy"), "{rel}: {err:#}");
        }
        let err = fx
            .wt
            .create(ID, &BaseRef::Branch("nope".into()), &[])
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("branch nope not found"),
            "{err:#}"
        );
        assert!(fx.wt.list().unwrap().is_empty());
        assert!(
            fx.repo
                .find_branch("hephaestus/agent-abcd1234", BranchType::Local)
                .is_err()
        );
    }

    #[test]
    fn checkpoint_commits_new_modified_and_deleted_files_but_not_ignored_or_copied_ones() {
        let fx = fixture();
        write(&fx.workdir, ".env", "SECRET=1\n");
        write(&fx.workdir, "local.toml", "mine\n");
        let copy = [".env", "local.toml"].map(String::from);
        let info = fx
            .wt
            .create(ID, &BaseRef::Branch("trunk".into()), &copy)
            .unwrap();

        assert_eq!(fx.wt.checkpoint(&info.path, "nothing").unwrap(), None);

        write(&info.path, "new.txt", "new\n");
        write(&info.path, ".newrc", "dot\n");
        write(&info.path, "deep/er/c.txt", "sea\n");
        write(&info.path, "a.txt", "one\nTWO\nthree\n");
        fs::remove_file(info.path.join("sub/b.txt")).unwrap();
        write(&info.path, "build.log", "noise\n");
        let commit = fx
            .wt
            .checkpoint(&info.path, "agent work")
            .unwrap()
            .expect("a commit");

        assert_eq!(
            blob_at(&fx.repo, &commit, "new.txt").as_deref(),
            Some("new\n")
        );
        assert_eq!(
            blob_at(&fx.repo, &commit, ".newrc").as_deref(),
            Some("dot\n")
        );
        assert_eq!(
            blob_at(&fx.repo, &commit, "deep/er/c.txt").as_deref(),
            Some("sea\n")
        );
        assert_eq!(
            blob_at(&fx.repo, &commit, "a.txt").as_deref(),
            Some("one\nTWO\nthree\n")
        );
        assert_eq!(blob_at(&fx.repo, &commit, "sub/b.txt"), None);
        assert_eq!(blob_at(&fx.repo, &commit, "build.log"), None);
        assert_eq!(blob_at(&fx.repo, &commit, ".env"), None);
        // Not gitignored, but the user's local file, copied in: never committed.
        assert_eq!(blob_at(&fx.repo, &commit, "local.toml"), None);

        // The commit is on the agent's branch as the main repository sees it.
        assert_eq!(fx.wt.branch_commit(&info.branch).unwrap(), commit);
        assert_eq!(tip(&fx.repo, &info.branch).to_string(), commit);
        let made = fx
            .repo
            .find_commit(Oid::from_str(&commit).unwrap())
            .unwrap();
        assert_eq!(
            made.parent_ids().collect::<Vec<_>>(),
            vec![Oid::from_str(&info.base_commit).unwrap()]
        );
        assert_eq!(made.message(), Ok("agent work"));
        assert_eq!(made.author().name(), Ok("Hephaestus"));
        assert_eq!(made.author().email(), Ok("hephaestus@localhost"));
        // trunk did not move.
        assert_eq!(tip(&fx.repo, "trunk").to_string(), info.base_commit);

        assert_eq!(fx.wt.checkpoint(&info.path, "again").unwrap(), None);
    }

    #[test]
    fn checkpoint_uses_the_configured_user_and_refuses_the_users_checkout() {
        let fx = fixture();
        let mut config = fx.repo.config().unwrap();
        config.set_str("user.name", "Ada").unwrap();
        config.set_str("user.email", "ada@example.com").unwrap();
        let info = create(&fx);
        write(&info.path, "x.txt", "x\n");
        let commit = fx.wt.checkpoint(&info.path, "work").unwrap().unwrap();
        let made = fx
            .repo
            .find_commit(Oid::from_str(&commit).unwrap())
            .unwrap();
        assert_eq!(made.author().name(), Ok("Ada"));
        assert_eq!(made.committer().email(), Ok("ada@example.com"));

        write(&fx.workdir, "x.txt", "user\n");
        let err = fx.wt.checkpoint(&fx.workdir, "oops").unwrap_err();
        assert!(
            format!("{err:#}").contains("not an agent worktree"),
            "{err:#}"
        );
    }

    #[test]
    fn merge_fast_forwards_when_only_the_branch_moved() {
        let fx = fixture();
        let info = create(&fx);
        assert_eq!(
            fx.wt.merge(&info.branch, "trunk", "merge").unwrap(),
            MergeOutcome::UpToDate
        );

        write(&info.path, "new.txt", "new\n");
        let commit = fx.wt.checkpoint(&info.path, "work").unwrap().unwrap();
        write(&fx.workdir, "a.txt", "uncommitted user edit\n");
        let before = user_side(&fx);

        let outcome = fx.wt.merge(&info.branch, "trunk", "merge").unwrap();
        assert_eq!(
            outcome,
            MergeOutcome::FastForward {
                commit: commit.clone()
            }
        );
        assert_eq!(tip(&fx.repo, "trunk").to_string(), commit);
        // trunk is checked out: the merged file is in the checkout and its index, the user's
        // own edit stays, and nothing shows as a reversal of the merge.
        assert_eq!(read(&fx.workdir, "new.txt"), "new\n");
        assert_eq!(user_side(&fx).0, before.0);
        assert_eq!(user_side(&fx).2, before.2);
        assert_eq!(
            changes(&fx),
            vec![("a.txt".to_string(), git2::Status::WT_MODIFIED)]
        );
        let reflog = fx.repo.reflog("refs/heads/trunk").unwrap();
        let entry = reflog.get(0).unwrap();
        assert!(entry.message().unwrap().unwrap().contains("hephaestus"));

        assert_eq!(
            fx.wt.merge(&info.branch, "trunk", "merge").unwrap(),
            MergeOutcome::UpToDate
        );
    }

    #[test]
    fn merge_makes_a_merge_commit_when_both_moved_and_keeps_the_users_own_changes() {
        let fx = fixture();
        let info = create(&fx);
        write(&info.path, "sub/b.txt", "agent bee\n");
        let theirs = fx.wt.checkpoint(&info.path, "agent").unwrap().unwrap();
        write(&fx.workdir, "a.txt", "user one\ntwo\nthree\n");
        let ours = commit_workdir(&fx.repo, "user");
        // Uncommitted work on the checked-out target, and something staged.
        write(&fx.workdir, "a.txt", "user one\ntwo\nthree\nuncommitted\n");
        write(&fx.workdir, "staged.txt", "staged\n");
        let mut index = fx.repo.index().unwrap();
        index.add_path(Path::new("staged.txt")).unwrap();
        index.write().unwrap();
        let before = user_side(&fx);

        let outcome = fx.wt.merge(&info.branch, "trunk", "merge agent").unwrap();
        let MergeOutcome::Merged { commit } = outcome else {
            panic!("expected a merge commit, got {outcome:?}");
        };
        let made = fx
            .repo
            .find_commit(Oid::from_str(&commit).unwrap())
            .unwrap();
        assert_eq!(
            made.parent_ids().collect::<Vec<_>>(),
            vec![ours, Oid::from_str(&theirs).unwrap()]
        );
        assert_eq!(made.message(), Ok("merge agent"));
        assert_eq!(
            blob_at(&fx.repo, &commit, "a.txt").as_deref(),
            Some("user one\ntwo\nthree\n")
        );
        assert_eq!(
            blob_at(&fx.repo, &commit, "sub/b.txt").as_deref(),
            Some("agent bee\n")
        );
        assert_eq!(tip(&fx.repo, "trunk").to_string(), commit);

        // The merged file is updated in the checkout; the user's edit and staged file stay.
        assert_eq!(read(&fx.workdir, "sub/b.txt"), "agent bee\n");
        assert_eq!(user_side(&fx).0, before.0);
        assert_eq!(read(&fx.workdir, "staged.txt"), "staged\n");
        assert_eq!(
            changes(&fx),
            vec![
                ("a.txt".to_string(), git2::Status::WT_MODIFIED),
                ("staged.txt".to_string(), git2::Status::INDEX_NEW),
            ]
        );
        // The agent's branch is where it was.
        assert_eq!(tip(&fx.repo, &info.branch).to_string(), theirs);
    }

    #[test]
    fn merge_into_a_checked_out_branch_waits_for_the_users_own_changes_to_its_files() {
        let fx = fixture();
        let info = create(&fx);
        write(&info.path, "sub/b.txt", "agent bee\n");
        write(&info.path, "fresh.txt", "agent\n");
        fx.wt.checkpoint(&info.path, "agent").unwrap().unwrap();
        let ours = tip(&fx.repo, "trunk");
        for (path, text) in [("sub/b.txt", "user bee\n"), ("fresh.txt", "user's own\n")] {
            write(&fx.workdir, path, text);
            let before = user_side(&fx);
            assert_eq!(
                fx.wt.merge(&info.branch, "trunk", "merge").unwrap(),
                MergeOutcome::Waiting {
                    files: vec![path.to_string()]
                },
                "{path}"
            );
            assert_eq!(tip(&fx.repo, "trunk"), ours, "nothing moved");
            assert_eq!(user_side(&fx), before);
            assert_eq!(read(&fx.workdir, path), text);
            fs::remove_file(fx.workdir.join(path)).unwrap();
            if path == "sub/b.txt" {
                write(&fx.workdir, path, "bee\n");
            }
        }
        // Once the user's changes are out of the way, the same merge goes through.
        assert!(matches!(
            fx.wt.merge(&info.branch, "trunk", "merge").unwrap(),
            MergeOutcome::FastForward { .. }
        ));
        assert_eq!(read(&fx.workdir, "sub/b.txt"), "agent bee\n");
        assert_eq!(read(&fx.workdir, "fresh.txt"), "agent\n");
        assert_eq!(changes(&fx), vec![]);
    }

    #[test]
    fn merge_into_a_branch_that_is_not_checked_out_writes_no_file() {
        let fx = fixture();
        let info = create(&fx);
        write(&info.path, "new.txt", "new\n");
        let commit = fx.wt.checkpoint(&info.path, "work").unwrap().unwrap();
        fx.repo.set_head("refs/heads/elsewhere").unwrap();
        let before = user_side(&fx);
        assert_eq!(
            fx.wt.merge(&info.branch, "trunk", "merge").unwrap(),
            MergeOutcome::FastForward {
                commit: commit.clone()
            }
        );
        assert_eq!(tip(&fx.repo, "trunk").to_string(), commit);
        assert_eq!(user_side(&fx), before);
        assert!(!fx.workdir.join("new.txt").exists());
    }

    #[test]
    fn merge_reports_conflicts_and_changes_nothing() {
        let fx = fixture();
        let info = create(&fx);
        write(&info.path, "a.txt", "one\nagent\nthree\n");
        write(&info.path, "other.txt", "fine\n");
        let theirs = fx.wt.checkpoint(&info.path, "agent").unwrap().unwrap();
        write(&fx.workdir, "a.txt", "one\nuser\nthree\n");
        let ours = commit_workdir(&fx.repo, "user");
        let before = user_side(&fx);

        assert_eq!(
            fx.wt.merge(&info.branch, "trunk", "merge").unwrap(),
            MergeOutcome::Conflict {
                files: vec!["a.txt".into()]
            }
        );
        assert_eq!(tip(&fx.repo, "trunk"), ours);
        assert_eq!(tip(&fx.repo, &info.branch).to_string(), theirs);
        assert_eq!(user_side(&fx), before);
    }

    #[test]
    fn merge_errors_clearly_on_a_missing_branch() {
        let fx = fixture();
        let err = fx.wt.merge("nope", "trunk", "merge").unwrap_err();
        assert!(
            format!("{err:#}").contains("branch nope not found"),
            "{err:#}"
        );
    }

    /// Many agents start and end at once. libgit2 checks, for each worktree add and branch
    /// delete, whether the branch is checked out in any worktree, and a worktree that another
    /// thread is adding or removing right then reads as "checked out" (a precedence slip in
    /// `git_repository_foreach_worktree`): every create and remove here must still succeed.
    #[test]
    fn parallel_creates_and_removes_do_not_trip_over_each_other() {
        let fx = fixture();
        let wt = Arc::new(fx.wt);
        for round in 0..4 {
            let workers: Vec<_> = (0..16)
                .map(|i| {
                    let wt = wt.clone();
                    std::thread::spawn(move || -> Result<()> {
                        let id = format!("p{round}{i:02}abcd");
                        wt.create(&id, &BaseRef::Branch("trunk".into()), &[])?;
                        wt.remove(&id, true)
                    })
                })
                .collect();
            for (i, worker) in workers.into_iter().enumerate() {
                worker
                    .join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("round {round}, worker {i}: {e:#}"));
            }
        }
        assert!(wt.list().unwrap().is_empty());
    }

    #[test]
    fn create_from_a_commit() {
        let fx = fixture();
        let first = tip(&fx.repo, "trunk");
        write(&fx.workdir, "a.txt", "later\n");
        commit_workdir(&fx.repo, "later");

        let info = fx
            .wt
            .create(ID, &BaseRef::Commit(first.to_string()), &[])
            .unwrap();
        assert_eq!(info.base_commit, first.to_string());
        assert_eq!(
            fx.wt.branch_commit(&info.branch).unwrap(),
            first.to_string()
        );
        assert_eq!(read(&info.path, "a.txt"), "one\ntwo\nthree\n");

        let short = BaseRef::Commit(first.to_string()[..8].to_string());
        let err = fx.wt.create("other", &short, &[]).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a full hex commit id"),
            "{err:#}"
        );
        let unknown = BaseRef::Commit("1".repeat(40));
        let err = fx.wt.create("other", &unknown, &[]).unwrap_err();
        assert!(format!("{err:#}").contains("not found"), "{err:#}");
    }

    #[test]
    fn remove_deletes_the_directory_metadata_and_branch_and_is_idempotent() {
        let fx = fixture();
        let info = create(&fx);
        write(&info.path, "dirty.txt", "uncommitted\n");

        fx.wt.remove(ID, true).unwrap();
        assert!(!info.path.exists());
        assert!(!fx.workdir.join(".git/worktrees/agent-abcd1234").exists());
        let names = fx.repo.worktrees().unwrap();
        assert_eq!(names.len(), 0);
        assert!(
            fx.repo
                .find_branch(&info.branch, BranchType::Local)
                .is_err()
        );
        assert!(fx.wt.list().unwrap().is_empty());

        fx.wt.remove(ID, true).unwrap();
        fx.wt.remove("neverexisted", false).unwrap();
    }

    #[test]
    fn remove_can_keep_the_branch_and_the_id_can_be_reused() {
        let fx = fixture();
        let info = create(&fx);
        write(&info.path, "x.txt", "x\n");
        let commit = fx.wt.checkpoint(&info.path, "work").unwrap().unwrap();
        fx.wt.remove(ID, false).unwrap();
        assert_eq!(fx.wt.branch_commit(&info.branch).unwrap(), commit);
        fx.wt.remove(ID, true).unwrap();
        let again = create(&fx);
        assert_eq!(again.path, info.path);
    }

    #[test]
    fn a_worktree_deleted_by_hand_is_listed_until_removed_and_can_be_recreated() {
        let fx = fixture();
        let info = create(&fx);
        fs::remove_dir_all(&info.path).unwrap();
        assert_eq!(
            fx.wt.list().unwrap(),
            vec![(ID.to_string(), info.path.clone())]
        );
        // The branch is still there, so create refuses; remove cleans up the rest.
        assert!(
            fx.wt
                .create(ID, &BaseRef::Branch("trunk".into()), &[])
                .is_err()
        );
        fx.wt.remove(ID, true).unwrap();
        assert!(fx.repo.worktrees().unwrap().is_empty());
        create(&fx);
    }

    #[test]
    fn remove_respects_a_lock() {
        let fx = fixture();
        let info = create(&fx);
        let worktree = fx.repo.find_worktree("agent-abcd1234").unwrap();
        worktree.lock(Some("on a usb stick")).unwrap();
        let err = fx.wt.remove(ID, true).unwrap_err();
        assert!(format!("{err:#}").contains("locked"), "{err:#}");
        assert!(info.path.exists());
        worktree.unlock().unwrap();
        fx.wt.remove(ID, true).unwrap();
        assert!(!info.path.exists());
    }

    #[test]
    fn a_ref_moved_behind_our_back_is_not_overwritten() {
        let fx = fixture();
        let first = tip(&fx.repo, "trunk");
        write(&fx.workdir, "a.txt", "later\n");
        let later = commit_workdir(&fx.repo, "later");
        let err = move_ref(&fx.repo, "refs/heads/trunk", later, first, "test").unwrap_err();
        assert!(
            format!("{err:#}").contains("moved while merging"),
            "{err:#}"
        );
        assert_eq!(tip(&fx.repo, "trunk"), later);
    }

    #[test]
    fn list_includes_stray_directories() {
        let fx = fixture();
        fs::create_dir_all(fx.base_dir.join("agent-stray01")).unwrap();
        fs::create_dir_all(fx.base_dir.join("unrelated")).unwrap();
        let info = create(&fx);
        let listed = fx.wt.list().unwrap();
        let ids: Vec<_> = listed.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, vec![ID, "stray01"]);
        assert_eq!(listed[0].1, info.path);
        fx.wt.remove("stray01", false).unwrap();
        assert!(!fx.base_dir.join("agent-stray01").exists());
    }

    #[test]
    fn open_from_inside_an_agent_worktree_finds_the_main_repository() {
        let fx = fixture();
        let info = create(&fx);
        let inner = Worktrees::open(&info.path.join("sub"), &fx.base_dir).unwrap();
        assert_eq!(inner.current_branch().unwrap(), "trunk");
        assert_eq!(inner.list().unwrap(), fx.wt.list().unwrap());
    }

    #[test]
    fn a_detached_or_unborn_head_asks_for_base_branch() {
        let fx = fixture();
        let head = tip(&fx.repo, "trunk");
        fx.repo.set_head_detached(head).unwrap();
        let err = fx.wt.current_branch().unwrap_err();
        assert!(format!("{err:#}").contains("detached"), "{err:#}");
        assert!(format!("{err:#}").contains("base_branch"), "{err:#}");

        let tmp = TempDir::new().unwrap();
        Repository::init_opts(
            tmp.path(),
            RepositoryInitOptions::new().initial_head("trunk"),
        )
        .unwrap();
        let empty = Worktrees::open(tmp.path(), &tmp.path().join("wt")).unwrap();
        let err = empty.current_branch().unwrap_err();
        assert!(format!("{err:#}").contains("base_branch"), "{err:#}");
    }

    #[test]
    fn open_outside_a_repository_fails_clearly() {
        hermetic();
        let tmp = TempDir::new().unwrap();
        let err = Worktrees::open(tmp.path(), &tmp.path().join("wt")).unwrap_err();
        assert!(format!("{err:#}").contains("no git repository"), "{err:#}");
    }
}
