//! Text from other people made safe to draw. Two kinds of characters let a
//! message reach outside its own line: direction overrides, which turn a
//! link's shown address around (`exa` U+202E `mple.com/gpj.exe` reads as
//! `exaexe.jpg/moc.elpm`) and reverse the text after them, and long runs of
//! combining marks ("Zalgo" text), which stack hundreds of pixels high over
//! the lines above. The first are shown as their code (as `client-cli`
//! shows them); runs of the second are cut to a few marks.

use std::borrow::Cow;

/// Combining marks kept on one character: enough for any real script.
const MARKS: usize = 4;

/// `text` with direction controls spelled out and combining-mark runs cut.
pub fn shown(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| is_direction(c) || is_mark(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut run = 0;
    for c in text.chars() {
        if is_mark(c) {
            run += 1;
            if run > MARKS {
                continue;
            }
        } else {
            run = 0;
        }
        if is_direction(c) {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Characters that change the direction of the text after them.
fn is_direction(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}' | '\u{200e}' | '\u{200f}')
}

/// The blocks of combining marks that pile-up text is made of.
fn is_mark(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036f}'
            | '\u{0483}'..='\u{0489}'
            | '\u{1ab0}'..='\u{1aff}'
            | '\u{1dc0}'..='\u{1dff}'
            | '\u{20d0}'..='\u{20ff}'
            | '\u{fe20}'..='\u{fe2f}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_overrides_are_spelled_out() {
        assert_eq!(
            shown("https://exa\u{202e}mple.com/gpj.exe"),
            "https://exa<U+202E>mple.com/gpj.exe"
        );
        assert_eq!(shown("a\u{2067}b\u{2069}"), "a<U+2067>b<U+2069>");
    }

    #[test]
    fn mark_runs_are_cut_and_real_accents_kept() {
        let zalgo = format!("Z{}", "\u{0301}\u{0317}\u{0338}".repeat(500));
        let cut = shown(&zalgo);
        assert_eq!(cut.chars().count(), 1 + MARKS);
        // é written as e + U+0301, Vietnamese with two marks, Korean: kept.
        for fine in [
            "cafe\u{0301}",
            "Vie\u{0323}\u{0302}t",
            "안녕하세요",
            "plain",
        ] {
            assert_eq!(shown(fine), fine);
        }
    }
}
