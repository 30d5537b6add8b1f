//! Real Kubernetes on each store: what `cairn-upstream` ran (the kubectl
//! smoke and the upstream e2e tests) and how the stores compare. Pure: the
//! binary runs the processes and hands over the JUnit reports and step
//! outcomes; this module reads them, compares and renders.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One e2e test's outcome as ginkgo's JUnit report gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Passed,
    Failed,
}

/// One step of the kubectl smoke.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub ok: bool,
    /// What kubectl printed, or why the step failed.
    pub detail: String,
    pub seconds: f64,
}

/// Everything run against one store.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StoreRun {
    /// `cairn`, `etcd-3.5.1`, `etcd-3.6.16`.
    pub store: String,
    /// Why the cluster did not come up, if it did not.
    pub error: Option<String>,
    pub smoke: Vec<Step>,
    pub e2e: BTreeMap<String, Outcome>,
    pub e2e_seconds: f64,
}

impl StoreRun {
    pub fn smoke_passed(&self) -> bool {
        self.error.is_none() && !self.smoke.is_empty() && self.smoke.iter().all(|step| step.ok)
    }

    /// Tests with this outcome; ginkgo's suite nodes are not counted.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.e2e.iter().filter(|(test, o)| **o == outcome && !is_suite_node(test)).count()
    }
}

/// Reads ginkgo's JUnit report: every `<testcase>` that ran, with its
/// `status`. Skipped ones (the focus left out thousands) are left out. Ginkgo's
/// setup and teardown nodes (`[SynchronizedBeforeSuite]` and the like) are
/// kept, since a failure there fails every test.
pub fn parse_junit(xml: &str) -> BTreeMap<String, Outcome> {
    let mut out = BTreeMap::new();
    for case in xml.split("<testcase ").skip(1) {
        let Some(head) = case.split('>').next() else { continue };
        let Some(name) = attribute(head, "name") else { continue };
        let body = case.split("</testcase>").next().unwrap_or(case);
        let outcome = match attribute(head, "status").as_deref() {
            Some("passed") => Outcome::Passed,
            Some("skipped") | Some("pending") => continue,
            Some(_) => Outcome::Failed,
            // Without a status attribute (plain JUnit): the children say.
            None if body.contains("<failure") || body.contains("<error") => Outcome::Failed,
            None if body.contains("<skipped") => continue,
            None => Outcome::Passed,
        };
        out.insert(test_name(&name), outcome);
    }
    out
}

/// Ginkgo's setup and report nodes, which the JUnit report lists beside the tests.
pub fn is_suite_node(name: &str) -> bool {
    [
        "[SynchronizedBeforeSuite]",
        "[SynchronizedAfterSuite]",
        "[BeforeSuite]",
        "[AfterSuite]",
        "[ReportBeforeSuite]",
        "[ReportAfterSuite]",
    ]
    .iter()
    .any(|node| name.starts_with(node))
}

/// `[It] [sig-api-machinery] Watchers …` and `Kubernetes e2e suite [It] …`
/// name the same test: keep the part from the first SIG tag, or the whole.
fn test_name(name: &str) -> String {
    let name = name.trim();
    let name = name.strip_prefix("Kubernetes e2e suite ").unwrap_or(name);
    name.strip_prefix("[It] ").unwrap_or(name).to_string()
}

fn attribute(head: &str, key: &str) -> Option<String> {
    let start = head.find(&format!(" {key}=\"")).or_else(|| head.starts_with(&format!("{key}=\"")).then_some(0))?;
    let rest = &head[start..];
    let value = rest.split_once('"')?.1.split_once('"')?.0;
    Some(unescape(value))
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// A test that passed on a reference store but not on Cairn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Regression {
    pub test: String,
    /// The reference stores it passed on.
    pub passed_on: Vec<String>,
    pub cairn: Option<Outcome>,
    /// The reason from the known-differences list, if it is there.
    pub known: Option<String>,
}

/// Every test that passed on a reference store and did not on `cairn`.
/// `known` maps a test name to the written-down reason it may fail.
pub fn regressions(cairn: &StoreRun, references: &[StoreRun], known: &BTreeMap<String, String>) -> Vec<Regression> {
    let mut passed_somewhere: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for reference in references {
        for (test, outcome) in &reference.e2e {
            if *outcome == Outcome::Passed {
                passed_somewhere.entry(test).or_default().push(reference.store.clone());
            }
        }
    }
    passed_somewhere
        .into_iter()
        .filter(|(test, _)| cairn.e2e.get(*test) != Some(&Outcome::Passed))
        .map(|(test, passed_on)| Regression {
            test: test.to_string(),
            passed_on,
            cairn: cairn.e2e.get(test).copied(),
            known: known.get(test).cloned(),
        })
        .collect()
}

/// Reads the known-differences list: `test name<TAB>reason` per line, `#` comments.
pub fn parse_known(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim_end)
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|line| match line.split_once('\t') {
            Some((test, reason)) => (test.trim().to_string(), reason.trim().to_string()),
            None => (line.trim().to_string(), String::new()),
        })
        .collect()
}

/// The results page: the smoke and e2e counts side by side, and every test
/// that passed on a reference store and not on Cairn.
pub fn render(runs: &[StoreRun], regressions: &[Regression], focus: &str, skip: &str) -> String {
    let mut out = String::from("# Real Kubernetes on each store\n\n");
    out.push_str(&format!("e2e focus: `{focus}`\n\ne2e skip: `{skip}`\n\n"));
    out.push_str("| store | cluster | kubectl smoke | e2e passed | failed | e2e time |\n|---|---|---|---|---|---|\n");
    for run in runs {
        let smoke_steps = run.smoke.iter().filter(|s| s.ok).count();
        out.push_str(&format!(
            "| {} | {} | {} ({}/{} steps) | {} | {} | {:.0} s |\n",
            run.store,
            run.error.as_deref().map_or("up".to_string(), |e| format!("failed: {}", first_line(e))),
            if run.smoke_passed() { "pass" } else { "FAIL" },
            smoke_steps,
            run.smoke.len(),
            run.count(Outcome::Passed),
            run.count(Outcome::Failed),
            run.e2e_seconds,
        ));
    }
    let unknown: Vec<&Regression> = regressions.iter().filter(|r| r.known.is_none()).collect();
    out.push_str(&format!(
        "\n## Passed on etcd, not on Cairn: {} ({} unexplained)\n\n",
        regressions.len(),
        unknown.len()
    ));
    if !regressions.is_empty() {
        out.push_str("| test | passed on | on Cairn | reason |\n|---|---|---|---|\n");
        for r in regressions {
            out.push_str(&format!(
                "| {} | {} | {:?} | {} |\n",
                r.test.replace('|', "\\|"),
                r.passed_on.join(", "),
                r.cairn,
                r.known.as_deref().unwrap_or("**unexplained**")
            ));
        }
    }
    let mut failing_everywhere: BTreeSet<&str> = BTreeSet::new();
    if let Some(first) = runs.first() {
        for (test, outcome) in &first.e2e {
            if *outcome == Outcome::Failed && runs.iter().all(|run| run.e2e.get(test) == Some(&Outcome::Failed)) {
                failing_everywhere.insert(test);
            }
        }
    }
    if !failing_everywhere.is_empty() {
        out.push_str("\n## Failed on every store (the environment, not the store)\n\n");
        for test in failing_everywhere {
            out.push_str(&format!("- {test}\n"));
        }
    }
    let mut tests: BTreeSet<&str> = BTreeSet::new();
    for run in runs {
        tests.extend(run.e2e.keys().map(String::as_str).filter(|test| !is_suite_node(test)));
    }
    if !tests.is_empty() {
        out.push_str("\n## Every test that ran\n\n| test |");
        for run in runs {
            out.push_str(&format!(" {} |", run.store));
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(runs.len()));
        out.push('\n');
        for test in tests {
            out.push_str(&format!("| {} |", test.replace('|', "\\|")));
            for run in runs {
                let cell = match run.e2e.get(test) {
                    Some(Outcome::Passed) => "pass",
                    Some(Outcome::Failed) => "**FAIL**",
                    None => "not run",
                };
                out.push_str(&format!(" {cell} |"));
            }
            out.push('\n');
        }
    }
    for run in runs.iter().filter(|run| !run.smoke_passed()) {
        out.push_str(&format!("\n## kubectl smoke on {}\n\n", run.store));
        for step in &run.smoke {
            out.push_str(&format!(
                "- {} {}: {}\n",
                if step.ok { "ok" } else { "FAILED" },
                step.name,
                first_line(&step.detail)
            ));
        }
    }
    out
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    const JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="4" disabled="1" errors="0" failures="1" time="33.4">
  <testsuite name="Kubernetes e2e suite" package="/tmp" tests="4">
    <testcase name="[SynchronizedBeforeSuite]" classname="Kubernetes e2e suite" status="passed" time="0.1"></testcase>
    <testcase name="[It] [sig-api-machinery] Watchers should observe add, update, and delete watch notifications on configmaps [Conformance]" classname="Kubernetes e2e suite" status="passed" time="10"></testcase>
    <testcase name="[It] [sig-api-machinery] Servers with support for Table transformation should return pod details" classname="Kubernetes e2e suite" status="failed" time="3">
      <failure message="Expected &quot;x&quot;" type="failed">boom</failure>
    </testcase>
    <testcase name="[It] [sig-apps] Deployment something" classname="Kubernetes e2e suite" status="skipped" time="0"><skipped message="skipped"></skipped></testcase>
  </testsuite>
</testsuites>"#;

    fn run(store: &str, tests: &[(&str, Outcome)]) -> StoreRun {
        StoreRun {
            store: store.to_string(),
            e2e: tests.iter().map(|(t, o)| (t.to_string(), *o)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn junit_statuses_are_read() {
        let parsed = parse_junit(JUNIT);
        assert_eq!(parsed.len(), 3, "the skipped test is left out");
        assert_eq!(parsed["[SynchronizedBeforeSuite]"], Outcome::Passed);
        assert_eq!(
            parsed["[sig-api-machinery] Watchers should observe add, update, and delete watch notifications on configmaps [Conformance]"],
            Outcome::Passed
        );
        assert_eq!(
            parsed["[sig-api-machinery] Servers with support for Table transformation should return pod details"],
            Outcome::Failed
        );
        assert!(!parsed.contains_key("[sig-apps] Deployment something"));
        let store = StoreRun { e2e: parsed, ..Default::default() };
        assert_eq!((store.count(Outcome::Passed), store.count(Outcome::Failed)), (1, 1), "suite nodes are not tests");
        let plain = r#"<testcase name="a &amp; b"><failure/></testcase><testcase name="c"></testcase>"#;
        let parsed = parse_junit(plain);
        assert_eq!(parsed["a & b"], Outcome::Failed);
        assert_eq!(parsed["c"], Outcome::Passed);
    }

    #[test]
    fn a_test_passing_on_any_etcd_and_not_on_cairn_is_a_regression() {
        use Outcome::*;
        let cairn = run("cairn", &[("a", Passed), ("b", Failed), ("c", Failed)]);
        let etcd = run("etcd-3.5.1", &[("a", Passed), ("b", Passed), ("c", Failed), ("d", Passed)]);
        let etcd36 = run("etcd-3.6.16", &[("a", Failed), ("b", Passed), ("c", Failed)]);
        let known = parse_known("# comment\nd\tnot run on cairn\n\n");
        let found = regressions(&cairn, &[etcd, etcd36], &known);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].test, "b");
        assert_eq!(found[0].passed_on, vec!["etcd-3.5.1", "etcd-3.6.16"]);
        assert_eq!(found[0].cairn, Some(Failed));
        assert_eq!(found[0].known, None);
        assert_eq!(found[1].test, "d");
        assert_eq!(found[1].cairn, None);
        assert_eq!(found[1].known.as_deref(), Some("not run on cairn"));
        let page = render(&[cairn], &found, "f", "s");
        assert!(page.contains("Passed on etcd, not on Cairn: 2 (1 unexplained)"), "{page}");
        assert!(page.contains("| b | etcd-3.5.1, etcd-3.6.16 | Some(Failed) | **unexplained** |"), "{page}");
    }

    #[test]
    fn the_smoke_passes_only_with_every_step() {
        let step = |ok| Step { name: "s".into(), ok, detail: String::new(), seconds: 0.0 };
        let mut store = run("cairn", &[]);
        assert!(!store.smoke_passed(), "no steps is no pass");
        store.smoke = vec![step(true), step(true)];
        assert!(store.smoke_passed());
        store.smoke.push(step(false));
        assert!(!store.smoke_passed());
    }
}
