//! What relays say to each other on the events subject: one envelope per
//! NATS message, naming the relay that sent it.

use serde::{Deserialize, Serialize};

use crate::hub::HubEvent;

/// One thing a relay says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire {
    /// A change on the sender's hub.
    Event(HubEvent),
    /// Everyone online on the sender, with their rooms.
    Roster(Vec<(String, Vec<String>)>),
    /// The sender is shutting down.
    Bye,
}

/// A [`Wire`] with the random id of the relay that sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Picked at random when the relay starts.
    pub relay: u64,
    pub wire: Wire,
}

impl Envelope {
    /// The bytes published on the events subject.
    pub fn encode(&self) -> Result<Vec<u8>, bincode::error::EncodeError> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
    }

    /// An envelope read from the events subject.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, bincode::error::DecodeError> {
        bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map(|(env, _)| env)
    }
}
