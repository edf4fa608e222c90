//! Text from outside (the identity platform's device-code message and error descriptions, Graph's headers, the
//! daemon's error messages that quote them, account names) made harmless for a terminal before it is printed.
//!
//! A terminal acts on what it is sent: an escape sequence can clear the screen, retitle the window, or draw an
//! OSC 8 link that shows one URL and opens another; a bidi override can make text read differently than it is.
//! So every C0 control but newline and tab, DEL, every C1 control (U+0080–U+009F, which some terminals take as
//! escapes), and the bidi controls are shown as a visible `\u{…}` instead of being sent. Printable text,
//! including non-ASCII letters, passes unchanged. The answers a program consumes (`token`'s raw, env, json and
//! other formats, `graph`'s body) are not touched: they are data, and must stay exact.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as it is.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character shown as `\u{…}`.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_controls_are_shown_not_sent() {
        assert_eq!(
            for_terminal("Öffne https://microsoft.com/devicelogin\n\tcode"),
            "Öffne https://microsoft.com/devicelogin\n\tcode"
        );
        assert_eq!(for_terminal("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        let osc8 = "\x1b]8;;https://evil.example\x1b\\https://microsoft.com\x1b]8;;\x1b\\";
        assert!(!for_terminal(osc8).contains('\x1b'));
        assert_eq!(for_terminal("x\u{9b}y\u{7f}\r\u{202e}z"), "x\\u{9b}y\\u{7f}\\u{d}\\u{202e}z");
    }
}
