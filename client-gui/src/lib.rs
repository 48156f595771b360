//! The confab desktop client as a library: `client-gui` is a thin shell
//! over it, and the widget tests drive its screens headless.
//!
//! `app` holds the screens and carries out what they decide; `screen::*`
//! are the screens, each with its `Message`, `update` and `view`;
//! `connection` runs the `common` client session in a subscription, the
//! only place that touches the network; `fonts` brings the fonts built
//! into the binary to the text engine.

pub mod app;
pub mod connection;
pub mod fonts;
pub mod reachable;
pub mod screen;
pub mod settings;
