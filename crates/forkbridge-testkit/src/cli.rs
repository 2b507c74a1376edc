//! The command line the bench and the soak suite share:
//! `[SCENARIO...] [--quick]`, and `--help`.
//!
//! Both are a table of named scenarios run at one of two scales. Naming
//! scenarios runs those (in the table's order), none runs all; `--quick`
//! picks the short scale. Anything else is refused with the list of
//! scenarios (exit status 2), so a typo never starts the full run.

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioArgs {
    /// `--quick`: the short scale (a smoke run, as CI and the tests use).
    pub quick: bool,
    /// The scenarios named; empty runs them all.
    pub wanted: Vec<String>,
}

/// How a parse ended, when it did not give [`ScenarioArgs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRun {
    /// `--help` or `-h`: print the usage, exit 0.
    Help,
    /// A word that is neither a scenario nor an option: why, exit 2.
    Bad(String),
}

impl ScenarioArgs {
    /// Parses `args` (without the program's name) against the scenario
    /// names `known`.
    pub fn parse<I>(args: I, known: &[&str]) -> Result<ScenarioArgs, NotRun>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let mut parsed = ScenarioArgs {
            quick: false,
            wanted: Vec::new(),
        };
        for arg in args {
            let arg: String = arg.into();
            match arg.as_str() {
                "--quick" => parsed.quick = true,
                "--help" | "-h" => return Err(NotRun::Help),
                option if option.starts_with('-') => {
                    return Err(NotRun::Bad(format!("unknown option '{option}'")));
                }
                name if known.contains(&name) => parsed.wanted.push(arg),
                name => {
                    return Err(NotRun::Bad(format!(
                        "unknown scenario '{name}'; known: {}",
                        known.join(", ")
                    )));
                }
            }
        }
        Ok(parsed)
    }

    /// Parses this process's arguments against the names of `scenarios`.
    /// On `--help` prints `usage` and the scenario names and exits 0; on a
    /// bad word says why and exits 2.
    pub fn from_env<T>(usage: &str, scenarios: &[(&str, T)]) -> ScenarioArgs {
        let known: Vec<&str> = scenarios.iter().map(|(name, _)| *name).collect();
        match ScenarioArgs::parse(std::env::args().skip(1), &known) {
            Ok(parsed) => parsed,
            Err(NotRun::Help) => {
                println!("{usage}\n\nscenarios:");
                for name in &known {
                    println!("  {name}");
                }
                std::process::exit(0);
            }
            Err(NotRun::Bad(why)) => {
                eprintln!("{why}\n(--help for the usage)");
                std::process::exit(2);
            }
        }
    }

    /// The entries of `scenarios` to run, in the table's order.
    pub fn selected<'a, T>(
        &'a self,
        scenarios: &'a [(&'static str, T)],
    ) -> impl Iterator<Item = &'a (&'static str, T)> + 'a {
        scenarios
            .iter()
            .filter(|(name, _)| self.wanted.is_empty() || self.wanted.iter().any(|w| w == name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["cycles", "edges", "signals"];

    #[test]
    fn names_and_quick_are_taken_in_any_order() {
        let parsed = ScenarioArgs::parse(["edges", "--quick", "cycles"], KNOWN).unwrap();
        assert!(parsed.quick);
        assert_eq!(parsed.wanted, ["edges", "cycles"]);
        let table = [("cycles", 1), ("edges", 2), ("signals", 3)];
        let run: Vec<i32> = parsed.selected(&table).map(|(_, n)| *n).collect();
        assert_eq!(run, [1, 2], "in the table's order");
    }

    #[test]
    fn no_names_runs_every_scenario_at_full_scale() {
        let parsed = ScenarioArgs::parse(Vec::<String>::new(), KNOWN).unwrap();
        assert!(!parsed.quick);
        assert_eq!(parsed.selected(&[("a", ()), ("b", ())]).count(), 2);
    }

    #[test]
    fn help_and_bad_words_do_not_run_anything() {
        assert_eq!(ScenarioArgs::parse(["--help"], KNOWN), Err(NotRun::Help));
        assert_eq!(ScenarioArgs::parse(["-h"], KNOWN), Err(NotRun::Help));
        match ScenarioArgs::parse(["cycle"], KNOWN) {
            Err(NotRun::Bad(why)) => {
                assert_eq!(
                    why,
                    "unknown scenario 'cycle'; known: cycles, edges, signals"
                );
            }
            other => panic!("{other:?}"),
        }
        match ScenarioArgs::parse(["--quik"], KNOWN) {
            Err(NotRun::Bad(why)) => assert_eq!(why, "unknown option '--quik'"),
            other => panic!("{other:?}"),
        }
    }
}
