//! `ssl.principal.mapping.rules`: Kafka's rules that turn a client certificate's subject
//! (`CN=alice,OU=eng,O=Acme`) into a user name. A list of `RULE:pattern/replacement/[LU]` and
//! `DEFAULT`, tried in order; the first whose pattern matches the whole subject wins. `DEFAULT`
//! keeps the subject as it is. `$1`... in a replacement are the pattern's groups; `L` / `U` lower-
//! or upper-case the result.

use regex_lite::Regex;

/// One parsed rule.
#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        pattern: Regex,
        /// In regex-lite's syntax (`${1}`), converted from Java's `$1`.
        replacement: String,
        case: Case,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// The parsed `ssl.principal.mapping.rules`.
#[derive(Debug, Clone)]
pub struct PrincipalRules {
    rules: Vec<Rule>,
}

impl PrincipalRules {
    /// Parses a rule list; `DEFAULT` alone is Kafka's default.
    pub fn parse(text: &str) -> Result<PrincipalRules, String> {
        let mut rules = Vec::new();
        let mut rest = text.trim_start();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = until_slash(after)
                    .ok_or_else(|| format!("rule '{}' lacks a '/' after its pattern", rest))?;
                let (replacement, after) = until_slash(after)
                    .ok_or_else(|| format!("rule '{}' lacks a '/' after its replacement", rest))?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Case::Lower, &after[1..]),
                    Some('U') => (Case::Upper, &after[1..]),
                    _ => (Case::Keep, after),
                };
                let anchored = format!("^(?:{pattern})$");
                let pattern = Regex::new(&anchored)
                    .map_err(|e| format!("rule pattern '{pattern}' is not a regex: {e}"))?;
                rules.push(Rule::Replace {
                    pattern,
                    replacement: java_to_regex_replacement(&replacement),
                    case,
                });
                rest = after;
            } else {
                return Err(format!(
                    "'{rest}' is not RULE:pattern/replacement/[LU] or DEFAULT"
                ));
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(format!("expected ',' between rules, found '{rest}'")),
            }
        }
        if rules.is_empty() {
            rules.push(Rule::Default);
        }
        Ok(PrincipalRules { rules })
    }

    /// The user name for `subject`, or `None` when no rule applies (the handshake is refused, as
    /// Kafka does).
    pub fn apply(&self, subject: &str) -> Option<String> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Some(subject.to_string()),
                Rule::Replace {
                    pattern,
                    replacement,
                    case,
                } => {
                    let Some(captures) = pattern.captures(subject) else {
                        continue;
                    };
                    let mut out = String::new();
                    captures.expand(replacement, &mut out);
                    return Some(match case {
                        Case::Keep => out,
                        Case::Lower => out.to_lowercase(),
                        Case::Upper => out.to_uppercase(),
                    });
                }
            }
        }
        None
    }
}

/// Splits at the first `/` not escaped as `\/`, unescaping `\/` in the part before it.
fn until_slash(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if text[i + 1..].starts_with('/') => {
                out.push('/');
                chars.next();
            }
            '/' => return Some((out, &text[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// Java's `$1` becomes `${1}` (regex-lite would read `$1abc` as a group named `1abc`); a literal
/// `$` stays one.
fn java_to_regex_replacement(java: &str) -> String {
    let mut out = String::new();
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push_str("${");
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    out.push(d);
                    chars.next();
                }
                out.push('}');
            }
            '$' => out.push_str("$$"),
            '\\' => {
                if let Some(next) = chars.next() {
                    if next == '$' {
                        out.push_str("$$");
                    } else {
                        out.push(next);
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keeps_the_subject() {
        let rules = PrincipalRules::parse("DEFAULT").unwrap();
        assert_eq!(
            rules.apply("CN=alice,O=Acme").as_deref(),
            Some("CN=alice,O=Acme")
        );
    }

    #[test]
    fn kafka_documentation_examples() {
        let rules = PrincipalRules::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,DEFAULT",
        )
        .unwrap();
        assert_eq!(
            rules
                .apply("CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown")
                .as_deref(),
            Some("serviceuser")
        );
        assert_eq!(
            rules
                .apply("CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown")
                .as_deref(),
            Some("adminuser@admin")
        );
        assert_eq!(rules.apply("OU=x,CN=Alice.B").as_deref(), Some("alice.b"));
        assert_eq!(rules.apply("O=nobody").as_deref(), Some("O=nobody"));
    }

    #[test]
    fn no_matching_rule_is_none_and_bad_rules_are_refused() {
        let rules = PrincipalRules::parse("RULE:^CN=(.*)$/$1/U").unwrap();
        assert_eq!(rules.apply("CN=bob").as_deref(), Some("BOB"));
        assert_eq!(rules.apply("O=bob"), None);
        assert!(PrincipalRules::parse("RULE:^CN=(.*)$").is_err());
        assert!(PrincipalRules::parse("SOMETHING").is_err());
        assert!(PrincipalRules::parse("RULE:(/x/").is_err());
    }
}
