//! What the window remembers between runs: the last server and user, the
//! theme, the window's size, the room each account had open and the lines
//! the relay never confirmed. Never the password.

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::atomic_file;
use serde::{Deserialize, Serialize};

/// Env var naming the settings file (tests point it at a temp folder).
pub const SETTINGS_ENV: &str = "CONFAB_GUI_SETTINGS";

/// The light/dark choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThemeChoice {
    /// Follow the system.
    #[default]
    System,
    Light,
    Dark,
}

/// Remembered settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub server: String,
    pub user: String,
    #[serde(default)]
    pub theme: ThemeChoice,
    /// Width and height the window had when it was closed.
    #[serde(default)]
    pub window: Option<(f32, f32)>,
    /// The room shown when the window was closed, by `user@server`.
    #[serde(default)]
    pub rooms: BTreeMap<String, String>,
    /// Lines the relay had not stored when the window closed or the user
    /// logged out, by `user@server`: shown again at the next login, to
    /// send with Retry.
    #[serde(default)]
    pub unsent: BTreeMap<String, Vec<Unsent>>,
}

/// A line typed in `room` that the relay never confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsent {
    pub room: String,
    pub body: String,
}

/// The size the window opens at the first time.
pub const DEFAULT_WINDOW: (f32, f32) = (1000.0, 680.0);

/// Below this the layout cannot hold; above it, a damaged file.
const SMALLEST: (f32, f32) = (640.0, 480.0);
const LARGEST: f32 = 16384.0;

impl Settings {
    /// The size to open the window at: last time's, within reason.
    pub fn window_size(&self) -> (f32, f32) {
        match self.window {
            Some((w, h)) if w.is_finite() && h.is_finite() => {
                (w.clamp(SMALLEST.0, LARGEST), h.clamp(SMALLEST.1, LARGEST))
            }
            _ => DEFAULT_WINDOW,
        }
    }

    /// Whose room it was: one account on one relay (list).
    pub fn room_key(user: &str, server: &str) -> String {
        format!("{user}@{server}")
    }

    /// Where the settings live: `CONFAB_GUI_SETTINGS`, else the user's
    /// config folder.
    pub fn path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(SETTINGS_ENV) {
            return Some(PathBuf::from(p));
        }
        dirs::config_dir().map(|d| d.join("confab").join("gui.json"))
    }

    /// The saved settings, or defaults when there are none or they are damaged.
    pub fn load() -> Settings {
        Self::path()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Changes these settings and the file, and nothing else in the file:
    /// two windows sharing it (two accounts, say) each keep what the
    /// other wrote, instead of the last to save writing over the other's
    /// unsent lines.
    pub fn change(&mut self, change: impl Fn(&mut Settings)) {
        change(self);
        let mut on_disk = Self::load();
        change(&mut on_disk);
        on_disk.save();
    }

    /// Saves, logging (not failing) when the folder is not writable: losing
    /// the remembered server is no reason to stop the user chatting.
    pub fn save(&self) {
        let Some(path) = Self::path() else { return };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
            // Unsent lines are someone's words: for the user's eyes only.
            atomic_file::write(&path, &json, atomic_file::PRIVATE)
        };
        if let Err(e) = write() {
            tracing::warn!("cannot save settings to {}: {e}", path.display());
        }
    }
}
