//! `${…}` in job files, expanded before parsing: secrets and addresses come
//! from the environment, as in Vector and docker-compose.

use crate::Error;

/// One `${…}`: `NAME`, `NAME:-default` (unset or empty: the default) or
/// `NAME:?message` (unset or empty: an error with the message), as in the
/// shell and Vector.
fn expand_one(inner: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<String, Error> {
    let (name, op) = match inner.find(":-").into_iter().chain(inner.find(":?")).min() {
        Some(at) => (&inner[..at], Some((&inner[at..at + 2], &inner[at + 2..]))),
        None => (inner, None),
    };
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(Error::Config {
            field: format!("${{{inner}}}"),
            message: format!("`{name}` is not a variable name. Fix: ${{NAME}}, ${{NAME:-default}} or ${{NAME:?message}} with NAME of letters, digits and _"),
        });
    }
    let value = lookup(name).filter(|v| op.is_none() || !v.is_empty());
    match (value, op) {
        (Some(v), _) => Ok(v),
        (None, Some((":-", default))) => Ok(default.to_string()),
        (None, Some((_, message))) => Err(Error::Config {
            field: format!("${{{name}}}"),
            message: format!("environment variable `{name}` is not set or empty: {message}. Fix: export {name}=..."),
        }),
        (None, None) => Err(Error::Config {
            field: format!("${{{name}}}"),
            message: format!("environment variable `{name}` is not set. Fix: export {name}=..., or write ${{{name}:-default}}"),
        }),
    }
}

/// Replaces `${NAME}` with `lookup(NAME)` (and the `:-` / `:?` forms of
/// `expand_one`); `$${` stays a literal `${`. An unset variable is an
/// error that names it.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, Error> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let Some(end) = rest[i + 2..].find('}') else {
            return Err(Error::Config {
                field: "job file".into(),
                message: "`${` without a closing `}`. Fix: write ${NAME}, or $${ for a literal"
                    .into(),
            });
        };
        let inner = &rest[i + 2..i + 2 + end];
        out.push_str(&expand_one(inner, &lookup)?);
        rest = &rest[i + 3 + end..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_environment_variables() {
        let env = |k: &str| (k == "PW").then(|| "s3cret".to_string());
        assert_eq!(
            expand_env("password = \"${PW}\" # $${PW}", env).unwrap(),
            "password = \"s3cret\" # ${PW}"
        );
        let e = expand_env("x = \"${NOPE}\"", env).unwrap_err().to_string();
        assert!(e.contains("NOPE") && e.contains("export"), "{e}");
        assert!(expand_env("x = \"${PW\"", env).is_err());
    }

    #[test]
    fn defaults_and_required_messages_as_in_the_shell() {
        let env = |k: &str| match k {
            "SET" => Some("v".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let x = |t: &str| expand_env(t, env).map_err(|e| e.to_string());
        assert_eq!(x("${SET:-d}").unwrap(), "v");
        assert_eq!(x("${NOPE:-d}").unwrap(), "d");
        assert_eq!(x("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(x("${EMPTY}").unwrap(), "");
        assert_eq!(x("${NOPE:-}").unwrap(), "");
        assert_eq!(x("${NOPE:-a:-b}").unwrap(), "a:-b");
        assert_eq!(x("${SET:?need it}").unwrap(), "v");
        let e = x("${EMPTY:?set the broker address}").unwrap_err();
        assert!(
            e.contains("EMPTY") && e.contains("set the broker address"),
            "{e}"
        );
        let e = x("${V-x}").unwrap_err();
        assert!(
            e.contains("not a variable name") && !e.contains("export V-x"),
            "{e}"
        );
        assert!(x("${}").is_err() && x("${1A}").is_err());
    }
}
