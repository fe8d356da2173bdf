//! `${VAR}`, `${VAR:-default}` and `$$` in string values.

/// Expands `${VAR}`, `${VAR:-default}` and `$$` in `s`. An empty variable counts as unset when a
/// default is given. Messages name the variable, never its value.
pub fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some((_, '$')) => {
                chars.next();
                out.push('$');
            }
            Some((_, '{')) => {
                let rest = &s[i + 2..];
                let Some(close) = rest.find('}') else {
                    return Err("unterminated `${` in value".to_string());
                };
                let expr = &rest[..close];
                let (name, default) = match expr.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (expr, None),
                };
                let valid = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                if !valid {
                    return Err(format!("invalid environment variable name `{}` in `${{...}}`", name));
                }
                match env(name) {
                    Some(v) if !(v.is_empty() && default.is_some()) => out.push_str(&v),
                    _ => match default {
                        Some(d) => out.push_str(d),
                        None => {
                            return Err(format!(
                                "environment variable `{}` is not set (write `${{{}:-default}}` to give a default)",
                                name, name
                            ))
                        }
                    },
                }
                let end = i + 2 + close;
                while let Some((j, _)) = chars.peek() {
                    if *j <= end {
                        chars.next();
                    } else {
                        break;
                    }
                }
            }
            _ => out.push('$'),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME_DIR" => Some("/home/me".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn interpolation_forms() {
        assert_eq!(interpolate("${HOME_DIR}/x", &env).unwrap(), "/home/me/x");
        assert_eq!(interpolate("${NOPE:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(interpolate("${EMPTY:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(interpolate("cost $$5 and $x", &env).unwrap(), "cost $5 and $x");
        assert!(interpolate("${NOPE}", &env).unwrap_err().contains("`NOPE` is not set"));
        assert!(interpolate("${1BAD}", &env).is_err());
        assert!(interpolate("${OPEN", &env).is_err());
    }
}
