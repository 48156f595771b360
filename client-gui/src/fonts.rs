//! The fonts the window draws with. They are built into the binary so that
//! text, emoji and Chinese, Japanese and Korean look the same on every
//! machine; `fonts/README.md` says where each comes from and why.
//!
//! Loading them is not enough on its own. The text engine (cosmic-text)
//! shapes a word with the text font first and hands only the glyphs that
//! font lacks to the next font in its fallback order, and its own order
//! puts DejaVu Sans, whose black-and-white emoji most Linux machines have,
//! before any colour emoji font. So [`install`] also decides that order
//! (iced's `application(..).font(..)` can only add a font, copying it).

use std::sync::{Arc, Once, PoisonError};

use iced_graphics::text::cosmic_text::{self, fontdb, Fallback, PlatformFallback};
use unicode_script::Script;

/// The family of all text: what `Font::DEFAULT` resolves to.
pub const TEXT: &str = "Open Sans";
/// The colour emoji family.
pub const EMOJI: &str = "Noto Color Emoji";
/// The family for Chinese, Japanese and Korean.
pub const CJK: &str = "Droid Sans Fallback";

const TEXT_FACES: [&[u8]; 4] = [
    include_bytes!("../fonts/OpenSans-Regular.ttf"),
    include_bytes!("../fonts/OpenSans-Bold.ttf"),
    include_bytes!("../fonts/OpenSans-Italic.ttf"),
    include_bytes!("../fonts/OpenSans-BoldItalic.ttf"),
];
const EMOJI_FACE: &[u8] = include_bytes!("../fonts/NotoColorEmoji.ttf");
const CJK_FACE: &[u8] = include_bytes!("../fonts/DroidSansFallback.ttf");

/// Puts the built-in fonts into iced's font system and makes them the
/// first choice for text, emoji and CJK, ahead of the machine's own fonts,
/// which still serve every other script. Call it before the first text is
/// laid out (before the window opens; first thing in a headless test).
/// Later calls do nothing.
pub fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let mut fonts = iced_graphics::text::font_system()
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let raw = fonts.raw();
        let empty =
            cosmic_text::FontSystem::new_with_locale_and_db(String::new(), fontdb::Database::new());
        let (locale, mut db) = std::mem::replace(raw, empty).into_locale_and_db();
        add_faces(&mut db);
        *raw =
            cosmic_text::FontSystem::new_with_locale_and_db_and_fallback(locale, db, Order::new());
    });
}

fn add_faces(db: &mut fontdb::Database) {
    // An installed font of one of our families (a different version, or
    // Debian's DroidSansFallbackFull.ttf, which has no Hangul) would be
    // picked as often as ours, machine by machine.
    let installed: Vec<fontdb::ID> = db
        .faces()
        .filter(|face| {
            face.families
                .iter()
                .any(|(name, _)| [TEXT, EMOJI, CJK].contains(&name.as_str()))
        })
        .map(|face| face.id)
        .collect();
    for id in installed {
        db.remove_face(id);
    }

    for face in TEXT_FACES {
        db.load_font_source(source(face));
    }
    // The emoji and CJK fonts come in one face, regular. cosmic-text looks
    // for a missing glyph only among faces of the text's exact weight and
    // style, so without these entries a bold name or an italic notice would
    // take its emoji and Hangul from whatever the machine has, or show
    // boxes. Every entry reads the same bytes. Only the four looks the text
    // font has: for a look it lacks, the first font that has it would draw
    // the whole word, and the emoji font would draw digits as emoji.
    for bytes in [EMOJI_FACE, CJK_FACE] {
        for id in db.load_font_source(source(bytes)) {
            let Some(face) = db.face(id).cloned() else {
                continue;
            };
            for (weight, style) in [
                (fontdb::Weight::BOLD, fontdb::Style::Normal),
                (fontdb::Weight::NORMAL, fontdb::Style::Italic),
                (fontdb::Weight::BOLD, fontdb::Style::Italic),
            ] {
                db.push_face_info(fontdb::FaceInfo {
                    id: fontdb::ID::dummy(),
                    weight,
                    style,
                    ..face.clone()
                });
            }
        }
    }
    db.set_sans_serif_family(TEXT);
}

fn source(bytes: &'static [u8]) -> fontdb::Source {
    // Borrowed, not copied: the emoji font alone is 11 MB.
    fontdb::Source::Binary(Arc::new(bytes))
}

/// Which fonts cosmic-text tries, in turn, for the glyphs the text font
/// lacks: ours first, then the platform's usual list.
struct Order {
    platform: PlatformFallback,
    common: Vec<&'static str>,
}

impl Order {
    fn new() -> Order {
        let platform = PlatformFallback;
        // The text font leads even here: when a font is asked for that the
        // machine lacks (`Font::MONOSPACE` with no monospaced font
        // installed), the first family of this list draws the whole text,
        // and the emoji font would draw its digits as emoji.
        let mut common = vec![TEXT, EMOJI, CJK];
        common.extend(platform.common_fallback());
        Order { platform, common }
    }
}

impl Fallback for Order {
    fn common_fallback(&self) -> &[&'static str] {
        &self.common
    }

    fn forbidden_fallback(&self) -> &[&'static str] {
        self.platform.forbidden_fallback()
    }

    fn script_fallback(&self, script: Script, locale: &str) -> &[&'static str] {
        match script {
            Script::Han
            | Script::Hangul
            | Script::Hiragana
            | Script::Katakana
            | Script::Bopomofo => &[CJK],
            _ => self.platform.script_fallback(script, locale),
        }
    }
}
