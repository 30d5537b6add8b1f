//! Linearizability of one key's history against a register model, by the
//! Wing–Gong algorithm with Lowe's memoization (as porcupine and Knossos use).
//! An operation with an unknown outcome returns at infinity: it may take
//! effect at any point after its call, or never.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use crate::history::{Call, Operation, Outcome};
use crate::Verdict;

/// The register: the key's value, if any.
type State = Option<String>;

/// Applies `op` to `state`; `None` if the op's observed outcome is impossible there.
fn step(state: &State, op: &Operation) -> Option<State> {
    match (&op.call, &op.outcome) {
        (Call::Read, Outcome::Read(value)) => (value == state).then(|| state.clone()),
        (Call::Read, _) => Some(state.clone()),
        (Call::Write(value), _) => Some(Some(value.clone())),
        (Call::Cas { expected, new }, Outcome::Cas(true)) => (expected == state).then(|| Some(new.clone())),
        (Call::Cas { expected, .. }, Outcome::Cas(false)) => (expected != state).then(|| state.clone()),
        (Call::Cas { expected, new }, _) => Some(if expected == state { Some(new.clone()) } else { state.clone() }),
    }
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
}

/// Checks one key's operations; `budget` bounds the search.
pub fn check_key(ops: &[Operation], initial: State, budget: Duration) -> Verdict {
    if ops.len() > 4096 {
        return Verdict::Unknown(format!("{} operations on one key is past this checker's bitset", ops.len()));
    }
    // Events in time order; a call before a return at the same instant (overlap, not order).
    let mut events: Vec<(u64, u8, Event)> = Vec::with_capacity(ops.len() * 2);
    for (index, op) in ops.iter().enumerate() {
        events.push((op.invoked, 0, Event { op: index, is_call: true }));
        events.push((op.completed.unwrap_or(u64::MAX), 1, Event { op: index, is_call: false }));
    }
    events.sort_by_key(|(time, order, _)| (*time, *order));
    let events: Vec<Event> = events.into_iter().map(|(_, _, event)| event).collect();
    let started = Instant::now();
    let words = ops.len().div_ceil(64);
    let mut removed = vec![false; events.len()];
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut state = initial;
    // (index of the call event, index of its return event, state before)
    let mut stack: Vec<(usize, usize, State)> = Vec::new();
    let return_of: Vec<usize> = {
        let mut positions = vec![0; ops.len()];
        for (position, event) in events.iter().enumerate() {
            if !event.is_call {
                positions[event.op] = position;
            }
        }
        positions
    };
    let mut cursor = 0;
    let mut steps = 0u64;
    loop {
        steps += 1;
        if steps.is_multiple_of(4096) && started.elapsed() > budget {
            return Verdict::Unknown(format!("no answer within {budget:?} ({steps} steps)"));
        }
        while cursor < events.len() && removed[cursor] {
            cursor += 1;
        }
        if cursor == events.len() {
            return Verdict::Pass;
        }
        let event = events[cursor];
        if event.is_call {
            let op = &ops[event.op];
            if let Some(next) = step(&state, op) {
                let mut with_op = linearized.clone();
                with_op[event.op / 64] |= 1 << (event.op % 64);
                if cache.insert((with_op.clone(), next.clone())) {
                    stack.push((cursor, return_of[event.op], state.clone()));
                    removed[cursor] = true;
                    removed[return_of[event.op]] = true;
                    linearized = with_op;
                    state = next;
                    cursor = 0;
                    continue;
                }
            }
            cursor += 1;
        } else {
            // A return whose call cannot be placed: undo the last choice.
            let Some((call, ret, before)) = stack.pop() else {
                let op = &ops[event.op];
                return Verdict::Fail(format!(
                    "not linearizable: client {} {:?} -> {:?} on {:?} fits no order",
                    op.client, op.call, op.outcome, op.key
                ));
            };
            removed[call] = false;
            removed[ret] = false;
            let op = events[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            state = before;
            cursor = call + 1;
        }
    }
}

/// Checks every key of a history, each on its own.
pub fn check(history: &[Operation], budget: Duration) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op.clone());
    }
    // The budget is for the whole history, shared out as keys are checked.
    let deadline = Instant::now() + budget;
    for ops in by_key.values() {
        match check_key(ops, None, deadline.saturating_duration_since(Instant::now())) {
            Verdict::Pass => {}
            other => return other,
        }
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u32, call: Call, outcome: Outcome, invoked: u64, completed: Option<u64>) -> Operation {
        Operation { client, key: "k".into(), call, outcome, invoked, completed }
    }

    fn write(v: &str, from: u64, to: u64) -> Operation {
        op(1, Call::Write(v.into()), Outcome::Written, from, Some(to))
    }

    fn read(v: Option<&str>, from: u64, to: u64) -> Operation {
        op(2, Call::Read, Outcome::Read(v.map(String::from)), from, Some(to))
    }

    const BUDGET: Duration = Duration::from_secs(5);

    #[test]
    fn a_correct_history_passes() {
        let history = [write("a", 0, 10), read(Some("a"), 11, 20), write("b", 15, 30), read(Some("b"), 31, 40)];
        assert_eq!(check(&history, BUDGET), Verdict::Pass);
        // Overlapping read may see either value.
        let history = [write("a", 0, 10), write("b", 20, 40), read(Some("a"), 25, 30)];
        assert_eq!(check(&history, BUDGET), Verdict::Pass);
    }

    #[test]
    fn a_stale_read_is_flagged() {
        let history = [write("a", 0, 10), write("b", 20, 30), read(Some("a"), 40, 50)];
        assert!(matches!(check(&history, BUDGET), Verdict::Fail(_)));
    }

    #[test]
    fn a_lost_acknowledged_write_is_flagged() {
        let history = [write("a", 0, 10), read(None, 20, 30)];
        assert!(matches!(check(&history, BUDGET), Verdict::Fail(_)));
    }

    #[test]
    fn an_unknown_write_may_or_may_not_take_effect() {
        let unknown = op(1, Call::Write("x".into()), Outcome::Unknown, 0, None);
        assert_eq!(check(&[unknown.clone(), read(None, 10, 20)], BUDGET), Verdict::Pass);
        assert_eq!(check(&[unknown.clone(), read(Some("x"), 10, 20)], BUDGET), Verdict::Pass);
        // But once seen, it cannot be unseen.
        let history = [unknown, read(Some("x"), 10, 20), read(None, 30, 40)];
        assert!(matches!(check(&history, BUDGET), Verdict::Fail(_)));
    }

    #[test]
    fn compare_and_set_follows_the_register() {
        let cas = |expected: Option<&str>, new: &str, ok: bool, from, to| {
            op(3, Call::Cas { expected: expected.map(String::from), new: new.into() }, Outcome::Cas(ok), from, Some(to))
        };
        let good = [write("a", 0, 10), cas(Some("a"), "b", true, 20, 30), read(Some("b"), 40, 50)];
        assert_eq!(check(&good, BUDGET), Verdict::Pass);
        let double = [write("a", 0, 10), cas(Some("a"), "b", true, 20, 30), cas(Some("a"), "c", true, 40, 50)];
        assert!(matches!(check(&double, BUDGET), Verdict::Fail(_)), "two CAS from the same value");
    }

    #[test]
    fn an_exhausted_budget_is_unknown_not_pass() {
        // Many concurrent writes and reads that fit no order force a long search.
        let mut history = Vec::new();
        for i in 0..40 {
            history.push(write(&format!("w{i}"), 0, 1000));
        }
        history.push(read(Some("never-written"), 1001, 1002));
        let verdict = check_key(&history, None, Duration::from_millis(1));
        assert!(matches!(verdict, Verdict::Unknown(_)), "{verdict:?}");
    }
}
