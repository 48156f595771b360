//! Lines the relay never confirmed outlive the session: closing the window
//! or logging out keeps them (in the settings file, private to the user),
//! and the next login of the same account shows them again in their rooms,
//! marked "not sent", for Retry. Before, they were dropped without a word.

use super::room::Line;
use super::Chat;
use crate::settings::Unsent;

/// Why a carried line waits for Retry rather than going out by itself:
/// the relay may have stored it just before the session ended, and only
/// the user can tell whether it should go again.
const CARRIED: &str = "not confirmed before you last left; Retry sends it";

impl Chat {
    /// Every line typed in this session (or carried into it) that the
    /// relay has not confirmed, in each room's order.
    pub fn unsent(&self) -> Vec<Unsent> {
        let typed = self.rooms.iter().flat_map(|(room, r)| {
            r.lines.iter().filter_map(move |l| match l {
                Line::Pending { body, .. } => Some(Unsent {
                    room: room.clone(),
                    body: body.clone(),
                }),
                _ => None,
            })
        });
        let waiting = self.carried.iter().flat_map(|(room, bodies)| {
            bodies.iter().map(move |body| Unsent {
                room: room.clone(),
                body: body.clone(),
            })
        });
        typed.chain(waiting).collect()
    }

    /// Takes the lines the last session of this account left unsent; each
    /// shows once the relay says the user is in its room.
    pub fn carry(&mut self, lines: Vec<Unsent>) {
        for Unsent { room, body } in lines {
            self.carried.entry(room).or_default().push(body);
        }
    }

    /// The user is in `room`: its carried lines show, waiting for Retry.
    pub(super) fn carried_in(&mut self, room: &str) {
        let Some(bodies) = self.carried.remove(room) else {
            return;
        };
        self.unsent_changes += 1;
        for body in bodies {
            let local = self.next_local;
            self.next_local += 1;
            let r = self.rooms.entry(room.to_owned()).or_default();
            r.lines.push(Line::Pending {
                local,
                body,
                failed: Some(CARRIED.to_owned()),
            });
        }
    }
}
