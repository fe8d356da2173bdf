//! The `experiment` template: literal text with `{project}` and `{experiment}` placeholders
//! (`{{` and `}}` for literal braces).

use sagesync_core::RunRecord;

/// The longest experiment name a tracking server accepts, in characters.
pub const MAX_EXPERIMENT_NAME_CHARS: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Project,
    Experiment,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentTemplate {
    pieces: Vec<Piece>,
}

impl ExperimentTemplate {
    /// Parses a template; unknown placeholders and unbalanced braces are errors.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for n in chars.by_ref() {
                        if n == '}' {
                            closed = true;
                            break;
                        }
                        name.push(n);
                    }
                    if !closed {
                        return Err("has a `{` without its `}` (write `{{` for a literal brace)".into());
                    }
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(match name.as_str() {
                        "project" => Piece::Project,
                        "experiment" => Piece::Experiment,
                        other => return Err(format!("unknown placeholder `{{{other}}}`; available: {{project}}, {{experiment}}")),
                    });
                }
                '}' => return Err("has a `}` without its `{` (write `}}` for a literal brace)".into()),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        if pieces.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(ExperimentTemplate { pieces })
    }

    /// The experiment name for `record`; an empty or too long name is an error.
    pub fn render(&self, record: &RunRecord) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Project => out.push_str(&record.project.name),
                Piece::Experiment => out.push_str(&record.experiment),
            }
        }
        if out.trim().is_empty() {
            return Err("the experiment name is empty for this job (check the template and the job's project tag)".into());
        }
        if out.chars().count() > MAX_EXPERIMENT_NAME_CHARS {
            return Err(format!("the experiment name is longer than {MAX_EXPERIMENT_NAME_CHARS} characters"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert!(ExperimentTemplate::parse("{project}").is_ok());
        assert!(ExperimentTemplate::parse("sm/{project}/{experiment}").is_ok());
        assert!(ExperimentTemplate::parse("{{literal}}").is_ok());
        assert!(ExperimentTemplate::parse("{team}").unwrap_err().contains("team"));
        assert!(ExperimentTemplate::parse("{project").is_err());
        assert!(ExperimentTemplate::parse("x}").is_err());
        assert!(ExperimentTemplate::parse("").is_err());
    }
}
