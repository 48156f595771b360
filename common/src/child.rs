//! A child process that cannot outlive its owner.
//!
//! It lives here rather than in the test harness because the load
//! generator starts relays and nats-servers too, and a shipped program
//! should not depend on the test crate.

use std::ops::{Deref, DerefMut};
use std::process::Child;

/// A child process killed (and reaped) when dropped, so no error path or
/// failed assertion leaves it running.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Deref for KillOnDrop {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn dropping_kills_the_child() {
        let child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id();
        drop(KillOnDrop(child));
        // Reaped too: the pid is gone, not a zombie.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
