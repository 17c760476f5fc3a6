//! What Slurm says of an array's tasks, parsed from `squeue`, `scontrol
//! show job -o` and `sacct -P` output into one [`TaskState`] per task.
//!
//! May use: nothing else of the crate.

use std::collections::BTreeMap;

/// One array task as Slurm reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskState {
    /// The array index.
    pub task: u32,
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `TIMEOUT`, `CANCELLED`, …
    pub state: String,
    /// The node(s) it ran on; empty before it starts.
    pub node: String,
    /// Slurm's reason (why pending, why it ended); `None` when none.
    pub reason: String,
    /// `EXIT:SIGNAL`, e.g. `8:0`; empty when Slurm gave none.
    pub exit: String,
    /// Run time so far or in all.
    pub elapsed: String,
}

impl TaskState {
    /// Slurm will not run it any more.
    pub fn is_done(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "SUSPENDED"
                | "REQUEUED"
                | "REQUEUE_FED"
                | "REQUEUE_HOLD"
                | "RESIZING"
                | "SIGNALING"
                | "STAGE_OUT"
                | "STOPPED"
                | "RESV_DEL_HOLD"
                | "SPECIAL_EXIT"
        )
    }

    /// Why a task that wrote no result ended, in one line.
    pub fn describe_end(&self) -> String {
        let mut s = self.state.clone();
        if !self.reason.is_empty() && self.reason != "None" {
            s.push_str(&format!(" ({})", self.reason));
        }
        if !self.exit.is_empty() && self.exit != "0:0" {
            s.push_str(&format!(", exit {}", self.exit));
        }
        if !self.elapsed.is_empty() {
            s.push_str(&format!(", after {}", self.elapsed));
        }
        s
    }
}

/// The `squeue` format [`parse_squeue`] reads: task, state, nodes,
/// reason, time used.
pub const SQUEUE_FORMAT: &str = "%K|%T|%N|%r|%M";

/// `squeue -h -r -j JOB -o SQUEUE_FORMAT`: the tasks still queued or
/// running. Lines that are not a single task (an unsplit range) are left
/// out.
pub fn parse_squeue(out: &str) -> Vec<TaskState> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split('|').collect();
            let [task, state, node, reason, elapsed] = f[..] else {
                return None;
            };
            Some(TaskState {
                task: task.parse().ok()?,
                state: state.to_string(),
                node: node.to_string(),
                reason: reason.to_string(),
                exit: String::new(),
                elapsed: elapsed.to_string(),
            })
        })
        .collect()
}

/// `scontrol show job -o JOB`: one line of `Key=Value` fields per task.
pub fn parse_scontrol(out: &str) -> Vec<TaskState> {
    out.lines()
        .filter_map(|l| {
            let fields: BTreeMap<&str, &str> = l
                .split_whitespace()
                .filter_map(|w| w.split_once('='))
                .collect();
            let get = |k: &str| fields.get(k).copied().unwrap_or_default().to_string();
            let node = match get("NodeList").as_str() {
                "(null)" => String::new(),
                n => n.to_string(),
            };
            Some(TaskState {
                task: fields.get("ArrayTaskId")?.parse().ok()?,
                state: get("JobState"),
                node,
                reason: get("Reason"),
                exit: get("ExitCode"),
                elapsed: get("RunTime"),
            })
        })
        .collect()
}

/// The `sacct` fields [`parse_sacct`] reads.
pub const SACCT_FORMAT: &str = "JobID,State,NodeList,ExitCode,Elapsed,Reason";

/// `sacct -j JOB -X -n -P -o SACCT_FORMAT`: one line per task
/// (`1234_0|CANCELLED by 0|node1|0:15|00:01:02|None`).
pub fn parse_sacct(out: &str) -> Vec<TaskState> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split('|').collect();
            let [id, state, node, exit, elapsed, reason] = f[..] else {
                return None;
            };
            let (_, task) = id.split_once('_')?;
            let node = match node {
                "None assigned" => "",
                n => n,
            };
            Some(TaskState {
                task: task.parse().ok()?,
                // "CANCELLED by 1000": the state is the first word.
                state: state.split_whitespace().next().unwrap_or("").to_string(),
                node: node.to_string(),
                reason: reason.to_string(),
                exit: exit.to_string(),
                elapsed: elapsed.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_become_tasks_and_ranges_are_left_out() {
        let t = parse_squeue("0|RUNNING|node1|None|0:05\n[1-3]|PENDING||Resources|0:00\n");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].task, 0);
        assert_eq!(t[0].node, "node1");
        assert!(!t[0].is_done());
    }

    #[test]
    fn scontrol_records_give_state_exit_and_node() {
        let out = "JobId=3 ArrayJobId=1 ArrayTaskId=1 JobName=torchenv-gate JobState=TIMEOUT Reason=TimeLimit Dependency=(null) ExitCode=0:15 RunTime=00:01:03 TimeLimit=00:01:00 NodeList=vm\n\
                   JobId=2 ArrayJobId=1 ArrayTaskId=0 JobState=PENDING Reason=Resources ExitCode=0:0 RunTime=00:00:00 NodeList=(null)\n";
        let t = parse_scontrol(out);
        assert_eq!(t[0].task, 1);
        assert!(t[0].is_done());
        assert_eq!(
            t[0].describe_end(),
            "TIMEOUT (TimeLimit), exit 0:15, after 00:01:03"
        );
        assert_eq!(t[1].node, "");
        assert!(!t[1].is_done());
    }

    #[test]
    fn sacct_lines_keep_the_state_word() {
        let t = parse_sacct(
            "17_2|CANCELLED by 0|vm|0:15|00:00:09|None\n17_0|COMPLETED|vm|0:0|00:00:30|None\n",
        );
        assert_eq!(t[0].task, 2);
        assert_eq!(t[0].state, "CANCELLED");
        assert_eq!(t[0].describe_end(), "CANCELLED, exit 0:15, after 00:00:09");
        assert_eq!(t[1].state, "COMPLETED");
    }
}
