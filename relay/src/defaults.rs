//! Every relay tunable with the reason for its value. Protocol limits that
//! clients must also know live in `common::limits`; these are the relay's own.

use std::time::Duration;

/// Listen address of `relay serve`: loopback, so a first run exposes nothing.
pub const LISTEN: &str = "127.0.0.1:4433";

/// Data folder of `relay serve` and `relay user`.
pub const DATA_DIR: &str = "data";

/// Live frames a session may have queued before it counts as lagging. At
/// ~200 bytes a chat line this bounds a slow reader to ~200 KiB of queue;
/// beyond it the reader catches up from history instead.
pub const QUEUE_DEPTH: usize = 1024;

/// Frames the writer hands QUIC in one go: enough to amortise the write
/// call under fan-out bursts, small enough to keep latency even.
pub const WRITE_BATCH: usize = 64;

/// Sends per second an account may make, sustained, all its sessions
/// together; bursts may reach twice this. Generous for people and bots, a
/// cap on floods.
pub const RATE_LIMIT: u32 = 50;

/// Room changes (create, join, leave, invite, open a DM) per second per
/// account, all its sessions together, bursts of twice this: plenty for
/// people, a cap on scripts that would fill the store with rooms.
pub const REQUEST_RATE: u32 = 10;

/// Rooms (channels and DMs) an account may create per hour, sustained, on
/// one relay, after a first [`ROOM_CREATION_BURST`]: a team sets up its
/// channels in an afternoon; a script cannot fill the store and the room
/// directory with thousands.
pub const ROOM_CREATIONS_PER_HOUR: u32 = 60;

/// Rooms an account may create at once before the hourly rate applies.
pub const ROOM_CREATION_BURST: u32 = 20;

/// Rooms (lobby, channels, DMs) one account may be a member of: far more
/// than a person follows, and what keeps its room list (`Rooms.joined`)
/// small whatever others do, since DMs opened by others count too.
pub const MAX_ROOMS_PER_USER: usize = 1000;

/// Pending invitations kept per user; past it the oldest goes. Anyone may
/// invite anyone, so this is what bounds the invitations a user is sent in
/// `Rooms.invited` and the store keeps for them, however many accounts
/// invite; the oldest going means a flood cannot keep newer invitations
/// out, and tells the inviters nothing about the invitee.
pub const MAX_INVITATIONS: usize = 100;

/// Public channels listed in `Rooms.public`, the ones with most members
/// first: a directory to browse, not every room, so the list stays small
/// however many rooms exist. Any room can still be joined by name.
pub const MAX_LISTED_PUBLIC: usize = 1000;

/// Bytes of message bodies one account may store per day, MiB: at most a
/// day's worth at once, refilled evenly over the day. A person writes a
/// few hundred KiB a day and a chatty bot a few MiB; a script at the send
/// rate limit would store 17 GiB.
pub const DAILY_QUOTA_MIB: u32 = 100;

/// Accounts one client network (IPv4 address, IPv6 /64) may register per
/// hour, and at once: a family or office signing up together, not a
/// script making accounts to multiply the per-account budgets. Loopback
/// is not counted.
pub const REGISTRATIONS_PER_HOUR: u32 = 10;

/// Sessions one account may have open on one relay: phones, laptops,
/// desktops and a few bots, with room to spare. Everything a session may
/// make the relay hold (queues, sends in flight, bulk replies) multiplies
/// by this for one account, so it is what bounds an account's share.
pub const MAX_SESSIONS_PER_USER: usize = 16;

/// Sends of one session waiting for their commit at once. Pipelining hides
/// the commit latency; the cap bounds memory per session.
pub const MAX_IN_FLIGHT: usize = 256;

/// Bulk replies (history pages, room and member lists) of one session
/// being read or written at once. A catch-up pages one room at a time; the
/// cap stops a client from making the relay hold hundreds of pages.
pub const MAX_BULK_IN_FLIGHT: usize = 4;

/// Connections that have not logged in yet. The handshake and argon2 cost
/// us more than them. Past this cap a newcomer takes the place of a silent
/// one (limits.rs), or is refused before TLS when none is silent.
pub const MAX_UNAUTHENTICATED: usize = 256;

/// Connections not logged in yet from one IPv4 address or IPv6 /64: enough
/// for a household or office behind one NAT logging in at once, too few for
/// one host to hold every pre-login place.
pub const MAX_UNAUTHENTICATED_PER_ADDR: usize = 32;

/// Password checks (logins, registrations) one client network has in
/// progress at once; its other connections wait their turn, silent, and
/// so may give their pre-login place to a newcomer. Two keep a household
/// logging in at once quick; more let a few networks hold every hashing
/// thread and every place with logins under made-up names.
pub const CHECKS_PER_NETWORK: usize = 2;

/// Connections in all.
pub const MAX_CONNECTIONS: usize = 10_000;

/// Share of the pre-login places, in percent, in use above which a client
/// must prove it receives at its address (a QUIC Retry, one round trip)
/// before it gets a place. Below it nobody pays the round trip; above it a
/// packet with a forged source address gets a Retry that costs the relay
/// no state, and never a place.
pub const RETRY_ABOVE_PERCENT: usize = 25;

/// Time from a connection's first packet to the end of its handshake. A
/// client's lost Initial is sent again after ~1 s and then ~2 s more
/// (quinn's probe timeout from a 333 ms first guess of the round trip), so
/// 4 s lets a handshake survive two losses on a slow link, while a
/// connection whose peer never answers (a forged source address) gives up
/// its place in 4 s instead of at the login deadline.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(4);

/// Time from the end of the handshake to a complete `Hello`. Clients send
/// it at once, with their `Login` behind it (PROTOCOL.md §8.2), so 3 s is
/// many round trips plus a loss; a connection that finishes its handshake
/// and stays silent gives up its place then.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(3);

/// Failed logins per account and address that go unpunished (typos).
pub const FREE_FAILURES: u32 = 5;

/// Failed logins per account and address within [`FAILURE_WINDOW`] that
/// lock the pair out for [`LOCKOUT`].
pub const LOCK_AFTER: u32 = 10;

/// Window over which failures count towards a lockout.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// How long a locked account/address pair is refused.
pub const LOCKOUT: Duration = Duration::from_secs(300);

/// First delay added to a failed login past the free ones; doubles each time.
pub const FAILURE_DELAY: Duration = Duration::from_millis(250);

/// Cap on that delay: slow enough for guessing, short enough for people.
pub const MAX_FAILURE_DELAY: Duration = Duration::from_secs(4);

/// Failed logins one account may take, from all the addresses it has not
/// logged in from lately together, before further attempts from such
/// addresses are refused: room for a forgotten password tried on a few
/// devices, while a guesser with many addresses, each under its own
/// per-address limit, gets this many guesses and then only the refill.
pub const ACCOUNT_FAILURES: u32 = 20;

/// Time in which one spent attempt of that budget comes back: three
/// guesses a minute at an account, however many addresses they come from.
pub const ACCOUNT_REFILL: Duration = Duration::from_secs(20);

/// How long an address stays known to an account after a login from it,
/// outside the account's budget: a month of coming back from the same
/// home or office.
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// Addresses remembered per account: a person's devices and places, with
/// a bound on memory per account.
pub const MAX_KNOWN: usize = 16;

/// Time a bulk reply (at most 1 MiB, a history page is usually a few
/// dozen KiB) may take to reach a client before its stream is reset: 100
/// KiB/s at the worst, and a client that does not read holds the relay's
/// memory no longer than this.
pub const BULK_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bulk replies the relay holds at once, all sessions together, each
/// counted at the 1 MiB a reply may reach (the page read, then its
/// encoding, then QUIC's buffer): what clients that do not read can make
/// the relay hold, whatever their number.
pub const BULK_REPLIES: usize = 64;

/// Of those, the most one account's sessions hold at once.
pub const BULK_REPLIES_PER_USER: usize = 8;

/// How long a bulk request waits for a place among [`BULK_REPLIES`] before
/// it is answered `Unavailable`: a few other replies finish by then.
pub const BULK_WAIT: Duration = Duration::from_secs(5);

/// Connections the `--metrics` listener serves at once. A scraper needs
/// one; the cap keeps a flood of connections from taking the relay's file
/// descriptors, which its store and its clients need too.
pub const METRICS_CONNECTIONS: usize = 16;

/// Time one metrics connection gets to send its request and take the
/// answer. A scraper sends its request at once and reads a few KiB; a
/// silent connection gives up its place after this long.
pub const METRICS_DEADLINE: Duration = Duration::from_secs(2);

/// First pause after the metrics listener fails to accept (EMFILE when the
/// file limit is reached): a failed accept fails again at once until a
/// descriptor comes free, so retrying without a pause keeps a core busy.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Cap on that pause, which doubles with each failure in a row: a scrape
/// waits at most this long once descriptors are free again.
pub const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Time a closing connection gets to flush what is queued for it.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Name the relay gives in `Welcome`.
pub const SERVER_NAME: &str = concat!("confab-relay/", env!("CARGO_PKG_VERSION"));

/// Bytes a client may have in flight on its control stream. A control
/// frame is at most 64 KiB; four of them cover pipelined sends without
/// letting one connection park megabytes in the relay.
pub const STREAM_RECEIVE_WINDOW: u32 = 256 * 1024;

/// Bytes a client may have in flight on the whole connection: it opens one
/// stream, so a little over that stream's window.
pub const CONNECTION_RECEIVE_WINDOW: u32 = 320 * 1024;

/// Bytes the relay keeps unacknowledged per connection: a full history page
/// (1 MiB) and then some, not quinn's 10 MB default times every client.
pub const SEND_WINDOW: u64 = 2 * 1024 * 1024;

/// The QUIC transport every relay connection uses. Clients open exactly one
/// bidirectional stream and no unidirectional ones (PROTOCOL.md §2), so
/// anything more is refused by flow control instead of being buffered.
pub fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(common::trust::idle_timeout()))
        .max_concurrent_bidi_streams(1u32.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window(STREAM_RECEIVE_WINDOW.into())
        .receive_window(CONNECTION_RECEIVE_WINDOW.into())
        .send_window(SEND_WINDOW)
        .datagram_receive_buffer_size(None);
    t
}

/// Receive buffer asked for on the relay's UDP socket: room for a burst of
/// connection attempts (the kernel caps it at net.core.rmem_max).
pub const UDP_RECV_BUFFER: usize = 4 << 20;
