//! Percent-encoding of one URL component (a path segment, a query value, URL userinfo):
//! the one definition the CLI and the gateway share.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` percent-encoded as one URL component (upper-case hex, as RFC 3986 recommends).
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::encode_component;

    #[test]
    fn only_unreserved_characters_pass_unencoded() {
        assert_eq!(encode_component("a-Z.0_~"), "a-Z.0_~");
        assert_eq!(
            encode_component("../x y?&=/#%"),
            "..%2Fx%20y%3F%26%3D%2F%23%25"
        );
        assert_eq!(encode_component("pä:ss@"), "p%C3%A4%3Ass%40");
    }
}
