//! A small libtest for the test binaries with `harness = false` (host/Cargo.toml):
//! a test whose tool cannot run on this machine returns `Outcome::Skipped`
//! with the reason and is reported `ignored`, so scripts/test counts it as
//! skipped, never as passed. Prints the lines scripts/test and cargo read.

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::time::Instant;

/// How a test ended when it did not panic.
pub enum Outcome {
    Passed,
    Skipped(String),
}

pub type Test = (&'static str, fn() -> Outcome);

/// Runs `tests` as libtest would: `[FILTER] [--exact] [--list]`; other flags
/// are accepted and ignored.
pub fn main(tests: &[Test]) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exact = args.iter().any(|a| a == "--exact");
    let filter = args.iter().find(|a| !a.starts_with('-'));
    let chosen: Vec<&Test> = tests
        .iter()
        .filter(|(name, _)| {
            filter.is_none_or(|f| {
                if exact {
                    *name == f.as_str()
                } else {
                    name.contains(f.as_str())
                }
            })
        })
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &chosen {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    println!("\nrunning {} tests", chosen.len());
    let (mut passed, mut failed, mut ignored) = (0, Vec::new(), 0);
    for (name, test) in &chosen {
        match std::panic::catch_unwind(AssertUnwindSafe(test)) {
            Ok(Outcome::Passed) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Ok(Outcome::Skipped(why)) => {
                ignored += 1;
                println!("test {name} ... ignored, {why}");
            }
            Err(_) => {
                failed.push(*name);
                println!("test {name} ... FAILED");
            }
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:\n    {}", failed.join("\n    "));
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; {ignored} ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        tests.len() - chosen.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
