//! Emoji and Chinese, Japanese and Korean in the real window, on a machine
//! with no emoji or CJK font of its own: the fonts built into client-gui
//! must draw them, the emoji in colour. The screenshots prove it by their
//! pixels and land in target/gui-e2e/ to look at.
//!
//! Each line under test is found as the difference between the window
//! before and after it arrived, so the checks do not depend on the layout.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use confab_tests::gui::{add_user, require, shots, Gui, Xvfb};
use confab_tests::Relay;

const ALICE_PASSWORD: &str = "alicepassword1";
/// Spaces between the emoji, so each is a patch of colour of its own.
/// DejaVu Sans, on most Linux machines, has black-and-white glyphs of the
/// second and the last, which used to win over a colour emoji font.
const EMOJI: &str = "party 🎉 😀 👍 ❤\u{fe0f}";
/// 12 characters in three scripts, none of them in the text font.
const CJK: &str = "안녕하세요 你好 こんにちは";
/// 12 unassigned code points: what a character no font has looks like.
const MISSING: &str =
    "\u{378}\u{379}\u{380}\u{381} \u{382}\u{383} \u{38b}\u{38d}\u{3a2}\u{530}\u{557}\u{558}";

#[tokio::test(flavor = "multi_thread")]
async fn emoji_arrive_in_colour_and_cjk_text_without_boxes() {
    // ImageMagick's, like `import`: it turns the screenshots into pixels.
    require("convert");
    let relay = Relay::start();
    add_user(&relay, "alice", ALICE_PASSWORD);
    let mut bob = relay.register("bob").await;
    bob.joined("lobby").await;
    bob.client.send("lobby", "hi alice").await.unwrap();

    let x = Xvfb::start();
    let gui = Gui::pinned(&x, &relay, "alice");
    gui.log_in("alice", ALICE_PASSWORD);

    let dir = shots();
    let mut shot = settled(&gui, &dir.join("fonts-0-before.png"), None);
    let mut lines = Vec::new();
    for (i, (name, body)) in [("emoji", EMOJI), ("cjk", CJK), ("missing", MISSING)]
        .into_iter()
        .enumerate()
    {
        bob.client.send("lobby", body).await.unwrap();
        let path = dir.join(format!("fonts-{}-{name}.png", i + 1));
        let next = settled(&gui, &path, Some(&shot));
        let line = new_line(&shot, &next)
            .unwrap_or_else(|| panic!("no new line in {} for {body:?}", path.display()));
        lines.push((next.clone(), line));
        shot = next;
    }
    let mut wrong = Vec::new();

    // Colour: a saturated patch for each emoji. Black-and-white emoji from
    // a text font, or boxes, have none.
    let (picture, line) = &lines[0];
    let patches = colour_patches(picture, line);
    eprintln!("{EMOJI:?}: patches of colour at columns {patches:?}");
    if patches.len() < 4 {
        wrong.push(format!(
            "{EMOJI:?} shows {} patches of colour ({patches:?}), not one for each of its 4 \
             emoji: see {}",
            patches.len(),
            dir.join("fonts-1-emoji.png").display()
        ));
    }

    // No boxes: most Hangul syllables, Han characters and kana are drawn
    // with strokes that do not touch, where a box for a missing glyph is one
    // outline. The line of characters no font has, with the same time and
    // sender in front, shows how many shapes boxes make. (Drawn, the 12
    // characters make about 25 shapes; as boxes, 12.)
    let cjk = shapes(&lines[1].0, &lines[1].1);
    let missing = shapes(&lines[2].0, &lines[2].1);
    eprintln!("{CJK:?}: {cjk} shapes; 12 missing characters: {missing}");
    if cjk < missing + 6 {
        wrong.push(format!(
            "{CJK:?} is drawn as {cjk} shapes, a line of 12 missing characters as {missing}: \
             boxes instead of glyphs? see {} and {}",
            dir.join("fonts-2-cjk.png").display(),
            dir.join("fonts-3-missing.png").display()
        ));
    }
    assert!(
        wrong.is_empty(),
        "{}\nwindow log:\n{}",
        wrong.join("\n"),
        gui.log()
    );
}

/// A screenshot, as 8-bit RGB.
#[derive(Clone, PartialEq)]
struct Picture {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Picture {
    fn load(path: &Path) -> Picture {
        let out = Command::new("convert")
            .arg(path)
            .args(["-depth", "8", "ppm:-"])
            .output()
            .expect("run convert");
        assert!(out.status.success(), "convert {}", path.display());
        // P6\n<width> <height>\n255\n<pixels>
        let mut fields = Vec::new();
        let mut at = 0;
        while fields.len() < 4 {
            while out.stdout[at].is_ascii_whitespace() {
                at += 1;
            }
            let start = at;
            while !out.stdout[at].is_ascii_whitespace() {
                at += 1;
            }
            fields.push(String::from_utf8_lossy(&out.stdout[start..at]).into_owned());
        }
        assert_eq!(fields[0], "P6", "convert wrote no PPM");
        let width: usize = fields[1].parse().expect("width");
        let height: usize = fields[2].parse().expect("height");
        let rgb = out.stdout[at + 1..].to_vec();
        assert_eq!(rgb.len(), width * height * 3, "PPM size");
        Picture { width, height, rgb }
    }

    fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

/// Takes screenshots into `path` until two in a row agree and, with
/// `changed_from`, differ from it: the window has drawn what arrived.
fn settled(gui: &Gui, path: &Path, changed_from: Option<&Picture>) -> Picture {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last: Option<Picture> = None;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        gui.screenshot(path);
        let now = Picture::load(path);
        let moved = changed_from.is_none_or(|before| new_line(before, &now).is_some());
        if moved && last.as_ref().is_some_and(|l| new_line(l, &now).is_none()) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the window did not settle on a new picture: {}",
            path.display()
        );
        last = Some(now);
    }
}

/// Where a line of text appeared: a box in window pixels.
#[derive(Debug, Clone)]
struct Area {
    x: std::ops::Range<usize>,
    y: std::ops::Range<usize>,
}

/// The tallest band of rows in which `after` differs from `before` by more
/// than a blinking cursor, and the columns that differ in it.
fn new_line(before: &Picture, after: &Picture) -> Option<Area> {
    assert_eq!(
        (before.width, before.height),
        (after.width, after.height),
        "the window changed size"
    );
    let changed = |x, y| before.pixel(x, y) != after.pixel(x, y);
    let busy: Vec<bool> = (0..after.height)
        .map(|y| (0..after.width).filter(|&x| changed(x, y)).count() > 6)
        .collect();
    let mut best: Option<std::ops::Range<usize>> = None;
    let mut y = 0;
    while y < busy.len() {
        if busy[y] {
            let start = y;
            while y < busy.len() && busy[y] {
                y += 1;
            }
            if best.as_ref().is_none_or(|b| y - start > b.len()) {
                best = Some(start..y);
            }
        }
        y += 1;
    }
    let rows = best?;
    let columns: Vec<usize> = (0..after.width)
        .filter(|&x| rows.clone().any(|y| changed(x, y)))
        .collect();
    Some(Area {
        x: *columns.first()?..*columns.last()? + 1,
        y: rows,
    })
}

/// Column ranges of the line with strongly coloured pixels, merged where
/// they are less than 3 pixels apart. Text, in any theme, is grey.
fn colour_patches(picture: &Picture, line: &Area) -> Vec<std::ops::Range<usize>> {
    let coloured = |x: usize| {
        line.y.clone().any(|y| {
            let [r, g, b] = picture.pixel(x, y);
            let (hi, lo) = (r.max(g).max(b), r.min(g).min(b));
            hi >= 120 && hi - lo >= 100
        })
    };
    let mut patches: Vec<std::ops::Range<usize>> = Vec::new();
    for x in line.x.clone().filter(|&x| coloured(x)) {
        match patches.last_mut() {
            Some(last) if x - last.end < 3 => last.end = x + 1,
            _ => patches.push(x..x + 1),
        }
    }
    patches
}

/// How many separate shapes (8-connected, 4 pixels or more) of ink the
/// line has, ink being what stands out from the line's background.
fn shapes(picture: &Picture, line: &Area) -> usize {
    let (w, h) = (line.x.len(), line.y.len());
    let at = |x: usize, y: usize| picture.pixel(line.x.start + x, line.y.start + y);
    let mut counts = std::collections::HashMap::new();
    for y in 0..h {
        for x in 0..w {
            *counts.entry(at(x, y)).or_insert(0usize) += 1;
        }
    }
    let background = counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(c, _)| c)
        .expect("an empty line");
    let ink: Vec<bool> = (0..h * w)
        .map(|i| {
            let p = at(i % w, i / w);
            (0..3).any(|c| p[c].abs_diff(background[c]) > 80)
        })
        .collect();
    let mut seen = vec![false; w * h];
    let mut count = 0;
    for start in 0..w * h {
        if !ink[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        let mut stack = vec![start];
        let mut size = 0;
        while let Some(i) = stack.pop() {
            size += 1;
            let (x, y) = ((i % w) as i64, (i / w) as i64);
            for (dx, dy) in [
                (-1, -1),
                (0, -1),
                (1, -1),
                (-1, 0),
                (1, 0),
                (-1, 1),
                (0, 1),
                (1, 1),
            ] {
                let (nx, ny) = (x + dx, y + dy);
                if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                    continue;
                }
                let n = ny as usize * w + nx as usize;
                if ink[n] && !seen[n] {
                    seen[n] = true;
                    stack.push(n);
                }
            }
        }
        if size >= 4 {
            count += 1;
        }
    }
    count
}
