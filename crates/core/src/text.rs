//! Text forms shared by the engine and the plugins.

/// Every byte but RFC 3986's unreserved ones (letters, digits, `-`, `.`, `_`, `~`): how a URL's
/// path segment carries a value.
pub const NOT_UNRESERVED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The percent-encoded form of `s` (see [`NOT_UNRESERVED`]): a URL path segment that carries
/// it, as a URL shows it.
pub fn percent_encoded(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

/// What a URL parser (the WHATWG rules the `url` crate follows) encodes in a path: controls,
/// space, `"`, `#`, `<`, `>`, `` ` ``, `?`, `{`, `}` and non-ASCII; the rest of the reserved
/// characters stay as written.
pub const URL_PATH: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'#').add(b'<').add(b'>').add(b'`').add(b'?').add(b'{').add(b'}');

/// Every form `s` may take inside a URL: as written, fully percent-encoded, and as a URL parser
/// leaves it in a path.
pub fn url_forms(s: &str) -> Vec<String> {
    let mut out = vec![s.to_string()];
    for f in [percent_encoded(s), percent_encoding::utf8_percent_encode(s, URL_PATH).to_string()] {
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_unreserved_bytes_stay() {
        assert_eq!(super::percent_encoded("a-b.c_d~e f/é"), "a-b.c_d~e%20f%2F%C3%A9");
    }
}
