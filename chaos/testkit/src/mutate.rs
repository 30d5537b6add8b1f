//! Deterministic byte mutations for the fuzz checks that run in every CI run:
//! the same inputs each time, so that a failure is reproducible.

use serde_json::{json, Value};

/// Keys a dropped key may come back as: ones that kinds have, and odd ones.
const ODD_KEYS: [&str; 8] = ["name", "namespace", "metadata", "spec", "status", "kind", "", "x/y"];

fn count(value: &Value) -> usize {
    1 + match value {
        Value::Object(map) => map.values().map(count).sum(),
        Value::Array(items) => items.iter().map(count).sum(),
        _ => 0,
    }
}

/// Writes seeds into the directory `$CAIRN_FUZZ_SEEDS` names, when it is set:
/// a fuzz target calls this from its libFuzzer init, before the corpus is read.
pub fn seed_corpus(seeds: &[Vec<u8>]) {
    let Some(dir) = std::env::var_os("CAIRN_FUZZ_SEEDS") else { return };
    for (i, seed) in seeds.iter().enumerate() {
        let _ = std::fs::write(std::path::Path::new(&dir).join(format!("seed-{i}")), seed);
    }
}

/// Flips, overwrites, inserts and truncates bytes, driven by a xorshift.
pub struct Mutator(u64);

impl Mutator {
    pub fn new(seed: u64) -> Mutator {
        Mutator(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One to eight mutations of `input`.
    pub fn mutate(&mut self, mut input: Vec<u8>) -> Vec<u8> {
        for _ in 0..1 + self.below(8) {
            let at = self.below(input.len());
            match self.below(5) {
                0 if !input.is_empty() => input[at] ^= 1 << self.below(8),
                1 if !input.is_empty() => input[at] = self.next() as u8,
                2 => input.insert(at, self.next() as u8),
                3 if !input.is_empty() => {
                    // Repeat a slice: structure-shaped growth (nested lists, repeated fields).
                    let end = (at + 1 + self.below(16)).min(input.len());
                    let slice = input[at..end].to_vec();
                    let to = self.below(input.len());
                    input.splice(to..to, slice);
                }
                _ => input.truncate(at.max(input.len() / 2)),
            }
        }
        input
    }

    /// One to four changes somewhere in a JSON document: a value replaced by
    /// one of another type or at a limit, a key dropped or renamed, a list
    /// item repeated. Byte mutations seldom keep JSON whole; these do.
    pub fn mutate_json(&mut self, mut value: Value) -> Value {
        for _ in 0..1 + self.below(4) {
            let nodes = count(&value);
            let target = self.below(nodes);
            self.change(&mut value, &mut { target });
        }
        value
    }

    fn change(&mut self, value: &mut Value, target: &mut usize) -> bool {
        if *target == 0 {
            match (self.below(3), &mut *value) {
                (0, Value::Object(map)) if !map.is_empty() => {
                    let key = map.keys().nth(self.below(map.len())).cloned().unwrap_or_default();
                    let removed = map.remove(&key).unwrap_or(Value::Null);
                    if self.below(2) == 0 {
                        map.insert(ODD_KEYS[self.below(ODD_KEYS.len())].to_string(), removed);
                    }
                }
                (0, Value::Array(items)) if !items.is_empty() => {
                    let item = items[self.below(items.len())].clone();
                    items.push(item);
                }
                _ => *value = self.odd_value(),
            }
            return true;
        }
        *target -= 1;
        match value {
            Value::Object(map) => map.values_mut().any(|child| self.change(child, target)),
            Value::Array(items) => items.iter_mut().any(|child| self.change(child, target)),
            _ => false,
        }
    }

    fn odd_value(&mut self) -> Value {
        match self.below(12) {
            0 => Value::Null,
            1 => json!(true),
            2 => json!(-1),
            3 => json!(0),
            4 => json!(i64::MAX),
            5 => json!(1.5e300),
            6 => json!(""),
            7 => json!("x".repeat(300)),
            8 => json!("-_.:/ÿ\u{0}"),
            9 => json!([]),
            10 => json!({}),
            _ => json!({"name": "n", "value": [1, "2"]}),
        }
    }

    /// `rounds` mutated inputs, taken from the seeds in turn.
    pub fn inputs(&mut self, seeds: &[Vec<u8>], rounds: usize) -> Vec<Vec<u8>> {
        (0..rounds).map(|round| self.mutate(seeds[round % seeds.len()].clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs_and_they_differ_from_the_seeds() {
        let seeds = vec![b"{\"kind\":\"Pod\"}".to_vec()];
        let a = Mutator::new(7).inputs(&seeds, 50);
        assert_eq!(a, Mutator::new(7).inputs(&seeds, 50));
        assert!(a.iter().filter(|input| **input != seeds[0]).count() > 40);
    }

    #[test]
    fn json_mutations_keep_json_and_change_it() {
        let seed = json!({"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}});
        let mut mutator = Mutator::new(11);
        let changed = (0..100).filter(|_| mutator.mutate_json(seed.clone()) != seed).count();
        assert!(changed > 80, "{changed} of 100 changed");
    }
}
