//! Frame decoder: arbitrary bytes as a payload of either direction, and as a
//! control stream read frame by frame.
//!
//! Checks: decoding never panics; whatever decodes re-encodes to a frame
//! that decodes to the same value (round trip); the stream reader never
//! returns a payload over its limit, refuses a prefix over the limit with
//! `TooLarge` before allocating, and no single allocation made while
//! reading or decoding exceeds the limit the code promises (the control
//! limit for the reader, the bulk limit for bincode).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::codec::{self, FrameError};
use common::frame::{ClientFrame, ServerFrame};
use common::limits::{MAX_BULK_FRAME, MAX_CONTROL_FRAME};
use libfuzzer_sys::fuzz_target;

/// Records the largest single allocation made while `WATCH` is set.
struct Watch;

static WATCH: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

fn note(size: usize) {
    if WATCH.load(Ordering::Relaxed) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Watch = Watch;

/// Runs `f` and returns its result with the largest allocation it made.
fn watched<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.store(0, Ordering::Relaxed);
    WATCH.store(true, Ordering::Relaxed);
    let out = f();
    WATCH.store(false, Ordering::Relaxed);
    (out, LARGEST.load(Ordering::Relaxed))
}

/// Decoding allocates at most what the bincode limit allows, plus the
/// slack of a `Vec`'s growth (a doubling) and of serde's cautious
/// preallocation.
const DECODE_ALLOC_BOUND: usize = 2 * MAX_BULK_FRAME;

fn round_trip<T>(payload: &[u8], what: &str)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let (decoded, largest) = watched(|| codec::decode::<T>(payload));
    assert!(
        largest <= DECODE_ALLOC_BOUND,
        "{what}: decoding {} bytes allocated {largest} bytes at once",
        payload.len()
    );
    let Ok(frame) = decoded else { return };
    let bytes = codec::encode(&frame);
    let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    assert_eq!(len, bytes.len() - 4, "{what}: length prefix");
    // The canonical form of anything accepted decodes to the same frame.
    let again: T = codec::decode(&bytes[4..])
        .unwrap_or_else(|e| panic!("{what}: re-encoded {frame:?} does not decode: {e}"));
    assert_eq!(again, frame, "{what}: round trip changed the frame");
    // The stream reader returns exactly that payload.
    let mut stream: &[u8] = &bytes;
    let read = block_on(codec::read_payload(&mut stream, usize::MAX))
        .expect("reading an encoded frame")
        .expect("a frame, not the end");
    assert_eq!(&read[..], &bytes[4..]);
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
    }
    RT.with(|rt| rt.block_on(f))
}

/// Reads `data` as a control stream until it ends or fails.
fn read_stream(data: &[u8]) {
    let mut stream: &[u8] = data;
    loop {
        let before = stream.len();
        let prefix: Option<[u8; 4]> = stream.get(..4).map(|p| p.try_into().unwrap());
        let (result, largest) =
            watched(|| block_on(codec::read_payload(&mut stream, MAX_CONTROL_FRAME)));
        assert!(
            largest <= MAX_CONTROL_FRAME,
            "reader allocated {largest} bytes at once (limit {MAX_CONTROL_FRAME})"
        );
        match result {
            Ok(None) => {
                assert_eq!(before, 0, "clean end reported with {before} bytes left");
                return;
            }
            Ok(Some(payload)) => {
                let prefix = prefix.expect("a payload came with a whole prefix");
                let claimed = u32::from_be_bytes(prefix) as usize;
                assert!(payload.len() <= MAX_CONTROL_FRAME);
                assert_eq!(payload.len(), claimed, "payload length vs its prefix");
                assert_eq!(before - stream.len(), 4 + claimed, "bytes consumed");
                // What the relay does next with a control frame.
                let _ = codec::decode::<ClientFrame>(&payload);
            }
            Err(FrameError::TooLarge { len, max }) => {
                let prefix = prefix.expect("TooLarge needs a whole prefix");
                assert_eq!(len, u32::from_be_bytes(prefix) as usize);
                assert_eq!(max, MAX_CONTROL_FRAME);
                assert!(len > max, "refused {len} bytes under the {max} limit");
                return;
            }
            Err(FrameError::Truncated) => {
                match prefix {
                    None => assert!(before > 0 && before < 4, "truncated prefix"),
                    Some(p) => assert!(
                        (u32::from_be_bytes(p) as usize) > before - 4,
                        "Truncated although the whole payload was there"
                    ),
                }
                return;
            }
            Err(e) => panic!("reading from memory failed: {e}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<ClientFrame>(data, "client frame");
    round_trip::<ServerFrame>(data, "server frame");
    read_stream(data);
});
