//! Which font draws what, asked of the text engine the window draws with,
//! after `fonts::install`: in regular, bold (names, titles) and italic
//! (notices) alike, emoji come from the colour font and rasterise in colour,
//! Chinese, Japanese and Korean from the CJK font, everything else from the
//! text font, whatever fonts this machine has. The Xvfb test
//! (tests/tests/gui_fonts.rs) checks the same on the screen.

use client_gui::fonts::{self, CJK, EMOJI, TEXT};
use iced_graphics::text::cosmic_text::{
    fontdb, Attrs, Buffer, Family, FontSystem, Metrics, Shaping, Style, SwashCache, SwashContent,
    Weight,
};

/// One shaped glyph: the text it stands for, its font's family, whether
/// the font had it, and what the rasteriser makes of it.
#[derive(Debug)]
struct Drawn {
    text: String,
    family: String,
    missing: bool,
    content: Option<SwashContent>,
}

fn draw(text: &str, family: Family<'_>, weight: Weight, style: Style) -> Vec<Drawn> {
    fonts::install();
    let mut system = iced_graphics::text::font_system()
        .write()
        .unwrap_or_else(|e| e.into_inner());
    let system: &mut FontSystem = system.raw();
    let mut buffer = Buffer::new(system, Metrics::new(16.0, 20.0));
    let attrs = Attrs::new().family(family).weight(weight).style(style);
    buffer.set_text(system, text, &attrs, Shaping::Advanced, None);
    let mut swash = SwashCache::new();
    let glyphs: Vec<_> = buffer
        .layout_runs()
        .flat_map(|run| run.glyphs.iter().cloned())
        .collect();
    glyphs
        .into_iter()
        .filter(|g| !text[g.start..g.end].trim().is_empty())
        .map(|g| {
            let family = system
                .db()
                .face(g.font_id)
                .and_then(|face: &fontdb::FaceInfo| face.families.first())
                .map(|(name, _)| name.clone())
                .unwrap_or_default();
            let key = g.physical((0.0, 0.0), 1.0).cache_key;
            Drawn {
                text: text[g.start..g.end].to_owned(),
                family,
                missing: g.glyph_id == 0,
                content: swash.get_image_uncached(system, key).map(|i| i.content),
            }
        })
        .collect()
}

const LOOKS: [(Weight, Style, &str); 3] = [
    (Weight::NORMAL, Style::Normal, "regular"),
    (Weight::BOLD, Style::Normal, "bold"),
    (Weight::NORMAL, Style::Italic, "italic"),
];

#[test]
fn emoji_come_from_the_colour_font_in_colour_in_every_look() {
    // 😀 and ❤ are in DejaVu Sans too, in black and white; the family is
    // one emoji made of seven code points.
    let text = "party 🎉 😀 👍 ❤\u{fe0f} ❤ 👨\u{200d}👩\u{200d}👧\u{200d}👦";
    for (weight, style, look) in LOOKS {
        let drawn = draw(text, Family::SansSerif, weight, style);
        let (letters, emoji): (Vec<_>, Vec<_>) = drawn.iter().partition(|d| d.text.is_ascii());
        assert_eq!(emoji.len(), 6, "{look}: one glyph per emoji: {drawn:#?}");
        for d in emoji {
            assert!(
                d.family == EMOJI && !d.missing && d.content == Some(SwashContent::Color),
                "{look}: {:?} is not a colour emoji from {EMOJI}: {d:?}",
                d.text
            );
        }
        for d in letters {
            assert_eq!(d.family, TEXT, "{look}: {d:?}");
        }
    }
}

#[test]
fn chinese_japanese_and_korean_come_from_the_cjk_font_in_every_look() {
    let text = "안녕하세요 你好 こんにちは カタカナ";
    for (weight, style, look) in LOOKS {
        let drawn = draw(text, Family::SansSerif, weight, style);
        assert_eq!(drawn.len(), 16, "{look}: {drawn:#?}");
        for d in &drawn {
            assert!(
                d.family == CJK && !d.missing && d.content == Some(SwashContent::Mask),
                "{look}: {:?} is not drawn from {CJK}: {d:?}",
                d.text
            );
        }
    }
}

#[test]
fn text_digits_and_symbols_stay_with_the_text_font() {
    // Digits, # and © are in the emoji font too, as emoji.
    let text = "Ünïcödé 0123456789 #1 © Ωμέγα Кириллица";
    for (weight, style, look) in LOOKS {
        for d in draw(text, Family::SansSerif, weight, style) {
            assert!(
                d.family == TEXT && !d.missing && d.content == Some(SwashContent::Mask),
                "{look}: {:?} is not drawn from {TEXT}: {d:?}",
                d.text
            );
        }
    }
    // The fingerprint screen's monospaced hex: from a monospaced font when
    // the machine has one, from the text font when not, never as emoji.
    for d in draw(
        "SHA256 0f:9a:3c",
        Family::Monospace,
        Weight::NORMAL,
        Style::Normal,
    ) {
        assert!(
            d.family != EMOJI && !d.missing,
            "{:?} in monospace: {d:?}",
            d.text
        );
    }
}
