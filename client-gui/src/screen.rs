//! The screens of the window, one module each.

pub mod chat;
pub mod login;
pub mod trust;
