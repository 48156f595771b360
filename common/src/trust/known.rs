//! The known-relays file of trust on first use: one line per relay,
//! `HOST:PORT SHA256:AB:CD:…`, with `#` comments and blank lines allowed,
//! like ssh's `known_hosts`. People may edit it by hand, so reading is
//! lenient (a malformed line is skipped) and writing keeps every other line
//! as it was.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::atomic_file;

/// Environment variable that overrides [`default_known_relays`].
pub const KNOWN_RELAYS_ENV: &str = "CONFAB_KNOWN_RELAYS";

/// Header written at the top of a new file, so a person opening it knows
/// what it is and how to use it.
const HEADER: &str = "# confab known relays: HOST:PORT SHA256-fingerprint, one per line.\n\
                      # Remove a relay's line to accept a new certificate for it.\n";

/// The known-relays file: `$CONFAB_KNOWN_RELAYS` if set, otherwise
/// `known_relays` in the `confab` folder of the user's config folder
/// (`~/.config/confab/known_relays` on Linux).
pub fn default_known_relays() -> PathBuf {
    if let Some(path) = std::env::var_os(KNOWN_RELAYS_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let base = dirs::config_dir()
        .or_else(|| dirs::home_dir().map(|home| home.join(".config")))
        // No home at all (a bare service account): the working folder is
        // the only place left that the user can see.
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("confab").join("known_relays")
}

/// The fingerprints remembered for `server` (usually one). A missing file
/// knows no relay.
pub fn lookup(file: &Path, server: &str) -> io::Result<Vec<String>> {
    let text = read_or_empty(file)?;
    Ok(text
        .lines()
        .filter_map(parse_line)
        .filter(|(host, _)| same_server(host, server))
        .map(|(_, fp)| fp)
        .collect())
}

/// Remember `fingerprint` for `server`, replacing any line it had, creating
/// the file and its folders if needed.
///
/// The new file is written beside the old one and renamed over it, so a
/// reader never sees half a file. Two clients remembering at the same
/// instant may lose one of the two lines; the next connect asks again.
pub fn remember(file: &Path, server: &str, fingerprint: &str) -> io::Result<()> {
    let (server, fingerprint) = checked(server, fingerprint)?;
    let old = read_or_empty(file)?;
    let mut text = match old.is_empty() {
        true => HEADER.to_owned(),
        false => keep_others(&old, server).0,
    };
    text.push_str(server);
    text.push(' ');
    text.push_str(&fingerprint);
    text.push('\n');
    replace(file, &text)
}

/// Replace the fingerprint remembered for `server` with `fingerprint`, once
/// the user confirmed a changed certificate with the relay's operator. The
/// server's line keeps its place in the file (a second line for it goes)
/// and every other line stays as it was; the file is replaced atomically.
///
/// `known` is what the user was shown as remembered. If the file holds
/// something else for `server` now (a person or another client changed it
/// meanwhile), nothing is written and the error says so: the user decided
/// about a file that is no longer there. Replacing with what is already
/// remembered succeeds and writes nothing.
pub fn replace_changed(
    file: &Path,
    server: &str,
    known: &[String],
    fingerprint: &str,
) -> io::Result<()> {
    let (server, fingerprint) = checked(server, fingerprint)?;
    let mut now = lookup(file, server)?;
    if now == [fingerprint.clone()] {
        return Ok(());
    }
    let mut shown: Vec<String> = known
        .iter()
        .map(|fp| normalize_fingerprint(fp).unwrap_or_else(|| fp.trim().to_owned()))
        .collect();
    now.sort();
    shown.sort();
    if now != shown {
        return Err(io::Error::other(format!(
            "the fingerprint remembered for {server} in {} changed since it was shown \
             (now: {}); connect again to compare",
            file.display(),
            match now.is_empty() {
                true => "none".to_owned(),
                false => now.join(", "),
            }
        )));
    }
    let old = read_or_empty(file)?;
    let line = format!("{server} {fingerprint}\n");
    let mut text = String::with_capacity(old.len() + line.len());
    let mut placed = false;
    for kept in old.lines() {
        match parse_line(kept) {
            Some((host, _)) if same_server(host, server) => {
                if !placed {
                    text.push_str(&line);
                    placed = true;
                }
            }
            _ => {
                text.push_str(kept);
                text.push('\n');
            }
        }
    }
    if !placed {
        if text.is_empty() {
            text.push_str(HEADER);
        }
        text.push_str(&line);
    }
    replace(file, &text)
}

/// Forget `server`: remove its lines so that its next certificate is asked
/// about as a new one. Returns whether there was anything to remove.
pub fn forget(file: &Path, server: &str) -> io::Result<bool> {
    let old = read_or_empty(file)?;
    let (text, removed) = keep_others(&old, server.trim());
    if removed {
        replace(file, &text)?;
    }
    Ok(removed)
}

/// The server trimmed and the fingerprint in canonical form, or why they
/// cannot go in the file.
fn checked<'a>(server: &'a str, fingerprint: &str) -> io::Result<(&'a str, String)> {
    let server = server.trim();
    if server.is_empty() || server.contains(char::is_whitespace) || server.starts_with('#') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{server}` is not a HOST:PORT server address"),
        ));
    }
    let Some(fingerprint) = normalize_fingerprint(fingerprint) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{fingerprint}` is not a SHA256:AB:CD:… fingerprint"),
        ));
    };
    Ok((server, fingerprint))
}

/// `(host, fingerprint)` of a relay line; `None` for comments, blank and
/// malformed lines. Anything after the fingerprint is ignored, as a comment.
fn parse_line(line: &str) -> Option<(&str, String)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let host = fields.next()?;
    let fp = normalize_fingerprint(fields.next()?)?;
    Some((host, fp))
}

/// The canonical form (`SHA256:` and 32 uppercase hex pairs) of a
/// fingerprint typed in any case, or `None` if it is not one.
fn normalize_fingerprint(fp: &str) -> Option<String> {
    let fp = fp.trim();
    let (prefix, hex) = fp.split_once(':')?;
    if !prefix.eq_ignore_ascii_case("SHA256") {
        return None;
    }
    let pairs: Vec<&str> = hex.split(':').collect();
    let well_formed = pairs.len() == 32
        && pairs
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    well_formed.then(|| format!("SHA256:{}", hex.to_ascii_uppercase()))
}

/// Host names are case-insensitive; the port is compared as typed.
fn same_server(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// The file without `server`'s lines, and whether any was dropped.
fn keep_others(text: &str, server: &str) -> (String, bool) {
    let mut kept = String::with_capacity(text.len());
    let mut removed = false;
    for line in text.lines() {
        match parse_line(line) {
            Some((host, _)) if same_server(host, server) => removed = true,
            _ => {
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    (kept, removed)
}

fn read_or_empty(file: &Path) -> io::Result<String> {
    match fs::read_to_string(file) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// Replace `file` with `text` atomically, creating its folder if needed.
fn replace(file: &Path, text: &str) -> io::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    atomic_file::write(file, text.as_bytes(), atomic_file::READABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP_A: &str = "SHA256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:\
                        00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";

    fn fp_b() -> String {
        FP_A.replace("00:", "01:")
    }

    #[test]
    fn remember_lookup_forget_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a/b/known_relays");
        assert_eq!(lookup(&file, "relay:4433").unwrap(), Vec::<String>::new());

        remember(&file, "relay:4433", FP_A).unwrap();
        remember(&file, "other:4433", &fp_b()).unwrap();
        assert_eq!(lookup(&file, "relay:4433").unwrap(), vec![FP_A.to_owned()]);
        assert_eq!(lookup(&file, "RELAY:4433").unwrap(), vec![FP_A.to_owned()]);
        assert_eq!(lookup(&file, "other:4433").unwrap(), vec![fp_b()]);
        assert_eq!(lookup(&file, "relay:4434").unwrap(), Vec::<String>::new());

        // Remembering again replaces: one line per relay.
        remember(&file, "relay:4433", &fp_b()).unwrap();
        assert_eq!(lookup(&file, "relay:4433").unwrap(), vec![fp_b()]);

        assert!(forget(&file, "relay:4433").unwrap());
        assert!(!forget(&file, "relay:4433").unwrap());
        assert_eq!(lookup(&file, "relay:4433").unwrap(), Vec::<String>::new());
        assert_eq!(lookup(&file, "other:4433").unwrap(), vec![fp_b()]);

        let text = fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("# confab known relays"), "{text}");
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 1);
    }

    #[test]
    fn parsing_skips_comments_blank_and_malformed_lines_and_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_relays");
        let lower = FP_A.to_ascii_lowercase();
        let text = format!(
            "# mine\n\n  relay:1 {lower}  # the lab\nbroken line\nrelay:2 SHA256:12\nrelay:3\n"
        );
        fs::write(&file, &text).unwrap();
        assert_eq!(lookup(&file, "relay:1").unwrap(), vec![FP_A.to_owned()]);
        assert_eq!(lookup(&file, "relay:2").unwrap(), Vec::<String>::new());
        assert_eq!(lookup(&file, "relay:3").unwrap(), Vec::<String>::new());

        remember(&file, "relay:9", FP_A).unwrap();
        let after = fs::read_to_string(&file).unwrap();
        assert!(after.starts_with(&text), "{after}");
        assert!(after.ends_with(&format!("relay:9 {FP_A}\n")), "{after}");
    }

    #[test]
    fn remember_refuses_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_relays");
        assert!(remember(&file, "a b:1", FP_A).is_err());
        assert!(remember(&file, "", FP_A).is_err());
        assert!(remember(&file, "relay:1", "SHA256:00").is_err());
        assert!(remember(&file, "relay:1", "MD5:00").is_err());
        assert!(!file.exists());
    }

    #[test]
    fn a_changed_fingerprint_is_replaced_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_relays");
        let lower = FP_A.to_ascii_lowercase();
        fs::write(
            &file,
            format!("# mine\nother:1 {FP_A}\nrelay:1 {lower}  # the lab\n\nlast:1 {FP_A}\n"),
        )
        .unwrap();
        replace_changed(&file, "relay:1", &[FP_A.to_owned()], &fp_b()).unwrap();
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            format!(
                "# mine\nother:1 {FP_A}\nrelay:1 {}\n\nlast:1 {FP_A}\n",
                fp_b()
            )
        );
        assert_eq!(lookup(&file, "relay:1").unwrap(), vec![fp_b()]);

        // Asked again (a second click, another window): nothing to do.
        replace_changed(&file, "relay:1", &[FP_A.to_owned()], &fp_b()).unwrap();
        assert_eq!(lookup(&file, "relay:1").unwrap(), vec![fp_b()]);
    }

    #[test]
    fn replacing_refuses_when_the_file_changed_since_it_was_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_relays");
        let fp_c = FP_A.replace("00:", "02:");
        remember(&file, "relay:1", &fp_c).unwrap();
        let before = fs::read_to_string(&file).unwrap();
        let err = replace_changed(&file, "relay:1", &[FP_A.to_owned()], &fp_b()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("changed since it was shown") && text.contains(&fp_c),
            "{text}"
        );
        assert_eq!(fs::read_to_string(&file).unwrap(), before);

        // Forgotten meanwhile: refused too, rather than trusted unasked.
        forget(&file, "relay:1").unwrap();
        let err = replace_changed(&file, "relay:1", &[fp_c], &fp_b()).unwrap_err();
        assert!(err.to_string().contains("(now: none)"), "{err}");
        assert_eq!(lookup(&file, "relay:1").unwrap(), Vec::<String>::new());

        assert!(replace_changed(&file, "relay:1", &[], "SHA256:00").is_err());
    }

    #[test]
    fn default_path_honours_the_environment() {
        // The only test touching this variable, so no other test races it.
        std::env::set_var(KNOWN_RELAYS_ENV, "/tmp/x/known");
        assert_eq!(default_known_relays(), PathBuf::from("/tmp/x/known"));
        std::env::remove_var(KNOWN_RELAYS_ENV);
        let path = default_known_relays();
        assert!(path.ends_with("confab/known_relays"), "{}", path.display());
    }
}
