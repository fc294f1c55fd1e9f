//! Cold objects: an object's JSON compressed with a dictionary of its kind.
//!
//! Objects of one kind share almost everything but their values: the keys, the
//! `apiVersion`, the shape of `metadata`, `spec` and `status`, and often whole strings
//! (a Query's target, a Model's provider). Compressing one object of about a kilobyte on
//! its own finds little of that (zstd: 938 → 574 bytes for a benchmark Query); with a
//! dictionary trained on a sample of the kind it finds nearly all of it (938 → 71 bytes),
//! and a decompression costs about half a microsecond. The state keeps most objects this
//! way (see `watch::State`'s module docs for when); readers get the same bytes back.
//!
//! Pure CPU: no I/O, no clock. zstd's contexts are per thread, so a compression or a
//! decompression never waits for another.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use zstd::zstd_safe::{CCtx, CDict, CParameter, DCtx, DDict};

/// The zstd level: 1 and 3 give the same size for objects this small (71 and 69 bytes a
/// Query), and 1 is faster to build at start.
const LEVEL: i32 = 1;
/// The dictionary's size, at most. 16 KiB captures a kind's structure; larger ones gave
/// no smaller objects in measurement and cost cache misses.
const DICT_BYTES: usize = 16 * 1024;
/// Fewer sample objects than this do not make a dictionary worth having (and zstd's
/// trainer refuses tiny sample sets).
pub(crate) const MIN_SAMPLES: usize = 256;
/// At most this many objects are sampled to train a dictionary.
pub(crate) const MAX_SAMPLES: usize = 1_000;
/// Objects smaller than this stay plain: there is little to save, and the packed form
/// has a fixed cost (its dictionary pointer and frame header).
const MIN_PACKED_INPUT: usize = 128;

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// A kind's compression dictionary, shared by every object packed with it (an object
/// holds an `Arc` to the one it was packed with, so a newer dictionary never strands it).
pub struct Dict {
    id: u32,
    cdict: CDict<'static>,
    ddict: DDict<'static>,
}

impl fmt::Debug for Dict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dict({})", self.id)
    }
}

/// Why a packed body could not be read back: a bug (the bytes were made here and never
/// change), reported instead of a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a packed object does not decompress: {0}")]
pub struct UnpackError(pub String);

thread_local! {
    static CCTX: RefCell<CCtx<'static>> = RefCell::new(compressor());
    static DCTX: RefCell<DCtx<'static>> = RefCell::new(DCtx::create());
}

fn compressor() -> CCtx<'static> {
    let mut c = CCtx::create();
    // The length is kept beside the bytes, the dictionary is known from the object, and
    // the bytes never leave this process: none of the frame's optional fields pays.
    let _ = c.set_parameter(CParameter::ContentSizeFlag(false));
    let _ = c.set_parameter(CParameter::ChecksumFlag(false));
    let _ = c.set_parameter(CParameter::DictIdFlag(false));
    let _ = c.set_parameter(CParameter::CompressionLevel(LEVEL));
    c
}

impl Dict {
    /// Trains a dictionary on `samples` (objects' JSON); `None` with too few samples or
    /// when zstd's trainer finds nothing to learn.
    pub fn train<'a>(samples: impl IntoIterator<Item = &'a [u8]>) -> Option<Dict> {
        let mut data = Vec::new();
        let mut sizes = Vec::new();
        for s in samples.into_iter().take(MAX_SAMPLES) {
            data.extend_from_slice(s);
            sizes.push(s.len());
        }
        if sizes.len() < MIN_SAMPLES {
            return None;
        }
        let dict = zstd::dict::from_continuous(&data, &sizes, DICT_BYTES).ok()?;
        Some(Dict {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            cdict: CDict::try_create(&dict, LEVEL)?,
            ddict: DDict::try_create(&dict)?,
        })
    }

    /// `json` compressed, or `None` when that would not make it smaller.
    pub fn pack(&self, json: &[u8]) -> Option<Box<[u8]>> {
        if json.len() < MIN_PACKED_INPUT {
            return None;
        }
        CCTX.with(|c| {
            let mut c = c.borrow_mut();
            c.ref_cdict(&self.cdict).ok()?;
            let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(json.len()));
            let done = c.compress2(&mut out, json);
            // Never leave the context pointing at a dictionary that may be freed.
            let _ = c.disable_dictionary();
            done.ok()?;
            (out.len() + 8 < json.len()).then(|| out.into_boxed_slice())
        })
    }

    /// Calls `f` with the `len` bytes `packed` came from. The bytes live in a buffer of
    /// this thread's, reused by the next call, so `f` must not unpack again.
    pub fn unpack<R>(
        &self,
        packed: &[u8],
        len: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, UnpackError> {
        thread_local! {
            static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        // Taken out of the thread's slot for the call, so a nested unpack (which `f` must
        // not do, but a bug might) gets a buffer of its own instead of a borrow panic.
        let mut buf = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        buf.clear();
        buf.reserve(len);
        let res = DCTX.with(|d| {
            d.borrow_mut()
                .decompress_using_ddict(&mut buf, packed, &self.ddict)
                .map_err(|code| UnpackError(zstd::zstd_safe::get_error_name(code).to_string()))
        });
        let out = match res {
            Ok(n) if n == len => Ok(f(&buf)),
            Ok(n) => Err(UnpackError(format!("{n} bytes, {len} expected"))),
            Err(e) => Err(e),
        };
        // A buffer grown by one huge object is not kept for the thread's life.
        if buf.capacity() <= 1 << 20 {
            SCRATCH.with(|s| *s.borrow_mut() = buf);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize) -> Vec<u8> {
        format!(
            r#"{{"apiVersion":"ark.mckinsey.com/v1alpha1","kind":"Model","metadata":{{"name":"model-{i}","namespace":"ns-{}","uid":"{i:08x}-0000"}},"spec":{{"type":"openai","model":{{"value":"gpt-{}"}},"config":{{"openai":{{"baseUrl":{{"value":"https://example.com/{i}"}}}}}}}}}}"#,
            i % 7,
            i % 5
        )
        .into_bytes()
    }

    #[test]
    fn packed_json_reads_back_as_the_same_bytes() {
        let samples: Vec<Vec<u8>> = (0..MAX_SAMPLES).map(sample).collect();
        let dict = Dict::train(samples.iter().map(Vec::as_slice)).expect("enough samples");
        for i in [0, 17, 5_000, 123_456] {
            let json = sample(i);
            let packed = dict.pack(&json).expect("smaller packed");
            assert!(
                packed.len() * 2 < json.len(),
                "{} of {}",
                packed.len(),
                json.len()
            );
            let back = dict.unpack(&packed, json.len(), <[u8]>::to_vec).unwrap();
            assert_eq!(back, json);
        }
    }

    #[test]
    fn too_few_samples_make_no_dictionary_and_tiny_objects_stay_plain() {
        let samples: Vec<Vec<u8>> = (0..MIN_SAMPLES - 1).map(sample).collect();
        assert!(Dict::train(samples.iter().map(Vec::as_slice)).is_none());
        let samples: Vec<Vec<u8>> = (0..MAX_SAMPLES).map(sample).collect();
        let dict = Dict::train(samples.iter().map(Vec::as_slice)).unwrap();
        assert!(dict.pack(b"{\"a\":1}").is_none());
    }

    #[test]
    fn a_wrong_length_is_an_error_not_a_panic() {
        let samples: Vec<Vec<u8>> = (0..MAX_SAMPLES).map(sample).collect();
        let dict = Dict::train(samples.iter().map(Vec::as_slice)).unwrap();
        let json = sample(3);
        let packed = dict.pack(&json).unwrap();
        assert!(dict.unpack(&packed, json.len() + 1, |_| ()).is_err());
        assert!(dict
            .unpack(&packed[..packed.len() / 2], json.len(), |_| ())
            .is_err());
    }
}
