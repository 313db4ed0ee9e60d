//! Splitting a webhook's `metadata.cmd` into words the way a POSIX shell would for a
//! simple command, and Go's duration syntax (`-z 1m`, `metadata.timeout: 30s`), so the
//! command lines users wrote for Flagger's load tester keep their meaning without a
//! shell being involved.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WordsError {
    #[error("the command is empty")]
    Empty,
    #[error("the command has an unclosed {0} quote")]
    UnclosedQuote(char),
    #[error("the command ends with a lone backslash")]
    TrailingBackslash,
    #[error(
        "the command uses shell syntax `{0}`, which only runs with metadata.type: bash \
         (and the load tester started with --enable-bash)"
    )]
    ShellSyntax(String),
}

/// Splits `line` into words: whitespace separates words, single quotes keep everything
/// literally, double quotes keep everything but `\"`, `\\`, `\$` and `` \` `` escapes, a
/// backslash outside quotes escapes the next character. Unquoted shell operators
/// (pipes, redirections, `;`, `&`, command substitution) are an error rather than
/// being passed on as arguments, because nothing would interpret them.
pub fn split(line: &str) -> Result<Vec<String>, WordsError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(WordsError::UnclosedQuote('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => word.push(e),
                            Some('\n') => {}
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => return Err(WordsError::UnclosedQuote('"')),
                        },
                        Some('`') => return Err(WordsError::ShellSyntax("`".into())),
                        Some('$') if chars.peek() == Some(&'(') => {
                            return Err(WordsError::ShellSyntax("$(".into()));
                        }
                        Some(c) => word.push(c),
                        None => return Err(WordsError::UnclosedQuote('"')),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(e) => {
                    in_word = true;
                    word.push(e);
                }
                None => return Err(WordsError::TrailingBackslash),
            },
            '|' | '&' | ';' | '<' | '>' | '`' => {
                let mut op = c.to_string();
                if let Some(&next) = chars.peek()
                    && matches!(next, '|' | '&' | '>')
                {
                    op.push(next);
                }
                return Err(WordsError::ShellSyntax(op));
            }
            '$' if chars.peek() == Some(&'(') => {
                return Err(WordsError::ShellSyntax("$(".into()));
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err(WordsError::Empty);
    }
    Ok(words)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (write it like 30s, 1m, 1h30m or 500ms)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// Parses a Go duration (`time.ParseDuration`): a sequence of decimal numbers with a
/// unit each (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), like `1m30s` or `1.5h`; a bare `0`
/// is zero. Negative durations are refused: nothing here can wait a negative time.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(err("a duration cannot be negative"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(err("expected a number"));
        }
        let value: f64 = num.parse().map_err(|_| err("expected a number"))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let seconds_per_unit = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(err("a unit is missing")),
            _ => return Err(err("unknown unit")),
        };
        total += value * seconds_per_unit;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| err("it is too large"))
}

/// Go's `strconv.ParseBool`, which Flagger uses for `logCmdOutput` and
/// `returnCmdOutput`.
pub fn parse_go_bool(input: &str) -> Option<bool> {
    match input {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            split(r#"hey -z 1m -H "Authorization: Bearer x y" -d '{"a": 1}' http://a/"#).unwrap(),
            vec![
                "hey",
                "-z",
                "1m",
                "-H",
                "Authorization: Bearer x y",
                "-d",
                r#"{"a": 1}"#,
                "http://a/"
            ]
        );
        assert_eq!(
            split(r#"a\ b "c\"d" e''f"#).unwrap(),
            vec!["a b", "c\"d", "ef"]
        );
        assert_eq!(split(r#""""#).unwrap(), vec![""]);
    }

    #[test]
    fn refuses_shell_syntax_and_broken_quotes() {
        assert_eq!(
            split("curl -s http://x | grep token"),
            Err(WordsError::ShellSyntax("|".into()))
        );
        assert_eq!(split("a && b"), Err(WordsError::ShellSyntax("&&".into())));
        assert_eq!(split("a 2>&1"), Err(WordsError::ShellSyntax(">&".into())));
        assert_eq!(
            split("echo $(id)"),
            Err(WordsError::ShellSyntax("$(".into()))
        );
        assert_eq!(split("echo 'a"), Err(WordsError::UnclosedQuote('\'')));
        assert_eq!(split("echo \"a"), Err(WordsError::UnclosedQuote('"')));
        assert_eq!(split("   "), Err(WordsError::Empty));
        // Quoted operators are plain characters.
        assert_eq!(split("echo 'a|b'").unwrap(), vec!["echo", "a|b"]);
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_go_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "10", "1x", "-1s", "s", "1m30"] {
            assert!(parse_go_duration(bad).is_err(), "{bad} should be refused");
        }
    }
}
